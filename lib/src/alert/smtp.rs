//! Email through lettre: one message to one recipient per connection.
//!
//! `smtp_tls` chooses the transport: `none` (plain SMTP, the old behaviour,
//! for a local MTA on 127.0.0.1:25), `starttls` (the STARTTLS extension is
//! required, then the certificate is verified) or `tls` (implicit TLS, port
//! 465 by default). With `smtp_user` and `smtp_password` the agent
//! authenticates (AUTH PLAIN, else LOGIN), and only ever over a verified TLS
//! connection: the options refuse a password with `smtp_tls=none`, and
//! [`send`] and [`probe`] refuse it again, because lettre itself would send
//! AUTH in clear text on a plain connection.
//!
//! lettre connects through a [`Relay`] that bounds the bytes read from the
//! server and ends the session at the deadline (see `relay.rs` for why).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{SmtpTransport, Transport};

use super::config::Options;
use super::message::Message;
use super::net;
use super::relay::{Cut, Relay, MAX_FROM_SERVER};
use super::tls::{Secret, Trust};
use super::Error;
use crate::deadline::Deadline;

/// The port used when `smtp_server` names no port (`smtp_tls` none or
/// starttls).
pub const DEFAULT_PORT: u16 = 25;
/// The port used when `smtp_server` names no port and `smtp_tls=tls`.
pub const IMPLICIT_TLS_PORT: u16 = 465;

/// How the SMTP connection is protected (`smtp_tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmtpTls {
    /// Plain SMTP: only for a relay on this host or a trusted network, and
    /// never with a password.
    #[default]
    None,
    /// STARTTLS, required: a server that does not offer it is refused.
    StartTls,
    /// Implicit TLS from the first byte (SMTPS, port 465).
    Tls,
}

impl SmtpTls {
    /// Reads `none`, `starttls` or `tls` (any case).
    pub fn parse(s: &str) -> Option<SmtpTls> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Some(SmtpTls::None),
            "starttls" => Some(SmtpTls::StartTls),
            "tls" => Some(SmtpTls::Tls),
            _ => None,
        }
    }

    /// As written in the option.
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpTls::None => "none",
            SmtpTls::StartTls => "starttls",
            SmtpTls::Tls => "tls",
        }
    }

    /// The port when `smtp_server` names none.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::Tls => IMPLICIT_TLS_PORT,
            _ => DEFAULT_PORT,
        }
    }
}

/// The SMTP options of one send, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpServer {
    /// `host:port` as configured (for messages).
    pub server: String,
    host: String,
    port: u16,
    /// How the connection is protected.
    pub tls: SmtpTls,
    /// `smtp_user` and `smtp_password`.
    pub auth: Option<(String, Secret)>,
    /// What verifies the server's certificate.
    pub trust: Trust,
}

impl SmtpServer {
    /// From the options; `None` without `smtp_server`.
    pub fn from_options(o: &Options) -> Option<SmtpServer> {
        let server = o.smtp_server.clone()?;
        let (host, port) = net::split_host_port(&server, Some(o.smtp_tls.default_port())).ok()?;
        let auth = match (&o.smtp_user, &o.smtp_password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            _ => None,
        };
        Some(SmtpServer {
            server,
            host,
            port,
            tls: o.smtp_tls,
            auth,
            trust: Trust::from_option(o.smtp_ca_file.clone()),
        })
    }

    fn fail(&self, problem: String) -> Error {
        let problem = match &self.auth {
            Some((_, p)) if !p.expose().is_empty() => problem.replace(p.expose(), "<redacted>"),
            _ => problem,
        };
        Error::Smtp {
            server: self.server.clone(),
            problem,
        }
    }

    /// The TLS parameters: the server's name checked against its
    /// certificate, under the configured trust.
    fn tls_parameters(&self) -> Result<TlsParameters, Error> {
        let roots = self.trust.roots().map_err(|e| self.fail(e))?;
        let mut b =
            TlsParameters::builder(self.host.clone()).certificate_store(CertificateStore::None);
        for der in roots {
            let c = Certificate::from_der(der.to_vec())
                .map_err(|e| self.fail(format!("{}: {e}", self.trust.describe())))?;
            b = b.add_root_certificate(c);
        }
        b.build_rustls()
            .map_err(|e| self.fail(format!("TLS setup: {e}")))
    }

    /// Opens the relay and builds the transport through it.
    fn transport(
        &self,
        helo: &str,
        step: Duration,
        deadline: &Deadline,
    ) -> Result<(SmtpTransport, Relay), Error> {
        if self.auth.is_some() && self.tls == SmtpTls::None {
            return Err(self.fail(
                "smtp_password is set but smtp_tls is none: the password would cross the \
                 network in clear text; set smtp_tls=starttls or smtp_tls=tls"
                    .into(),
            ));
        }
        let tls = match self.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::StartTls => Tls::Required(self.tls_parameters()?),
            SmtpTls::Tls => Tls::Wrapper(self.tls_parameters()?),
        };
        let relay = Relay::open(&self.host, self.port, step, deadline)
            .map_err(|e| self.fail(format!("cannot connect: {e}")))?;
        let mut b = SmtpTransport::builder_dangerous("127.0.0.1")
            .port(relay.port())
            .hello_name(ClientId::Domain(helo.to_string()))
            .timeout(Some(deadline.cap(step).max(Duration::from_millis(1))))
            .tls(tls);
        if let Some((user, password)) = &self.auth {
            b = b
                .credentials(Credentials::new(
                    user.clone(),
                    password.expose().to_string(),
                ))
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }
        Ok((b.build(), relay))
    }

    /// Why a session failed: the relay's cut if it cut it, else lettre's
    /// error.
    fn session_error(
        &self,
        relay: &Relay,
        e: &lettre::transport::smtp::Error,
        deadline: Duration,
    ) -> Error {
        match relay.cut() {
            Some(Cut::Deadline) => self.fail(format!(
                "no complete answer before the {} deadline; the session was ended",
                net::secs(deadline)
            )),
            Some(Cut::TooMuch) => self.fail(format!(
                "sent more than {} kB without finishing; the session was ended",
                MAX_FROM_SERVER / 1024
            )),
            None if e.is_timeout() => self.fail(format!("no answer in time: {e}")),
            None => self.fail(describe(e)),
        }
    }
}

/// lettre's error with its causes (the TLS reason is in the source chain).
fn describe(e: &lettre::transport::smtp::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

/// Checks the server without sending: connects, says EHLO, does STARTTLS or
/// implicit TLS with the certificate verified, authenticates when
/// configured, says NOOP and QUIT. Returns what was checked.
///
/// The session runs on its own thread and is given up at the deadline:
/// the relay ends the connection then, but lettre may still be parsing
/// what it had received (up to its 100 kB of reply lines, which its parser
/// rereads for every line).
pub fn probe(server: &SmtpServer, step: Duration, deadline: &Deadline) -> Result<String, Error> {
    let total = deadline.remaining();
    let (tx, rx) = std::sync::mpsc::channel();
    let (s, d) = (server.clone(), *deadline);
    let spawned = std::thread::Builder::new()
        .name("smtp-probe".into())
        .spawn(move || {
            let _ = tx.send(probe_session(&s, step, &d, total));
        });
    if let Err(e) = spawned {
        return Err(server.fail(format!("no thread for the session: {e}")));
    }
    rx.recv_timeout(deadline.remaining()).unwrap_or_else(|_| {
        Err(server.fail(format!(
            "no complete answer before the {} deadline; the session was ended",
            net::secs(total)
        )))
    })
}

fn probe_session(
    server: &SmtpServer,
    step: Duration,
    deadline: &Deadline,
    total: Duration,
) -> Result<String, Error> {
    let (transport, relay) = server.transport("localhost", step, deadline)?;
    match transport.test_connection() {
        Ok(true) => {
            let mut done = vec!["answers 220 and EHLO".to_string()];
            match server.tls {
                SmtpTls::None => done.push("no TLS (smtp_tls=none)".into()),
                SmtpTls::StartTls => done.push(format!(
                    "STARTTLS with a certificate verified by {}",
                    server.trust.describe()
                )),
                SmtpTls::Tls => done.push(format!(
                    "implicit TLS with a certificate verified by {}",
                    server.trust.describe()
                )),
            }
            if let Some((user, _)) = &server.auth {
                done.push(format!("AUTH as {user} accepted"));
            }
            Ok(done.join(", "))
        }
        Ok(false) => Err(server.fail("did not answer NOOP".into())),
        Err(e) => Err(server.session_error(&relay, &e, total)),
    }
}

/// Sends `msg` from `from` to `to` through `server`, introducing this host
/// as `helo`.
pub fn send(
    server: &SmtpServer,
    helo: &str,
    from: &str,
    to: &str,
    msg: &Message,
    step: Duration,
    deadline: &Deadline,
) -> Result<(), Error> {
    let total = deadline.remaining();
    let email = build(from, to, msg, &message_id(from, helo)).map_err(|e| server.fail(e))?;
    let (transport, relay) = server.transport(helo, step, deadline)?;
    transport
        .send(&email)
        .map(drop)
        .map_err(|e| server.session_error(&relay, &e, total))
}

/// `Auto-Submitted: auto-generated` (RFC 3834): no vacation replies to a
/// machine.
#[derive(Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".into())
    }
}

/// The message: lettre writes the Date, encodes a non-ASCII subject and
/// chooses the body's transfer encoding; the line length limits and the
/// dot-stuffing are its too.
pub fn build(from: &str, to: &str, msg: &Message, id: &str) -> Result<lettre::Message, String> {
    let from: Mailbox = from
        .parse()
        .map_err(|e| format!("mail_from {from:?}: {e}"))?;
    let to: Mailbox = to.parse().map_err(|e| format!("recipient {to:?}: {e}"))?;
    let subject: String = msg
        .subject
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .message_id(Some(format!("<{id}>")))
        .date_now()
        .header(ContentType::TEXT_PLAIN)
        .header(AutoSubmitted)
        .body(msg.body.clone())
        .map_err(|e| format!("the message: {e}"))
}

/// A unique Message-ID (without brackets), in the sender's domain.
fn message_id(from: &str, helo: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let domain = from
        .rsplit_once('@')
        .map(|(_, d)| d)
        .filter(|d| !d.is_empty())
        .unwrap_or(helo);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.{:09}.{}.{}.rapidpro-alert@{domain}",
        now.as_secs(),
        now.subsec_nanos(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Year, month (1-12) and day of the `days`th day after 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, proleptic Gregorian calendar).
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(subject: &str, body: &str) -> Message {
        Message {
            subject: subject.into(),
            body: body.into(),
            sms: subject.into(),
        }
    }

    #[test]
    fn days_are_turned_into_civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        // 2024-02-29, a leap day.
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn a_mail_has_its_headers() {
        let m = msg("rapidpro-ha: node sms1 lost", "line 1\n.line 2\n");
        let e = build(
            "ha@example.org",
            "oncall@example.org",
            &m,
            "1.2@example.org",
        )
        .unwrap();
        let data = String::from_utf8(e.formatted()).unwrap();
        for h in [
            "From: ha@example.org\r\n",
            "To: oncall@example.org\r\n",
            "Subject: rapidpro-ha: node sms1 lost\r\n",
            "Message-ID: <1.2@example.org>\r\n",
            "Auto-Submitted: auto-generated\r\n",
            "Date: ",
        ] {
            assert!(data.contains(h), "{h:?} in {data}");
        }
        assert!(data.contains("line 1\r\n.line 2\r\n"), "{data}");
        let long = build("a@b.c", "c@d.e", &msg("café", &"x".repeat(2000)), "i@b.c").unwrap();
        let long = String::from_utf8(long.formatted()).unwrap();
        assert!(long.split("\r\n").all(|l| l.len() <= 998));
        assert!(long.contains("Subject: =?utf-8?"), "{long}");
    }

    #[test]
    fn message_ids_are_unique_and_in_the_senders_domain() {
        let a = message_id("ha@example.org", "sms1");
        let b = message_id("ha@example.org", "sms1");
        assert_ne!(a, b);
        assert!(a.ends_with("@example.org"));
        assert!(message_id("nobody", "sms1").ends_with("@sms1"));
    }

    fn options(pairs: &[(&str, &str)]) -> Options {
        let m: std::collections::BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Options::from_env(&m).unwrap()
    }

    #[test]
    fn a_closed_port_fails_naming_the_server() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let server = format!("127.0.0.1:{port}");
        let s = SmtpServer::from_options(&options(&[("smtp_server", &server)])).unwrap();
        let d = Deadline::after(Duration::from_secs(5));
        let text = probe(&s, Duration::from_secs(2), &d)
            .unwrap_err()
            .to_string();
        assert!(
            text.starts_with(&format!("SMTP server {server}: cannot connect")),
            "{text}"
        );
    }

    #[test]
    fn a_password_is_never_offered_without_tls() {
        // Options refuse it; a server built by hand is refused again before
        // any connection is made (lettre would AUTH in clear text).
        let mut s = SmtpServer::from_options(&options(&[("smtp_server", "127.0.0.1:1")])).unwrap();
        s.auth = Some(("ha".into(), Secret::new("pw")));
        let d = Deadline::after(Duration::from_secs(5));
        let e = probe(&s, Duration::from_secs(2), &d)
            .unwrap_err()
            .to_string();
        assert!(e.contains("set smtp_tls=starttls"), "{e}");
    }

    #[test]
    fn the_port_follows_smtp_tls() {
        let s = SmtpServer::from_options(&options(&[
            ("smtp_server", "mail.example.org"),
            ("smtp_tls", "tls"),
        ]))
        .unwrap();
        assert_eq!(s.port, IMPLICIT_TLS_PORT);
        let s = SmtpServer::from_options(&options(&[("smtp_server", "mail.example.org")])).unwrap();
        assert_eq!(s.port, DEFAULT_PORT);
    }
}
