//! The alert Pacemaker reports, read from its `CRM_alert_*` environment.
//!
//! Pacemaker 2.1 runs an alert agent once per event and recipient with the
//! event in environment variables (Pacemaker Explained, "Alert Agents";
//! `lib/lrmd/lrmd_alerts.c` for resource operations). Every value is text;
//! numbers that do not read as numbers are kept as their raw text
//! ([`Code::Malformed`]) so an odd event is still reported rather than
//! dropped. Only a missing `CRM_alert_kind` is an error: then the program was
//! not run by Pacemaker.

use std::collections::BTreeMap;
use std::fmt;

use super::Error;

/// `CRM_alert_kind`: node, fencing, resource or attribute.
pub const KIND: &str = "CRM_alert_kind";
/// `CRM_alert_node`: the node the event is about (for a resource operation,
/// the node that ran it; for fencing, the target).
pub const NODE: &str = "CRM_alert_node";
/// `CRM_alert_desc`: node state (`member`, `lost`), fencing description, or
/// the readable operation result (`ok`, `not running`, `Timed Out`, ...).
pub const DESC: &str = "CRM_alert_desc";
/// `CRM_alert_task`: the operation (`monitor`, `promote`, ...) or the
/// fencing action (`reboot`, `off`).
pub const TASK: &str = "CRM_alert_task";
/// `CRM_alert_rsc`: the resource.
pub const RSC: &str = "CRM_alert_rsc";
/// `CRM_alert_rc`: the OCF exit code of the operation, or the fencing result.
pub const RC: &str = "CRM_alert_rc";
/// `CRM_alert_target_rc`: the exit code the operation was expected to give.
pub const TARGET_RC: &str = "CRM_alert_target_rc";
/// `CRM_alert_status`: the execution status (0 done, 1 cancelled, 2 timed
/// out, 4 error, ...: Pacemaker's `PCMK_EXEC_*`).
pub const STATUS: &str = "CRM_alert_status";
/// `CRM_alert_interval`: the operation's interval in milliseconds (0 for
/// one-shot operations and probes).
pub const INTERVAL: &str = "CRM_alert_interval";
/// `CRM_alert_timestamp`: when the event happened, in the alert's
/// `timestamp-format`.
pub const TIMESTAMP: &str = "CRM_alert_timestamp";
/// `CRM_alert_recipient`: the recipient value configured in the CIB.
pub const RECIPIENT: &str = "CRM_alert_recipient";
/// `CRM_alert_version`: the Pacemaker version that sent the alert.
pub const VERSION: &str = "CRM_alert_version";
/// `CRM_alert_attribute_name`: for attribute alerts.
pub const ATTRIBUTE_NAME: &str = "CRM_alert_attribute_name";
/// `CRM_alert_attribute_value`: for attribute alerts.
pub const ATTRIBUTE_VALUE: &str = "CRM_alert_attribute_value";
/// Prefix of every variable Pacemaker sets for an alert.
pub const PREFIX: &str = "CRM_alert_";

/// Pacemaker's `PCMK_EXEC_DONE`: the operation ran to completion.
pub const EXEC_DONE: i64 = 0;
/// Pacemaker's `PCMK_EXEC_CANCELLED`: a recurring operation was cancelled
/// (every stop, promote and demote cancels the monitors first).
pub const EXEC_CANCELLED: i64 = 1;
/// Pacemaker's `PCMK_EXEC_TIMEOUT`.
pub const EXEC_TIMEOUT: i64 = 2;
/// OCF `not running`: what a probe of a stopped resource returns.
pub const OCF_NOT_RUNNING: i64 = 7;

/// A number from the environment, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    /// The variable read as a number.
    Value(i64),
    /// The variable was not set or empty.
    Missing,
    /// The variable did not read as a number; its text.
    Malformed(String),
}

impl Code {
    fn read(raw: Option<&str>) -> Code {
        match raw.map(str::trim) {
            None | Some("") => Code::Missing,
            Some(s) => s
                .parse()
                .map(Code::Value)
                .unwrap_or_else(|_| Code::Malformed(s.to_string())),
        }
    }

    /// The number, if there is one.
    pub fn value(&self) -> Option<i64> {
        match self {
            Code::Value(v) => Some(*v),
            _ => None,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Code::Value(v) => write!(f, "{v}"),
            Code::Missing => f.write_str("?"),
            Code::Malformed(s) => write!(f, "{s:?}"),
        }
    }
}

/// A resource operation's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceOp {
    /// The resource (`CRM_alert_rsc`), `?` if missing.
    pub rsc: String,
    /// The operation (`CRM_alert_task`), `?` if missing.
    pub task: String,
    /// Interval in milliseconds.
    pub interval_ms: Code,
    /// Exit code.
    pub rc: Code,
    /// Expected exit code.
    pub target_rc: Code,
    /// Execution status.
    pub status: Code,
}

impl ResourceOp {
    /// A probe: a monitor with interval 0.
    pub fn is_probe(&self) -> bool {
        self.task == "monitor" && self.interval_ms.value() == Some(0)
    }
}

/// What kind of event, with the fields that kind has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A node joined (`desc` = `member`) or left (`lost`) the cluster.
    Node,
    /// A node was fenced (or fencing failed).
    Fencing {
        /// The action (`reboot`, `off`), if given.
        task: Option<String>,
        /// The result: 0 means the target is fenced.
        rc: Code,
    },
    /// A resource operation finished.
    Resource(ResourceOp),
    /// A node attribute changed.
    Attribute {
        /// Its name.
        name: Option<String>,
        /// Its new value.
        value: Option<String>,
    },
    /// A kind this agent does not know (a newer Pacemaker); reported as is.
    Unknown(String),
}

/// One alert: the event and the variables common to every kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: Kind,
    /// The node it is about.
    pub node: Option<String>,
    /// Pacemaker's description.
    pub desc: Option<String>,
    /// When, as Pacemaker formatted it.
    pub timestamp: Option<String>,
    /// The recipient value of this invocation.
    pub recipient: Option<String>,
    /// Pacemaker's version.
    pub version: Option<String>,
    /// Every `CRM_alert_*` variable as received, for the email body.
    pub raw: BTreeMap<String, String>,
}

impl Event {
    /// Reads the event from an environment (all variables or only the
    /// `CRM_alert_*` ones). Fails only when `CRM_alert_kind` is missing.
    pub fn from_env(env: &BTreeMap<String, String>) -> Result<Event, Error> {
        let get = |k: &str| {
            env.get(k)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let kind = get(KIND).ok_or_else(|| Error::Environment {
            var: KIND,
            problem: "not set: rapidpro-alert is run by Pacemaker as an alert agent \
                      (see `pcs alert create`)"
                .into(),
        })?;
        let code = |k: &str| Code::read(env.get(k).map(String::as_str));
        let kind = match kind.as_str() {
            "node" => Kind::Node,
            "fencing" => Kind::Fencing {
                task: get(TASK),
                rc: code(RC),
            },
            "resource" => Kind::Resource(ResourceOp {
                rsc: get(RSC).unwrap_or_else(|| "?".into()),
                task: get(TASK).unwrap_or_else(|| "?".into()),
                interval_ms: code(INTERVAL),
                rc: code(RC),
                target_rc: code(TARGET_RC),
                status: code(STATUS),
            }),
            "attribute" => Kind::Attribute {
                name: get(ATTRIBUTE_NAME),
                value: env.get(ATTRIBUTE_VALUE).cloned(),
            },
            _ => Kind::Unknown(kind),
        };
        Ok(Event {
            kind,
            node: get(NODE),
            desc: get(DESC),
            timestamp: get(TIMESTAMP),
            recipient: env.get(RECIPIENT).cloned(),
            version: get(VERSION),
            raw: env
                .iter()
                .filter(|(k, _)| k.starts_with(PREFIX))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }

    /// The kind as Pacemaker names it.
    pub fn kind_name(&self) -> &str {
        match &self.kind {
            Kind::Node => "node",
            Kind::Fencing { .. } => "fencing",
            Kind::Resource(_) => "resource",
            Kind::Attribute { .. } => "attribute",
            Kind::Unknown(k) => k,
        }
    }
}

/// Recorded environments, as Pacemaker 2.1.5 sets them, for tests here and
/// in the sibling modules.
#[cfg(test)]
pub(crate) mod samples {
    use std::collections::BTreeMap;

    /// An environment from `KEY=value` pairs.
    pub fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn common(kind: &str, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut e = env(&[
            ("CRM_alert_kind", kind),
            ("CRM_alert_version", "2.1.5"),
            ("CRM_alert_recipient", "oncall@example.org,+255700000001"),
            ("CRM_alert_timestamp", "12:00:01.123456"),
            ("CRM_alert_timestamp_epoch", "1700000401"),
            ("CRM_alert_timestamp_usec", "123456"),
            ("CRM_alert_node_sequence", "17"),
            ("PATH", "/usr/bin:/bin"),
        ]);
        e.extend(env(extra));
        e
    }

    /// A resource operation on `node`.
    #[allow(clippy::too_many_arguments)]
    pub fn resource(
        rsc: &str,
        task: &str,
        interval: &str,
        node: &str,
        rc: &str,
        target_rc: &str,
        status: &str,
        desc: &str,
    ) -> BTreeMap<String, String> {
        common(
            "resource",
            &[
                ("CRM_alert_rsc", rsc),
                ("CRM_alert_task", task),
                ("CRM_alert_interval", interval),
                ("CRM_alert_node", node),
                ("CRM_alert_nodeid", "1"),
                ("CRM_alert_rc", rc),
                ("CRM_alert_target_rc", target_rc),
                ("CRM_alert_status", status),
                ("CRM_alert_exec_time", "120"),
                ("CRM_alert_desc", desc),
            ],
        )
    }

    /// The stack promoted on sms2.
    pub fn promote_ok() -> BTreeMap<String, String> {
        resource("stack", "promote", "0", "sms2", "0", "0", "0", "ok")
    }

    /// celery's recurring monitor found it stopped.
    pub fn monitor_not_running() -> BTreeMap<String, String> {
        resource(
            "celery",
            "monitor",
            "10000",
            "sms1",
            "7",
            "0",
            "0",
            "not running",
        )
    }

    /// A node event.
    pub fn node(node: &str, desc: &str) -> BTreeMap<String, String> {
        common(
            "node",
            &[
                ("CRM_alert_node", node),
                ("CRM_alert_nodeid", "1"),
                ("CRM_alert_desc", desc),
            ],
        )
    }

    /// sms1 fenced by sms2 (the description as the controller words it).
    pub fn fencing(rc: &str) -> BTreeMap<String, String> {
        let desc = if rc == "0" {
            "Operation reboot of sms1 by sms2 for pacemaker-controld.1023@sms2: OK (complete)"
        } else {
            "Operation reboot of sms1 by <no-one> for pacemaker-controld.1023@sms2: \
             No route to host (No fence device)"
        };
        common(
            "fencing",
            &[
                ("CRM_alert_node", "sms1"),
                ("CRM_alert_task", "reboot"),
                ("CRM_alert_rc", rc),
                ("CRM_alert_desc", desc),
            ],
        )
    }

    /// An attribute update.
    pub fn attribute() -> BTreeMap<String, String> {
        common(
            "attribute",
            &[
                ("CRM_alert_node", "sms1"),
                ("CRM_alert_attribute_name", "master-stack"),
                ("CRM_alert_attribute_value", "1000"),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::samples::*;
    use super::*;

    #[test]
    fn a_resource_event_is_read_with_its_codes() {
        let e = Event::from_env(&monitor_not_running()).unwrap();
        assert_eq!(e.kind_name(), "resource");
        let Kind::Resource(op) = &e.kind else {
            panic!("{e:?}")
        };
        assert_eq!(op.rsc, "celery");
        assert_eq!(op.task, "monitor");
        assert_eq!(op.interval_ms, Code::Value(10000));
        assert_eq!(op.rc, Code::Value(7));
        assert_eq!(op.target_rc, Code::Value(0));
        assert_eq!(op.status, Code::Value(0));
        assert!(!op.is_probe());
        assert_eq!(e.node.as_deref(), Some("sms1"));
        assert_eq!(e.desc.as_deref(), Some("not running"));
        assert_eq!(e.timestamp.as_deref(), Some("12:00:01.123456"));
        assert_eq!(e.version.as_deref(), Some("2.1.5"));
        assert_eq!(
            e.recipient.as_deref(),
            Some("oncall@example.org,+255700000001")
        );
        // Only Pacemaker's variables are kept for the body.
        assert!(e.raw.contains_key("CRM_alert_exec_time"));
        assert!(!e.raw.contains_key("PATH"));
    }

    #[test]
    fn node_fencing_and_attribute_events_are_read() {
        let n = Event::from_env(&node("sms1", "lost")).unwrap();
        assert_eq!(n.kind, Kind::Node);
        assert_eq!(n.desc.as_deref(), Some("lost"));
        let f = Event::from_env(&fencing("0")).unwrap();
        assert_eq!(
            f.kind,
            Kind::Fencing {
                task: Some("reboot".into()),
                rc: Code::Value(0)
            }
        );
        let a = Event::from_env(&attribute()).unwrap();
        assert_eq!(
            a.kind,
            Kind::Attribute {
                name: Some("master-stack".into()),
                value: Some("1000".into())
            }
        );
    }

    #[test]
    fn malformed_and_missing_numbers_keep_their_text() {
        let mut env = monitor_not_running();
        env.insert(RC.into(), "seven".into());
        env.remove(TARGET_RC);
        env.insert(STATUS.into(), " ".into());
        env.remove(RSC);
        let e = Event::from_env(&env).unwrap();
        let Kind::Resource(op) = &e.kind else {
            panic!("{e:?}")
        };
        assert_eq!(op.rc, Code::Malformed("seven".into()));
        assert_eq!(op.target_rc, Code::Missing);
        assert_eq!(op.status, Code::Missing);
        assert_eq!(op.rsc, "?");
        assert_eq!(op.rc.to_string(), "\"seven\"");
        assert_eq!(op.target_rc.to_string(), "?");
    }

    #[test]
    fn an_unknown_kind_is_kept_and_a_missing_kind_is_an_error() {
        let e = Event::from_env(&env(&[("CRM_alert_kind", "quorum")])).unwrap();
        assert_eq!(e.kind, Kind::Unknown("quorum".into()));
        assert_eq!(e.kind_name(), "quorum");
        let err = Event::from_env(&env(&[("PATH", "/bin")])).unwrap_err();
        assert!(
            err.to_string().starts_with("CRM_alert_kind: not set"),
            "{err}"
        );
    }

    #[test]
    fn a_probe_is_a_monitor_with_interval_zero() {
        let e = Event::from_env(&resource(
            "nginx",
            "monitor",
            "0",
            "sms1",
            "7",
            "7",
            "0",
            "not running",
        ))
        .unwrap();
        let Kind::Resource(op) = &e.kind else {
            panic!()
        };
        assert!(op.is_probe());
    }
}
