//! Whether an event is worth an email and an SMS, and which node sends it.
//!
//! Pure functions: the caller reads the membership (`crm_node -l`) and the
//! local node name, and these decide. The rules:
//!
//! - Resource operations: promote and demote always (the primary moved);
//!   any operation that failed (exit code other than expected, or an
//!   execution status other than "done": timeouts, errors); nothing for
//!   successful operations. Two exceptions that are not failures: a
//!   cancelled recurring monitor (Pacemaker cancels monitors before every
//!   stop, promote and demote) and a probe that finds the resource running
//!   (how Pacemaker rediscovers what runs after a cleanup or a restart; it
//!   stops an unwanted copy itself, and a stop that fails is alerted).
//! - Nodes: a lost node, not a joining one.
//! - Fencing: always.
//! - Attributes: never (promotion scores change on every monitor).
//!
//! Node and fencing alerts are delivered on every node, so one node sends
//! them: the alphabetically lowest online member other than the node the
//! event is about (which may be dead). When the membership cannot be read
//! every node sends: a duplicate is better than a lost alert.

use super::event::{Code, Event, Kind, EXEC_CANCELLED, EXEC_DONE, OCF_NOT_RUNNING};
use super::Error;

/// The first decision, from the event alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send from this node.
    Send,
    /// Send from one node only; the event is about node `subject`.
    SendOnce {
        /// The node the event is about.
        subject: String,
    },
    /// Do not send; why.
    Silent(String),
}

/// Whether `event` should be sent.
pub fn classify(event: &Event) -> Verdict {
    let desc = event.desc.as_deref().unwrap_or("");
    let once = || match &event.node {
        Some(n) => Verdict::SendOnce { subject: n.clone() },
        // No subject to dedup on: send.
        None => Verdict::Send,
    };
    match &event.kind {
        Kind::Node if desc == "member" => Verdict::Silent("a node joined".into()),
        Kind::Node => once(),
        Kind::Fencing { .. } => once(),
        Kind::Attribute { .. } => Verdict::Silent("attribute changes are not alerted".into()),
        Kind::Unknown(_) => Verdict::Send,
        Kind::Resource(op) => {
            if op.task == "promote" || op.task == "demote" {
                return Verdict::Send;
            }
            match &op.status {
                Code::Value(EXEC_CANCELLED) => {
                    return Verdict::Silent(format!("{} {} was cancelled", op.rsc, op.task))
                }
                Code::Value(EXEC_DONE) => {}
                // Timed out, error, not installed, ... or unreadable.
                _ => return Verdict::Send,
            }
            match (op.rc.value(), op.target_rc.value()) {
                (Some(rc), Some(target)) if rc == target => {
                    Verdict::Silent(format!("{} {} succeeded", op.rsc, op.task))
                }
                (Some(0 | 8), Some(OCF_NOT_RUNNING)) if op.is_probe() => Verdict::Silent(format!(
                    "the probe found {} running (a cleanup or restart)",
                    op.rsc
                )),
                _ => Verdict::Send,
            }
        }
    }
}

/// A cluster member as `crm_node -l` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its node id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Whether it is in the membership (`member`), not `lost`.
    pub online: bool,
}

/// Reads `crm_node -l` output: one `<id> <name> <state>` line per node.
/// Fails when no line reads that way.
pub fn parse_members(text: &str) -> Result<Vec<Member>, Error> {
    let members: Vec<Member> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (id, name, state) = (f.next()?, f.next()?, f.next()?);
            if f.next().is_some() || name == "(null)" {
                return None;
            }
            Some(Member {
                id: id.to_string(),
                name: name.to_string(),
                online: state == "member",
            })
        })
        .collect();
    if members.is_empty() {
        return Err(Error::Membership(format!(
            "no `<id> <name> <state>` line in crm_node -l output {:?}",
            text.chars().take(200).collect::<String>()
        )));
    }
    Ok(members)
}

/// The node that sends alerts about `subject`: the alphabetically lowest
/// online member other than `subject`.
pub fn sender<'a>(members: &'a [Member], subject: &str) -> Option<&'a str> {
    members
        .iter()
        .filter(|m| m.online && m.name != subject)
        .map(|m| m.name.as_str())
        .min()
}

/// The decision for an event sent once cluster-wide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// This node sends.
    Send,
    /// This node sends although another might too; why.
    SendAnyway(String),
    /// Another node sends; which one.
    Skip(String),
}

/// Whether `local` sends an alert about `subject`, given the membership as
/// read, or why it could not be read.
pub fn decide_once(local: &str, subject: &str, members: Result<&[Member], &str>) -> Decision {
    let members = match members {
        Ok(m) => m,
        Err(why) => {
            return Decision::SendAnyway(format!("could not read the cluster membership ({why})"))
        }
    };
    if !members.iter().any(|m| m.online && m.name == local) {
        return Decision::SendAnyway(format!(
            "this node ({local}) is not an online member in crm_node -l"
        ));
    }
    match sender(members, subject) {
        Some(s) if s == local => Decision::Send,
        Some(s) => Decision::Skip(s.to_string()),
        None => Decision::SendAnyway(format!("no online member other than {subject}")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::event::samples::*;
    use super::*;

    fn verdict(env: std::collections::BTreeMap<String, String>) -> Verdict {
        classify(&Event::from_env(&env).unwrap())
    }

    fn silent(v: Verdict) -> bool {
        matches!(v, Verdict::Silent(_))
    }

    #[test]
    fn promote_and_demote_are_sent_whatever_their_outcome() {
        assert_eq!(verdict(promote_ok()), Verdict::Send);
        for (task, rc, status) in [
            ("demote", "0", "0"),
            ("promote", "1", "0"),
            ("demote", "1", "0"),
            ("promote", "1", "2"),
        ] {
            let env = resource("stack", task, "0", "sms1", rc, "0", status, "x");
            assert_eq!(
                verdict(env),
                Verdict::Send,
                "{task} rc {rc} status {status}"
            );
        }
    }

    #[test]
    fn failed_operations_are_sent() {
        assert_eq!(verdict(monitor_not_running()), Verdict::Send);
        let cases = [
            // start failed
            ("start", "0", "1", "0", "0"),
            // stop failed: the node will be fenced
            ("stop", "0", "1", "0", "0"),
            // the promoted instance failed its monitor
            ("monitor", "15000", "9", "8", "0"),
            // monitor timed out (status 2), rc meaningless
            ("monitor", "10000", "1", "0", "2"),
            // execution error
            ("start", "0", "0", "0", "4"),
            // a probe that found an error
            ("monitor", "0", "5", "7", "0"),
        ];
        for (task, interval, rc, target, status) in cases {
            let env = resource("celery", task, interval, "sms1", rc, target, status, "x");
            assert_eq!(
                verdict(env),
                Verdict::Send,
                "{task}/{interval} rc {rc} target {target} status {status}"
            );
        }
    }

    #[test]
    fn successful_operations_probes_and_cancellations_are_silent() {
        let cases = [
            ("monitor", "10000", "0", "0", "0"),
            ("monitor", "15000", "8", "8", "0"),
            ("monitor", "0", "7", "7", "0"),
            ("start", "0", "0", "0", "0"),
            ("stop", "0", "0", "0", "0"),
            ("notify", "0", "0", "0", "0"),
            // the monitor cancelled before a stop
            ("monitor", "10000", "0", "0", "1"),
            // a probe after a cleanup finds it running
            ("monitor", "0", "0", "7", "0"),
            ("monitor", "0", "8", "7", "0"),
        ];
        for (task, interval, rc, target, status) in cases {
            let env = resource("celery", task, interval, "sms1", rc, target, status, "ok");
            assert!(
                silent(verdict(env)),
                "{task}/{interval} rc {rc} target {target} status {status}"
            );
        }
    }

    #[test]
    fn an_unreadable_result_is_sent() {
        let env = resource("celery", "monitor", "10000", "sms1", "x", "0", "0", "?");
        assert_eq!(verdict(env), Verdict::Send);
        let env = resource("celery", "monitor", "10000", "sms1", "0", "0", "", "?");
        assert_eq!(verdict(env), Verdict::Send);
    }

    #[test]
    fn lost_nodes_and_fencing_are_sent_once_joins_and_attributes_not_at_all() {
        let once = Verdict::SendOnce {
            subject: "sms1".into(),
        };
        assert_eq!(verdict(node("sms1", "lost")), once);
        assert_eq!(verdict(fencing("0")), once);
        assert_eq!(verdict(fencing("1")), once);
        assert!(silent(verdict(node("sms1", "member"))));
        assert!(silent(verdict(attribute())));
        // An unknown state or kind is reported.
        assert_eq!(verdict(node("sms1", "in limbo")), once);
        assert_eq!(verdict(env(&[("CRM_alert_kind", "quorum")])), Verdict::Send);
        // No node to dedup on: every node sends.
        assert_eq!(
            verdict(env(&[
                ("CRM_alert_kind", "node"),
                ("CRM_alert_desc", "lost")
            ])),
            Verdict::Send
        );
    }

    const LIST: &str = "1 sms1 lost\n2 sms2 member\n3 sms3 member\n";

    #[test]
    fn crm_node_list_output_is_parsed() {
        let m = parse_members(LIST).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(
            m[0],
            Member {
                id: "1".into(),
                name: "sms1".into(),
                online: false
            }
        );
        assert!(m[1].online && m[2].online);
        // Odd lines are skipped; nothing readable is an error.
        assert_eq!(parse_members("garbage\n2 sms2 member\n").unwrap().len(), 1);
        assert!(parse_members("").is_err());
        assert!(parse_members("error: Could not connect").is_err());
    }

    #[test]
    fn the_lowest_online_member_other_than_the_subject_sends() {
        let m = parse_members(LIST).unwrap();
        assert_eq!(sender(&m, "sms1"), Some("sms2"));
        assert_eq!(sender(&m, "sms2"), Some("sms3"));
        assert_eq!(decide_once("sms2", "sms1", Ok(&m)), Decision::Send);
        assert_eq!(
            decide_once("sms3", "sms1", Ok(&m)),
            Decision::Skip("sms2".into())
        );
        // Fencing of sms2 reported on sms2 itself (still up): sms3 sends.
        assert_eq!(
            decide_once("sms2", "sms2", Ok(&m)),
            Decision::Skip("sms3".into())
        );
        assert_eq!(decide_once("sms3", "sms2", Ok(&m)), Decision::Send);
    }

    #[test]
    fn without_a_usable_membership_every_node_sends() {
        assert!(matches!(
            decide_once("sms2", "sms1", Err("crm_node: no cluster answered")),
            Decision::SendAnyway(why) if why.contains("no cluster answered")
        ));
        let alone = parse_members("1 sms1 member\n2 sms2 lost\n").unwrap();
        // Only the subject is online.
        assert!(matches!(
            decide_once("sms1", "sms1", Ok(&alone)),
            Decision::SendAnyway(_)
        ));
        // The local name is not what the cluster calls this node.
        let m = parse_members(LIST).unwrap();
        assert!(matches!(
            decide_once("host-x", "sms1", Ok(&m)),
            Decision::SendAnyway(why) if why.contains("host-x")
        ));
    }
}
