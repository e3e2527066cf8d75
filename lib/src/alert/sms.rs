//! The SMS gateway client: one HTTP request per message.
//!
//! `sms_url` is a template such as
//! `http://127.0.0.1:13013/cgi-bin/sendsms?user=ha&pass=x&to={to}&text={text}`
//! (Kannel's form). `{to}` and `{text}` are replaced by the percent-encoded
//! phone number and text. With `sms_method=GET` the URL is requested as is;
//! with `POST` the part after `?` becomes an
//! `application/x-www-form-urlencoded` body sent to the path. Success is any
//! 2xx status. Plain HTTP only: a gateway that needs HTTPS is reached through
//! a local relay (an nginx `proxy_pass` on 127.0.0.1). Errors name the
//! gateway by scheme, host, port and path, never by query, which often holds
//! credentials.

use std::io::{Read, Write};
use std::time::Duration;

use super::net;
use super::Error;
use crate::deadline::Deadline;

/// The option holding the URL template.
pub const SMS_URL: &str = "sms_url";
/// Placeholder for the phone number.
pub const TO: &str = "{to}";
/// Placeholder for the text.
pub const TEXT: &str = "{text}";
/// Longest response head read.
const MAX_HEAD: usize = 8192;

/// How the gateway is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// `GET` the URL with the query.
    #[default]
    Get,
    /// `POST` the query as a form to the path.
    Post,
}

impl Method {
    /// Reads `GET` or `POST` (any case).
    pub fn parse(s: &str) -> Option<Method> {
        match s.trim().to_ascii_uppercase().as_str() {
            "GET" => Some(Method::Get),
            "POST" => Some(Method::Post),
            _ => None,
        }
    }

    /// `GET` or `POST`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// A checked `sms_url` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsUrl {
    template: String,
    host: String,
    port: u16,
    /// `host:port` as written, for the `Host` header.
    authority: String,
    /// Path and query, still with placeholders; starts with `/`.
    target: String,
}

impl SmsUrl {
    /// Checks a template: `http://host[:port]/path?query` with `{to}` and
    /// `{text}` after the host.
    pub fn parse(template: &str) -> Result<SmsUrl, Error> {
        let bad = |problem: String| Error::Option {
            option: SMS_URL,
            problem,
        };
        let t = template.trim();
        let lower = t.to_ascii_lowercase();
        if lower.starts_with("https://") {
            return Err(bad(format!(
                "https is not supported, got {t:?}: use a plain http:// URL, through a local \
                 relay (such as an nginx proxy_pass on 127.0.0.1) if the gateway needs TLS"
            )));
        }
        if !lower.starts_with("http://") {
            return Err(bad(format!(
                "expected http://host[:port]/path?to={TO}&text={TEXT}, got {t:?}"
            )));
        }
        let rest = &t["http://".len()..];
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(end);
        if authority.contains('@') {
            return Err(bad(
                "user:password@ is not supported: put the gateway's credentials in the query"
                    .into(),
            ));
        }
        let (host, port) = net::split_host_port(authority, Some(80))
            .map_err(|e| bad(format!("bad host in {t:?}: {e}")))?;
        let target = match target {
            "" => "/".to_string(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_string(),
        };
        let target = target.split('#').next().unwrap_or("/").to_string();
        for p in [TO, TEXT] {
            if !target.contains(p) {
                return Err(bad(format!("{p} is missing from {t:?}")));
            }
        }
        if target.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(format!(
                "{t:?} contains spaces or control characters (write them percent-encoded)"
            )));
        }
        Ok(SmsUrl {
            template: t.to_string(),
            host,
            port,
            authority: authority.to_string(),
            target,
        })
    }

    /// The template as configured.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// `host:port`.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The gateway as named in messages: `http://host:port/path`, no query.
    pub fn gateway(&self) -> String {
        let path = self.target.split('?').next().unwrap_or("/");
        format!("http://{}{path}", self.authority)
    }

    /// The request target with `to` and `text` substituted.
    pub fn target_for(&self, to: &str, text: &str) -> String {
        self.target
            .replace(TO, &percent_encode(to))
            .replace(TEXT, &percent_encode(text))
    }

    /// The whole HTTP request for one message.
    pub fn request(&self, method: Method, to: &str, text: &str) -> String {
        let target = self.target_for(to, text);
        let common = format!(
            "Host: {}\r\nUser-Agent: rapidpro-alert\r\nAccept: */*\r\nConnection: close\r\n",
            self.authority
        );
        match method {
            Method::Get => format!("GET {target} HTTP/1.1\r\n{common}\r\n"),
            Method::Post => {
                let (path, form) = target.split_once('?').unwrap_or((&target, ""));
                format!(
                    "POST {path} HTTP/1.1\r\n{common}Content-Type: \
                     application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
                    form.len()
                )
            }
        }
    }

    fn fail(&self, problem: String) -> Error {
        Error::Gateway {
            gateway: self.gateway(),
            problem,
        }
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`), so the result is safe in a path, a query and a
/// form body alike (`+` becomes `%2B`, space `%20`).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Sends `text` to phone number `to` through the gateway.
pub fn send(
    url: &SmsUrl,
    method: Method,
    to: &str,
    text: &str,
    step: Duration,
    deadline: &Deadline,
) -> Result<(), Error> {
    let t = net::step(step, deadline)
        .ok_or_else(|| url.fail("the deadline passed before connecting".into()))?;
    let mut stream = net::connect(&url.host, url.port, t, deadline)
        .map_err(|e| url.fail(format!("cannot connect to {}: {e}", url.address())))?;
    let t = net::step(step, deadline)
        .ok_or_else(|| url.fail("the deadline passed before the request".into()))?;
    net::arm(&stream, t).map_err(|e| url.fail(format!("socket: {e}")))?;
    stream
        .write_all(url.request(method, to, text).as_bytes())
        .map_err(|e| url.fail(format!("sending the request: {e}")))?;
    let t = net::step(step, deadline)
        .ok_or_else(|| url.fail("the deadline passed before the answer".into()))?;
    net::arm(&stream, t).map_err(|e| url.fail(format!("socket: {e}")))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < MAX_HEAD {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if net::is_timeout(&e) => {
                return Err(url.fail(format!("no answer within {}", net::secs(t))))
            }
            Err(e) => return Err(url.fail(format!("reading the answer: {e}"))),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let status_line = head.lines().next().unwrap_or("").trim();
    match parse_status(status_line) {
        Some(code) if (200..300).contains(&code) => Ok(()),
        Some(_) => Err(url.fail(format!(
            "answered {:?}",
            status_line.split_once(' ').map_or(status_line, |(_, s)| s)
        ))),
        None if status_line.is_empty() => {
            Err(url.fail("closed the connection without an answer".into()))
        }
        None => Err(url.fail(format!("answered {status_line:?}, not HTTP"))),
    }
}

/// The status code of `HTTP/1.1 200 OK`.
fn parse_status(line: &str) -> Option<u16> {
    let mut f = line.split_whitespace();
    if !f.next()?.starts_with("HTTP/") {
        return None;
    }
    f.next()?.parse().ok()
}

/// Checks that the gateway accepts a TCP connection.
pub fn probe(url: &SmsUrl, step: Duration, deadline: &Deadline) -> Result<(), Error> {
    net::connect(&url.host, url.port, step, deadline)
        .map(drop)
        .map_err(|e| url.fail(format!("cannot connect to {}: {e}", url.address())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KANNEL: &str =
        "http://127.0.0.1:13013/cgi-bin/sendsms?user=ha&pass=s3cret&to={to}&text={text}";

    #[test]
    fn unreserved_characters_stay_and_everything_else_is_escaped() {
        assert_eq!(percent_encode("AZaz09-._~"), "AZaz09-._~");
        assert_eq!(percent_encode("+255 700"), "%2B255%20700");
        assert_eq!(percent_encode("a&b=c?d/e#f%"), "a%26b%3Dc%3Fd%2Fe%23f%25");
        assert_eq!(percent_encode("café"), "caf%C3%A9");
        assert_eq!(percent_encode("{to}"), "%7Bto%7D");
    }

    #[test]
    fn a_template_is_split_into_gateway_and_target() {
        let u = SmsUrl::parse(KANNEL).unwrap();
        assert_eq!(u.address(), "127.0.0.1:13013");
        assert_eq!(u.gateway(), "http://127.0.0.1:13013/cgi-bin/sendsms");
        assert_eq!(
            u.target_for("+255700000001", "node sms1 lost"),
            "/cgi-bin/sendsms?user=ha&pass=s3cret&to=%2B255700000001&text=node%20sms1%20lost"
        );
        let u = SmsUrl::parse("http://gw?to={to}&text={text}").unwrap();
        assert_eq!(u.address(), "gw:80");
        assert_eq!(u.target_for("1", "x"), "/?to=1&text=x");
        let u = SmsUrl::parse("HTTP://[::1]:8080/send/{to}/{text}").unwrap();
        assert_eq!(u.address(), "[::1]:8080");
    }

    #[test]
    fn get_and_post_requests_are_well_formed() {
        let u = SmsUrl::parse(KANNEL).unwrap();
        let get = u.request(Method::Get, "+1", "hi");
        assert!(get.starts_with(
            "GET /cgi-bin/sendsms?user=ha&pass=s3cret&to=%2B1&text=hi HTTP/1.1\r\n\
             Host: 127.0.0.1:13013\r\n"
        ));
        assert!(get.ends_with("Connection: close\r\n\r\n"), "{get}");
        let post = u.request(Method::Post, "+1", "hi");
        assert!(
            post.starts_with("POST /cgi-bin/sendsms HTTP/1.1\r\n"),
            "{post}"
        );
        assert!(post.contains("Content-Type: application/x-www-form-urlencoded\r\n"));
        assert!(post.ends_with("Content-Length: 35\r\n\r\nuser=ha&pass=s3cret&to=%2B1&text=hi"));
    }

    #[test]
    fn bad_templates_are_refused_naming_sms_url() {
        for (bad, why) in [
            (
                "https://gw/send?to={to}&text={text}",
                "https is not supported",
            ),
            ("gw/send?to={to}&text={text}", "expected http://"),
            ("http://gw/send?text={text}", "{to} is missing"),
            ("http://gw/send?to={to}", "{text} is missing"),
            ("http://u:p@gw/?to={to}&text={text}", "user:password@"),
            ("http://gw:x/?to={to}&text={text}", "bad host"),
            ("http:///?to={to}&text={text}", "bad host"),
            ("http://gw/?to={to}&text={text} x", "spaces"),
        ] {
            let e = SmsUrl::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("sms_url: "), "{e}");
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn methods_are_read_in_any_case() {
        assert_eq!(Method::parse("get"), Some(Method::Get));
        assert_eq!(Method::parse(" POST "), Some(Method::Post));
        assert_eq!(Method::parse("PUT"), None);
    }

    #[test]
    fn status_lines_are_read() {
        assert_eq!(parse_status("HTTP/1.1 202 Accepted"), Some(202));
        assert_eq!(parse_status("HTTP/1.0 503"), Some(503));
        assert_eq!(parse_status("SSH-2.0-OpenSSH"), None);
    }
}
