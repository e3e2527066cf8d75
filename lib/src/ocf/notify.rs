//! Clone notifications (`notify=true`).
//!
//! Pacemaker passes the notification's type and operation, and space
//! separated lists of instances and node names for each role change. An
//! "empty" list can be a single space; legacy `master_*`/`slave_*` names are
//! set beside `promoted_*`/`unpromoted_*`. Parsing never fails: an unknown
//! type or operation makes the notification one the agent ignores.

/// `pre` or `post`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyKind {
    /// Before the operation.
    Pre,
    /// After the operation.
    Post,
}

/// The clone operation being notified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyOp {
    /// Instances start.
    Start,
    /// Instances stop.
    Stop,
    /// An instance is promoted.
    Promote,
    /// An instance is demoted.
    Demote,
}

/// One notification, with the node-name lists (`*_uname`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// pre or post.
    pub kind: NotifyKind,
    /// The operation.
    pub operation: NotifyOp,
    /// Nodes whose instance starts.
    pub start: Vec<String>,
    /// Nodes whose instance stops.
    pub stop: Vec<String>,
    /// Nodes whose instance is active.
    pub active: Vec<String>,
    /// Nodes whose instance is promoted by this operation.
    pub promote: Vec<String>,
    /// Nodes whose instance is demoted by this operation.
    pub demote: Vec<String>,
    /// Nodes whose instance is promoted now.
    pub promoted: Vec<String>,
    /// Nodes whose instance is unpromoted now.
    pub unpromoted: Vec<String>,
    /// Every node of the cluster.
    pub all: Vec<String>,
    /// Nodes available to run the resource.
    pub available: Vec<String>,
}

/// Splits a Pacemaker list; a lone space is an empty list.
pub fn split_list(v: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in v.split_whitespace() {
        if !out.iter().any(|n| n == name) {
            out.push(name.to_string());
        }
    }
    out
}

impl Notify {
    /// Reads a notification from meta attributes (names after
    /// `OCF_RESKEY_CRM_meta_`). `None` when this is not a notification or
    /// its type or operation is unknown.
    pub fn from_meta<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Option<Notify> {
        let kind = match get("notify_type")?.trim() {
            "pre" => NotifyKind::Pre,
            "post" => NotifyKind::Post,
            _ => return None,
        };
        let operation = match get("notify_operation")?.trim() {
            "start" => NotifyOp::Start,
            "stop" => NotifyOp::Stop,
            "promote" => NotifyOp::Promote,
            "demote" => NotifyOp::Demote,
            _ => return None,
        };
        let list = |names: &[&str]| uname_list(&get, names);
        Some(Notify {
            kind,
            operation,
            start: list(&["start"]),
            stop: list(&["stop"]),
            active: list(&["active"]),
            promote: list(&["promote"]),
            demote: list(&["demote"]),
            promoted: list(&["promoted", "master"]),
            unpromoted: list(&["unpromoted", "slave"]),
            all: get("notify_all_uname").map(split_list).unwrap_or_default(),
            available: get("notify_available_uname")
                .map(split_list)
                .unwrap_or_default(),
        })
    }
}

/// The first of the `notify_{name}_uname` lists `names` that is set and not
/// empty (a new name, then its legacy alias); empty if none is.
fn uname_list<'a>(get: &impl Fn(&str) -> Option<&'a str>, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .filter_map(|n| get(&format!("notify_{n}_uname")))
        .map(split_list)
        .find(|l| !l.is_empty())
        .unwrap_or_default()
}

/// The lists Pacemaker also gives the start, stop, promote and demote
/// actions themselves of a clone with `notify=true`: the same
/// `notify_*_uname` meta attributes as its notifications, for the
/// transition that runs the action (Pacemaker 2.1 adds them to the
/// original actions as well; recorded in this module's tests).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TransitionLists {
    /// Nodes whose instance stops in this transition (a lost node's stop is
    /// implied by its fencing, and listed).
    pub stop: Vec<String>,
    /// Nodes whose instance is demoted in this transition.
    pub demote: Vec<String>,
    /// Nodes whose instance was promoted when the transition was computed.
    pub promoted: Vec<String>,
}

impl TransitionLists {
    /// Reads the lists from an action's meta attributes (names after
    /// `OCF_RESKEY_CRM_meta_`); `None` when they are absent (`notify=false`).
    pub fn from_meta<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Option<TransitionLists> {
        get("notify_promoted_uname").or_else(|| get("notify_master_uname"))?;
        Some(TransitionLists {
            stop: uname_list(&get, &["stop"]),
            demote: uname_list(&get, &["demote"]),
            promoted: uname_list(&get, &["promoted", "master"]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Meta attributes as Pacemaker passes them (names after
    /// `OCF_RESKEY_CRM_meta_`).
    fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn notify(pairs: &[(&str, &str)]) -> Option<Notify> {
        let m = meta(pairs);
        Notify::from_meta(|k| m.get(k).map(String::as_str))
    }

    #[test]
    fn a_pre_promote_notification_lists_the_nodes() {
        // Recorded from Pacemaker 2.1.5 with three nodes.
        let n = notify(&[
            ("notify_type", "pre"),
            ("notify_operation", "promote"),
            ("notify_promote_uname", "node2 "),
            ("notify_promoted_uname", " "),
            ("notify_master_uname", " "),
            ("notify_unpromoted_uname", "node2 node3 "),
            ("notify_slave_uname", "node2 node3 "),
            ("notify_active_uname", "node2 node3 "),
            ("notify_all_uname", "node1 node2 node3"),
        ])
        .unwrap();
        assert_eq!(n.kind, NotifyKind::Pre);
        assert_eq!(n.operation, NotifyOp::Promote);
        assert_eq!(n.promote, ["node2"]);
        assert!(n.promoted.is_empty());
        assert_eq!(n.unpromoted, ["node2", "node3"]);
        assert_eq!(n.all, ["node1", "node2", "node3"]);
    }

    #[test]
    fn legacy_master_and_slave_lists_stand_in_for_missing_new_ones() {
        let n = notify(&[
            ("notify_type", "post"),
            ("notify_operation", "demote"),
            ("notify_master_uname", "node1"),
            ("notify_slave_uname", "node2"),
        ])
        .unwrap();
        assert_eq!(n.promoted, ["node1"]);
        assert_eq!(n.unpromoted, ["node2"]);
    }

    #[test]
    fn unknown_or_missing_type_is_not_a_notification() {
        assert!(notify(&[]).is_none());
        assert!(notify(&[("notify_type", "during"), ("notify_operation", "start")]).is_none());
        assert!(notify(&[("notify_type", "pre"), ("notify_operation", "migrate")]).is_none());
    }

    fn lists(pairs: &[(&str, &str)]) -> Option<TransitionLists> {
        let m = meta(pairs);
        TransitionLists::from_meta(|k| m.get(k).map(String::as_str))
    }

    #[test]
    fn a_promote_action_carries_its_transitions_lists() {
        // Recorded from Pacemaker 2.1.5 (crm_simulate -G of a 3-node
        // power-off's transition): the promote of node2, node1 fenced.
        let t = lists(&[
            ("notify_demote_uname", "node1"),
            ("notify_master_uname", "node1"),
            ("notify_promote_uname", "node2"),
            ("notify_promoted_uname", "node1"),
            ("notify_slave_uname", "node3 node2"),
            ("notify_start_uname", " "),
            ("notify_stop_uname", "node1"),
            ("notify_unpromoted_uname", "node3 node2"),
        ])
        .unwrap();
        assert_eq!(t.promoted, ["node1"]);
        assert_eq!(t.demote, ["node1"]);
        assert_eq!(t.stop, ["node1"]);
    }

    #[test]
    fn an_action_without_notify_lists_has_no_transition_lists() {
        assert!(lists(&[]).is_none());
        assert!(lists(&[("notify_stop_uname", "node1")]).is_none());
        let t = lists(&[("notify_promoted_uname", " ")]).unwrap();
        assert!(t.promoted.is_empty() && t.stop.is_empty());
    }

    #[test]
    fn duplicate_names_and_odd_spacing_are_tolerated() {
        assert_eq!(split_list(" a \t b  a\n"), ["a", "b"]);
        assert!(split_list(" ").is_empty());
    }
}
