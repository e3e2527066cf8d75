//! The SMS gateway client: one HTTP or HTTPS request per message, through
//! ureq.
//!
//! `sms_url` is a template such as
//! `https://sms.example.org/api/send?to={to}&text={text}`, or Kannel's
//! plain form `http://127.0.0.1:13013/cgi-bin/sendsms?user=ha&pass=x&to={to}&text={text}`
//! with the credentials in the query. `{to}` and `{text}` are replaced by
//! the percent-encoded phone number and text. With `sms_method=GET` the URL
//! is requested as is; with `POST` the part after `?` becomes an
//! `application/x-www-form-urlencoded` body sent to the path. Success is
//! any 2xx status.
//!
//! Credentials may also come from options, sent only over https:
//! `sms_user` and `sms_password` (HTTP basic), `sms_token` (a bearer
//! token), or any header as `sms_header_<Name>` (`_` in the name becomes
//! `-`: `sms_header_X_Api_Key` sends `X-Api-Key`). `sms_ca_file` replaces
//! the system CA store.
//!
//! Messages, logs and `--json` name the gateway as scheme://host:port/path,
//! never with its query or a user:password@ part; [`SmsUrl`]'s `Debug`
//! shows the same. Each request has one total timeout (connect, TLS,
//! request, answer), no redirect is followed (credentials would follow
//! it), no proxy is taken from the environment, and at most
//! [`MAX_BODY`] bytes of the answer are read.

use std::fmt;
use std::io::{self, Read};
use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
use ureq::Agent;

use super::config::Options;
use super::net;
use super::tls::{self as trust, Secret, Trust};
use super::Error;
use crate::deadline::Deadline;

/// The option holding the URL template.
pub const SMS_URL: &str = "sms_url";
/// Placeholder for the phone number.
pub const TO: &str = "{to}";
/// Placeholder for the text.
pub const TEXT: &str = "{text}";
/// Longest response head read.
const MAX_HEAD: usize = 16 * 1024;
/// Most bytes of a response body read (and then dropped: a gateway may echo
/// the request, credentials included).
pub const MAX_BODY: u64 = 64 * 1024;
/// Prefix of the options that become request headers.
pub const HEADER_PREFIX: &str = "sms_header_";

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// How the request authenticates, besides a query in the URL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SmsAuth {
    /// Nothing (or credentials in the query, Kannel's form).
    #[default]
    None,
    /// HTTP basic: `sms_user` and `sms_password`.
    Basic {
        /// The user.
        user: String,
        /// The password.
        password: Secret,
    },
    /// `Authorization: Bearer`: `sms_token`.
    Bearer(Secret),
}

/// The name a URL is shown by: scheme://host:port/path, without the
/// user:password@ part, the query or the fragment. For text that did not
/// parse, the part before any `?` or `#`, with anything up to an `@`
/// after the scheme dropped.
pub fn shown(url: &str) -> String {
    let cut = url.find(['?', '#']).unwrap_or(url.len());
    let base = &url[..cut];
    match base.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(end);
            let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{authority}{path}")
        }
        None => base.rsplit_once('@').map_or(base, |(_, h)| h).to_string(),
    }
}

/// A checked `sms_url` template. Its `Debug` shows [`SmsUrl::gateway`]
/// only: the query may hold the gateway's credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct SmsUrl {
    scheme: Scheme,
    host: String,
    port: u16,
    /// `host:port` as written.
    authority: String,
    /// Path and query, still with placeholders; starts with `/`.
    target: String,
}

impl fmt::Debug for SmsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SmsUrl").field(&self.gateway()).finish()
    }
}

impl SmsUrl {
    /// Checks a template: `http[s]://host[:port]/path?query` with `{to}`
    /// and `{text}` after the host.
    pub fn parse(template: &str) -> Result<SmsUrl, Error> {
        let t = template.trim();
        let show = shown(t);
        let bad = |problem: String| Error::Option {
            option: SMS_URL,
            problem,
        };
        let lower = t.to_ascii_lowercase();
        let (scheme, rest) = if lower.starts_with("https://") {
            (Scheme::Https, &t["https://".len()..])
        } else if lower.starts_with("http://") {
            (Scheme::Http, &t["http://".len()..])
        } else {
            return Err(bad(format!(
                "expected http[s]://host[:port]/path?to={TO}&text={TEXT}, got {show:?}"
            )));
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(end);
        if authority.contains('@') {
            return Err(bad(format!(
                "a user:password@ part is not supported in {show:?}: use the sms_user and \
                 sms_password options (sent over https only), or the query"
            )));
        }
        let default_port = match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        let (host, port) = net::split_host_port(authority, Some(default_port))
            .map_err(|e| bad(format!("bad host in {show:?}: {e}")))?;
        let target = match target {
            "" => "/".to_string(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_string(),
        };
        let target = match target.split('#').next() {
            Some("") | None => "/".to_string(),
            Some(t) => t.to_string(),
        };
        for p in [TO, TEXT] {
            if !target.contains(p) {
                return Err(bad(format!("{p} is missing from {show:?}")));
            }
        }
        if target.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(format!(
                "{show:?} contains spaces or control characters (write them percent-encoded)"
            )));
        }
        Ok(SmsUrl {
            scheme,
            host,
            port,
            authority: authority.to_string(),
            target,
        })
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// `host:port`.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The gateway as named in messages: `scheme://host:port/path`, no query.
    pub fn gateway(&self) -> String {
        let path = self.target.split('?').next().unwrap_or("/");
        format!("{}://{}{path}", self.scheme.as_str(), self.authority)
    }

    /// The request target with `to` and `text` substituted.
    pub fn target_for(&self, to: &str, text: &str) -> String {
        self.target
            .replace(TO, &percent_encode(to))
            .replace(TEXT, &percent_encode(text))
    }

    /// The URL requested and the form body: with GET the whole target and
    /// no body; with POST the path and the query as the body.
    fn request_for(&self, method: Method, to: &str, text: &str) -> (String, Option<String>) {
        let base = format!("{}://{}", self.scheme.as_str(), self.authority);
        let target = self.target_for(to, text);
        match method {
            Method::Get => (format!("{base}{target}"), None),
            Method::Post => {
                let (path, form) = target.split_once('?').unwrap_or((&target, ""));
                (format!("{base}{path}"), Some(form.to_string()))
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

/// Everything one request needs, from the options.
struct Request<'a> {
    url: &'a SmsUrl,
    method: Method,
    auth: &'a SmsAuth,
    headers: &'a [(String, Secret)],
    trust: Trust,
}

impl Request<'_> {
    fn from_options(o: &Options) -> Option<Request<'_>> {
        Some(Request {
            url: o.sms_url.as_ref()?,
            method: o.sms_method,
            auth: &o.sms_auth,
            headers: &o.sms_headers,
            trust: Trust::from_option(o.sms_ca_file.clone()),
        })
    }

    /// Every secret the request carries, to scrub from error text: the
    /// query (which may hold Kannel's `pass=`), passwords, tokens, header
    /// values.
    fn secrets(&self, sent: &str) -> Vec<String> {
        let mut s: Vec<String> = Vec::new();
        if let Some((_, q)) = sent.split_once('?') {
            s.push(q.to_string());
            s.extend(
                q.split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(_, v)| v.to_string()),
            );
        }
        match self.auth {
            SmsAuth::None => {}
            SmsAuth::Basic { password, .. } => s.push(password.expose().to_string()),
            SmsAuth::Bearer(t) => s.push(t.expose().to_string()),
        }
        s.extend(self.headers.iter().map(|(_, v)| v.expose().to_string()));
        s.retain(|x| x.len() >= 3);
        s.sort_by_key(|x| std::cmp::Reverse(x.len()));
        s
    }

    fn agent(&self, timeout: Duration) -> Result<Agent, Error> {
        let mut config = Agent::config_builder()
            .timeout_global(Some(timeout))
            .max_redirects(0)
            .proxy(None)
            .http_status_as_error(false)
            .max_response_header_size(MAX_HEAD)
            .user_agent("rapidpro-alert");
        if self.url.scheme == Scheme::Https {
            let roots = self.trust.roots().map_err(|e| self.url.fail(e))?;
            let roots: Vec<Certificate<'static>> = roots
                .iter()
                .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                .collect();
            config = config.tls_config(
                TlsConfig::builder()
                    .provider(TlsProvider::Rustls)
                    .root_certs(RootCerts::Specific(Arc::new(roots)))
                    .unversioned_rustls_crypto_provider(trust::provider())
                    .build(),
            );
        }
        Ok(config.build().new_agent())
    }

    fn send(&self, to: &str, text: &str, timeout: Duration) -> Result<(), Error> {
        let url = self.url;
        if url.scheme == Scheme::Http && (*self.auth != SmsAuth::None || !self.headers.is_empty()) {
            return Err(url.fail(
                "sms_user/sms_password, sms_token and sms_header_* are sent over https only: \
                 change sms_url to https://"
                    .into(),
            ));
        }
        let agent = self.agent(timeout)?;
        let (target, form) = url.request_for(self.method, to, text);
        let scrub = |s: String| {
            self.secrets(&target)
                .iter()
                .fold(s, |s, x| s.replace(x.as_str(), "<redacted>"))
        };
        let mut headers: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_string()))
            .collect();
        match self.auth {
            SmsAuth::None => {}
            SmsAuth::Basic { user, password } => headers.push((
                "Authorization".into(),
                format!(
                    "Basic {}",
                    base64_encode(format!("{user}:{}", password.expose()).as_bytes())
                ),
            )),
            SmsAuth::Bearer(t) => {
                headers.push(("Authorization".into(), format!("Bearer {}", t.expose())))
            }
        }
        let result = match form {
            None => {
                let mut r = agent.get(&target);
                for (k, v) in &headers {
                    r = r.header(k.as_str(), v.as_str());
                }
                r.call()
            }
            Some(body) => {
                let mut r = agent
                    .post(&target)
                    .header("Content-Type", "application/x-www-form-urlencoded");
                for (k, v) in &headers {
                    r = r.header(k.as_str(), v.as_str());
                }
                r.send(body.as_bytes())
            }
        };
        let mut response = result.map_err(|e| url.fail(scrub(describe(&e, url, timeout))))?;
        let status = response.status();
        // Read (a bounded part of) the body so the gateway sees the answer
        // taken; its text is not shown: it may echo the request.
        let mut sink = Vec::new();
        let _ = response
            .body_mut()
            .as_reader()
            .take(MAX_BODY)
            .read_to_end(&mut sink);
        if status.is_success() {
            Ok(())
        } else {
            Err(url.fail(format!(
                "answered {:?}",
                format!(
                    "{} {}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("")
                )
                .trim()
            )))
        }
    }
}

/// What went wrong, in an operator's words.
fn describe(e: &ureq::Error, url: &SmsUrl, timeout: Duration) -> String {
    match e {
        ureq::Error::Timeout(_) => format!("no answer within {}", net::secs(timeout)),
        ureq::Error::HostNotFound => format!("cannot connect to {}: host not found", url.address()),
        ureq::Error::ConnectionFailed => format!("cannot connect to {}", url.address()),
        ureq::Error::Io(io) if is_connect_error(io) => {
            format!("cannot connect to {}: {io}", url.address())
        }
        ureq::Error::Io(io)
            if matches!(
                io.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ) =>
        {
            format!("no answer within {}", net::secs(timeout))
        }
        ureq::Error::Io(io) => format!("{io}"),
        ureq::Error::LargeResponseHeader(..) => {
            format!("answered with a response head over {MAX_HEAD} bytes")
        }
        other => other.to_string(),
    }
}

fn is_connect_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::AddrNotAvailable
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    )
}

fn base64_encode(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Sends `text` to phone number `to` through the gateway of `o`, within
/// `send_timeout` and the deadline.
pub fn send(o: &Options, to: &str, text: &str, deadline: &Deadline) -> Result<(), Error> {
    let Some(req) = Request::from_options(o) else {
        return Err(Error::Option {
            option: SMS_URL,
            problem: format!("not set, and recipient {to} is a phone number"),
        });
    };
    let t = deadline.cap(o.send_timeout);
    if t.is_zero() {
        return Err(req
            .url
            .fail("the deadline passed before the request".into()));
    }
    req.send(to, text, t)
}

/// Checks the gateway without sending: it accepts a TCP connection and,
/// for https, completes a TLS handshake with a certificate verified for its
/// name. No request: a GET to the gateway would send an SMS. Returns what
/// was checked. The handshake runs on its own thread, given up at the
/// deadline.
pub fn probe(o: &Options, deadline: &Deadline) -> Result<String, Error> {
    let Some(url) = o.sms_url.clone() else {
        return Err(Error::Option {
            option: SMS_URL,
            problem: "not set".into(),
        });
    };
    let trust = Trust::from_option(o.sms_ca_file.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    let (u, d, step) = (url.clone(), *deadline, o.send_timeout);
    let spawned = std::thread::Builder::new()
        .name("sms-probe".into())
        .spawn(move || {
            let _ = tx.send(probe_connection(&u, &trust, step, &d));
        });
    if let Err(e) = spawned {
        return Err(url.fail(format!("no thread for the check: {e}")));
    }
    rx.recv_timeout(deadline.remaining()).unwrap_or_else(|_| {
        Err(url.fail(format!(
            "no TLS handshake within {}",
            net::secs(o.send_timeout)
        )))
    })
}

fn probe_connection(
    url: &SmsUrl,
    trust: &Trust,
    step: Duration,
    deadline: &Deadline,
) -> Result<String, Error> {
    let mut tcp = net::connect(&url.host, url.port, step, deadline)
        .map_err(|e| url.fail(format!("cannot connect to {}: {e}", url.address())))?;
    if url.scheme == Scheme::Http {
        return Ok(format!("{} accepts connections", url.address()));
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(trust.roots().map_err(|e| url.fail(e))?);
    if added == 0 {
        return Err(url.fail(format!("no usable CA certificate in {}", trust.describe())));
    }
    let config = rustls::ClientConfig::builder_with_provider(trust::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| url.fail(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(url.host.clone())
        .map_err(|e| url.fail(format!("{:?} is not a TLS server name: {e}", url.host)))?;
    let mut tls = rustls::ClientConnection::new(Arc::new(config), name)
        .map_err(|e| url.fail(format!("TLS setup: {e}")))?;
    while tls.is_handshaking() {
        let t = deadline.remaining();
        if t.is_zero() {
            return Err(url.fail(format!("no TLS handshake within {}", net::secs(step))));
        }
        let _ = tcp.set_read_timeout(Some(t));
        let _ = tcp.set_write_timeout(Some(t));
        match tls.complete_io(&mut tcp) {
            Ok((0, 0)) if tls.is_handshaking() && tls.wants_read() => {
                return Err(url.fail("closed the connection during the TLS handshake".into()))
            }
            Ok(_) => {}
            Err(e) => return Err(url.fail(format!("TLS handshake: {e}"))),
        }
    }
    Ok(format!(
        "{} accepts TLS with a certificate verified by {} (credentials are tried only by \
         sending: rapidproctl alert --test)",
        url.address(),
        trust.describe()
    ))
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
        let u = SmsUrl::parse("https://sms.example.org/api?to={to}&text={text}").unwrap();
        assert_eq!(u.address(), "sms.example.org:443");
        assert_eq!(u.scheme(), Scheme::Https);
        assert_eq!(u.gateway(), "https://sms.example.org/api");
    }

    #[test]
    fn get_and_post_requests_are_formed() {
        let u = SmsUrl::parse(KANNEL).unwrap();
        let (get, body) = u.request_for(Method::Get, "+1", "hi");
        assert_eq!(
            get,
            "http://127.0.0.1:13013/cgi-bin/sendsms?user=ha&pass=s3cret&to=%2B1&text=hi"
        );
        assert_eq!(body, None);
        let (post, body) = u.request_for(Method::Post, "+1", "hi");
        assert_eq!(post, "http://127.0.0.1:13013/cgi-bin/sendsms");
        assert_eq!(body.as_deref(), Some("user=ha&pass=s3cret&to=%2B1&text=hi"));
    }

    #[test]
    fn bad_templates_are_refused_naming_sms_url_and_never_showing_credentials() {
        for (bad, why) in [
            (
                "ftp://gw/send?pass=s3cret&to={to}&text={text}",
                "expected http[s]://",
            ),
            ("http://gw/send?pass=s3cret&text={text}", "{to} is missing"),
            ("http://gw/send?pass=s3cret&to={to}", "{text} is missing"),
            (
                "http://u:s3cret@gw/?to={to}&text={text}",
                "sms_user and sms_password",
            ),
            ("https://u:s3cret@gw/?to={to}&text={text}", "user:password@"),
            ("http://gw:x/?pass=s3cret&to={to}&text={text}", "bad host"),
            ("http:///?pass=s3cret&to={to}&text={text}", "bad host"),
            ("http://gw/?pass=s3cret&to={to}&text={text} x", "spaces"),
        ] {
            let e = SmsUrl::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("sms_url: "), "{e}");
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains("s3cret"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_url_is_shown_without_userinfo_query_or_fragment() {
        assert_eq!(shown(KANNEL), "http://127.0.0.1:13013/cgi-bin/sendsms");
        assert_eq!(
            shown("https://u:p@gw:8443/a/b?k=v#f"),
            "https://gw:8443/a/b"
        );
        assert_eq!(shown("u:p@gw/x?y"), "gw/x");
    }

    #[test]
    fn debug_shows_the_gateway_only() {
        let u = SmsUrl::parse(KANNEL).unwrap();
        let d = format!("{u:?}");
        assert!(!d.contains("s3cret") && !d.contains("user=ha"), "{d}");
        assert!(d.contains("http://127.0.0.1:13013/cgi-bin/sendsms"), "{d}");
        let a = SmsAuth::Basic {
            user: "ha".into(),
            password: Secret::new("s3cret"),
        };
        assert!(!format!("{a:?}").contains("s3cret"));
    }

    #[test]
    fn methods_are_read_in_any_case() {
        assert_eq!(Method::parse("get"), Some(Method::Get));
        assert_eq!(Method::parse(" POST "), Some(Method::Post));
        assert_eq!(Method::parse("PUT"), None);
    }
}
