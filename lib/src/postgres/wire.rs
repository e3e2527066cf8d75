//! A replication connection (`replication=true`) that runs one replication
//! command: `IDENTIFY_SYSTEM` (rapidproctl's preflight) or `TIMELINE_HISTORY`
//! (the agent's history check with `rewind=false`),
//! spoken directly with `postgres-protocol` over a blocking TCP socket.
//!
//! Why not tokio-postgres: 0.7 has no replication mode, and the preflight
//! must know whether `pg_hba.conf` admits `repl_user` for `replication`, which
//! only a replication connection tells. Why not `psql ... replication=true`:
//! libpq reports a refused connection as text only, and the preflight tells
//! "pg_hba rejected" (SQLSTATE 28000) from "wrong password" (28P01) by the
//! SQLSTATE of the server's ErrorResponse, which this handshake reads as is.
//! TLS as the agent's other connections (`sslmode`, `sslrootcert`,
//! [`super::tls`]): the SSL request, then the rustls handshake, certificate
//! verified, before the startup message; `prefer` goes on in plain text
//! only when the server answers 'N'.
//!
//! Every read and write is bounded by the timeout; the password only goes
//! into the authentication exchange.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::{backend::Message, frontend};

use super::tls::{negotiate, Negotiation, PgTls, TlsFailure};

/// Why a connection attempt ended without a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireFailure {
    /// Nothing accepted the TCP connection, or it broke before the server
    /// said anything (refused, unreachable, timed out, name unknown).
    NoAnswer(String),
    /// The server sent an ErrorResponse: its SQLSTATE and message.
    Server {
        /// The SQLSTATE (`28000`, `28P01`, `57P03`...).
        sqlstate: String,
        /// The server's message.
        message: String,
    },
    /// The server asked for a password and none was configured.
    NoPassword,
    /// Something else (an authentication method this client does not speak,
    /// a malformed message).
    Protocol(String),
    /// TLS failed (certificate not verified, no SSL where it is required):
    /// the server got no startup message and no password.
    Tls(TlsFailure),
}

impl std::fmt::Display for WireFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireFailure::NoAnswer(r) => write!(f, "no answer: {r}"),
            WireFailure::Server { sqlstate, message } => {
                write!(f, "{message} (SQLSTATE {sqlstate})")
            }
            WireFailure::NoPassword => {
                f.write_str("the server asks for a password and none is set")
            }
            WireFailure::Protocol(r) => write!(f, "protocol error: {r}"),
            WireFailure::Tls(t) => write!(f, "TLS: {t}"),
        }
    }
}

/// What `IDENTIFY_SYSTEM` and the startup said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `systemid`: the cluster's system identifier (as text, it is a u64).
    pub system_identifier: String,
    /// `timeline`.
    pub timeline: u32,
    /// The `server_version` parameter status (`15.10 (Debian 15.10-0+deb12u1)`).
    pub server_version: String,
}

/// Where and how to connect.
pub struct ReplTarget<'a> {
    /// Host name or address.
    pub host: &'a str,
    /// Port.
    pub port: u16,
    /// Role.
    pub user: &'a str,
    /// Password, if any.
    pub password: Option<&'a str>,
    /// `sslmode` and `sslrootcert`.
    pub tls: &'a PgTls,
}

impl ReplTarget<'_> {
    /// The failure as a [`super::tls::TlsError`] when it is one, whose
    /// message names the parameters and the fix.
    pub fn tls_error(&self, f: &WireFailure) -> Option<super::tls::TlsError> {
        match f {
            WireFailure::Tls(failure) => Some(super::tls::TlsError {
                target: format!("{}:{}", self.host, self.port),
                tls: self.tls.clone(),
                failure: failure.clone(),
            }),
            _ => None,
        }
    }
}

impl std::fmt::Debug for ReplTarget<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        write!(f, "{}@{}:{}", self.user, self.host, self.port)
    }
}

/// The socket, plain or under TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    /// The TCP socket, for its timeouts.
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

struct Stream {
    sock: Conn,
    buf: BytesMut,
    deadline: Instant,
}

impl Stream {
    fn left(&self) -> Result<Duration, WireFailure> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(WireFailure::NoAnswer("timed out".into()))
        } else {
            Ok(left)
        }
    }

    fn send(&mut self, out: &BytesMut) -> Result<(), WireFailure> {
        let left = self.left()?;
        self.sock
            .tcp()
            .set_write_timeout(Some(left))
            .and_then(|()| self.sock.write_all(out))
            .and_then(|()| self.sock.flush())
            .map_err(|e| WireFailure::NoAnswer(e.to_string()))
    }

    fn recv(&mut self) -> Result<Message, WireFailure> {
        loop {
            match Message::parse(&mut self.buf) {
                Ok(Some(m)) => return Ok(m),
                Ok(None) => {}
                Err(e) => return Err(WireFailure::Protocol(e.to_string())),
            }
            let left = self.left()?;
            self.sock
                .tcp()
                .set_read_timeout(Some(left))
                .map_err(|e| WireFailure::NoAnswer(e.to_string()))?;
            let mut chunk = [0u8; 8192];
            match self.sock.read(&mut chunk) {
                Ok(0) => {
                    return Err(WireFailure::NoAnswer(
                        "the server closed the connection".into(),
                    ))
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                // A signal (a child of this process ending) interrupts the
                // read: read again, within the same deadline.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(WireFailure::NoAnswer(e.to_string())),
            }
        }
    }
}

fn server_error(body: &postgres_protocol::message::backend::ErrorResponseBody) -> WireFailure {
    let mut sqlstate = String::new();
    let mut message = String::new();
    let mut fields = body.fields();
    while let Ok(Some(f)) = fields.next() {
        match f.type_() {
            b'C' => sqlstate = String::from_utf8_lossy(f.value_bytes()).into_owned(),
            b'M' => message = String::from_utf8_lossy(f.value_bytes()).into_owned(),
            _ => {}
        }
    }
    WireFailure::Server { sqlstate, message }
}

fn proto(e: std::io::Error) -> WireFailure {
    WireFailure::Protocol(e.to_string())
}

fn unexpected(what: &str) -> WireFailure {
    WireFailure::Protocol(format!("unexpected message {what}"))
}

/// Opens a replication connection to `t` and runs `IDENTIFY_SYSTEM`, all
/// within `timeout`.
pub fn identify_system(t: &ReplTarget<'_>, timeout: Duration) -> Result<Identity, WireFailure> {
    let (row, version) = one_row(t, "rapidproctl-check", "IDENTIFY_SYSTEM", timeout)?;
    let text: Vec<Option<String>> = row
        .into_iter()
        .map(|c| c.map(|b| String::from_utf8_lossy(&b).into_owned()))
        .collect();
    parse_identify(&text, version)
}

/// Opens a replication connection to `t` and runs `TIMELINE_HISTORY
/// timeline` (REPLICATION is all it needs, unlike pg_rewind's functions):
/// the content of that timeline's history file.
pub fn timeline_history(
    t: &ReplTarget<'_>,
    application_name: &str,
    timeline: u32,
    timeout: Duration,
) -> Result<String, WireFailure> {
    let what = format!("TIMELINE_HISTORY {timeline}");
    let (row, _) = one_row(t, application_name, &what, timeout)?;
    match row.get(1) {
        Some(Some(content)) => Ok(String::from_utf8_lossy(content).into_owned()),
        _ => Err(unexpected("(no history file content)")),
    }
}

/// One row of a replication command's answer: raw column values.
type Row = Vec<Option<Vec<u8>>>;

/// Opens a replication connection to `t` as `application_name`, runs the
/// replication command `command` and returns its one row (raw column
/// values) and the server's version, all within `timeout`.
fn one_row(
    t: &ReplTarget<'_>,
    application_name: &str,
    command: &str,
    timeout: Duration,
) -> Result<(Row, String), WireFailure> {
    let deadline = Instant::now() + timeout;
    let addrs: Vec<SocketAddr> = (t.host, t.port)
        .to_socket_addrs()
        .map_err(|e| WireFailure::NoAnswer(format!("cannot resolve {}: {e}", t.host)))?
        .collect();
    let mut last = String::from("no address");
    let mut sock = None;
    for a in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&a, left) {
            Ok(s) => {
                sock = Some(s);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                last = e.to_string();
                // Try the same address again within the deadline.
                if let Ok(s) = TcpStream::connect_timeout(
                    &a,
                    deadline
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(1)),
                ) {
                    sock = Some(s);
                    break;
                }
            }
            Err(e) => last = e.to_string(),
        }
    }
    let sock = sock.ok_or(WireFailure::NoAnswer(last))?;
    let mut s = Stream {
        sock: secure(sock, t, deadline)?,
        buf: BytesMut::new(),
        deadline,
    };
    let mut out = BytesMut::new();
    frontend::startup_message(
        [
            ("user", t.user),
            ("database", "replication"),
            ("replication", "true"),
            ("application_name", application_name),
        ],
        &mut out,
    )
    .map_err(proto)?;
    s.send(&out)?;
    let mut version = String::new();
    // Authentication.
    let mut scram: Option<ScramSha256> = None;
    loop {
        out.clear();
        match s.recv()? {
            Message::AuthenticationOk => break,
            Message::AuthenticationCleartextPassword => {
                let p = t.password.ok_or(WireFailure::NoPassword)?;
                frontend::password_message(p.as_bytes(), &mut out).map_err(proto)?;
                s.send(&out)?;
            }
            Message::AuthenticationMd5Password(b) => {
                let p = t.password.ok_or(WireFailure::NoPassword)?;
                let h = md5_hash(t.user.as_bytes(), p.as_bytes(), b.salt());
                frontend::password_message(h.as_bytes(), &mut out).map_err(proto)?;
                s.send(&out)?;
            }
            Message::AuthenticationSasl(b) => {
                let p = t.password.ok_or(WireFailure::NoPassword)?;
                let mut mechs = b.mechanisms();
                let mut has = false;
                while let Some(m) = mechs.next().map_err(proto)? {
                    has |= m == SCRAM_SHA_256;
                }
                if !has {
                    return Err(WireFailure::Protocol(
                        "the server offers no SCRAM-SHA-256".into(),
                    ));
                }
                let sc = ScramSha256::new(p.as_bytes(), ChannelBinding::unsupported());
                frontend::sasl_initial_response(SCRAM_SHA_256, sc.message(), &mut out)
                    .map_err(proto)?;
                scram = Some(sc);
                s.send(&out)?;
            }
            Message::AuthenticationSaslContinue(b) => {
                let sc = scram.as_mut().ok_or_else(|| unexpected("SASL continue"))?;
                sc.update(b.data()).map_err(proto)?;
                frontend::sasl_response(sc.message(), &mut out).map_err(proto)?;
                s.send(&out)?;
            }
            Message::AuthenticationSaslFinal(b) => {
                let sc = scram.as_mut().ok_or_else(|| unexpected("SASL final"))?;
                sc.finish(b.data()).map_err(proto)?;
            }
            Message::ErrorResponse(e) => return Err(server_error(&e)),
            Message::NoticeResponse(_) => {}
            _ => return Err(WireFailure::Protocol(
                "authentication method not supported (only password, md5, scram-sha-256, trust)"
                    .into(),
            )),
        }
    }
    // Parameter statuses until ReadyForQuery.
    loop {
        match s.recv()? {
            Message::ReadyForQuery(_) => break,
            Message::ParameterStatus(p) if p.name().map_err(proto)? == "server_version" => {
                version = p.value().map_err(proto)?.to_string();
            }
            Message::ErrorResponse(e) => return Err(server_error(&e)),
            _ => {}
        }
    }
    out.clear();
    frontend::query(command, &mut out).map_err(proto)?;
    s.send(&out)?;
    let mut row: Option<Row> = None;
    loop {
        match s.recv()? {
            Message::DataRow(d) => {
                let buf = d.buffer();
                let mut cols = Vec::new();
                let mut ranges = d.ranges();
                while let Some(r) = ranges.next().map_err(proto)? {
                    cols.push(r.map(|r| buf[r].to_vec()));
                }
                row = Some(cols);
            }
            Message::ErrorResponse(e) => return Err(server_error(&e)),
            Message::ReadyForQuery(_) => break,
            _ => {}
        }
    }
    out.clear();
    frontend::terminate(&mut out);
    let _ = s.send(&out);
    let row = row.ok_or_else(|| unexpected(&format!("(no {command} row)")))?;
    Ok((row, version))
}

/// Unless `sslmode=disable`: the SSL request, its one-byte answer, and the
/// TLS handshake with the certificate verified, all before the startup
/// message (so before any password), within the deadline.
fn secure(mut sock: TcpStream, t: &ReplTarget<'_>, deadline: Instant) -> Result<Conn, WireFailure> {
    let Some(tls) = t.tls.client(t.host).map_err(WireFailure::Tls)? else {
        return Ok(Conn::Plain(sock));
    };
    let left = || {
        let l = deadline.saturating_duration_since(Instant::now());
        if l.is_zero() {
            Err(WireFailure::NoAnswer("timed out".into()))
        } else {
            Ok(l)
        }
    };
    let io = |e: std::io::Error| WireFailure::NoAnswer(e.to_string());
    let mut request = BytesMut::new();
    frontend::ssl_request(&mut request);
    sock.set_write_timeout(Some(left()?)).map_err(io)?;
    sock.write_all(&request).map_err(io)?;
    // Exactly one byte: what follows belongs to the TLS handshake.
    let mut answer = [0u8; 1];
    loop {
        sock.set_read_timeout(Some(left()?)).map_err(io)?;
        match sock.read(&mut answer) {
            Ok(0) => {
                return Err(WireFailure::NoAnswer(
                    "the server closed the connection after the SSL request".into(),
                ))
            }
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    match negotiate(t.tls.effective_mode(), answer[0]) {
        Negotiation::Plain => Ok(Conn::Plain(sock)),
        Negotiation::Fail(f) => Err(WireFailure::Tls(f)),
        Negotiation::Tls => {
            let mut conn = rustls::ClientConnection::new(tls.config, tls.name)
                .map_err(|e| WireFailure::Tls(TlsFailure::Handshake(e.to_string())))?;
            while conn.is_handshaking() {
                let l = left()?;
                sock.set_read_timeout(Some(l)).map_err(io)?;
                sock.set_write_timeout(Some(l)).map_err(io)?;
                match conn.complete_io(&mut sock) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let f = TlsFailure::of_io(&e);
                        return Err(match (&f, e.kind()) {
                            (TlsFailure::Handshake(_), std::io::ErrorKind::WouldBlock)
                            | (TlsFailure::Handshake(_), std::io::ErrorKind::TimedOut) => {
                                WireFailure::NoAnswer("timed out during the TLS handshake".into())
                            }
                            _ => WireFailure::Tls(f),
                        });
                    }
                }
            }
            Ok(Conn::Tls(Box::new(rustls::StreamOwned::new(conn, sock))))
        }
    }
}

/// Reads an `IDENTIFY_SYSTEM` row: systemid, timeline, xlogpos, dbname.
pub fn parse_identify(row: &[Option<String>], version: String) -> Result<Identity, WireFailure> {
    let sysid = row.first().cloned().flatten().unwrap_or_default();
    let tli = row.get(1).cloned().flatten().unwrap_or_default();
    match (sysid.parse::<u64>(), tli.parse::<u32>()) {
        (Ok(_), Ok(timeline)) => Ok(Identity {
            system_identifier: sysid,
            timeline,
            server_version: version,
        }),
        _ => Err(WireFailure::Protocol(format!(
            "unexpected IDENTIFY_SYSTEM row {row:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identify_system_row_gives_the_identifier_and_timeline() {
        let row = vec![
            Some("7301234567890123456".to_string()),
            Some("3".to_string()),
            Some("0/3000148".to_string()),
            None,
        ];
        let id = parse_identify(&row, "15.10".into()).unwrap();
        assert_eq!(id.system_identifier, "7301234567890123456");
        assert_eq!(id.timeline, 3);
        assert!(parse_identify(&[Some("x".into())], String::new()).is_err());
    }

    #[test]
    fn the_target_never_shows_its_password() {
        let t = ReplTarget {
            host: "10.0.0.1",
            port: 5432,
            user: "replicator",
            password: Some("hunter2"),
            tls: &PgTls::DISABLED,
        };
        assert!(!format!("{t:?}").contains("hunter2"));
    }

    #[test]
    fn nothing_listening_is_no_answer() {
        // Port 1 on loopback: refused at once.
        let t = ReplTarget {
            host: "127.0.0.1",
            port: 1,
            user: "x",
            password: None,
            tls: &PgTls::DISABLED,
        };
        match identify_system(&t, Duration::from_secs(2)) {
            Err(WireFailure::NoAnswer(_)) => {}
            other => panic!("{other:?}"),
        }
    }
}
