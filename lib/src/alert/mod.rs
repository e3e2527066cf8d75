//! `rapidpro-alert`: the Pacemaker alert agent that emails and texts the
//! on-call people, replacing the old email and SMS alert scripts.
//!
//! Pacemaker runs the agent once per event and recipient value, as
//! `hacluster`, with the event in `CRM_alert_*` variables and the alert's
//! options as variables of their own names (see [`config`]). One run:
//!
//! 1. reads the options and the event ([`config`], [`event`]);
//! 2. decides whether to send, and for node and fencing events, which node
//!    sends ([`policy`], pure; the membership comes from `crm_node -l`);
//! 3. sends one email per address ([`smtp`], lettre, STARTTLS or implicit
//!    TLS and AUTH) and one SMS per phone number ([`sms`], ureq, HTTP or
//!    HTTPS), all at once on threads, each network step bounded by
//!    `send_timeout` and the whole run by `deadline`, so a hung gateway
//!    cannot hold the agent until Pacemaker kills it; no secret option
//!    (passwords, token, headers, the sms_url query) reaches a message;
//! 4. logs each delivery and each failure with its reason (syslog and
//!    stderr, tag `rapidpro-alert`) and exits non-zero if anything failed,
//!    which Pacemaker logs too.
//!
//! `rapidproctl` uses [`AlertConfig::from_cib`], [`send_test`] and
//! [`check`] on the alerts configured in the CIB.

pub mod config;
pub mod event;
pub mod message;
mod net;
pub mod policy;
mod relay;
pub mod sms;
pub mod smtp;
pub mod tls;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use crate::cluster::{Cluster, CIB_FILE_ENV};
use crate::cmd::{self, Spec};
use crate::deadline::Deadline;

pub use config::{parse_recipients, AlertConfig, Options, Recipient, RecipientConfig};
pub use event::Event;
pub use message::Message;

/// Exit code: sent, or deliberately not sent.
pub const EXIT_OK: i32 = 0;
/// Exit code: at least one email or SMS was not sent.
pub const EXIT_SEND_FAILED: i32 = 1;
/// Exit code: the options or the environment are wrong; nothing was sent.
pub const EXIT_CONFIG: i32 = 2;
/// Longest `crm_node -l` may take.
pub const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(3);

/// Why an alert could not be read, configured or delivered.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A variable Pacemaker sets is missing or wrong.
    #[error("{var}: {problem}")]
    Environment {
        /// The variable.
        var: &'static str,
        /// What is wrong, and the expected form.
        problem: String,
    },
    /// An option (an instance attribute of the alert) is wrong.
    #[error("{option}: {problem}")]
    Option {
        /// The option's name.
        option: &'static str,
        /// What is wrong, and the expected form.
        problem: String,
    },
    /// Several options are wrong.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Several(Vec<Error>),
    /// An item of a recipient value is neither an email address nor a phone
    /// number.
    #[error("recipient {item:?}: {problem}")]
    Recipient {
        /// The item.
        item: String,
        /// What is wrong.
        problem: String,
    },
    /// `crm_node -l` could not be read.
    #[error("cluster membership: {0}")]
    Membership(String),
    /// The SMTP server failed or refused.
    #[error("SMTP server {server}: {problem}")]
    Smtp {
        /// `host:port`.
        server: String,
        /// What happened at which step.
        problem: String,
    },
    /// The SMS gateway failed or refused.
    #[error("SMS gateway {gateway} (sms_url): {problem}")]
    Gateway {
        /// The gateway, without its query.
        gateway: String,
        /// What happened.
        problem: String,
    },
    /// A send was still running when the deadline passed.
    #[error("{what}: still not done when the {} deadline passed", net::secs(*.deadline))]
    Deadline {
        /// What was being sent.
        what: String,
        /// The deadline.
        deadline: Duration,
    },
    /// The CIB's `<alerts>` could not be read.
    #[error("the CIB's alerts section: {0}")]
    Cib(String),
}

/// How a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Channel {
    /// By email.
    Email,
    /// By SMS.
    Sms,
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Channel::Email => "email",
            Channel::Sms => "SMS",
        })
    }
}

/// What became of one email or SMS.
#[derive(Debug)]
pub struct Outcome {
    /// Email or SMS.
    pub channel: Channel,
    /// The address or number.
    pub to: String,
    /// How long it took, or why it failed.
    pub result: Result<Duration, Error>,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.result {
            Ok(d) => write!(
                f,
                "{} to {} sent in {:.1} s",
                self.channel,
                self.to,
                d.as_secs_f64()
            ),
            Err(e) => write!(f, "{} to {} not sent: {e}", self.channel, self.to),
        }
    }
}

/// One message to one recipient.
struct Job {
    to: Recipient,
    options: Arc<Options>,
    message: Arc<Message>,
    helo: Arc<str>,
}

impl Job {
    fn channel(&self) -> Channel {
        match self.to {
            Recipient::Email(_) => Channel::Email,
            Recipient::Phone(_) => Channel::Sms,
        }
    }

    fn send(&self, deadline: &Deadline) -> Result<(), Error> {
        let o = &self.options;
        match &self.to {
            Recipient::Email(to) => {
                let server = smtp::SmtpServer::from_options(o).ok_or_else(|| Error::Option {
                    option: config::SMTP_SERVER,
                    problem: format!("not set, and recipient {to} is an email address"),
                })?;
                smtp::send(
                    &server,
                    &self.helo,
                    &o.mail_from,
                    to,
                    &self.message,
                    o.send_timeout,
                    deadline,
                )
            }
            Recipient::Phone(to) => sms::send(o, to, &self.message.sms, deadline),
        }
    }
}

/// Runs every job on its own thread and waits for all of them, but never
/// past `deadline`: a job still running then is reported as such and left
/// behind (its own socket timeouts end it soon after).
fn dispatch(jobs: Vec<Job>, deadline: &Deadline, total: Duration) -> Vec<Outcome> {
    let (tx, rx) = mpsc::channel();
    let who: Vec<(Channel, String)> = jobs
        .iter()
        .map(|j| (j.channel(), j.to.as_str().to_string()))
        .collect();
    let mut results: Vec<Option<Result<Duration, Error>>> = Vec::new();
    for (i, job) in jobs.into_iter().enumerate() {
        let (tx, d) = (tx.clone(), *deadline);
        let spawned = thread::Builder::new()
            .name(format!("alert-{i}"))
            .spawn(move || {
                let t = Instant::now();
                let r = job.send(&d).map(|()| t.elapsed());
                let _ = tx.send((i, r));
            });
        results.push(match spawned {
            Ok(_) => None,
            Err(e) => Some(Err(Error::Deadline {
                what: format!("{} to {} (no thread: {e})", who[i].0, who[i].1),
                deadline: total,
            })),
        });
    }
    drop(tx);
    let mut left = results.iter().filter(|r| r.is_none()).count();
    while left > 0 {
        match rx.recv_timeout(deadline.remaining()) {
            Ok((i, r)) => {
                results[i] = Some(r);
                left -= 1;
            }
            Err(_) => break,
        }
    }
    results
        .into_iter()
        .zip(who)
        .map(|(r, (channel, to))| Outcome {
            result: r.unwrap_or_else(|| {
                Err(Error::Deadline {
                    what: format!("{channel} to {to}"),
                    deadline: total,
                })
            }),
            channel,
            to,
        })
        .collect()
}

/// The jobs for one recipient value.
fn jobs_for(
    recipients: &[Recipient],
    options: &Arc<Options>,
    message: &Arc<Message>,
    helo: &Arc<str>,
) -> Vec<Job> {
    recipients
        .iter()
        .map(|r| Job {
            to: r.clone(),
            options: options.clone(),
            message: message.clone(),
            helo: helo.clone(),
        })
        .collect()
}

/// The cluster membership from `crm_node -l`, or why it could not be read.
fn read_members(deadline: &Deadline) -> Result<Vec<policy::Member>, String> {
    let spec = Spec::new("crm_node")
        .arg("--list")
        .timeout(deadline.cap(MEMBERSHIP_TIMEOUT));
    let out = cmd::run(&spec).map_err(|e| e.to_string())?;
    policy::parse_members(&out.stdout).map_err(|e| e.to_string())
}

/// What a run did when nothing was wrong with its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Every email and SMS owed was sent.
    Sent,
    /// Deliberately not sent: the event is not worth an alert (a
    /// successful monitor, a recurring operation's repeat).
    Silent,
    /// Not sent from this node: another node of the membership sends it.
    SentElsewhere,
    /// At least one email or SMS was not sent, or an item of the recipient
    /// was neither an address nor a number; the others were sent.
    SomeFailed,
}

/// Why a run sent nothing: its options or its environment are wrong.
#[derive(Debug)]
pub enum Refusal {
    /// An option of the alert is wrong.
    Option(Error),
    /// A variable Pacemaker sets for the event is missing or wrong.
    Event(Error),
    /// The recipient value is unset or empty.
    NoRecipient,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Option(e) => write!(f, "bad alert option: {e}; nothing sent"),
            Refusal::Event(e) => write!(f, "{e}"),
            Refusal::NoRecipient => write!(
                f,
                "{}: not set or empty: give the alert a recipient (pcs alert recipient add)",
                event::RECIPIENT
            ),
        }
    }
}

/// The exit code of a run: the one place it is chosen ([`EXIT_OK`],
/// [`EXIT_SEND_FAILED`], [`EXIT_CONFIG`]). Pacemaker logs a non-zero one.
pub fn exit_code(outcome: &Result<Delivery, Refusal>) -> i32 {
    match outcome {
        Ok(Delivery::Sent | Delivery::Silent | Delivery::SentElsewhere) => EXIT_OK,
        Ok(Delivery::SomeFailed) => EXIT_SEND_FAILED,
        Err(Refusal::Option(_) | Refusal::Event(_) | Refusal::NoRecipient) => EXIT_CONFIG,
    }
}

/// Handles one alert: `env` is the process environment Pacemaker set.
/// Returns the exit code ([`exit_code`]).
pub fn run(env: &BTreeMap<String, String>) -> i32 {
    let outcome = handle(env);
    if let Err(refusal) = &outcome {
        ::log::error!("{refusal}");
    }
    exit_code(&outcome)
}

/// Reads the alert, decides and sends; logs each delivery and failure.
pub fn handle(env: &BTreeMap<String, String>) -> Result<Delivery, Refusal> {
    let options = Arc::new(Options::from_env(env).map_err(Refusal::Option)?);
    let deadline = Deadline::after(options.deadline);
    let event = Event::from_env(env).map_err(Refusal::Event)?;
    let summary = message::summary(&event);
    let verdict = policy::classify(&event);
    if let policy::Verdict::Silent(why) = &verdict {
        ::log::debug!("not sent ({why}): {summary}");
        return Ok(Delivery::Silent);
    }
    // The one place the alert agent reads `CIB_file`, from the environment
    // it was given.
    let cluster = Cluster::from_cib_env(env.get(CIB_FILE_ENV).map(std::ffi::OsStr::new));
    let local = cluster.local_node_name(None, &deadline);
    if let policy::Verdict::SendOnce { subject } = &verdict {
        let members = read_members(&deadline);
        let members = members.as_deref().map_err(String::as_str);
        match policy::decide_once(local.as_str(), subject, members) {
            policy::Decision::Send => {}
            policy::Decision::SendAnyway(why) => {
                ::log::warn!("{why}; sending anyway, as a duplicate is better than a lost alert")
            }
            policy::Decision::Skip(sender) => {
                ::log::info!("not sent from here, {sender} sends it: {summary}");
                return Ok(Delivery::SentElsewhere);
            }
        }
    }
    let value = event.recipient.clone().unwrap_or_default();
    let (recipients, bad) = parse_recipients(&value);
    if recipients.is_empty() && bad.len() == 1 && value.trim().is_empty() {
        return Err(Refusal::NoRecipient);
    }
    let mut failed = false;
    for e in &bad {
        ::log::error!("{e}; not sent to it: {summary}");
        failed = true;
    }
    let message = Arc::new(message::compose(&event, local.as_str()));
    let helo: Arc<str> = Arc::from(local.as_str());
    let jobs = jobs_for(&recipients, &options, &message, &helo);
    for o in dispatch(jobs, &deadline, options.deadline) {
        match &o.result {
            Ok(_) => ::log::info!("{o}: {summary}"),
            Err(_) => {
                failed = true;
                ::log::error!("{o} (the alert: {summary})")
            }
        }
    }
    Ok(if failed {
        Delivery::SomeFailed
    } else {
        Delivery::Sent
    })
}

/// The syslog tag and stderr prefix of the alert agent.
pub const LOG_TAG: &str = "rapidpro-alert";

/// The agent's `main`: installs the logger, reads the process environment
/// and handles the alert.
pub fn alert_main() -> i32 {
    crate::ocf::log::AgentLogger::with_tag(LOG_TAG, false).install();
    let env: BTreeMap<String, String> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    run(&env)
}

/// What [`send_test`] did.
#[derive(Debug)]
pub struct TestReport {
    /// The alert's id.
    pub alert: String,
    /// One per email address and phone number.
    pub outcomes: Vec<Outcome>,
    /// Options or recipient items that kept something from being sent.
    pub problems: Vec<Error>,
}

impl TestReport {
    /// Whether everything was sent and nothing was wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.outcomes.iter().all(|o| o.result.is_ok())
    }
}

/// Sends one test email and one test SMS to every address and number of
/// every recipient of `alert`, all at once, within the alert's `deadline`.
pub fn send_test(cluster: &Cluster, alert: &AlertConfig) -> TestReport {
    let total = alert
        .checked_options()
        .map(|o| o.deadline)
        .unwrap_or(config::DEFAULT_DEADLINE);
    let deadline = Deadline::after(total);
    let local = cluster.local_node_name(None, &deadline);
    let message = Arc::new(message::test_message(local.as_str(), &alert.id));
    let helo: Arc<str> = Arc::from(local.as_str());
    let mut problems: Vec<Error> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut jobs = Vec::new();
    if alert.recipients.is_empty() {
        problems.push(Error::Recipient {
            item: String::new(),
            problem: format!("alert {} has no recipient", alert.id),
        });
    }
    for r in &alert.recipients {
        let merged = alert.options_for(r);
        let options = match Options::from_map(&merged) {
            Ok(o) => Arc::new(o),
            Err(e) => {
                if seen.insert(e.to_string()) {
                    problems.push(e);
                }
                continue;
            }
        };
        let (ok, bad) = parse_recipients(&r.value);
        problems.extend(bad);
        jobs.extend(jobs_for(&ok, &options, &message, &helo));
    }
    TestReport {
        alert: alert.id.clone(),
        outcomes: dispatch(jobs, &deadline, total),
        problems,
    }
}

/// One finding of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it is fine.
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

impl Check {
    fn new(name: impl Into<String>, result: Result<String, String>) -> Check {
        let (ok, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        Check {
            name: name.into(),
            ok,
            detail,
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.ok { "ok" } else { "FAILED" };
        write!(f, "{mark:6} {}: {}", self.name, self.detail)
    }
}

/// Checks `alert` from this node without sending anything: the agent is
/// installed, the options and recipients read, the deadline is below
/// Pacemaker's timeout, the SMTP server answers 220 and EHLO (with
/// STARTTLS or TLS and its certificate verified, and AUTH, as configured),
/// and the SMS gateway accepts a connection (and a verified TLS handshake
/// for https). Each probe ends at `send_timeout`, however the server
/// behaves; no detail shows a secret.
pub fn check(alert: &AlertConfig) -> Vec<Check> {
    let mut checks = Vec::new();
    checks.push(Check::new(
        format!("agent {}", alert.path),
        match std::fs::metadata(&alert.path) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {
                Ok("installed and executable on this node".into())
            }
            Ok(_) => Err("not an executable file on this node".into()),
            Err(e) => Err(format!("not usable on this node: {e}")),
        },
    ));
    let mut names: BTreeSet<&str> = alert.options.keys().map(String::as_str).collect();
    names.extend(
        alert
            .recipients
            .iter()
            .flat_map(|r| r.options.keys().map(String::as_str)),
    );
    let unknown: Vec<&str> = names
        .into_iter()
        .filter(|n| !config::is_option(n))
        .collect();
    if !unknown.is_empty() {
        checks.push(Check::new(
            "option names",
            Err(format!(
                "unknown option {} (known: {}, sms_header_<Name>)",
                unknown.join(", "),
                config::OPTION_NAMES.join(", ")
            )),
        ));
    }
    let options = alert.checked_options();
    checks.push(Check::new(
        "options",
        match &options {
            Ok(o) => Ok(describe_options(o)),
            Err(e) => Err(e.to_string()),
        },
    ));
    if let Ok(o) = &options {
        checks.push(Check::new(
            "deadline",
            match alert.timeout() {
                Some(t) if o.deadline < t => Ok(format!(
                    "{} is below the alert's timeout of {}",
                    net::secs(o.deadline),
                    net::secs(t)
                )),
                Some(t) => Err(format!(
                    "{} is not below the alert's timeout of {}: Pacemaker would kill the agent \
                     first; lower the deadline option or raise the timeout meta attribute",
                    net::secs(o.deadline),
                    net::secs(t)
                )),
                None => Err(format!(
                    "the timeout meta attribute {:?} is not a duration",
                    alert.meta.get("timeout").cloned().unwrap_or_default()
                )),
            },
        ));
    }
    if alert.recipients.is_empty() {
        checks.push(Check::new(
            "recipients",
            Err("none: add one with `pcs alert recipient add`".into()),
        ));
    }
    let mut smtp_servers: BTreeMap<String, Options> = BTreeMap::new();
    let mut gateways: BTreeMap<String, Options> = BTreeMap::new();
    for r in &alert.recipients {
        let merged = alert.options_for(r);
        let ropts = Options::from_map(&merged);
        let (ok, bad) = parse_recipients(&r.value);
        let mut problems: Vec<String> = bad.iter().map(ToString::to_string).collect();
        let emails = ok
            .iter()
            .filter(|x| matches!(x, Recipient::Email(_)))
            .count();
        let phones = ok.len() - emails;
        match &ropts {
            Ok(o) => {
                if emails > 0 {
                    match &o.smtp_server {
                        Some(s) => {
                            smtp_servers.entry(s.clone()).or_insert_with(|| o.clone());
                        }
                        None => problems.push("email addresses but no smtp_server option".into()),
                    }
                }
                if phones > 0 {
                    match &o.sms_url {
                        Some(u) => {
                            gateways.entry(u.gateway()).or_insert_with(|| o.clone());
                        }
                        None => problems.push("phone numbers but no sms_url option".into()),
                    }
                }
            }
            Err(e) if !r.options.is_empty() => problems.push(format!("its options: {e}")),
            Err(_) => {}
        }
        let detail = format!(
            "{:?}: {emails} email address{}, {phones} phone number{}",
            r.value,
            if emails == 1 { "" } else { "es" },
            if phones == 1 { "" } else { "s" },
        );
        checks.push(Check::new(
            format!("recipient {}", r.id),
            if problems.is_empty() {
                Ok(detail)
            } else {
                Err(format!("{detail}; {}", problems.join("; ")))
            },
        ));
    }
    for (server, o) in &smtp_servers {
        let Some(s) = smtp::SmtpServer::from_options(o) else {
            continue;
        };
        let d = Deadline::after(o.send_timeout);
        checks.push(Check::new(
            format!("SMTP server {server}"),
            smtp::probe(&s, o.send_timeout, &d).map_err(|e| e.to_string()),
        ));
    }
    for (gateway, o) in &gateways {
        let d = Deadline::after(o.send_timeout);
        checks.push(Check::new(
            format!("SMS gateway {gateway}"),
            sms::probe(o, &d).map_err(|e| e.to_string()),
        ));
    }
    checks
}

fn describe_options(o: &Options) -> String {
    let smtp = match &o.smtp_server {
        None => "(none)".to_string(),
        Some(s) => {
            let auth = o
                .smtp_user
                .as_deref()
                .map(|u| format!(", AUTH as {u}"))
                .unwrap_or_default();
            format!("{s} (smtp_tls {}{auth})", o.smtp_tls.as_str())
        }
    };
    let sms = o
        .sms_url
        .as_ref()
        .map(|u| {
            let auth = match &o.sms_auth {
                sms::SmsAuth::None => String::new(),
                sms::SmsAuth::Basic { user, .. } => format!(", basic auth as {user}"),
                sms::SmsAuth::Bearer(_) => ", bearer token".into(),
            };
            let headers: Vec<&str> = o.sms_headers.iter().map(|(k, _)| k.as_str()).collect();
            let headers = if headers.is_empty() {
                String::new()
            } else {
                format!(", headers {}", headers.join(", "))
            };
            format!("{} {}{auth}{headers}", o.sms_method.as_str(), u.gateway())
        })
        .unwrap_or_else(|| "(none)".into());
    format!(
        "smtp_server {smtp}, mail_from {}, sms {sms}, send_timeout {}, deadline {}",
        o.mail_from,
        net::secs(o.send_timeout),
        net::secs(o.deadline)
    )
}

#[cfg(test)]
mod tests {
    use super::event::samples;
    use super::*;

    #[test]
    fn only_a_failed_send_or_a_wrong_input_exits_non_zero() {
        let bad = || Error::Option {
            option: "send_timeout",
            problem: "x".into(),
        };
        let table: [(Result<Delivery, Refusal>, i32); 7] = [
            (Ok(Delivery::Sent), EXIT_OK),
            (Ok(Delivery::Silent), EXIT_OK),
            (Ok(Delivery::SentElsewhere), EXIT_OK),
            (Ok(Delivery::SomeFailed), EXIT_SEND_FAILED),
            (Err(Refusal::Option(bad())), EXIT_CONFIG),
            (Err(Refusal::Event(bad())), EXIT_CONFIG),
            (Err(Refusal::NoRecipient), EXIT_CONFIG),
        ];
        for (outcome, code) in &table {
            assert_eq!(exit_code(outcome), *code, "{outcome:?}");
        }
    }

    #[test]
    fn a_bad_option_is_refused_before_the_event_is_read() {
        let r = handle(&samples::env(&[("send_timeout", "soon")]));
        assert!(matches!(r, Err(Refusal::Option(_))), "{r:?}");
        let msg = r.unwrap_err().to_string();
        assert!(
            msg.starts_with("bad alert option: send_timeout") && msg.ends_with("; nothing sent"),
            "{msg}"
        );
    }

    #[test]
    fn outside_pacemaker_the_event_is_refused() {
        let r = handle(&BTreeMap::new());
        match r {
            Err(e @ Refusal::Event(_)) => assert!(e.to_string().contains("CRM_alert_kind")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_successful_monitor_is_silent() {
        let ok = samples::resource("stack", "monitor", "10000", "sms1", "0", "0", "0", "ok");
        assert_eq!(handle(&ok).unwrap(), Delivery::Silent);
    }

    #[test]
    fn an_empty_recipient_is_refused_naming_the_fix() {
        let mut e = samples::monitor_not_running();
        e.insert(event::RECIPIENT.to_string(), " ".to_string());
        let r = handle(&e);
        assert!(matches!(r, Err(Refusal::NoRecipient)), "{r:?}");
        assert!(r
            .unwrap_err()
            .to_string()
            .contains("pcs alert recipient add"));
    }
}
