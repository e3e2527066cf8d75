//! A blocking Redis connection in which every wait is bounded.
//!
//! `redis::Connection` blocks forever by default: a stopped (`SIGSTOP`) or
//! wedged server would hold the agent until Pacemaker kills it. So:
//! - the connect itself (name lookup, TCP handshake, a unix socket whose
//!   backlog is full) runs on a helper thread that we wait for at most the
//!   timeout: `UnixStream::connect` and `getaddrinfo` take no timeout;
//! - the crate's handshake is empty (feature `disable-client-setinfo`, no
//!   password in `ConnectionInfo`), so nothing is read before the read and
//!   write timeouts are set; `AUTH` is sent by us afterwards;
//! - after a timeout or an I/O error the reply stream is out of step, so the
//!   connection refuses further commands ([`RedisError::Broken`]);
//! - over TLS ([`Endpoint::Tls`]) the handshake is completed on the helper
//!   thread too, within the connect timeout, and the server verified before
//!   any command, `AUTH` included, is sent; a failure is
//!   [`RedisError::Tls`], with the reason and the parameter to fix.

use std::fmt;
use std::net::ToSocketAddrs;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use ::redis::{ConnectionAddr, ConnectionInfo, FromRedisValue, RedisConnectionInfo};

use super::info::{parse_info_replication, ReplicationInfo};
use super::tls::{OpenError, TlsConnection};
use super::{Endpoint, RedisError};

/// What Redis 7 answers to `AUTH` when no password is set: the agent's
/// password is then only needed as `masterauth`, so this is not an error.
const NO_PASSWORD_CONFIGURED: &str = "without any password configured";

/// A connection to one Redis server, with read and write timeouts set.
pub struct Conn {
    inner: Inner,
    endpoint: Endpoint,
    timeout: Duration,
    broken: bool,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("endpoint", &self.endpoint)
            .field("timeout", &self.timeout)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

/// The session under a [`Conn`]: the crate's own for a unix socket and
/// plain TCP, ours for TLS.
enum Inner {
    Plain(::redis::Connection),
    Tls(Box<TlsConnection>),
}

/// Connects to `ep` within `timeout`, sends `AUTH` when a password is
/// given, and sets the read and write timeouts of later commands to
/// `timeout`.
///
/// A server without a password accepts the connection even when one is
/// given (Redis answers `AUTH` with "called without any password
/// configured"); a server that rejects the password is [`RedisError::Auth`].
pub fn connect(
    ep: &Endpoint,
    password: Option<&str>,
    timeout: Duration,
) -> Result<Conn, RedisError> {
    let started = Instant::now();
    let inner = open(ep, timeout)?;
    let mut conn = Conn {
        inner,
        endpoint: ep.clone(),
        timeout,
        broken: false,
    };
    if let Some(password) = password {
        // AUTH gets what is left of the connect budget.
        conn.set_timeout_for(timeout.saturating_sub(started.elapsed()), "connect")?;
        conn.auth(password)?;
    }
    conn.set_timeout_for(timeout, "connect")?;
    Ok(conn)
}

/// Opens the socket on a helper thread and waits for it at most `timeout`.
/// A thread stuck in the kernel is left behind; it ends with the process.
fn open(ep: &Endpoint, timeout: Duration) -> Result<Inner, RedisError> {
    if timeout.is_zero() {
        return Err(timed_out(ep, "connect", timeout));
    }
    let tls_err = |failure| RedisError::Tls {
        endpoint: ep.clone(),
        failure,
    };
    // Read before the thread: a missing file is not worth a connection.
    let config = match ep {
        Endpoint::Tls { files, .. } => Some(files.client_config().map_err(tls_err)?),
        _ => None,
    };
    let (tx, rx) = mpsc::channel();
    let target = ep.clone();
    thread::Builder::new()
        .name("redis-connect".into())
        .spawn(move || {
            let opened = match (&target, config) {
                (Endpoint::Tls { host, port, .. }, Some(config)) => {
                    TlsConnection::open(host, *port, config, timeout)
                        .map(|c| Inner::Tls(Box::new(c)))
                }
                _ => open_blocking(&target, timeout)
                    .map(Inner::Plain)
                    .map_err(OpenError::Redis),
            };
            let _ = tx.send(opened);
        })
        .map_err(|e| RedisError::Connect {
            endpoint: ep.clone(),
            source: e.into(),
        })?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(OpenError::Tls(failure))) => Err(tls_err(failure)),
        Ok(Err(OpenError::Io(e)))
            if matches!(
                e.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) =>
        {
            Err(timed_out(ep, "connect", timeout))
        }
        Ok(Err(OpenError::Io(e))) => Err(RedisError::Connect {
            endpoint: ep.clone(),
            source: e.into(),
        }),
        Ok(Err(OpenError::Redis(source))) => Err(classify_open(ep, timeout, source)),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(timed_out(ep, "connect", timeout)),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(RedisError::Connect {
            endpoint: ep.clone(),
            source: (
                ::redis::ErrorKind::IoError,
                "connect thread ended without a result",
            )
                .into(),
        }),
    }
}

fn classify_open(ep: &Endpoint, timeout: Duration, source: ::redis::RedisError) -> RedisError {
    if source.is_timeout() {
        timed_out(ep, "connect", timeout)
    } else {
        RedisError::Connect {
            endpoint: ep.clone(),
            source,
        }
    }
}

fn open_blocking(ep: &Endpoint, timeout: Duration) -> ::redis::RedisResult<::redis::Connection> {
    let info = |addr| ConnectionInfo {
        addr,
        redis: RedisConnectionInfo::default(),
    };
    match ep {
        Endpoint::Unix(path) => {
            ::redis::Client::open(info(ConnectionAddr::Unix(path.clone())))?.get_connection()
        }
        Endpoint::Tcp { host, port } => {
            // Resolve once and share the budget between the addresses, rather
            // than give each its own full timeout as the crate would.
            let started = Instant::now();
            let mut last = None;
            for addr in (host.as_str(), *port).to_socket_addrs()? {
                let left = timeout.saturating_sub(started.elapsed());
                if left.is_zero() {
                    break;
                }
                let client =
                    ::redis::Client::open(info(ConnectionAddr::Tcp(addr.ip().to_string(), *port)))?;
                match client.get_connection_with_timeout(left) {
                    Ok(conn) => return Ok(conn),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| {
                (
                    ::redis::ErrorKind::IoError,
                    "host name resolved to no address",
                )
                    .into()
            }))
        }
        // Opened by `TlsConnection::open`; never reaches here.
        Endpoint::Tls { .. } => Err((
            ::redis::ErrorKind::InvalidClientConfig,
            "a TLS endpoint is opened by TlsConnection",
        )
            .into()),
    }
}

fn timed_out(ep: &Endpoint, operation: &str, timeout: Duration) -> RedisError {
    RedisError::Timeout {
        endpoint: ep.clone(),
        operation: operation.to_string(),
        timeout,
    }
}

impl Conn {
    /// Where this connection goes.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sets the read and write timeout of each later command; a zero
    /// timeout (an expired deadline's `cap`) is [`RedisError::Timeout`].
    pub fn set_timeout(&mut self, t: Duration) -> Result<(), RedisError> {
        self.set_timeout_for(t, "set_timeout")
    }

    fn set_timeout_for(&mut self, t: Duration, operation: &str) -> Result<(), RedisError> {
        if t.is_zero() {
            // std refuses a zero socket timeout; it would mean "no time left".
            return Err(timed_out(&self.endpoint, operation, t));
        }
        let set = match &self.inner {
            Inner::Plain(c) => c
                .set_read_timeout(Some(t))
                .and_then(|()| c.set_write_timeout(Some(t))),
            Inner::Tls(c) => c.set_timeouts(t).map_err(::redis::RedisError::from),
        };
        match set {
            Ok(()) => {
                self.timeout = t;
                Ok(())
            }
            Err(source) => Err(RedisError::Query {
                endpoint: self.endpoint.clone(),
                command: "(set socket timeout)".into(),
                source,
            }),
        }
    }

    /// `PING`, expecting `PONG`.
    pub fn ping(&mut self) -> Result<(), RedisError> {
        let reply: String = self.query("PING", &::redis::cmd("PING"))?;
        if reply == "PONG" {
            Ok(())
        } else {
            Err(self.unexpected("PING", &reply))
        }
    }

    /// `INFO replication`, parsed by [`parse_info_replication`].
    pub fn info_replication(&mut self) -> Result<ReplicationInfo, RedisError> {
        let text: String =
            self.query("INFO replication", ::redis::cmd("INFO").arg("replication"))?;
        parse_info_replication(&text)
    }

    /// `REPLICAOF host port`, or `REPLICAOF NO ONE` for `None` (promote).
    pub fn replicaof(&mut self, master: Option<(&str, u16)>) -> Result<(), RedisError> {
        let mut cmd = ::redis::cmd("REPLICAOF");
        let command = match master {
            Some((host, port)) => {
                cmd.arg(host).arg(port);
                format!("REPLICAOF {host} {port}")
            }
            None => {
                cmd.arg("NO").arg("ONE");
                "REPLICAOF NO ONE".to_string()
            }
        };
        // "OK", or "OK Already connected to specified master".
        let reply: String = self.query(&command, &cmd)?;
        if reply.starts_with("OK") {
            Ok(())
        } else {
            Err(self.unexpected(&command, &reply))
        }
    }

    /// The pid the server reports (`process_id` in `INFO server`).
    pub(crate) fn server_pid(&mut self) -> Result<i32, RedisError> {
        let text: String = self.query("INFO server", ::redis::cmd("INFO").arg("server"))?;
        text.lines()
            .find_map(|l| l.trim().strip_prefix("process_id:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or(RedisError::Parse {
                what: "INFO server",
                reason: "no process_id line".into(),
            })
    }

    fn auth(&mut self, password: &str) -> Result<(), RedisError> {
        match self.query::<::redis::Value>("AUTH", ::redis::cmd("AUTH").arg(password)) {
            Ok(_) => Ok(()),
            Err(RedisError::Query { source, .. })
                if source.to_string().contains(NO_PASSWORD_CONFIGURED) =>
            {
                log::debug!("redis at {}: no password set, AUTH skipped", self.endpoint);
                Ok(())
            }
            Err(RedisError::Query {
                endpoint, source, ..
            }) if !source.is_io_error() => Err(RedisError::Auth {
                endpoint,
                reason: source.to_string(),
            }),
            Err(e) => Err(e),
        }
    }

    /// Runs one command; `name` is what errors show (never a secret).
    fn query<T: FromRedisValue>(
        &mut self,
        name: &str,
        cmd: &::redis::Cmd,
    ) -> Result<T, RedisError> {
        if self.broken {
            return Err(RedisError::Broken {
                endpoint: self.endpoint.clone(),
            });
        }
        let (result, tls_failure) = match &mut self.inner {
            Inner::Plain(c) => (cmd.query(c), None),
            Inner::Tls(c) => {
                let r = cmd.query(c.as_mut());
                let failure = if r.is_err() { c.take_failure() } else { None };
                (r, failure)
            }
        };
        result.map_err(|source| {
            // TLS 1.3 servers judge the client's certificate after the
            // client's handshake is done: a refusal shows on the first read.
            if let Some(failure) = tls_failure {
                self.broken = true;
                return RedisError::Tls {
                    endpoint: self.endpoint.clone(),
                    failure,
                };
            }
            if source.is_timeout() {
                self.broken = true;
                return timed_out(&self.endpoint, name, self.timeout);
            }
            if source.is_io_error() || source.is_unrecoverable_error() {
                self.broken = true;
            }
            RedisError::Query {
                endpoint: self.endpoint.clone(),
                command: name.to_string(),
                source,
            }
        })
    }

    fn unexpected(&self, command: &str, reply: &str) -> RedisError {
        RedisError::UnexpectedReply {
            endpoint: self.endpoint.clone(),
            command: command.to_string(),
            reply: reply.chars().take(80).collect(),
        }
    }
}
