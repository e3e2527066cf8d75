//! Redis: the node's `redis-server`, its replication role and its link.
//!
//! The agent runs one `redis-server` per node and decides, with Pacemaker,
//! which one is the master. This module is what it needs for that:
//!
//! - [`connect`] and [`Conn`]: a blocking connection whose every read and
//!   write is bounded, because Pacemaker kills an agent that outlives its
//!   action timeout (and a killed stop means fencing);
//! - [`parse_info_replication`]: a pure parser of `INFO replication`, tested
//!   against output captured from Redis 7;
//! - [`start`], [`stop`] and [`process_state`]: the server process, started
//!   from a generated config that includes the administrator's `redis.conf`
//!   and then overrides what the agent must own (port, socket, pidfile,
//!   `replicaof`, `masterauth`).
//!
//! A server started here comes up already a replica: `replicaof` is in its
//! config file, so there is no moment at which two masters accept writes.

#![forbid(unsafe_code)]

mod conn;
mod info;
mod server;
mod tls;

#[cfg(test)]
mod live_tests;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::cmd::CommandError;

pub use conn::{connect, Conn};
pub use info::{parse_info_replication, LinkStatus, ReplicaEntry, ReplicationInfo, Role};
pub use server::{process_state, start, stop, ProcessState, ServerSpec};
pub use tls::{TlsFailure, TlsFiles};

/// Where a Redis server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix socket (`unixsocket` in `redis.conf`): how the agent reaches
    /// its own node's server.
    Unix(PathBuf),
    /// A TCP address: how replicas reach their master.
    Tcp {
        /// Host name or IP address.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// A TCP address whose server speaks only TLS (`redis_tls`): the
    /// server's certificate is checked against `files.ca` and `host`
    /// before anything is sent, and the node's certificate is presented.
    Tls {
        /// Host name or IP address; also the name the certificate must hold.
        host: String,
        /// TLS port (`tls-port`).
        port: u16,
        /// The node's CA, certificate and key (boxed: every error
        /// carries an endpoint, and errors are kept small).
        files: Box<TlsFiles>,
    },
}

impl Endpoint {
    /// `host:port` over TLS when `tls` is given, in plain TCP otherwise:
    /// how every TCP connection of the agent and rapidproctl is made, so
    /// none forgets `redis_tls`.
    pub fn tcp(host: &str, port: u16, tls: Option<&TlsFiles>) -> Endpoint {
        match tls {
            Some(files) => Endpoint::Tls {
                host: host.to_string(),
                port,
                files: Box::new(files.clone()),
            },
            None => Endpoint::Tcp {
                host: host.to_string(),
                port,
            },
        }
    }
}

impl fmt::Display for Endpoint {
    /// `unix:/path/to/redis.sock`, `host:port`, or `[v6addr]:port` for an
    /// IPv6 literal; ` (TLS)` after a TLS endpoint.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
            Endpoint::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Endpoint::Tcp { host, port } => write!(f, "{host}:{port}"),
            Endpoint::Tls { host, port, .. } if host.contains(':') => {
                write!(f, "[{host}]:{port} (TLS)")
            }
            Endpoint::Tls { host, port, .. } => write!(f, "{host}:{port} (TLS)"),
        }
    }
}

/// Why a Redis operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The server could not be reached at all.
    #[error("cannot connect to redis at {endpoint}: {source}")]
    Connect {
        /// Where we tried.
        endpoint: Endpoint,
        /// The client library's reason (refused, no such socket, ...).
        source: ::redis::RedisError,
    },
    /// The TLS handshake with a server failed (or never started: a plain
    /// server, unreadable files); nothing, no password, was sent to it.
    #[error(
        "TLS to redis at {}: {}",
        TlsHost(endpoint),
        TlsReason(endpoint, failure)
    )]
    Tls {
        /// The server (always [`Endpoint::Tls`]).
        endpoint: Endpoint,
        /// Why.
        failure: TlsFailure,
    },
    /// The server rejected the password given to the agent.
    #[error("redis at {endpoint} rejected the agent's password (AUTH): {reason}")]
    Auth {
        /// The server.
        endpoint: Endpoint,
        /// The server's reply.
        reason: String,
    },
    /// A command got an error reply, or the connection failed during it.
    #[error("redis at {endpoint}: {command} failed: {source}")]
    Query {
        /// The server.
        endpoint: Endpoint,
        /// The command, without secrets (`AUTH` never shows its argument).
        command: String,
        /// The server's or the client library's reason.
        source: ::redis::RedisError,
    },
    /// A command succeeded with a reply we do not understand.
    #[error("redis at {endpoint}: unexpected reply to {command}: {reply}")]
    UnexpectedReply {
        /// The server.
        endpoint: Endpoint,
        /// The command.
        command: String,
        /// What came back.
        reply: String,
    },
    /// An operation outlived its share of the action's deadline.
    #[error("redis at {endpoint}: {operation} timed out after {:.1} s", timeout.as_secs_f64())]
    Timeout {
        /// The server.
        endpoint: Endpoint,
        /// What was waited for (a command, `connect`, `start`).
        operation: String,
        /// How long it was given.
        timeout: Duration,
    },
    /// A connection is left in an unknown state by an earlier timeout or
    /// I/O error; the caller must connect again.
    #[error("redis at {endpoint}: connection unusable after an earlier failure; reconnect")]
    Broken {
        /// The server.
        endpoint: Endpoint,
    },
    /// Output from Redis that cannot be read.
    #[error("cannot parse {what}: {reason}")]
    Parse {
        /// What was being parsed (`INFO replication`).
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A file or directory operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What we were doing ("create directory", "write", ...).
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The system's reason.
        source: io::Error,
    },
    /// A file of the Redis run directory was refused (a link, a FIFO, a
    /// hard link, a stranger's file) or could not be used.
    #[error(transparent)]
    Files(#[from] crate::owned_dir::Error),
    /// Running `redis-server` failed (not installed, bad config, timeout).
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The system user meant to run `redis-server` does not exist.
    #[error("system user {user:?} (for redis-server) does not exist")]
    UnknownUser {
        /// The user name.
        user: String,
    },
    /// A [`ServerSpec`] value the agent cannot use.
    #[error("invalid {name} {value:?}: {reason}")]
    BadParameter {
        /// Which value.
        name: &'static str,
        /// Its value.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// `redis-server` was launched but never answered `PING`.
    #[error(
        "redis-server did not answer PING on {endpoint} within {:.1} s (last error: {last_error}); \
         see the redis-server log (`logfile` in {})",
        waited.as_secs_f64(),
        config.display()
    )]
    NotReady {
        /// The socket polled.
        endpoint: Endpoint,
        /// How long we polled.
        waited: Duration,
        /// The last connection or `PING` error.
        last_error: String,
        /// The administrator's `redis.conf`, which names the log.
        config: PathBuf,
    },
    /// `redis-server` wrote its pidfile and died before answering `PING`.
    #[error(
        "redis-server (pid {pid}) exited during start; see the redis-server log (`logfile` in {})",
        config.display()
    )]
    ExitedDuringStart {
        /// Its pid, from the pidfile.
        pid: i32,
        /// The administrator's `redis.conf`, which names the log.
        config: PathBuf,
    },
    /// A server answers on the socket but the pidfile does not name a live
    /// `redis-server`, so the agent could not stop it later.
    #[error(
        "a redis-server{} answers on {endpoint} but pidfile {} does not name it; \
         check that the redis user can write there",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        pidfile.display()
    )]
    Untracked {
        /// The socket it answers on.
        endpoint: Endpoint,
        /// Its pid, as it reports it (`INFO server`), when it said.
        pid: Option<i32>,
        /// The pidfile that should name it.
        pidfile: PathBuf,
    },
    /// A signal could not be sent.
    #[error("cannot send {signal} to redis-server (pid {pid}, pidfile {}): {source}", pidfile.display())]
    Signal {
        /// The process.
        pid: i32,
        /// Where the pid came from.
        pidfile: PathBuf,
        /// The signal.
        signal: Signal,
        /// The system's reason.
        source: nix::Error,
    },
    /// The process survived `SIGTERM` and `SIGKILL` until the deadline.
    #[error(
        "redis-server (pid {pid}, pidfile {}) still running {:.1} s after SIGTERM{}",
        pidfile.display(),
        waited.as_secs_f64(),
        if *killed { " and SIGKILL" } else { "" }
    )]
    StillRunning {
        /// The process.
        pid: i32,
        /// Where the pid came from.
        pidfile: PathBuf,
        /// How long we waited.
        waited: Duration,
        /// Whether `SIGKILL` was sent too.
        killed: bool,
    },
}

/// An endpoint as `host:port`, without the ` (TLS)` the message says.
struct TlsHost<'a>(&'a Endpoint);

impl fmt::Display for TlsHost<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Endpoint::Tls { host, port, .. } => Endpoint::Tcp {
                host: host.clone(),
                port: *port,
            }
            .fmt(f),
            other => other.fmt(f),
        }
    }
}

/// Displays a [`TlsFailure`] with the host, port and CA of its endpoint.
struct TlsReason<'a>(&'a Endpoint, &'a TlsFailure);

impl fmt::Display for TlsReason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Endpoint::Tls { host, port, files } => tls::describe(f, host, *port, &files.ca, self.1),
            other => write!(f, "{other}: {:?}", self.1),
        }
    }
}

impl RedisError {
    /// Whether this is a failed TLS handshake (as opposed to no answer).
    pub fn is_tls(&self) -> bool {
        matches!(self, RedisError::Tls { .. })
    }

    fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        RedisError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_display_as_an_admin_writes_them() {
        assert_eq!(
            Endpoint::Unix("/run/redis/redis.sock".into()).to_string(),
            "unix:/run/redis/redis.sock"
        );
        let tcp = Endpoint::Tcp {
            host: "10.0.0.2".into(),
            port: 6379,
        };
        assert_eq!(tcp.to_string(), "10.0.0.2:6379");
        let v6 = Endpoint::Tcp {
            host: "fe80::1".into(),
            port: 6380,
        };
        assert_eq!(v6.to_string(), "[fe80::1]:6380");
        let files = TlsFiles {
            ca: "/etc/redis/tls/ca.crt".into(),
            cert: "/etc/redis/tls/node.crt".into(),
            key: "/etc/redis/tls/node.key".into(),
        };
        assert_eq!(
            Endpoint::tcp("10.0.0.2", 6379, Some(&files)).to_string(),
            "10.0.0.2:6379 (TLS)"
        );
        assert_eq!(Endpoint::tcp("10.0.0.2", 6379, None), tcp);
    }

    #[test]
    fn stop_errors_name_the_pid_and_the_pidfile() {
        let e = RedisError::StillRunning {
            pid: 4242,
            pidfile: "/run/rapidpro/redis.pid".into(),
            waited: Duration::from_millis(9_000),
            killed: true,
        };
        assert_eq!(
            e.to_string(),
            "redis-server (pid 4242, pidfile /run/rapidpro/redis.pid) still running 9.0 s after SIGTERM and SIGKILL"
        );
    }
}
