//! A minimal SMTP client: one message to one recipient over plain TCP.
//!
//! It speaks RFC 5321's core (`EHLO`, falling back to `HELO`; `MAIL FROM`;
//! `RCPT TO`; `DATA` with dot-stuffing; `QUIT`), checks every reply code, and
//! gives each step `send_timeout` (capped by the deadline). There is no TLS
//! and no authentication: to reach a relay that needs them, point
//! `smtp_server` at a local MTA (postfix, exim, nullmailer on
//! `127.0.0.1:25`) that relays with TLS and credentials, which also queues
//! the mail while the relay is unreachable.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::message::Message;
use super::net;
use super::Error;
use crate::deadline::Deadline;

/// The port used when `smtp_server` names no port.
pub const DEFAULT_PORT: u16 = 25;
/// Longest reply line read.
const MAX_LINE: u64 = 4096;
/// Longest line written in a body (RFC 5321 allows 998 plus CRLF).
const MAX_BODY_LINE: usize = 900;

/// An open SMTP session.
struct Session {
    server: String,
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    step: Duration,
    deadline: Deadline,
}

impl Session {
    fn connect(server: &str, step: Duration, deadline: &Deadline) -> Result<Session, Error> {
        let fail = |problem: String| Error::Smtp {
            server: server.to_string(),
            problem,
        };
        let (host, port) = net::split_host_port(server, Some(DEFAULT_PORT)).map_err(&fail)?;
        let stream = net::connect(&host, port, step, deadline)
            .map_err(|e| fail(format!("cannot connect: {e}")))?;
        let reader = stream
            .try_clone()
            .map_err(|e| fail(format!("socket: {e}")))?;
        Ok(Session {
            server: server.to_string(),
            writer: stream,
            reader: BufReader::new(reader),
            step,
            deadline: *deadline,
        })
    }

    fn fail(&self, problem: String) -> Error {
        Error::Smtp {
            server: self.server.clone(),
            problem,
        }
    }

    /// Arms the socket for one step.
    fn arm(&self, what: &str) -> Result<Duration, Error> {
        let t = net::step(self.step, &self.deadline)
            .ok_or_else(|| self.fail(format!("the deadline passed before {what}")))?;
        net::arm(&self.writer, t).map_err(|e| self.fail(format!("socket: {e}")))?;
        Ok(t)
    }

    fn io_error(&self, what: &str, t: Duration, e: std::io::Error) -> Error {
        if net::is_timeout(&e) {
            self.fail(format!("no answer to {what} within {}", net::secs(t)))
        } else {
            self.fail(format!("{what}: {e}"))
        }
    }

    /// Reads one reply (all its lines): its code and its text.
    fn reply(&mut self, what: &str) -> Result<(u16, String), Error> {
        let t = self.arm(what)?;
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = (&mut self.reader)
                .take(MAX_LINE)
                .read_line(&mut line)
                .map_err(|e| self.io_error(what, t, e))?;
            if n == 0 {
                return Err(self.fail(format!("closed the connection after {what}")));
            }
            let line = line.trim_end();
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| self.fail(format!("answered {what} with {line:?}")))?;
            if !text.is_empty() {
                text.push_str(" / ");
            }
            text.push_str(line.get(4..).unwrap_or("").trim());
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok((code, text));
            }
        }
    }

    /// Sends `line` (without CRLF) and expects one of `ok`.
    fn command(&mut self, line: &str, ok: &[u16]) -> Result<String, Error> {
        let what = line.split(':').next().unwrap_or(line).to_string();
        self.write(&format!("{line}\r\n"), &what)?;
        self.expect(&what, ok)
    }

    fn write(&mut self, data: &str, what: &str) -> Result<(), Error> {
        let t = self.arm(what)?;
        self.writer
            .write_all(data.as_bytes())
            .map_err(|e| self.io_error(what, t, e))
    }

    fn expect(&mut self, what: &str, ok: &[u16]) -> Result<String, Error> {
        let (code, text) = self.reply(what)?;
        if ok.contains(&code) {
            Ok(text)
        } else {
            Err(self.fail(format!("answered {what} with {code} {text}")))
        }
    }
}

/// Checks that the server at `server` answers with a 220 greeting; returns
/// the greeting. Says `QUIT` politely.
pub fn probe(server: &str, step: Duration, deadline: &Deadline) -> Result<String, Error> {
    let mut s = Session::connect(server, step, deadline)?;
    let greeting = s.expect("the greeting", &[220])?;
    let _ = s.command("QUIT", &[221]);
    Ok(greeting)
}

/// Sends `msg` from `from` to `to` through `server`, introducing this host as
/// `helo`.
pub fn send(
    server: &str,
    helo: &str,
    from: &str,
    to: &str,
    msg: &Message,
    step: Duration,
    deadline: &Deadline,
) -> Result<(), Error> {
    let mut s = Session::connect(server, step, deadline)?;
    s.expect("the greeting", &[220])?;
    let ehlo = match s.command(&format!("EHLO {helo}"), &[250]) {
        Ok(text) => text,
        // An old server: RFC 5321 4.1.4 lets the client fall back to HELO.
        Err(_) => s.command(&format!("HELO {helo}"), &[250])?,
    };
    let eight_bit = !msg.body.is_ascii();
    let body_param = if eight_bit && ehlo.to_ascii_uppercase().contains("8BITMIME") {
        " BODY=8BITMIME"
    } else {
        ""
    };
    s.command(&format!("MAIL FROM:<{from}>{body_param}"), &[250])?;
    s.command(&format!("RCPT TO:<{to}>"), &[250, 251])?;
    s.command("DATA", &[354])?;
    let data = format_mail(from, to, msg, SystemTime::now(), &message_id(from, helo));
    s.write(&dot_stuff(&data), "the message")?;
    s.write(".\r\n", "the end of the message")?;
    s.expect("the end of the message", &[250])?;
    // The message is accepted; a failed QUIT changes nothing.
    let _ = s.command("QUIT", &[221]);
    Ok(())
}

/// The message as sent after `DATA` (before dot-stuffing): headers, an empty
/// line and the body, lines ending in CRLF.
pub fn format_mail(from: &str, to: &str, msg: &Message, date: SystemTime, id: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    };
    let encoding = if msg.body.is_ascii() { "7bit" } else { "8bit" };
    let mut out = String::new();
    for (name, value) in [
        ("Date", rfc5322_date(date)),
        ("From", clean(from)),
        ("To", clean(to)),
        ("Subject", encode_header(&clean(&msg.subject))),
        ("Message-ID", format!("<{id}>")),
        ("MIME-Version", "1.0".into()),
        ("Content-Type", "text/plain; charset=utf-8".into()),
        ("Content-Transfer-Encoding", encoding.into()),
        // RFC 3834: no vacation replies to a machine.
        ("Auto-Submitted", "auto-generated".into()),
    ] {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    for line in msg.body.lines() {
        for piece in split_long(line, MAX_BODY_LINE) {
            out.push_str(piece);
            out.push_str("\r\n");
        }
    }
    out
}

/// `line` in pieces of at most `max` bytes, cut on character boundaries.
fn split_long(line: &str, max: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = line;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        pieces.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    pieces.push(rest);
    pieces
}

/// RFC 5321 4.5.2: a line starting with `.` gets another one, so that only
/// the terminating `.` line ends the data.
pub fn dot_stuff(data: &str) -> String {
    let mut out = String::with_capacity(data.len() + 16);
    for line in data.split_inclusive('\n') {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
    }
    out
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

/// A header value as is when ASCII, else RFC 2047 encoded words (UTF-8,
/// base64), folded so no encoded word exceeds 75 characters.
pub fn encode_header(value: &str) -> String {
    if value.is_ascii() {
        return value.to_string();
    }
    // 45 bytes of UTF-8 make 60 base64 characters: 72 with the wrapping.
    split_long(value, 45)
        .into_iter()
        .map(|chunk| format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes())))
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// Standard base64 with padding (RFC 4648 section 4).
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An RFC 5322 date in UTC: `Tue, 14 Nov 2023 22:13:20 +0000`.
pub fn rfc5322_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
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
    fn dates_are_written_as_rfc5322_in_utc() {
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(rfc5322_date(at(0)), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(at(1_700_000_000)),
            "Tue, 14 Nov 2023 22:13:20 +0000"
        );
        // A leap day.
        assert_eq!(
            rfc5322_date(at(1_709_208_000)),
            "Thu, 29 Feb 2024 12:00:00 +0000"
        );
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o, "{i:?}");
        }
    }

    #[test]
    fn non_ascii_subjects_are_encoded_words() {
        assert_eq!(encode_header("plain"), "plain");
        assert_eq!(encode_header("café"), "=?UTF-8?B?Y2Fmw6k=?=");
        let long = encode_header(&"é".repeat(60));
        for word in long.split("\r\n ") {
            assert!(word.len() <= 75, "{word}");
        }
    }

    #[test]
    fn lines_starting_with_a_dot_are_doubled() {
        assert_eq!(dot_stuff("a\r\n.b\r\n..c\r\n"), "a\r\n..b\r\n...c\r\n");
        assert_eq!(dot_stuff(".\r\n"), "..\r\n");
    }

    #[test]
    fn a_mail_has_its_headers_and_crlf_lines() {
        let m = msg("rapidpro-ha: node sms1 lost", "line 1\n.line 2\n");
        let data = format_mail(
            "ha@example.org",
            "oncall@example.org",
            &m,
            UNIX_EPOCH,
            "1.2@example.org",
        );
        assert!(data.starts_with("Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n"));
        for h in [
            "From: ha@example.org\r\n",
            "To: oncall@example.org\r\n",
            "Subject: rapidpro-ha: node sms1 lost\r\n",
            "Message-ID: <1.2@example.org>\r\n",
            "Content-Transfer-Encoding: 7bit\r\n",
        ] {
            assert!(data.contains(h), "{h:?} in {data}");
        }
        assert!(data.ends_with("\r\n\r\nline 1\r\n.line 2\r\n"), "{data}");
        let long = format_mail("a@b", "c@d", &msg("s", &"x".repeat(2000)), UNIX_EPOCH, "i");
        assert!(long.split("\r\n").all(|l| l.len() <= 998));
    }

    #[test]
    fn message_ids_are_unique_and_in_the_senders_domain() {
        let a = message_id("ha@example.org", "sms1");
        let b = message_id("ha@example.org", "sms1");
        assert_ne!(a, b);
        assert!(a.ends_with("@example.org"));
        assert!(message_id("nobody", "sms1").ends_with("@sms1"));
    }

    #[test]
    fn a_closed_port_fails_naming_the_server() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let server = format!("127.0.0.1:{port}");
        let d = Deadline::after(Duration::from_secs(5));
        let err = probe(&server, Duration::from_secs(2), &d).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("SMTP server {server}: cannot connect")),
            "{text}"
        );
    }
}
