//! Redis over TLS (`redis_tls`): the files, the client settings, and why a
//! handshake failed.
//!
//! With TLS the node's TCP port speaks only TLS (`port 0`, `tls-port`), so
//! a password can never cross the network in clear: the agent's `AUTH`, and
//! a replica's `masterauth`, travel inside a session whose server
//! certificate was checked against `redis_tls_ca` and against the host the
//! connection was made to (primary_host, or a node's address). rustls
//! completes and verifies the handshake before it lets any application
//! byte out (`Stream::write` runs `complete_prior_io` first), so a failed
//! verification means nothing was sent.
//!
//! The client also presents the node's own certificate (`redis_tls_cert`
//! and `redis_tls_key`), which Redis asks for by default
//! (`tls-auth-clients yes`): mutual TLS works with no further setting.
//!
//! The session is ours (rustls with the ring provider, trusting
//! `redis_tls_ca` only), under the `redis` crate's protocol code through
//! its `ConnectionLike` trait: the crate's own TLS would read the system
//! trust store at every connection and hide the rustls error. Keeping that
//! error typed ([`TlsFailure`]) lets the reason say which parameter to fix.
//! The handshake is completed in [`TlsConnection::open`], inside the
//! connect budget, before the first command.

use std::fmt;
use std::io::{self, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::redis::{ConnectionLike, Parser, RedisResult, Value};
use rustls::{AlertDescription, CertificateError, ClientConfig, ClientConnection, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::config::names::{REDIS_TLS_CA, REDIS_TLS_CERT, REDIS_TLS_KEY};

/// The PEM files of a node's Redis TLS: what `redis-server` uses as
/// `tls-cert-file`, `tls-key-file` and `tls-ca-cert-file`, and what the
/// agent presents and trusts as a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA certificate(s) that sign every node's certificate
    /// (`redis_tls_ca`): the only trust anchors of the agent's connections.
    pub ca: PathBuf,
    /// This node's certificate (`redis_tls_cert`), server and client.
    pub cert: PathBuf,
    /// Its private key (`redis_tls_key`).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The client settings: trust `ca` only, present `cert` and `key`.
    /// The agent runs as root, so a file it cannot read is missing or
    /// broken.
    pub(super) fn client_config(&self) -> Result<Arc<ClientConfig>, TlsFailure> {
        let read = |param: &'static str, path: &Path| {
            std::fs::read(path).map_err(|source| TlsFailure::Unreadable {
                param,
                path: path.to_path_buf(),
                source,
            })
        };
        let bad = |param: &'static str, path: &Path, why: String| TlsFailure::BadFile {
            param,
            path: path.to_path_buf(),
            reason: why,
        };
        let ca_pem = read(REDIS_TLS_CA, &self.ca)?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&ca_pem) {
            let cert = cert.map_err(|e| bad(REDIS_TLS_CA, &self.ca, e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| bad(REDIS_TLS_CA, &self.ca, e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(bad(REDIS_TLS_CA, &self.ca, "no certificate in it".into()));
        }
        let cert_pem = read(REDIS_TLS_CERT, &self.cert)?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(REDIS_TLS_CERT, &self.cert, e.to_string()))?;
        if chain.is_empty() {
            return Err(bad(
                REDIS_TLS_CERT,
                &self.cert,
                "no certificate in it".into(),
            ));
        }
        let key_pem = read(REDIS_TLS_KEY, &self.key)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| bad(REDIS_TLS_KEY, &self.key, e.to_string()))?;
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsFailure::Other(e.to_string()))?
                .with_root_certificates(roots)
                .with_client_auth_cert(chain, key)
                .map_err(|e| {
                    bad(
                        REDIS_TLS_KEY,
                        &self.key,
                        format!("does not fit redis_tls_cert: {e}"),
                    )
                })?;
        Ok(Arc::new(config))
    }
}

/// Why opening a TLS connection failed.
#[derive(Debug)]
pub(super) enum OpenError {
    /// No TCP connection (refused, unreachable, no address) or a timeout.
    Io(io::Error),
    /// The crate's connection (unix socket, plain TCP) failed.
    Redis(::redis::RedisError),
    /// The TLS handshake failed.
    Tls(TlsFailure),
}

/// A Redis connection over a verified TLS session, spoken through the
/// `redis` crate's `ConnectionLike`.
pub(super) struct TlsConnection {
    stream: BufReader<StreamOwned<ClientConnection, TcpStream>>,
    parser: Parser,
    open: bool,
    /// The TLS failure behind the last I/O error, kept typed (the crate's
    /// error does not give it back).
    last_failure: Option<TlsFailure>,
}

impl TlsConnection {
    /// Connects to `host:port` (each resolved address in turn, sharing
    /// `timeout`) and completes the handshake within what is left of it:
    /// the server's certificate is verified against the CA and `host`
    /// before this returns, and nothing else has been sent.
    pub(super) fn open(
        host: &str,
        port: u16,
        config: Arc<ClientConfig>,
        timeout: Duration,
    ) -> Result<TlsConnection, OpenError> {
        let started = Instant::now();
        let left = || {
            let l = timeout.saturating_sub(started.elapsed());
            if l.is_zero() {
                Err(OpenError::Io(io::ErrorKind::TimedOut.into()))
            } else {
                Ok(l)
            }
        };
        let name = ServerName::try_from(host.to_string()).map_err(|e| {
            OpenError::Tls(TlsFailure::Other(format!(
                "{host:?} is not a host name or IP address a certificate can hold: {e}"
            )))
        })?;
        let mut last = None;
        let mut tcp = None;
        for addr in (host, port).to_socket_addrs().map_err(OpenError::Io)? {
            match TcpStream::connect_timeout(&addr, left()?) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let mut tcp = tcp.ok_or_else(|| {
            OpenError::Io(last.unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "host name resolved to no address")
            }))
        })?;
        let mut conn = ClientConnection::new(config, name)
            .map_err(|e| OpenError::Tls(TlsFailure::from_rustls(&e)))?;
        while conn.is_handshaking() {
            let l = left()?;
            tcp.set_read_timeout(Some(l)).map_err(OpenError::Io)?;
            tcp.set_write_timeout(Some(l)).map_err(OpenError::Io)?;
            match conn.complete_io(&mut tcp) {
                Ok(_) => {}
                Err(e) => {
                    return Err(match rustls_error(&e) {
                        Some(t) => OpenError::Tls(TlsFailure::from_rustls(t)),
                        None if is_timeout(&e) => OpenError::Io(e),
                        None => OpenError::Tls(TlsFailure::NotTls(format!(
                            "the connection ended during the TLS handshake: {e}"
                        ))),
                    })
                }
            }
        }
        Ok(TlsConnection {
            stream: BufReader::new(StreamOwned::new(conn, tcp)),
            parser: Parser::new(),
            open: true,
            last_failure: None,
        })
    }

    /// Sets the read and write timeouts of the TCP socket.
    pub(super) fn set_timeouts(&self, t: Duration) -> io::Result<()> {
        let tcp = &self.stream.get_ref().sock;
        tcp.set_read_timeout(Some(t))?;
        tcp.set_write_timeout(Some(t))
    }

    /// The TLS failure behind the last error, if there was one.
    pub(super) fn take_failure(&mut self) -> Option<TlsFailure> {
        self.last_failure.take()
    }

    fn failed(&mut self, e: io::Error) -> ::redis::RedisError {
        self.open = false;
        self.last_failure = rustls_error(&e).map(TlsFailure::from_rustls);
        e.into()
    }

    fn send(&mut self, cmd: &[u8]) -> RedisResult<()> {
        let w = self.stream.get_mut();
        match w.write_all(cmd).and_then(|()| w.flush()) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.failed(e)),
        }
    }

    fn read_value(&mut self) -> RedisResult<Value> {
        // The parser reads through `Reader`, which records a rustls error
        // before the crate turns it into its own error type.
        let mut reader = Reader {
            inner: &mut self.stream,
            failure: None,
        };
        let result = self.parser.parse_value(&mut reader);
        if let Some(e) = reader.failure.take() {
            self.last_failure = Some(e);
        }
        result.inspect_err(|e| {
            if e.is_io_error() || e.is_unrecoverable_error() {
                self.open = false;
            }
        })
    }
}

/// A reader that keeps the typed TLS failure of an I/O error.
struct Reader<'a> {
    inner: &'a mut BufReader<StreamOwned<ClientConnection, TcpStream>>,
    failure: Option<TlsFailure>,
}

impl Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            self.failure = rustls_error(e).map(TlsFailure::from_rustls);
        })
    }
}

impl ConnectionLike for TlsConnection {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        self.send(cmd)?;
        self.read_value()?.extract_error()
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        self.send(cmd)?;
        let mut values = Vec::with_capacity(count);
        for i in 0..offset + count {
            let v = self.read_value()?;
            if i >= offset {
                values.push(v.extract_error()?);
            }
        }
        Ok(values)
    }

    fn get_db(&self) -> i64 {
        0
    }

    fn check_connection(&mut self) -> bool {
        ::redis::cmd("PING").query::<String>(self).is_ok()
    }

    fn is_open(&self) -> bool {
        self.open
    }
}

fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Why a TLS connection to a Redis server failed. In every case no command
/// and no password was sent.
#[derive(Debug)]
pub enum TlsFailure {
    /// A file of this node could not be read.
    Unreadable {
        /// The parameter naming it.
        param: &'static str,
        /// The file.
        path: PathBuf,
        /// The system's reason.
        source: io::Error,
    },
    /// A file is not what it should be (no certificate in the PEM, a key
    /// that is not a key or does not fit the certificate).
    BadFile {
        /// The parameter naming it.
        param: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The server's certificate is not signed by `redis_tls_ca`.
    UnknownCa,
    /// The server's certificate does not name the host connected to.
    WrongName,
    /// The server's certificate is expired or not yet valid.
    Expired,
    /// The server refused this node's client certificate.
    ClientCertRefused(String),
    /// What answered does not speak TLS: a plain Redis, most likely.
    NotTls(String),
    /// Any other handshake failure, with the TLS library's words.
    Other(String),
}

impl TlsFailure {
    fn from_rustls(e: &rustls::Error) -> TlsFailure {
        use rustls::Error as E;
        match e {
            E::InvalidCertificate(c) => match c {
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    TlsFailure::UnknownCa
                }
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => TlsFailure::WrongName,
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => TlsFailure::Expired,
                other => TlsFailure::Other(format!("invalid server certificate: {other:?}")),
            },
            E::AlertReceived(
                a @ (AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateRequired
                | AlertDescription::CertificateUnknown
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::AccessDenied),
            ) => TlsFailure::ClientCertRefused(format!("{a:?}")),
            E::InvalidMessage(m) => TlsFailure::NotTls(format!("{m:?}")),
            E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. } => {
                TlsFailure::NotTls(e.to_string())
            }
            other => TlsFailure::Other(other.to_string()),
        }
    }
}

/// The reason and its fix, for an operator, the cause first: Pacemaker
/// keeps 128 characters of an exit reason. `host` and `port` are where the
/// agent connected; `ca` is `redis_tls_ca`.
pub(super) fn describe(
    f: &mut fmt::Formatter<'_>,
    host: &str,
    port: u16,
    ca: &Path,
    failure: &TlsFailure,
) -> fmt::Result {
    let ca = ca.display();
    match failure {
        TlsFailure::Unreadable {
            param,
            path,
            source,
        } => write!(
            f,
            "cannot read {param} {}: {source}; point {param} at this node's PEM file",
            path.display()
        ),
        TlsFailure::BadFile {
            param,
            path,
            reason,
        } => write!(
            f,
            "{param} {} unusable: {reason}; redis_tls_cert, redis_tls_key and redis_tls_ca \
             must be PEM: this node's certificate, its key, and the CA",
            path.display()
        ),
        TlsFailure::UnknownCa => write!(
            f,
            "certificate not signed by redis_tls_ca {ca}: set redis_tls_ca on every node to \
             the CA that signed the nodes' redis_tls_cert"
        ),
        TlsFailure::WrongName => write!(
            f,
            "certificate does not name {host} (primary_host, or the node's address): reissue \
             that node's redis_tls_cert with {host} as a subject alternative name"
        ),
        TlsFailure::Expired => write!(
            f,
            "certificate expired or not yet valid: renew that node's redis_tls_cert (and \
             check the clocks)"
        ),
        TlsFailure::ClientCertRefused(alert) => write!(
            f,
            "server refused this node's redis_tls_cert (TLS alert {alert}): with \
             tls-auth-clients yes it must be signed by the server's CA; use one redis_tls_ca \
             on every node"
        ),
        TlsFailure::NotTls(detail) => write!(
            f,
            "no TLS answer ({detail}): a plain Redis on port {port}? with redis_tls=true, \
             redis_port and redis_primary_port are TLS ports: set redis_tls=true on every node"
        ),
        TlsFailure::Other(reason) => write!(
            f,
            "handshake failed ({reason}); check redis_tls_cert, redis_tls_key and \
             redis_tls_ca ({ca})"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_errors_are_told_apart_by_their_rustls_kind() {
        use rustls::Error as E;
        let cases = [
            (
                E::InvalidCertificate(CertificateError::UnknownIssuer),
                "UnknownCa",
            ),
            (
                E::InvalidCertificate(CertificateError::NotValidForName),
                "WrongName",
            ),
            (E::InvalidCertificate(CertificateError::Expired), "Expired"),
            (
                E::AlertReceived(AlertDescription::CertificateRequired),
                "ClientCertRefused",
            ),
            (
                E::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
                "NotTls",
            ),
            (E::DecryptError, "Other"),
        ];
        for (e, want) in cases {
            let got = format!("{:?}", TlsFailure::from_rustls(&e));
            assert!(got.starts_with(want), "{e:?} -> {got}");
        }
    }
}
