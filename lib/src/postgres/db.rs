//! Connections and queries, with tokio-postgres on a current-thread runtime.
//!
//! Local connections use the unix socket with peer authentication as
//! `system_user`. The agent runs as root, and peer authentication reads the
//! connecting process's effective uid (SO_PEERCRED, taken at connect time),
//! so the effective uid is switched to `system_user` for the connect and
//! switched back right after: no psql, no `su`, no child process.
//!
//! TCP connections (to `primary_host`, to the nodes) use TLS as `sslmode`
//! and `sslrootcert` say ([`super::tls`]): the SSL request and the
//! handshake, certificate verified, are done here before tokio-postgres
//! writes its startup message, so a server that fails verification never
//! gets as far as asking for a password.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use nix::unistd::Uid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::runtime::Runtime;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use super::queries::{
    parse_receiver, parse_standby, parse_status, WalReceiverRow, RECEIVER_SQL, RECEIVER_WHAT,
    REPLICATION_SQL, REPLICATION_WHAT, STATUS_SQL, STATUS_WHAT,
};
use super::sqlstate::ServerError;
use super::tls::{negotiate, Negotiation, PgTls, TlsError, TlsFailure};
use super::PgError;

// The rows live with their queries ([`super::queries`]); named here too
// for the callers that take them from a connection.
pub use super::queries::{LocalStatus, StandbyRow};
use crate::deadline::Deadline;

/// An open connection and the runtime that drives it.
pub struct Db {
    rt: Runtime,
    client: Client,
    target: String,
    query_timeout: Duration,
    deadline: Deadline,
}

/// Where and how to connect. Its `Debug` shows `<redacted>` for the
/// password.
#[derive(Clone)]
pub struct Target<'a> {
    /// Unix socket directory, or a host name.
    pub host: Host<'a>,
    /// Port.
    pub port: u16,
    /// Role.
    pub user: &'a str,
    /// Password, if any.
    pub password: Option<&'a str>,
    /// Database.
    pub dbname: &'a str,
    /// Effective uid to connect as (peer authentication), when running as root.
    pub peer_uid: Option<Uid>,
    /// TLS over TCP (`sslmode`, `sslrootcert`); unused on the unix socket.
    pub tls: &'a PgTls,
}

impl std::fmt::Debug for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.map(|_| REDACTED))
            .field("dbname", &self.dbname)
            .field("peer_uid", &self.peer_uid)
            .field("tls", &self.tls)
            .finish()
    }
}

/// The server's address.
#[derive(Debug, Clone, Copy)]
pub enum Host<'a> {
    /// Directory of the unix socket.
    Socket(&'a Path),
    /// Host name or IP address.
    Tcp(&'a str),
}

impl Target<'_> {
    /// "socket dir:port" or "host:port", for messages.
    pub fn describe(&self) -> String {
        match self.host {
            // Short: exit reasons are cut at 128 characters.
            Host::Socket(_) => format!("local:{}", self.port),
            Host::Tcp(h) => format!("{h}:{}", self.port),
        }
    }
}

/// A byte stream to the server, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Why [`connect_tcp`] gave no session.
#[derive(Debug)]
pub(crate) enum TcpFailure {
    /// No TCP connection, or it broke before the server answered.
    NoAnswer(String),
    /// TLS failed: the server got no startup message, no password.
    Tls(TlsFailure),
    /// tokio-postgres's error after the stream was open (the server's
    /// ErrorResponse, with its SQLSTATE, among them).
    Pg(tokio_postgres::Error),
}

/// Connects over TCP with the TLS of `settings` ([`open_tcp`]) and starts
/// the session; the connection is driven by a task of the current
/// runtime. The caller bounds it with a timeout.
pub(crate) async fn connect_tcp(
    cfg: &mut tokio_postgres::Config,
    host: &str,
    port: u16,
    settings: &PgTls,
) -> Result<Client, TcpFailure> {
    let tls = settings.client(host).map_err(TcpFailure::Tls)?;
    // TLS is negotiated here, not by tokio-postgres: it gets a stream whose
    // certificate is already verified, and sends no SSL request of its own.
    cfg.ssl_mode(tokio_postgres::config::SslMode::Disable);
    let stream = open_tcp(host, port, settings, tls).await?;
    let (client, connection) = cfg
        .connect_raw(stream, NoTls)
        .await
        .map_err(TcpFailure::Pg)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Opens the TCP connection and, unless `sslmode=disable`, sends the SSL
/// request and completes the TLS handshake (certificate verified) before
/// returning: the startup message, and any password, only ever go over
/// the returned stream. `prefer` goes on in plain text only when the
/// server answers 'N'.
async fn open_tcp(
    host: &str,
    port: u16,
    settings: &PgTls,
    tls: Option<super::tls::TlsClient>,
) -> Result<Box<dyn Io>, TcpFailure> {
    let mut tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| TcpFailure::NoAnswer(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(Box::new(tcp));
    };
    let mut request = bytes::BytesMut::new();
    postgres_protocol::message::frontend::ssl_request(&mut request);
    tcp.write_all(&request)
        .await
        .map_err(|e| TcpFailure::NoAnswer(e.to_string()))?;
    // Exactly one byte: anything the server (or a man in the middle) sent
    // after it must go to the TLS handshake, never be read as plain text.
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer)
        .await
        .map_err(|e| TcpFailure::NoAnswer(format!("no answer to the SSL request: {e}")))?;
    match negotiate(settings.effective_mode(), answer[0]) {
        Negotiation::Plain => Ok(Box::new(tcp)),
        Negotiation::Fail(f) => Err(TcpFailure::Tls(f)),
        Negotiation::Tls => tokio_rustls::TlsConnector::from(tls.config)
            .connect(tls.name, tcp)
            .await
            .map(|s| Box::new(s) as Box<dyn Io>)
            .map_err(|e| TcpFailure::Tls(TlsFailure::of_io(&e))),
    }
}

/// How a connection attempt ended, for callers that must tell "nothing
/// answers there" from "something answered but refused us".
#[derive(Debug)]
pub enum Reach {
    /// Connected.
    Connected(Box<Db>),
    /// Nothing accepted the connection (refused, unreachable, timed out).
    NoAnswer(String),
    /// A server answered but the session was not established (authentication,
    /// "starting up", too many clients...): its SQLSTATE says which.
    Refused(ServerError),
    /// TLS failed (unverified certificate, no SSL on the server...): the
    /// server got no startup message and no password.
    Tls(TlsError),
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Db({})", self.target)
    }
}

impl Db {
    /// Connects, bounded by `connect_timeout` and the deadline.
    pub fn connect(
        t: &Target<'_>,
        connect_timeout: Duration,
        query_timeout: Duration,
        deadline: &Deadline,
    ) -> Result<Db, PgError> {
        match Self::reach(t, connect_timeout, query_timeout, deadline)? {
            Reach::Connected(db) => Ok(*db),
            Reach::NoAnswer(reason) => Err(PgError::Connect {
                target: t.describe(),
                reason,
            }),
            Reach::Refused(error) => Err(PgError::Refused {
                target: t.describe(),
                error,
            }),
            Reach::Tls(e) => Err(PgError::Tls(e)),
        }
    }

    /// Tries to connect and says how it went.
    pub fn reach(
        t: &Target<'_>,
        connect_timeout: Duration,
        query_timeout: Duration,
        deadline: &Deadline,
    ) -> Result<Reach, PgError> {
        let target = t.describe();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PgError::Connect {
                target: target.clone(),
                reason: format!("cannot build the runtime: {e}"),
            })?;
        let timeout = deadline.cap(connect_timeout);
        let mut cfg = tokio_postgres::Config::new();
        match t.host {
            Host::Socket(dir) => cfg.host_path(dir),
            Host::Tcp(h) => cfg.host(h),
        };
        cfg.port(t.port)
            .user(t.user)
            .dbname(t.dbname)
            .application_name("rapidpro-ha")
            .connect_timeout(timeout);
        if let Some(p) = t.password {
            cfg.password(p);
        }
        let no_answer =
            || Reach::NoAnswer(format!("no answer within {:.1} s", timeout.as_secs_f64()));
        // Each branch spawns its connection's driver: their stream types
        // differ.
        let result = match t.host {
            Host::Socket(_) => {
                let _euid = crate::euid::borrow(t.peer_uid).map_err(|e| PgError::Connect {
                    target: String::new(),
                    reason: format!("cannot switch the effective uid for peer authentication: {e}"),
                })?;
                match rt.block_on(async { tokio::time::timeout(timeout, cfg.connect(NoTls)).await })
                {
                    Err(_) => return Ok(no_answer()),
                    Ok(Err(e)) => Err(e),
                    Ok(Ok((client, connection))) => {
                        rt.spawn(async move {
                            let _ = connection.await;
                        });
                        Ok(client)
                    }
                }
            }
            Host::Tcp(h) => {
                let tls_error = |failure| TlsError {
                    target: target.clone(),
                    tls: t.tls.clone(),
                    failure,
                };
                let connected = rt.block_on(async {
                    tokio::time::timeout(timeout, connect_tcp(&mut cfg, h, t.port, t.tls)).await
                });
                match connected {
                    Err(_) => return Ok(no_answer()),
                    Ok(Err(TcpFailure::NoAnswer(r))) => return Ok(Reach::NoAnswer(r)),
                    Ok(Err(TcpFailure::Tls(f))) => return Ok(Reach::Tls(tls_error(f))),
                    Ok(Err(TcpFailure::Pg(e))) => Err(e),
                    Ok(Ok(client)) => Ok(client),
                }
            }
        };
        let client = match result {
            Err(e) => {
                if let Some(refused) = ServerError::of(&e) {
                    return Ok(Reach::Refused(refused));
                }
                let reason = match t.host {
                    // "No such file or directory" alone does not say which
                    // file: name the socket the agent looked for.
                    Host::Socket(dir) if is_not_found(&e) => format!(
                        "no socket {} (pghost): {}",
                        dir.join(format!(".s.PGSQL.{}", t.port)).display(),
                        describe(&e)
                    ),
                    _ => describe(&e),
                };
                return Ok(Reach::NoAnswer(reason));
            }
            Ok(client) => client,
        };
        Ok(Reach::Connected(Box::new(Db {
            rt,
            client,
            target,
            query_timeout,
            deadline: *deadline,
        })))
    }

    /// Where this connection goes.
    pub fn target(&self) -> &str {
        &self.target
    }

    fn run<F, T>(&self, what: &'static str, fut: F) -> Result<T, PgError>
    where
        F: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        self.run_for(what, self.deadline.cap(self.query_timeout), fut)
    }

    fn run_for<F, T>(&self, what: &'static str, timeout: Duration, fut: F) -> Result<T, PgError>
    where
        F: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        match self
            .rt
            .block_on(async { tokio::time::timeout(timeout, fut).await })
        {
            Err(_) => Err(PgError::Timeout {
                target: self.target.clone(),
                what,
                after: timeout,
            }),
            Ok(Err(e)) => Err(query_failed(&self.target, what, &e)),
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// Runs SQL with the simple protocol and returns the first row's columns
    /// as text (NULL as `None`). Values in the SQL must be literals already
    /// quoted with [`quote_literal`].
    pub fn row(&self, what: &'static str, sql: &str) -> Result<Vec<Option<String>>, PgError> {
        Ok(self.rows(what, sql)?.into_iter().next().unwrap_or_default())
    }

    /// Runs SQL with the simple protocol and returns every row as text.
    pub fn rows(&self, what: &'static str, sql: &str) -> Result<Vec<Vec<Option<String>>>, PgError> {
        Ok(text_rows(self.run(what, self.client.simple_query(sql))?))
    }

    /// Runs a statement, ignoring any result.
    pub fn execute(&self, what: &'static str, sql: &str) -> Result<(), PgError> {
        self.run(what, self.client.simple_query(sql)).map(|_| ())
    }

    /// The local server's state, in one round trip.
    pub fn status(&self) -> Result<LocalStatus, PgError> {
        let r = self.row(STATUS_WHAT, STATUS_SQL)?;
        parse_status(&r)
    }

    /// The primary's view of its standbys (`pg_stat_replication`).
    pub fn standbys(&self) -> Result<Vec<StandbyRow>, PgError> {
        let rows = self.rows(REPLICATION_WHAT, REPLICATION_SQL)?;
        rows.iter().map(|r| parse_standby(r)).collect()
    }

    /// [`Db::status`] and [`Db::standbys`] pipelined: both queries are sent
    /// before either answer is read, so a primary's monitor waits for one
    /// round trip instead of two. Each is its own simple query (its own
    /// implicit transaction), so the second failing leaves the first
    /// intact: its error is returned as the second value. Meant for a
    /// server believed to be a primary; on a standby the second lists its
    /// cascading senders, if any, for the caller to ignore.
    pub fn status_and_standbys(
        &self,
    ) -> Result<(LocalStatus, Result<Vec<StandbyRow>, PgError>), PgError> {
        let timeout = self.deadline.cap(self.query_timeout);
        let both = async {
            tokio::join!(
                self.client.simple_query(STATUS_SQL),
                self.client.simple_query(REPLICATION_SQL)
            )
        };
        let (status, standbys) = self
            .rt
            .block_on(async { tokio::time::timeout(timeout, both).await })
            .map_err(|_| PgError::Timeout {
                target: self.target.clone(),
                what: STATUS_WHAT,
                after: timeout,
            })?;
        let failed = |what, e: tokio_postgres::Error| query_failed(&self.target, what, &e);
        let status = status.map_err(|e| failed(STATUS_WHAT, e))?;
        let status = parse_status(&text_rows(status).into_iter().next().unwrap_or_default())?;
        let standbys = standbys
            .map_err(|e| failed(REPLICATION_WHAT, e))
            .and_then(|m| text_rows(m).iter().map(|r| parse_standby(r)).collect());
        Ok((status, standbys))
    }

    /// The WAL receiver (`pg_stat_wal_receiver`), if one runs.
    pub fn wal_receiver(&self) -> Result<Option<WalReceiverRow>, PgError> {
        let rows = self.rows(RECEIVER_WHAT, RECEIVER_SQL)?;
        rows.first().map(|r| parse_receiver(r)).transpose()
    }

    /// Whether the server is a standby.
    pub fn in_recovery(&self) -> Result<bool, PgError> {
        let r = self.row("pg_is_in_recovery()", "SELECT pg_is_in_recovery()")?;
        Ok(r.first().cloned().flatten().as_deref() == Some("t"))
    }

    /// Whether a standby's startup process waits for WAL that no source
    /// gives: it has replayed every record of its own `pg_wal`. Without a
    /// `primary_conninfo` nor a `restore_command` it then sleeps on
    /// `RecoveryRetrieveRetryInterval` between its rounds of the sources, and
    /// is nowhere else for long.
    pub fn replayed_all_local_wal(&self) -> Result<bool, PgError> {
        let r = self.row(
            "the startup process's wait",
            "SELECT wait_event FROM pg_stat_activity WHERE backend_type = 'startup'",
        )?;
        Ok(r.first().cloned().flatten().as_deref() == Some("RecoveryRetrieveRetryInterval"))
    }

    /// Sets a parameter with ALTER SYSTEM and reloads the configuration.
    pub fn alter_system(&self, name: &str, value: &str) -> Result<(), PgError> {
        self.execute(
            "ALTER SYSTEM",
            &format!("ALTER SYSTEM SET {name} = {}", quote_literal(value)),
        )?;
        self.execute("pg_reload_conf()", "SELECT pg_reload_conf()")
    }

    /// Ends every WAL sender streaming (or about to) from this server and
    /// waits, at most `wait`, until they are gone from `pg_stat_replication`;
    /// returns how many were signalled and how many are still listed. Called
    /// by a promotion: every such sender served this node as a standby, and
    /// some serve nobody any more. A standby that connected to this node
    /// through the VIP while it held it (a demote restarts a primary as a
    /// standby before the VIP leaves) keeps a sender whose peer has moved
    /// on; the sender hears nothing and shows `streaming` until
    /// `wal_sender_timeout`. Counted as a live standby after a promotion, it
    /// made commits wait for a follower that was gone. A live cascading
    /// standby reconnects within `wal_retrieve_retry_interval`. Base backups
    /// (state `backup`) are left alone.
    ///
    /// All are signalled at once and looked for every 5 ms:
    /// `pg_terminate_backend(pid, timeout)` checks only every 100 ms, which
    /// cost a promotion 100 ms per sender, while a sender exits within a
    /// millisecond or two of its signal.
    pub fn end_wal_senders(&self, wait: Duration) -> Result<(usize, usize), PgError> {
        const WHAT: &str = "ending the WAL senders from before the promotion";
        let pids: Vec<String> = self
            .rows(
                WHAT,
                // Materialized first: in a WHERE on the view, the planner may
                // call pg_terminate_backend on every backend it scans,
                // before the join keeps only the WAL senders (seen: this
                // query's own session ended).
                "WITH senders AS MATERIALIZED (SELECT pid FROM pg_stat_replication \
                 WHERE state IN ('startup', 'catchup', 'streaming')) \
                 SELECT pid FROM senders WHERE pg_terminate_backend(pid)",
            )?
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
            .collect();
        if pids.is_empty() {
            return Ok((0, 0));
        }
        let listed = format!(
            "SELECT count(*) FROM pg_stat_replication WHERE pid IN ({})",
            pids.join(", ")
        );
        let end = std::time::Instant::now() + wait;
        loop {
            let left: usize = self
                .row(WHAT, &listed)?
                .first()
                .cloned()
                .flatten()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if left == 0 || std::time::Instant::now() >= end {
                return Ok((pids.len(), left));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Asks for promotion with `pg_promote(wait => false)`; true once the
    /// startup process was signalled. The caller polls
    /// [`Db::in_recovery`]: `pg_promote(wait => true)` checks only every
    /// 100 ms (`WAITS_PER_SECOND` in PostgreSQL's xlogfuncs.c), and a
    /// promotion ends within a few milliseconds of the signal, so waiting
    /// server-side cost a failover about 100 ms every time.
    pub fn request_promotion(&self) -> Result<bool, PgError> {
        let msgs = self.run_for(
            "pg_promote()",
            self.deadline.cap(self.query_timeout),
            self.client.simple_query("SELECT pg_promote(false)"),
        )?;
        Ok(msgs
            .iter()
            .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some("t"))))
    }
}

/// The rows of a simple query's answer, every column as text (NULL as
/// `None`).
fn text_rows(msgs: Vec<SimpleQueryMessage>) -> Vec<Vec<Option<String>>> {
    msgs.into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

/// Quotes a string as an SQL literal: single quotes doubled; a backslash
/// makes it an E'' literal, so standard_conforming_strings does not matter.
pub fn quote_literal(s: &str) -> String {
    if s.contains('\\') {
        format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

/// Whether the connection failed because a file (the socket) is missing.
fn is_not_found(e: &tokio_postgres::Error) -> bool {
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::NotFound;
        }
        src = inner.source();
    }
    false
}

/// A failed query, with the class of the server's error if it sent one.
fn query_failed(target: &str, what: &'static str, e: &tokio_postgres::Error) -> PgError {
    PgError::Query {
        target: target.to_string(),
        what,
        reason: describe(e),
        kind: ServerError::of(e).map(|s| s.kind),
    }
}

fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Shown instead of a password.
const REDACTED: &str = "<redacted>";

/// `conninfo` with the value of every `password` keyword replaced by
/// `<redacted>`, for messages and `Debug` output.
///
/// Reads libpq's `keyword = value` form (values bare or in single quotes,
/// `\` escaping) and the URI form (`postgresql://user:PASSWORD@host/db?
/// password=...`). A string that does not parse is redacted whole: a
/// secret might hide in what could not be told apart.
pub fn redact_conninfo(conninfo: &str) -> String {
    let t = conninfo.trim_start();
    if t.starts_with("postgresql://") || t.starts_with("postgres://") {
        return redact_conninfo_uri(t);
    }
    redact_conninfo_keywords(conninfo).unwrap_or_else(|| REDACTED.to_string())
}

fn redact_conninfo_keywords(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out: Vec<String> = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            break;
        }
        let k0 = i;
        while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &s[k0..i];
        skip_ws(&mut i);
        if key.is_empty() || i >= b.len() || b[i] != b'=' {
            return None;
        }
        i += 1;
        skip_ws(&mut i);
        let v0 = i;
        if i < b.len() && b[i] == b'\'' {
            i += 1;
            loop {
                match b.get(i) {
                    None => return None,
                    Some(b'\\') => i += 2,
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(_) => i += 1,
                }
            }
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
        }
        let value = s.get(v0..i.min(b.len()))?;
        if key.eq_ignore_ascii_case("password") {
            out.push(format!("{key}={REDACTED}"));
        } else {
            out.push(format!("{key}={value}"));
        }
    }
    Some(out.join(" "))
}

fn redact_conninfo_uri(s: &str) -> String {
    let (scheme, rest) = s.split_once("://").unwrap_or(("postgresql", s));
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    // userinfo ends at the last '@' before the path.
    let authority_end = main.find('/').unwrap_or(main.len());
    let (authority, path) = main.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:{REDACTED}@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    let mut out = format!("{scheme}://{authority}{path}");
    if let Some(q) = query {
        let q: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}={REDACTED}"),
                _ => kv.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&q.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_targets_debug_shows_no_password() {
        let t = Target {
            host: Host::Tcp("10.0.0.100"),
            port: 5432,
            user: "replicator",
            password: Some("hunter2"),
            dbname: "postgres",
            peer_uid: None,
            tls: &crate::postgres::tls::PgTls::DISABLED,
        };
        let shown = format!("{t:?} {t:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("password: Some(\"<redacted>\")"), "{shown}");
        assert!(shown.contains("10.0.0.100"), "{shown}");
    }

    #[test]
    fn conninfo_passwords_are_redacted_in_every_form() {
        for (given, want) in [
            (
                "host=a password=secret1 user=u",
                "host=a password=<redacted> user=u",
            ),
            (
                "host=a password = 'se cr\\'et1' user=u",
                "host=a password=<redacted> user=u",
            ),
            ("PASSWORD=secret1", "PASSWORD=<redacted>"),
            ("host=a", "host=a"),
            (
                "postgresql://u:secret1@h:5432/db?password=secret1&sslmode=require",
                "postgresql://u:<redacted>@h:5432/db?password=<redacted>&sslmode=require",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            // Unparsable (an unterminated quote): redacted whole.
            ("host=a password='secret1", "<redacted>"),
            ("password", "<redacted>"),
        ] {
            let got = redact_conninfo(given);
            assert_eq!(got, want, "{given}");
            assert!(!got.contains("secret1"), "{given}");
        }
    }
    #[test]
    fn literals_are_quoted_safely() {
        assert_eq!(quote_literal("a'b"), "'a''b'");
        assert_eq!(quote_literal("a\\'b"), "E'a\\\\''b'");
    }
}
