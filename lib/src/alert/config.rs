//! The alert's options and recipients, from the environment Pacemaker sets
//! or from the CIB.
//!
//! Options are the instance attributes of the CIB `<alert>` element (a
//! `<recipient>` may override them with its own); Pacemaker exports each as
//! an environment variable of the same name. The recipient value is a
//! comma-separated list of email addresses and phone numbers.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use quick_xml::events::{BytesStart, Event as XmlEvent};
use quick_xml::{Reader, XmlVersion};

use std::path::PathBuf;

use super::sms::{Method, Scheme, SmsAuth, SmsUrl, HEADER_PREFIX, SMS_URL};
use super::smtp::SmtpTls;
use super::tls::Secret;
use super::{net, Error};

/// `host:port` of the SMTP relay.
pub const SMTP_SERVER: &str = "smtp_server";
/// The sender address of emails.
pub const MAIL_FROM: &str = "mail_from";
/// `GET` or `POST`.
pub const SMS_METHOD: &str = "sms_method";
/// Seconds allowed for each network step (connect, each reply).
pub const SEND_TIMEOUT: &str = "send_timeout";
/// Seconds allowed for the whole invocation.
pub const DEADLINE: &str = "deadline";
/// `none`, `starttls` or `tls`.
pub const SMTP_TLS: &str = "smtp_tls";
/// The user of SMTP AUTH.
pub const SMTP_USER: &str = "smtp_user";
/// The password of SMTP AUTH (a secret).
pub const SMTP_PASSWORD: &str = "smtp_password";
/// A PEM file of the CAs that verify the SMTP server, instead of the
/// system store.
pub const SMTP_CA_FILE: &str = "smtp_ca_file";
/// The user of the gateway's HTTP basic authentication.
pub const SMS_USER: &str = "sms_user";
/// The password of the gateway's HTTP basic authentication (a secret).
pub const SMS_PASSWORD: &str = "sms_password";
/// A bearer token for the gateway (a secret).
pub const SMS_TOKEN: &str = "sms_token";
/// A PEM file of the CAs that verify the gateway, instead of the system
/// store.
pub const SMS_CA_FILE: &str = "sms_ca_file";
/// Every option this agent reads, besides the `sms_header_*` family.
pub const OPTION_NAMES: [&str; 14] = [
    SMTP_SERVER,
    SMTP_TLS,
    SMTP_USER,
    SMTP_PASSWORD,
    SMTP_CA_FILE,
    MAIL_FROM,
    SMS_URL,
    SMS_METHOD,
    SMS_USER,
    SMS_PASSWORD,
    SMS_TOKEN,
    SMS_CA_FILE,
    SEND_TIMEOUT,
    DEADLINE,
];
/// Whether `name` is an option this agent reads.
pub fn is_option(name: &str) -> bool {
    OPTION_NAMES.contains(&name) || name.starts_with(HEADER_PREFIX)
}
/// Default `send_timeout`.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `deadline`: below Pacemaker's default alert timeout.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(20);
/// Pacemaker's default alert `timeout` meta attribute.
pub const DEFAULT_ALERT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest `send_timeout` accepted, in seconds.
const MAX_SEND_TIMEOUT: u64 = 600;
/// Largest `deadline` accepted, in seconds.
const MAX_DEADLINE: u64 = 3600;
/// An alert is ours when its path ends with this.
pub const AGENT_NAME: &str = "rapidpro-alert";

/// The alert's options, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `host:port` of the SMTP relay; needed for email recipients.
    pub smtp_server: Option<String>,
    /// The sender address; `rapidpro-ha@<hostname>` by default.
    pub mail_from: String,
    /// The SMS gateway template; needed for phone recipients.
    pub sms_url: Option<SmsUrl>,
    /// How the gateway is asked.
    pub sms_method: Method,
    /// Timeout of each network step.
    pub send_timeout: Duration,
    /// Time allowed for the whole invocation.
    pub deadline: Duration,
    /// How the SMTP connection is protected: `starttls` by default when
    /// a password is set, else `none`.
    pub smtp_tls: SmtpTls,
    /// The user of SMTP AUTH.
    pub smtp_user: Option<String>,
    /// Its password.
    pub smtp_password: Option<Secret>,
    /// The CAs for the SMTP server, instead of the system store.
    pub smtp_ca_file: Option<PathBuf>,
    /// How the gateway request authenticates.
    pub sms_auth: SmsAuth,
    /// Extra request headers (`sms_header_*`), values secret.
    pub sms_headers: Vec<(String, Secret)>,
    /// The CAs for the gateway, instead of the system store.
    pub sms_ca_file: Option<PathBuf>,
}

impl Options {
    /// Reads the options from `map` (an environment or an option map;
    /// empty values count as unset). Reports every bad option, not just the
    /// first. No error names a secret's value.
    pub fn from_map(map: &BTreeMap<String, String>) -> Result<Options, Error> {
        let get = |k: &str| {
            map.get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let mut errors = Vec::new();

        let smtp_server = get(SMTP_SERVER).and_then(|v| {
            keep(
                &mut errors,
                net::split_host_port(&v, Some(1))
                    .map(|_| v.clone())
                    .map_err(|why| Error::Option {
                        option: SMTP_SERVER,
                        problem: format!(
                            "expected host:port such as 127.0.0.1:25, got {v:?} ({why})"
                        ),
                    }),
            )
        });
        let mail_from = match get(MAIL_FROM) {
            Some(v) => keep(
                &mut errors,
                match email_problem(&v) {
                    None => Ok(v),
                    Some(why) => Err(Error::Option {
                        option: MAIL_FROM,
                        problem: format!(
                            "expected an email address such as ha@example.org, got {v:?} ({why})"
                        ),
                    }),
                },
            )
            .unwrap_or_default(),
            None => default_mail_from(),
        };
        let sms_url = get(SMS_URL).and_then(|v| keep(&mut errors, SmsUrl::parse(&v)));
        let sms_method = match get(SMS_METHOD) {
            None => Method::default(),
            Some(v) => keep(
                &mut errors,
                Method::parse(&v).ok_or_else(|| Error::Option {
                    option: SMS_METHOD,
                    problem: format!("expected GET or POST, got {v:?}"),
                }),
            )
            .unwrap_or_default(),
        };
        let seconds =
            |name: &'static str, default: Duration, max: u64, errors: &mut Vec<Error>| match get(
                name,
            ) {
                None => default,
                Some(v) => keep(
                    errors,
                    parse_seconds(&v, max).ok_or_else(|| Error::Option {
                        option: name,
                        problem: format!(
                    "expected a whole number of seconds from 1 to {max} (such as {}), got {v:?}",
                    default.as_secs()
                ),
                    }),
                )
                .unwrap_or(default),
            };
        let send_timeout = seconds(
            SEND_TIMEOUT,
            DEFAULT_SEND_TIMEOUT,
            MAX_SEND_TIMEOUT,
            &mut errors,
        );
        let deadline = seconds(DEADLINE, DEFAULT_DEADLINE, MAX_DEADLINE, &mut errors);
        let option = |option: &'static str, problem: String| Error::Option { option, problem };
        let ca_file = |name: &'static str, errors: &mut Vec<Error>| {
            get(name).and_then(|v| {
                let p = PathBuf::from(&v);
                keep(
                    errors,
                    if p.is_absolute() {
                        Ok(p)
                    } else {
                        Err(option(
                            name,
                            format!("expected an absolute path to a PEM file, got {v:?}"),
                        ))
                    },
                )
            })
        };

        // SMTP: AUTH only over TLS.
        let smtp_user = get(SMTP_USER);
        let smtp_password = get(SMTP_PASSWORD).map(Secret::new);
        let smtp_tls = match get(SMTP_TLS) {
            Some(v) => keep(
                &mut errors,
                SmtpTls::parse(&v).ok_or_else(|| {
                    option(
                        SMTP_TLS,
                        format!("expected none, starttls or tls, got {v:?}"),
                    )
                }),
            ),
            None if smtp_password.is_some() => Some(SmtpTls::StartTls),
            None => Some(SmtpTls::None),
        };
        if smtp_user.is_some() != smtp_password.is_some() {
            errors.push(option(
                if smtp_user.is_some() {
                    SMTP_PASSWORD
                } else {
                    SMTP_USER
                },
                "not set: SMTP AUTH needs both smtp_user and smtp_password".into(),
            ));
        }
        if smtp_password.is_some() && smtp_tls == Some(SmtpTls::None) {
            errors.push(option(
                SMTP_TLS,
                "is none but smtp_password is set: the password would cross the network in                  clear text; set smtp_tls=starttls (port 25 or 587) or smtp_tls=tls (port 465)"
                    .into(),
            ));
        }
        let smtp_ca_file = ca_file(SMTP_CA_FILE, &mut errors);
        if smtp_ca_file.is_some() && smtp_tls == Some(SmtpTls::None) {
            errors.push(option(
                SMTP_CA_FILE,
                "is set but smtp_tls is none: set smtp_tls=starttls or tls, or remove it".into(),
            ));
        }

        // SMS: credentials from options only over https.
        let sms_auth = match (get(SMS_USER), get(SMS_PASSWORD), get(SMS_TOKEN)) {
            (None, None, None) => SmsAuth::None,
            (Some(user), Some(password), None) => SmsAuth::Basic {
                user,
                password: Secret::new(password),
            },
            (None, None, Some(t)) => SmsAuth::Bearer(Secret::new(t)),
            (_, _, Some(_)) => {
                errors.push(option(
                    SMS_TOKEN,
                    "set with sms_user/sms_password: choose basic (sms_user and sms_password)                      or bearer (sms_token) authentication"
                        .into(),
                ));
                SmsAuth::None
            }
            (u, _, None) => {
                errors.push(option(
                    if u.is_some() { SMS_PASSWORD } else { SMS_USER },
                    "not set: HTTP basic authentication needs both sms_user and sms_password"
                        .into(),
                ));
                SmsAuth::None
            }
        };
        let mut sms_headers = Vec::new();
        for (k, v) in map.range(HEADER_PREFIX.to_string()..) {
            let Some(name) = k.strip_prefix(HEADER_PREFIX) else {
                break;
            };
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            match header_problem(name, v) {
                None => sms_headers.push((name.replace('_', "-"), Secret::new(v))),
                Some(why) => errors.push(Error::Option {
                    option: "sms_header_*",
                    problem: format!("{k}: {why}"),
                }),
            }
        }
        let sms_ca_file = ca_file(SMS_CA_FILE, &mut errors);
        if sms_url.as_ref().is_some_and(|u| u.scheme() == Scheme::Http) {
            if sms_auth != SmsAuth::None || !sms_headers.is_empty() {
                errors.push(option(
                    SMS_URL,
                    "is http:// but sms_user/sms_password, sms_token or sms_header_* is set:                      they would cross the network in clear text; use an https:// URL"
                        .into(),
                ));
            }
            if sms_ca_file.is_some() {
                errors.push(option(
                    SMS_CA_FILE,
                    "is set but sms_url is http://: use an https:// URL, or remove it".into(),
                ));
            }
        }
        match errors.len() {
            0 => Ok(Options {
                smtp_server,
                mail_from,
                sms_url,
                sms_method,
                send_timeout,
                deadline,
                smtp_tls: smtp_tls.unwrap_or_default(),
                smtp_user,
                smtp_password,
                smtp_ca_file,
                sms_auth,
                sms_headers,
                sms_ca_file,
            }),
            1 => Err(errors.remove(0)),
            _ => Err(Error::Several(errors)),
        }
    }

    /// Reads the options from an environment.
    pub fn from_env(env: &BTreeMap<String, String>) -> Result<Options, Error> {
        Options::from_map(env)
    }
}

/// Why `sms_header_<name>: value` cannot be sent, or `None`.
fn header_problem(name: &str, value: &str) -> Option<String> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Some("expected sms_header_<Name> with letters, digits and _ (as -)".into());
    }
    let lower = name.replace('_', "-").to_ascii_lowercase();
    if [
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
    ]
    .contains(&lower.as_str())
    {
        return Some(format!("{lower} is set by the agent itself"));
    }
    if value.chars().any(|c| c.is_control()) {
        return Some("the value has control characters".into());
    }
    None
}

/// The value of `r`, or `None` with its error added to `errors`.
fn keep<T>(errors: &mut Vec<Error>, r: Result<T, Error>) -> Option<T> {
    r.map_err(|e| errors.push(e)).ok()
}

/// `rapidpro-ha@<kernel nodename>`.
fn default_mail_from() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .map(|h| h.to_string_lossy().into_owned())
        .filter(|h| email_problem(&format!("x@{h}")).is_none())
        .unwrap_or_else(|| "localhost".into());
    format!("rapidpro-ha@{host}")
}

/// `5` or `5s`, from 1 to `max`.
fn parse_seconds(v: &str, max: u64) -> Option<Duration> {
    let n: u64 = v.strip_suffix('s').unwrap_or(v).trim().parse().ok()?;
    (1..=max).contains(&n).then(|| Duration::from_secs(n))
}

/// Reads a Pacemaker duration (`30`, `30s`, `1m`, `30000ms`, `1min`,
/// `1h`): a number with an optional unit, seconds by default.
pub fn parse_pacemaker_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit.trim() {
        "" | "s" | "sec" => n.checked_mul(1000)?,
        "ms" | "msec" => n,
        "m" | "min" => n.checked_mul(60_000)?,
        "h" | "hr" => n.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

/// One item of a recipient value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Recipient {
    /// An email address.
    Email(String),
    /// A phone number: `+` and digits.
    Phone(String),
}

impl Recipient {
    /// The address or number.
    pub fn as_str(&self) -> &str {
        match self {
            Recipient::Email(s) | Recipient::Phone(s) => s,
        }
    }
}

/// Why `s` is not an email address this client can send to (ASCII
/// `local@domain`, no spaces or brackets), or `None`.
fn email_problem(s: &str) -> Option<&'static str> {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return Some("no @");
    };
    if local.is_empty() || domain.is_empty() {
        return Some("nothing before or after @");
    }
    if local.contains('@') {
        return Some("more than one @");
    }
    if !s.is_ascii() || s.chars().any(|c| c.is_ascii_control() || c.is_whitespace()) {
        return Some("spaces, control or non-ASCII characters");
    }
    if s.chars().any(|c| "<>()[],;:\"\\".contains(c)) {
        return Some("a character not allowed in an address");
    }
    if domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
        return Some("a malformed domain");
    }
    None
}

fn is_phone(s: &str) -> bool {
    s.strip_prefix('+')
        .is_some_and(|d| (4..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Splits a recipient value (`oncall@example.org,+255700000001`) into
/// recipients, and an error for each item that is neither form.
pub fn parse_recipients(value: &str) -> (Vec<Recipient>, Vec<Error>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if is_phone(item) {
            ok.push(Recipient::Phone(item.to_string()));
        } else if item.contains('@') && email_problem(item).is_none() {
            ok.push(Recipient::Email(item.to_string()));
        } else {
            let why = match email_problem(item) {
                Some(why) if item.contains('@') => format!("not an email address: {why}"),
                _ => "expected an email address (name@example.org) or a phone number in \
                      international form (+ and digits, such as +255700000001)"
                    .to_string(),
            };
            bad.push(Error::Recipient {
                item: item.to_string(),
                problem: why,
            });
        }
    }
    if ok.is_empty() && bad.is_empty() {
        bad.push(Error::Recipient {
            item: value.to_string(),
            problem: "no email address or phone number".into(),
        });
    }
    (ok, bad)
}

/// Whether the value of option `name` is a secret, never to be shown.
pub fn is_secret(name: &str) -> bool {
    [SMTP_PASSWORD, SMS_PASSWORD, SMS_TOKEN].contains(&name) || name.starts_with(HEADER_PREFIX)
}

/// Options as `Debug` shows them: secrets as `<redacted>`, `sms_url`
/// without its query or user:password@.
struct ShownOptions<'a>(&'a BTreeMap<String, String>);

impl fmt::Debug for ShownOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if is_secret(k) {
                    "<redacted>".to_string()
                } else if k == SMS_URL {
                    super::sms::shown(v)
                } else {
                    v.clone()
                };
                (k, shown)
            }))
            .finish()
    }
}

/// A `<recipient>` of an alert. `Debug` redacts the secret options.
#[derive(Clone, PartialEq, Eq)]
pub struct RecipientConfig {
    /// Its id.
    pub id: String,
    /// Its value: emails and phone numbers, comma separated.
    pub value: String,
    /// Its own instance attributes, overriding the alert's.
    pub options: BTreeMap<String, String>,
}

impl fmt::Debug for RecipientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecipientConfig")
            .field("id", &self.id)
            .field("value", &self.value)
            .field("options", &ShownOptions(&self.options))
            .finish()
    }
}

/// A `rapidpro-alert` alert as configured in the CIB. `Debug` redacts the
/// secret options.
#[derive(Clone, PartialEq, Eq)]
pub struct AlertConfig {
    /// The alert's id.
    pub id: String,
    /// The agent's path.
    pub path: String,
    /// Its instance attributes: the options.
    pub options: BTreeMap<String, String>,
    /// Its meta attributes (`timeout`, `timestamp-format`).
    pub meta: BTreeMap<String, String>,
    /// Its recipients.
    pub recipients: Vec<RecipientConfig>,
}

impl fmt::Debug for AlertConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertConfig")
            .field("id", &self.id)
            .field("path", &self.path)
            .field("options", &ShownOptions(&self.options))
            .field("meta", &self.meta)
            .field("recipients", &self.recipients)
            .finish()
    }
}

impl AlertConfig {
    /// The alerts whose path ends in `rapidpro-alert`, from `cibadmin
    /// --query` output (a whole CIB or just its `<alerts>` section).
    pub fn from_cib(xml: &str) -> Result<Vec<AlertConfig>, Error> {
        Ok(parse_alerts(xml)?
            .into_iter()
            .filter(|a| a.path.trim_end().ends_with(AGENT_NAME))
            .collect())
    }

    /// The options a recipient gets: the alert's, overridden by its own.
    pub fn options_for(&self, r: &RecipientConfig) -> BTreeMap<String, String> {
        let mut o = self.options.clone();
        o.extend(r.options.iter().map(|(k, v)| (k.clone(), v.clone())));
        o
    }

    /// The alert's own options, checked.
    pub fn checked_options(&self) -> Result<Options, Error> {
        Options::from_map(&self.options)
    }

    /// Pacemaker's `timeout` for the agent, [`DEFAULT_ALERT_TIMEOUT`] when
    /// unset; `None` when set but unreadable.
    pub fn timeout(&self) -> Option<Duration> {
        match self.meta.get("timeout") {
            None => Some(DEFAULT_ALERT_TIMEOUT),
            Some(v) => parse_pacemaker_duration(v),
        }
    }
}

/// Deepest element nesting read.
const MAX_DEPTH: usize = 64;

fn attrs(e: &BytesStart) -> Result<BTreeMap<String, String>, Error> {
    let mut out = BTreeMap::new();
    for a in e.attributes() {
        let a = a.map_err(|err| Error::Cib(format!("bad attribute: {err}")))?;
        let v = a
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|err| Error::Cib(format!("bad attribute value: {err}")))?;
        out.insert(
            String::from_utf8_lossy(a.key.as_ref()).into_owned(),
            v.into_owned(),
        );
    }
    Ok(out)
}

/// Every `<alert>` inside `<alerts>`, with its options, meta attributes
/// and recipients.
fn parse_alerts(xml: &str) -> Result<Vec<AlertConfig>, Error> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut alerts: Vec<AlertConfig> = Vec::new();
    loop {
        let ev = reader.read_event().map_err(|e| {
            Error::Cib(format!(
                "not valid XML at byte {}: {e}",
                reader.buffer_position()
            ))
        })?;
        let (e, empty) = match ev {
            XmlEvent::Start(e) => (e, false),
            XmlEvent::Empty(e) => (e, true),
            XmlEvent::End(_) => {
                stack.pop();
                continue;
            }
            XmlEvent::Eof => break,
            _ => continue,
        };
        let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
        let parent = stack.last().map(String::as_str);
        let grandparent = stack.len().checked_sub(2).map(|i| stack[i].as_str());
        match (name.as_str(), parent, grandparent) {
            ("alert", Some("alerts"), _) => {
                let a = attrs(&e)?;
                alerts.push(AlertConfig {
                    id: a.get("id").cloned().unwrap_or_default(),
                    path: a.get("path").cloned().unwrap_or_default(),
                    options: BTreeMap::new(),
                    meta: BTreeMap::new(),
                    recipients: Vec::new(),
                });
            }
            ("recipient", Some("alert"), Some("alerts")) => {
                let a = attrs(&e)?;
                if let Some(alert) = alerts.last_mut() {
                    alert.recipients.push(RecipientConfig {
                        id: a.get("id").cloned().unwrap_or_default(),
                        value: a.get("value").cloned().unwrap_or_default(),
                        options: BTreeMap::new(),
                    });
                }
            }
            ("nvpair", Some(set @ ("instance_attributes" | "meta_attributes")), Some(owner)) => {
                let a = attrs(&e)?;
                let in_alerts = stack.iter().any(|s| s == "alerts");
                if let (true, Some(n), Some(alert)) = (in_alerts, a.get("name"), alerts.last_mut())
                {
                    let v = a.get("value").cloned().unwrap_or_default();
                    match (owner, set) {
                        ("alert", "instance_attributes") => {
                            alert.options.insert(n.clone(), v);
                        }
                        ("alert", "meta_attributes") => {
                            alert.meta.insert(n.clone(), v);
                        }
                        ("recipient", "instance_attributes") => {
                            if let Some(r) = alert.recipients.last_mut() {
                                r.options.insert(n.clone(), v);
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        if !empty {
            if stack.len() >= MAX_DEPTH {
                return Err(Error::Cib(format!(
                    "nested deeper than {MAX_DEPTH} elements"
                )));
            }
            stack.push(name);
        }
    }
    Ok(alerts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> Result<Options, Error> {
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Options::from_env(&m)
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let o = opts(&[]).unwrap();
        assert_eq!(o.smtp_server, None);
        assert_eq!(o.sms_url, None);
        assert_eq!(o.sms_method, Method::Get);
        assert_eq!(o.send_timeout, Duration::from_secs(5));
        assert_eq!(o.deadline, Duration::from_secs(20));
        assert!(o.mail_from.starts_with("rapidpro-ha@"), "{}", o.mail_from);
        // Empty values are unset (pcs writes them when asked to clear).
        assert_eq!(
            opts(&[("send_timeout", "")]).unwrap().send_timeout,
            Duration::from_secs(5)
        );
    }

    #[test]
    fn every_option_is_read() {
        let o = opts(&[
            ("smtp_server", "127.0.0.1:2525"),
            ("mail_from", "ha@example.org"),
            ("sms_url", "http://127.0.0.1:13013/send?to={to}&text={text}"),
            ("sms_method", "post"),
            ("send_timeout", "2"),
            ("deadline", "4s"),
        ])
        .unwrap();
        assert_eq!(o.smtp_server.as_deref(), Some("127.0.0.1:2525"));
        assert_eq!(o.mail_from, "ha@example.org");
        assert_eq!(o.sms_url.unwrap().address(), "127.0.0.1:13013");
        assert_eq!(o.sms_method, Method::Post);
        assert_eq!(o.send_timeout, Duration::from_secs(2));
        assert_eq!(o.deadline, Duration::from_secs(4));
    }

    #[test]
    fn a_bad_option_is_named_with_the_expected_form() {
        for (name, value, want) in [
            ("send_timeout", "abc", "send_timeout: expected a whole number of seconds from 1 to 600 (such as 5), got \"abc\""),
            ("send_timeout", "0", "send_timeout: expected a whole number"),
            ("deadline", "-3", "deadline: expected a whole number of seconds from 1 to 3600 (such as 20)"),
            ("sms_method", "PUT", "sms_method: expected GET or POST, got \"PUT\""),
            ("smtp_server", "mail:abc", "smtp_server: expected host:port such as 127.0.0.1:25, got \"mail:abc\""),
            ("mail_from", "nobody", "mail_from: expected an email address"),
            ("sms_url", "ftp://gw/?to={to}&text={text}", "sms_url: expected http[s]://"),
            ("smtp_tls", "ssl", "smtp_tls: expected none, starttls or tls, got \"ssl\""),
            ("smtp_ca_file", "ca.crt", "smtp_ca_file: expected an absolute path"),
        ] {
            let e = opts(&[(name, value)]).unwrap_err().to_string();
            assert!(e.starts_with(want), "{name}={value}: {e}");
        }
    }

    #[test]
    fn smtp_auth_defaults_to_starttls_and_is_refused_without_tls() {
        let o = opts(&[
            ("smtp_server", "mail.example.org:587"),
            ("smtp_user", "ha"),
            ("smtp_password", "pw-s3cret"),
        ])
        .unwrap();
        assert_eq!(o.smtp_tls, SmtpTls::StartTls);
        assert_eq!(opts(&[]).unwrap().smtp_tls, SmtpTls::None);
        let e = opts(&[
            ("smtp_server", "mail.example.org:25"),
            ("smtp_tls", "none"),
            ("smtp_user", "ha"),
            ("smtp_password", "pw-s3cret"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("smtp_tls: is none but smtp_password is set"),
            "{e}"
        );
        assert!(!e.contains("pw-s3cret"), "{e}");
        let e = opts(&[("smtp_password", "pw-s3cret")])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("smtp_user: not set"), "{e}");
        assert!(!e.contains("pw-s3cret"), "{e}");
        let e = opts(&[("smtp_ca_file", "/etc/ca.crt")])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("smtp_ca_file: is set but smtp_tls is none"),
            "{e}"
        );
    }

    #[test]
    fn sms_credentials_are_basic_or_bearer_over_https_only() {
        let https = "https://gw.example.org/send?to={to}&text={text}";
        let o = opts(&[
            ("sms_url", https),
            ("sms_user", "ha"),
            ("sms_password", "pw"),
        ])
        .unwrap();
        assert!(matches!(&o.sms_auth, SmsAuth::Basic { user, .. } if user == "ha"));
        let o = opts(&[("sms_url", https), ("sms_token", "tok")]).unwrap();
        assert_eq!(o.sms_auth, SmsAuth::Bearer(Secret::new("tok")));
        let o = opts(&[("sms_url", https), ("sms_header_X_Api_Key", "k-s3cret")]).unwrap();
        assert_eq!(
            o.sms_headers,
            [("X-Api-Key".to_string(), Secret::new("k-s3cret"))]
        );
        assert!(!format!("{o:?}").contains("k-s3cret"));
        for (pairs, want) in [
            (
                vec![("sms_url", https), ("sms_user", "ha"), ("sms_token", "t")],
                "sms_token: set with sms_user/sms_password",
            ),
            (
                vec![("sms_url", https), ("sms_user", "ha")],
                "sms_password: not set",
            ),
            (
                vec![
                    ("sms_url", "http://gw/?to={to}&text={text}"),
                    ("sms_token", "t-s3cret"),
                ],
                "sms_url: is http:// but",
            ),
            (
                vec![
                    ("sms_url", "http://gw/?to={to}&text={text}"),
                    ("sms_ca_file", "/ca.crt"),
                ],
                "sms_ca_file: is set but sms_url is http://",
            ),
            (
                vec![("sms_url", https), ("sms_header_Host", "x")],
                "sms_header_*: sms_header_Host: host is set by the agent",
            ),
        ] {
            let e = opts(&pairs).unwrap_err().to_string();
            assert!(e.starts_with(want), "{pairs:?}: {e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
        assert!(is_option("sms_header_X_Api_Key") && is_option("smtp_tls"));
        assert!(!is_option("smtp_pasword"));
    }

    #[test]
    fn several_bad_options_are_all_reported() {
        let e = opts(&[("send_timeout", "x"), ("sms_method", "y")]).unwrap_err();
        assert!(matches!(&e, Error::Several(v) if v.len() == 2), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("send_timeout:") && text.contains("sms_method:"),
            "{text}"
        );
    }

    #[test]
    fn recipients_are_emails_and_phone_numbers() {
        let (ok, bad) = parse_recipients("oncall@example.org, +255700000001,ops@example.org");
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(
            ok,
            [
                Recipient::Email("oncall@example.org".into()),
                Recipient::Phone("+255700000001".into()),
                Recipient::Email("ops@example.org".into()),
            ]
        );
    }

    #[test]
    fn a_bad_recipient_item_is_named_and_the_others_kept() {
        let (ok, bad) = parse_recipients("oncall@example.org,0755123456,a b@x,+12");
        assert_eq!(ok, [Recipient::Email("oncall@example.org".into())]);
        let msgs: Vec<String> = bad.iter().map(ToString::to_string).collect();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert!(
            msgs[0].starts_with("recipient \"0755123456\": expected an email address"),
            "{}",
            msgs[0]
        );
        assert!(
            msgs[1].starts_with("recipient \"a b@x\": not an email address"),
            "{}",
            msgs[1]
        );
        assert!(msgs[2].starts_with("recipient \"+12\""), "{}", msgs[2]);
        let (ok, bad) = parse_recipients(" , ");
        assert!(ok.is_empty());
        assert!(bad[0]
            .to_string()
            .contains("no email address or phone number"));
    }

    #[test]
    fn pacemaker_durations_are_read() {
        let s = Duration::from_secs;
        assert_eq!(parse_pacemaker_duration("30"), Some(s(30)));
        assert_eq!(parse_pacemaker_duration("30s"), Some(s(30)));
        assert_eq!(parse_pacemaker_duration("1m"), Some(s(60)));
        assert_eq!(parse_pacemaker_duration("2min"), Some(s(120)));
        assert_eq!(parse_pacemaker_duration("45000ms"), Some(s(45)));
        assert_eq!(parse_pacemaker_duration("1h"), Some(s(3600)));
        assert_eq!(parse_pacemaker_duration("soon"), None);
        assert_eq!(parse_pacemaker_duration("10x"), None);
    }

    const CIB: &str = r#"<cib epoch="5" num_updates="0" admin_epoch="0">
  <configuration>
    <crm_config/>
    <nodes/>
    <resources/>
    <constraints/>
    <alerts>
      <alert id="rapidpro-alert" path="/usr/sbin/rapidpro-alert">
        <meta_attributes id="rapidpro-alert-meta_attributes">
          <nvpair id="rapidpro-alert-meta_attributes-timeout" name="timeout" value="40s"/>
        </meta_attributes>
        <instance_attributes id="rapidpro-alert-instance_attributes">
          <nvpair id="a1" name="smtp_server" value="127.0.0.1:25"/>
          <nvpair id="a2" name="sms_url" value="http://127.0.0.1:13013/send?to={to}&amp;text={text}"/>
        </instance_attributes>
        <recipient id="rapidpro-alert-recipient-1" value="oncall@example.org,+255700000001"/>
        <recipient id="rapidpro-alert-recipient-2" value="boss@example.org">
          <instance_attributes id="r2-ia">
            <nvpair id="r2-a1" name="mail_from" value="ha-boss@example.org"/>
          </instance_attributes>
        </recipient>
      </alert>
      <alert id="file" path="/var/lib/pacemaker/alert_file.sh">
        <recipient id="file-r" value="/var/log/alerts.log"/>
      </alert>
    </alerts>
  </configuration>
  <status/>
</cib>"#;

    #[test]
    fn our_alerts_are_read_from_the_cib() {
        let alerts = AlertConfig::from_cib(CIB).unwrap();
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        let a = &alerts[0];
        assert_eq!(a.id, "rapidpro-alert");
        assert_eq!(a.path, "/usr/sbin/rapidpro-alert");
        assert_eq!(a.timeout(), Some(Duration::from_secs(40)));
        assert_eq!(a.options["smtp_server"], "127.0.0.1:25");
        assert_eq!(
            a.options["sms_url"],
            "http://127.0.0.1:13013/send?to={to}&text={text}"
        );
        assert_eq!(a.recipients.len(), 2);
        assert_eq!(a.recipients[0].value, "oncall@example.org,+255700000001");
        assert!(a.recipients[0].options.is_empty());
        let merged = a.options_for(&a.recipients[1]);
        assert_eq!(merged["mail_from"], "ha-boss@example.org");
        assert_eq!(merged["smtp_server"], "127.0.0.1:25");
        assert!(a.checked_options().is_ok());
    }

    #[test]
    fn the_alerts_section_alone_and_a_cib_without_alerts_are_read() {
        let section = &CIB[CIB.find("<alerts>").unwrap()..CIB.find("</alerts>").unwrap() + 9];
        assert_eq!(AlertConfig::from_cib(section).unwrap().len(), 1);
        assert!(AlertConfig::from_cib("<cib><configuration/></cib>")
            .unwrap()
            .is_empty());
        let e = AlertConfig::from_cib("<alerts><alert id=\"x").unwrap_err();
        assert!(
            e.to_string().starts_with("the CIB's alerts section: "),
            "{e}"
        );
    }

    #[test]
    fn an_alerts_debug_never_shows_a_secret() {
        let xml = r#"<alerts><alert id="a" path="/usr/sbin/rapidpro-alert">
          <instance_attributes id="ia">
            <nvpair id="1" name="smtp_password" value="pw-s3cret"/>
            <nvpair id="2" name="sms_url" value="https://u:ui-s3cret@gw/x?pass=q-s3cret&amp;to={to}&amp;text={text}"/>
            <nvpair id="3" name="sms_token" value="t-s3cret"/>
            <nvpair id="4" name="sms_header_X_Key" value="h-s3cret"/>
            <nvpair id="5" name="smtp_user" value="ha"/>
          </instance_attributes>
          <recipient id="r" value="+255700000001">
            <instance_attributes id="ra"><nvpair id="6" name="sms_password" value="r-s3cret"/></instance_attributes>
          </recipient>
        </alert></alerts>"#;
        let a = &AlertConfig::from_cib(xml).unwrap()[0];
        let shown = format!("{a:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("\"smtp_user\": \"ha\""), "{shown}");
        assert!(shown.contains("https://gw/x"), "{shown}");
    }

    #[test]
    fn an_alert_without_a_timeout_gets_pacemakers_default() {
        let xml = r#"<alerts><alert id="a" path="/usr/local/bin/rapidpro-alert"/></alerts>"#;
        let a = &AlertConfig::from_cib(xml).unwrap()[0];
        assert_eq!(a.timeout(), Some(DEFAULT_ALERT_TIMEOUT));
        assert!(a.recipients.is_empty());
    }

    /// What `cibadmin --query --scope alerts` printed (Pacemaker 2.1.5) after
    /// `pcs -f cib.xml alert create id=rapidpro-alert
    /// path=/usr/sbin/rapidpro-alert options smtp_server=127.0.0.1:25
    /// mail_from=ha@example.org 'sms_url=http://...' sms_method=GET
    /// send_timeout=5 deadline=20 meta timeout=30s` and
    /// `pcs -f cib.xml alert recipient add rapidpro-alert
    /// value=oncall@example.org,+255700000001 id=rapidpro-alert-recipient-1`.
    const PCS_ALERTS: &str = r#"<alerts>
  <alert id="rapidpro-alert" path="/usr/sbin/rapidpro-alert">
    <meta_attributes id="rapidpro-alert-meta_attributes">
      <nvpair id="rapidpro-alert-meta_attributes-timeout" name="timeout" value="30s"/>
    </meta_attributes>
    <instance_attributes id="rapidpro-alert-instance_attributes">
      <nvpair id="rapidpro-alert-instance_attributes-deadline" name="deadline" value="20"/>
      <nvpair id="rapidpro-alert-instance_attributes-mail_from" name="mail_from" value="ha@example.org"/>
      <nvpair id="rapidpro-alert-instance_attributes-send_timeout" name="send_timeout" value="5"/>
      <nvpair id="rapidpro-alert-instance_attributes-sms_method" name="sms_method" value="GET"/>
      <nvpair id="rapidpro-alert-instance_attributes-sms_url" name="sms_url" value="http://127.0.0.1:13013/cgi-bin/sendsms?user=ha&amp;pass=secret&amp;to={to}&amp;text={text}"/>
      <nvpair id="rapidpro-alert-instance_attributes-smtp_server" name="smtp_server" value="127.0.0.1:25"/>
    </instance_attributes>
    <recipient id="rapidpro-alert-recipient-1" value="oncall@example.org,+255700000001"/>
  </alert>
</alerts>
"#;

    #[test]
    fn an_alert_created_by_pcs_is_read_with_all_its_options() {
        let a = &AlertConfig::from_cib(PCS_ALERTS).unwrap()[0];
        let o = a.checked_options().unwrap();
        assert_eq!(o.smtp_server.as_deref(), Some("127.0.0.1:25"));
        assert_eq!(o.mail_from, "ha@example.org");
        assert_eq!(
            o.sms_url.unwrap().gateway(),
            "http://127.0.0.1:13013/cgi-bin/sendsms"
        );
        assert_eq!(o.deadline, Duration::from_secs(20));
        assert_eq!(a.timeout(), Some(Duration::from_secs(30)));
        let (ok, bad) = parse_recipients(&a.recipients[0].value);
        assert_eq!(ok.len(), 2);
        assert!(bad.is_empty());
    }
}
