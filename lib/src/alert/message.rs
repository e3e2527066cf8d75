//! What the on-call person reads: one line for the SMS and the email subject,
//! and an email body with the details and Pacemaker's raw variables.

use std::fmt::Write as _;

use super::event::{Code, Event, Kind, ResourceOp, EXEC_DONE};

/// Every line starts with this, so a phone shows where the SMS comes from.
pub const PREFIX: &str = "rapidpro-ha";
/// An SMS is at most this many characters (one GSM 03.38 segment).
pub const SMS_MAX: usize = 160;
/// Longest email subject written.
pub const SUBJECT_MAX: usize = 200;

/// One alert, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The email subject.
    pub subject: String,
    /// The email body (plain text, `\n` line ends).
    pub body: String,
    /// The SMS text: at most [`SMS_MAX`] characters.
    pub sms: String,
}

impl Message {
    fn new(line: String, body: String) -> Message {
        let line: String = line
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        Message {
            subject: shorten(&line, SUBJECT_MAX),
            sms: shorten(&line, SMS_MAX),
            body,
        }
    }
}

/// `s` cut to `max` characters, ending in `...` when cut.
pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(3)).collect();
    out.push_str("...");
    out
}

/// The one-line summary of `event`.
pub fn summary(event: &Event) -> String {
    let node = event.node.as_deref().unwrap_or("?");
    let desc = event.desc.as_deref();
    match &event.kind {
        Kind::Node => match desc {
            Some("lost") => format!("{PREFIX}: node {node} lost"),
            Some("member") => format!("{PREFIX}: node {node} joined"),
            Some(d) => format!("{PREFIX}: node {node} is now {d}"),
            None => format!("{PREFIX}: node {node} changed state"),
        },
        Kind::Fencing { task, rc } => {
            let by = desc.and_then(fencer).map(|b| format!(" by {b}"));
            let outcome = match rc {
                Code::Value(0) => "OK".to_string(),
                rc => format!("FAILED (rc {rc})"),
            };
            let task = task
                .as_deref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default();
            format!(
                "{PREFIX}: fencing{task} of {node}{}: {outcome}",
                by.unwrap_or_default()
            )
        }
        Kind::Resource(op) => resource_summary(op, node, desc),
        Kind::Attribute { name, value } => format!(
            "{PREFIX}: attribute {} of {node} is now {}",
            name.as_deref().unwrap_or("?"),
            value.as_deref().unwrap_or("(deleted)")
        ),
        Kind::Unknown(kind) => format!(
            "{PREFIX}: {kind} event on {node}{}",
            desc.map(|d| format!(": {d}")).unwrap_or_default()
        ),
    }
}

fn resource_summary(op: &ResourceOp, node: &str, desc: Option<&str>) -> String {
    let (rsc, task) = (&op.rsc, &op.task);
    let succeeded = op.status == Code::Value(EXEC_DONE)
        && op.rc.value().is_some()
        && op.rc.value() == op.target_rc.value();
    if succeeded {
        let done = match task.as_str() {
            "promote" => format!("{rsc} promoted on {node}"),
            "demote" => format!("{rsc} demoted on {node}"),
            _ => format!("{rsc} {task} on {node}"),
        };
        return format!("{PREFIX}: {done} ({})", desc.unwrap_or("ok"));
    }
    let why = match (&op.status, desc) {
        // Ran to completion with the wrong exit code: say which.
        (Code::Value(EXEC_DONE), Some(d)) => format!("{d} (rc {})", op.rc),
        (Code::Value(EXEC_DONE), None) => format!("rc {}", op.rc),
        // Timed out, error, ...: the description is the execution status.
        (_, Some(d)) => d.to_string(),
        (status, None) => format!("status {status}, rc {}", op.rc),
    };
    format!("{PREFIX}: {rsc} {task} on {node} failed: {why}")
}

/// The fencer named in a fencing description ("Operation reboot of sms1 by
/// sms2 for ...").
fn fencer(desc: &str) -> Option<&str> {
    let after = desc.split_once(" by ")?.1;
    let who = after
        .split_whitespace()
        .next()?
        .trim_end_matches([':', ',']);
    (!who.is_empty() && !who.starts_with('<')).then_some(who)
}

/// The whole message for `event`, reported by node `reporter`.
pub fn compose(event: &Event, reporter: &str) -> Message {
    let line = summary(event);
    let mut body = String::new();
    let _ = writeln!(body, "{line}\n");
    let mut field = |name: &str, value: &str| {
        let _ = writeln!(body, "{:<13}{value}", format!("{name}:"));
    };
    field("Event", event.kind_name());
    if let Some(n) = &event.node {
        field("Node", n);
    }
    match &event.kind {
        Kind::Resource(op) => {
            field("Resource", &op.rsc);
            let interval = match op.interval_ms.value() {
                Some(0) if op.task == "monitor" => " (probe)".to_string(),
                Some(0) => String::new(),
                Some(ms) => format!(" (every {} s)", ms as f64 / 1000.0),
                None => format!(" (interval {})", op.interval_ms),
            };
            field("Operation", &format!("{}{interval}", op.task));
            field(
                "Result",
                &format!(
                    "{} (rc {}, expected {}, status {})",
                    event.desc.as_deref().unwrap_or("?"),
                    op.rc,
                    op.target_rc,
                    op.status
                ),
            );
        }
        Kind::Fencing { task, rc } => {
            field("Action", task.as_deref().unwrap_or("?"));
            field("Result", &format!("rc {rc}"));
        }
        _ => {}
    }
    if let Some(d) = &event.desc {
        field("Description", d);
    }
    if let Some(t) = &event.timestamp {
        field("Time", t);
    }
    field("Reported by", reporter);
    if let Some(v) = &event.version {
        field("Pacemaker", v);
    }
    let _ = writeln!(body, "\nPacemaker's alert variables:");
    for (k, v) in &event.raw {
        let _ = writeln!(body, "  {k}={v}");
    }
    Message::new(line, body)
}

/// The message `rapidproctl` sends to check that alerts get through.
pub fn test_message(reporter: &str, alert_id: &str) -> Message {
    let line = format!("{PREFIX}: test alert from {reporter} ({alert_id}), please ignore");
    let body = format!(
        "{line}\n\nThis is a test of the Pacemaker alert {alert_id:?}, sent by \
         rapidproctl on {reporter}.\nIf you read this, alerts reach you.\n"
    );
    Message::new(line, body)
}

#[cfg(test)]
mod tests {
    use super::super::event::samples::*;
    use super::*;
    use std::collections::BTreeMap;

    fn sms(env: BTreeMap<String, String>) -> String {
        compose(&Event::from_env(&env).unwrap(), "sms2").sms
    }

    #[test]
    fn resource_lines_say_what_happened_where() {
        assert_eq!(
            sms(promote_ok()),
            "rapidpro-ha: stack promoted on sms2 (ok)"
        );
        assert_eq!(
            sms(resource(
                "stack", "demote", "0", "sms1", "0", "0", "0", "ok"
            )),
            "rapidpro-ha: stack demoted on sms1 (ok)"
        );
        assert_eq!(
            sms(monitor_not_running()),
            "rapidpro-ha: celery monitor on sms1 failed: not running (rc 7)"
        );
        assert_eq!(
            sms(resource(
                "stack", "promote", "0", "sms2", "1", "0", "0", "error"
            )),
            "rapidpro-ha: stack promote on sms2 failed: error (rc 1)"
        );
        assert_eq!(
            sms(resource(
                "uwsgi",
                "start",
                "0",
                "sms2",
                "1",
                "0",
                "2",
                "Timed Out"
            )),
            "rapidpro-ha: uwsgi start on sms2 failed: Timed Out"
        );
        assert_eq!(
            sms(resource("uwsgi", "start", "0", "sms2", "x", "0", "", "")),
            "rapidpro-ha: uwsgi start on sms2 failed: status ?, rc \"x\""
        );
    }

    #[test]
    fn node_and_fencing_lines() {
        assert_eq!(sms(node("sms1", "lost")), "rapidpro-ha: node sms1 lost");
        assert_eq!(sms(node("sms1", "member")), "rapidpro-ha: node sms1 joined");
        assert_eq!(
            sms(fencing("0")),
            "rapidpro-ha: fencing (reboot) of sms1 by sms2: OK"
        );
        assert_eq!(
            sms(fencing("1")),
            "rapidpro-ha: fencing (reboot) of sms1: FAILED (rc 1)"
        );
        assert_eq!(
            sms(attribute()),
            "rapidpro-ha: attribute master-stack of sms1 is now 1000"
        );
    }

    #[test]
    fn an_sms_never_exceeds_160_characters() {
        let long = "x".repeat(400);
        let env = resource(
            &long,
            "monitor",
            "10000",
            "sms1",
            "7",
            "0",
            "0",
            "not running",
        );
        let m = compose(&Event::from_env(&env).unwrap(), "sms2");
        assert_eq!(m.sms.chars().count(), SMS_MAX);
        assert!(m.sms.ends_with("..."));
        assert_eq!(m.subject.chars().count(), SUBJECT_MAX);
        // Non-ASCII is cut on characters, not bytes.
        assert_eq!(shorten(&"é".repeat(200), 160).chars().count(), 160);
        assert_eq!(shorten("short", 160), "short");
    }

    #[test]
    fn the_body_has_the_details_and_the_raw_variables() {
        let m = compose(&Event::from_env(&monitor_not_running()).unwrap(), "sms2");
        assert!(m.body.starts_with(&m.subject), "{}", m.body);
        for want in [
            "Resource:    celery",
            "Operation:   monitor (every 10 s)",
            "Result:      not running (rc 7, expected 0, status 0)",
            "Reported by: sms2",
            "Time:        12:00:01.123456",
            "  CRM_alert_rc=7",
        ] {
            assert!(m.body.contains(want), "{want:?} missing from\n{}", m.body);
        }
        assert!(!m.body.contains("PATH="), "{}", m.body);
    }

    #[test]
    fn control_characters_never_reach_the_subject() {
        let env = resource("a\r\nBcc: x", "start", "0", "sms1", "1", "0", "0", "e");
        let m = compose(&Event::from_env(&env).unwrap(), "sms2");
        assert!(!m.subject.contains('\n') && !m.subject.contains('\r'));
    }

    #[test]
    fn the_test_message_names_the_sender_and_the_alert() {
        let m = test_message("sms1", "rapidpro-alert");
        assert!(m.sms.contains("sms1") && m.sms.contains("rapidpro-alert"));
        assert!(m.sms.chars().count() <= SMS_MAX);
    }
}
