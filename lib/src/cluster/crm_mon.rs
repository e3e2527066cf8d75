//! The cluster's state as `crm_mon --one-shot --output-as=xml` reports it:
//! nodes, resources and clones with their roles, node attributes, failed
//! operations and operations in flight. This is what `rapidproctl status`
//! shows, and what an operator would otherwise read from `crm_mon -1`.
//!
//! Read against Pacemaker 2.1.5 (`api-version="2.25"`); the fixtures under
//! `fixtures/` were captured from it on offline CIBs built by
//! `fixtures/make-cib.sh`. The legacy role names (`Master`, `Slave`) of older
//! versions are accepted.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::cmd::{self, CommandError};
use crate::deadline::Deadline;

use super::xml::{self, Element};
use super::{
    classify, says_no_cluster, Cluster, ClusterError, NodeName, CALL_TIMEOUT, EXIT_DISCONNECT,
};

const CRM_MON: &str = "crm_mon";
/// Pacemaker's `PCMK_OCF_UNKNOWN`, the result recorded for an operation still
/// in flight (with `record-pending`, its call id is -1).
const RC_PENDING: i32 = 193;

/// A resource instance's role, as `crm_mon` names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Role {
    /// Not running.
    Stopped,
    /// Running (a primitive, or a clone instance that is not promotable).
    Started,
    /// Running unpromoted (legacy name `Slave`).
    Unpromoted,
    /// Running promoted (legacy name `Master`).
    Promoted,
    /// Being started (an operation in flight, with `record-pending`).
    Starting,
    /// Being stopped.
    Stopping,
    /// Being promoted.
    Promoting,
    /// Being demoted.
    Demoting,
    /// Being migrated.
    Migrating,
    /// Any other name, kept as printed.
    Other(String),
}

impl Role {
    /// Reads a role name; never fails (unknown names become [`Role::Other`]).
    pub fn from_name(name: &str) -> Role {
        match name {
            "Stopped" => Role::Stopped,
            "Started" => Role::Started,
            "Unpromoted" | "Slave" => Role::Unpromoted,
            "Promoted" | "Master" => Role::Promoted,
            "Starting" => Role::Starting,
            "Stopping" => Role::Stopping,
            "Promoting" => Role::Promoting,
            "Demoting" => Role::Demoting,
            "Migrating" => Role::Migrating,
            other => Role::Other(other.to_string()),
        }
    }

    /// Whether an operation is changing the role right now.
    pub fn is_pending(&self) -> bool {
        matches!(
            self,
            Role::Starting | Role::Stopping | Role::Promoting | Role::Demoting | Role::Migrating
        )
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Stopped => "Stopped",
            Role::Started => "Started",
            Role::Unpromoted => "Unpromoted",
            Role::Promoted => "Promoted",
            Role::Starting => "Starting",
            Role::Stopping => "Stopping",
            Role::Promoting => "Promoting",
            Role::Demoting => "Demoting",
            Role::Migrating => "Migrating",
            Role::Other(s) => s,
        })
    }
}

impl Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One node, from `<nodes><node>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    /// Its name.
    pub name: NodeName,
    /// Its cluster id.
    pub id: String,
    /// A cluster member with a running controller.
    pub online: bool,
    /// In standby: runs no resources.
    pub standby: bool,
    /// Put in standby by a failure (`on-fail=standby`).
    pub standby_onfail: bool,
    /// In maintenance: its resources are not managed.
    pub maintenance: bool,
    /// Joining, not yet a full member.
    pub pending: bool,
    /// In an unknown state, to be fenced.
    pub unclean: bool,
    /// Shutting down.
    pub shutdown: bool,
    /// The Designated Controller.
    pub is_dc: bool,
    /// How many resource instances run there.
    pub resources_running: u32,
    /// `member`, `remote` or `ping`.
    pub kind: String,
    /// The node's health as Pacemaker computes it from its `#health-*`
    /// attributes (`green`, `yellow`, `red`), when `crm_mon` reports it.
    /// crm_mon itself never lists attributes whose name starts with `#`.
    pub health: Option<String>,
}

/// One resource instance: a primitive, or one instance of a clone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceStatus {
    /// The resource's id (a clone's instances all share the primitive's id).
    pub id: String,
    /// `class:provider:type`, such as `ocf:rapidpro:stack`.
    pub resource_agent: String,
    /// Its current role.
    pub role: Role,
    /// The configured `target-role`, if any.
    pub target_role: Option<String>,
    /// Running somewhere.
    pub active: bool,
    /// Running but no longer configured.
    pub orphaned: bool,
    /// Blocked: Pacemaker will not act on it (such as after a failed stop without fencing).
    pub blocked: bool,
    /// Managed by the cluster (not `is-managed=false`, not on a node in maintenance).
    pub managed: bool,
    /// Has failed.
    pub failed: bool,
    /// Failed, with the failure ignored (`on-fail=ignore`).
    pub failure_ignored: bool,
    /// Where it runs (more than one node only in trouble).
    pub nodes: Vec<NodeName>,
    /// The group or bundle it belongs to, if any.
    pub group: Option<String>,
    /// The operation in flight, when `crm_mon` names one.
    pub pending: Option<String>,
}

impl ResourceStatus {
    /// The node it runs on (the first, if several).
    pub fn node(&self) -> Option<&NodeName> {
        self.nodes.first()
    }
}

/// A clone, promotable or not, with its instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloneStatus {
    /// The clone's id.
    pub id: String,
    /// A promotable clone (`multi_state` in the XML).
    pub promotable: bool,
    /// Instances are distinct (`globally-unique`).
    pub unique: bool,
    /// Managed by the cluster.
    pub managed: bool,
    /// Disabled (`target-role=Stopped`).
    pub disabled: bool,
    /// Some instance failed.
    pub failed: bool,
    /// The configured `target-role`, if any.
    pub target_role: Option<String>,
    /// One entry per instance, running or not (a cloned group gives one
    /// entry per member and instance).
    pub instances: Vec<ResourceStatus>,
}

impl CloneStatus {
    /// The nodes where an instance is promoted.
    pub fn promoted_nodes(&self) -> Vec<&NodeName> {
        self.instances_in(&Role::Promoted)
    }

    /// The nodes where an instance is unpromoted.
    pub fn unpromoted_nodes(&self) -> Vec<&NodeName> {
        self.instances_in(&Role::Unpromoted)
    }

    /// The instance running on `node`, if any.
    pub fn instance_on(&self, node: &str) -> Option<&ResourceStatus> {
        self.instances
            .iter()
            .find(|r| r.nodes.iter().any(|n| n.as_str() == node))
    }

    fn instances_in(&self, role: &Role) -> Vec<&NodeName> {
        self.instances
            .iter()
            .filter(|r| &r.role == role)
            .filter_map(ResourceStatus::node)
            .collect()
    }
}

/// A failed operation, from `<failures><failure>` ("Failed Resource Actions").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The operation key, such as `stack_monitor_11000`.
    pub op_key: String,
    /// Where it failed.
    pub node: NodeName,
    /// The action: `monitor`, `start`, `promote`...
    pub task: Option<String>,
    /// The result in words (`error`, `not running`, `promoted`...).
    pub exit_status: String,
    /// The agent's exit reason (its `ocf-exit-reason:` line), often empty.
    pub exit_reason: String,
    /// The agent's exit code (OCF: 1 generic, 7 not running, 9 failed promoted...).
    pub exit_code: Option<i32>,
    /// The execution status: `complete`, `Timed Out`, `Error`...
    pub status: String,
    /// The call id.
    pub call: Option<i64>,
    /// The recurring interval in milliseconds (0 for a one-off action).
    pub interval_ms: Option<u64>,
    /// When the result last changed, as printed.
    pub last_rc_change: Option<String>,
}

impl Failure {
    /// The resource, taken from the operation key when its task and interval are known.
    pub fn resource(&self) -> Option<&str> {
        let suffix = format!("_{}_{}", self.task.as_deref()?, self.interval_ms?);
        self.op_key.strip_suffix(&suffix)
    }
}

/// An operation in flight (recorded with `record-pending`, the default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingOperation {
    /// Where it runs.
    pub node: NodeName,
    /// The resource.
    pub resource: String,
    /// The action.
    pub task: String,
    /// The recurring interval in milliseconds (0 for a one-off action).
    pub interval_ms: u64,
}

/// The cluster option `no-quorum-policy`, as crm_mon reports it (its
/// default, `stop`, included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NoQuorumPolicy {
    /// Stop every resource of the partition.
    Stop,
    /// Demote promotable resources, stop the others.
    Demote,
    /// Keep what runs; start nothing.
    Freeze,
    /// Carry on as if quorate.
    Ignore,
    /// Fence every node of the partition (`fence` in Pacemaker 3).
    Suicide,
}

impl NoQuorumPolicy {
    /// The policy crm_mon's `no-quorum-policy` value names.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "stop" => Self::Stop,
            "demote" => Self::Demote,
            "freeze" => Self::Freeze,
            "ignore" => Self::Ignore,
            "suicide" | "fence" => Self::Suicide,
            _ => return None,
        })
    }

    /// Whether Pacemaker takes the promoted role away from a partition
    /// that loses quorum (by a stop, a demote or a fence).
    pub fn ends_the_promoted_role(self) -> bool {
        matches!(self, Self::Stop | Self::Demote | Self::Suicide)
    }
}

/// The cluster's state from one `crm_mon` run.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ClusterStatus {
    /// The Designated Controller, if one is elected.
    pub dc: Option<NodeName>,
    /// Whether the partition has quorum.
    pub with_quorum: bool,
    /// Cluster-wide maintenance mode.
    pub maintenance_mode: bool,
    /// Whether fencing is enabled.
    pub stonith_enabled: bool,
    /// What Pacemaker does with resources in a partition without quorum;
    /// `None` when crm_mon does not say, or says a value this agent does
    /// not know.
    pub no_quorum_policy: Option<NoQuorumPolicy>,
    /// Every node.
    pub nodes: Vec<NodeStatus>,
    /// Resources outside clones (group members included).
    pub resources: Vec<ResourceStatus>,
    /// Clones, promotable or not.
    pub clones: Vec<CloneStatus>,
    /// Node attributes (`crm_mon -A`), by node and name.
    pub node_attributes: BTreeMap<NodeName, BTreeMap<String, String>>,
    /// Failed operations.
    pub failures: Vec<Failure>,
    /// Operations in flight.
    pub pending: Vec<PendingOperation>,
}

impl ClusterStatus {
    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&NodeStatus> {
        self.nodes.iter().find(|n| n.name.as_str() == name)
    }

    /// The clone called `id`.
    pub fn find_clone(&self, id: &str) -> Option<&CloneStatus> {
        self.clones.iter().find(|c| c.id == id)
    }

    /// The resource (outside clones) called `id`.
    pub fn resource(&self, id: &str) -> Option<&ResourceStatus> {
        self.resources.iter().find(|r| r.id == id)
    }

    /// Node attribute `name` of `node`.
    pub fn node_attribute(&self, node: &str, name: &str) -> Option<&str> {
        self.node_attributes
            .iter()
            .find(|(n, _)| n.as_str() == node)
            .and_then(|(_, attrs)| attrs.get(name))
            .map(String::as_str)
    }

    /// The nodes that are online.
    pub fn online_nodes(&self) -> Vec<&NodeName> {
        self.nodes
            .iter()
            .filter(|n| n.online)
            .map(|n| &n.name)
            .collect()
    }
}

impl Cluster {
    /// Runs `crm_mon --one-shot --output-as=xml` and reads its answer. With
    /// no cluster, fails with [`ClusterError::NoCluster`].
    pub fn status(&self, deadline: &Deadline) -> Result<ClusterStatus, ClusterError> {
        let spec = self
            .tool(CRM_MON, deadline.cap(CALL_TIMEOUT))
            .args(["--one-shot", "--output-as=xml"]);
        match cmd::run(&spec) {
            Ok(out) => parse_crm_mon(&out.stdout),
            Err(e) => {
                // crm_mon reports its own failures inside the XML
                // (`<status code="102" message="Not connected"><errors>...`).
                if let CommandError::Failed { stdout, .. } = &e {
                    if stdout.contains("<pacemaker-result") {
                        parse_crm_mon(stdout)?;
                    }
                }
                Err(classify(&spec, e))
            }
        }
    }
}

/// Reads `crm_mon --output-as=xml` output.
///
/// When the output itself reports a failure (`<status code>` other than 0),
/// that becomes the error: [`ClusterError::NoCluster`] for "not connected",
/// [`ClusterError::Reported`] otherwise. Malformed, truncated or unexpected
/// XML gives [`ClusterError::Parse`]; unknown elements and attributes are
/// ignored.
pub fn parse_crm_mon(xml_text: &str) -> Result<ClusterStatus, ClusterError> {
    let root = xml::parse(xml_text)
        .map_err(|e| ClusterError::parse(format!("crm_mon XML ({e})"), xml_text))?;
    if root.name != "pacemaker-result" && root.name != "crm_mon" {
        return Err(ClusterError::parse(
            format!("crm_mon XML (root element <{}>)", root.name),
            xml_text,
        ));
    }
    check_status(&root)?;
    let mut st = ClusterStatus::default();
    if let Some(summary) = root.child("summary") {
        read_summary(summary, &mut st)?;
    }
    if let Some(nodes) = root.child("nodes") {
        for n in nodes.children_named("node") {
            st.nodes.push(read_node(n)?);
        }
    }
    if let Some(resources) = root.child("resources") {
        read_resources(resources, &mut st)?;
    }
    if let Some(attrs) = root.child("node_attributes") {
        for n in attrs.children_named("node") {
            let name = node_name(n, "name")?;
            let map = st.node_attributes.entry(name).or_default();
            for a in n.children_named("attribute") {
                map.insert(
                    required(a, "name")?.to_string(),
                    a.attr("value").unwrap_or("").to_string(),
                );
            }
        }
    }
    if let Some(history) = root.child("node_history") {
        read_pending(history, &mut st)?;
    }
    if let Some(failures) = root.child("failures") {
        for f in failures.children_named("failure") {
            st.failures.push(read_failure(f)?);
        }
    }
    Ok(st)
}

fn check_status(root: &Element) -> Result<(), ClusterError> {
    let Some(status) = root.child("status") else {
        return Ok(());
    };
    let code: i32 = number(status, "code")?.unwrap_or(0);
    if code == 0 {
        return Ok(());
    }
    let errors: Vec<&str> = status
        .child("errors")
        .map(|e| e.children_named("error").map(|e| e.text.trim()).collect())
        .unwrap_or_default();
    let message = if errors.is_empty() {
        status.attr("message").unwrap_or("").to_string()
    } else {
        errors.join("; ")
    };
    if code == EXIT_DISCONNECT || says_no_cluster(&message) {
        Err(ClusterError::NoCluster {
            tool: CRM_MON.to_string(),
            detail: message,
        })
    } else {
        Err(ClusterError::Reported {
            tool: CRM_MON.to_string(),
            code,
            message,
        })
    }
}

fn read_summary(summary: &Element, st: &mut ClusterStatus) -> Result<(), ClusterError> {
    if let Some(dc) = summary.child("current_dc") {
        if flag(dc, "present")? && dc.attr("name").is_some() {
            st.dc = Some(node_name(dc, "name")?);
        }
        st.with_quorum = flag(dc, "with_quorum")?;
    }
    if let Some(opts) = summary.child("cluster_options") {
        st.maintenance_mode = flag(opts, "maintenance-mode")?;
        st.stonith_enabled = flag(opts, "stonith-enabled")?;
        st.no_quorum_policy = opts
            .attr("no-quorum-policy")
            .and_then(NoQuorumPolicy::parse);
    }
    Ok(())
}

fn read_node(n: &Element) -> Result<NodeStatus, ClusterError> {
    Ok(NodeStatus {
        name: node_name(n, "name")?,
        id: n.attr("id").unwrap_or("").to_string(),
        online: flag(n, "online")?,
        standby: flag(n, "standby")?,
        standby_onfail: flag(n, "standby_onfail")?,
        maintenance: flag(n, "maintenance")?,
        pending: flag(n, "pending")?,
        unclean: flag(n, "unclean")?,
        shutdown: flag(n, "shutdown")?,
        is_dc: flag(n, "is_dc")?,
        resources_running: number(n, "resources_running")?.unwrap_or(0),
        kind: n.attr("type").unwrap_or("member").to_string(),
        health: n.attr("health").map(str::to_string),
    })
}

fn read_resources(resources: &Element, st: &mut ClusterStatus) -> Result<(), ClusterError> {
    for item in &resources.children {
        match item.name.as_str() {
            "resource" => st.resources.push(read_resource(item, None)?),
            "group" => read_group(item, &mut st.resources)?,
            "clone" => st.clones.push(read_clone(item)?),
            "bundle" => {
                let id = required(item, "id")?;
                for replica in item.children_named("replica") {
                    for r in replica.children_named("resource") {
                        st.resources.push(read_resource(r, Some(id))?);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn read_group(group: &Element, into: &mut Vec<ResourceStatus>) -> Result<(), ClusterError> {
    let id = required(group, "id")?;
    for r in group.children_named("resource") {
        into.push(read_resource(r, Some(id))?);
    }
    Ok(())
}

fn read_clone(c: &Element) -> Result<CloneStatus, ClusterError> {
    let mut instances = Vec::new();
    for item in &c.children {
        match item.name.as_str() {
            "resource" => instances.push(read_resource(item, None)?),
            "group" => read_group(item, &mut instances)?,
            _ => {}
        }
    }
    Ok(CloneStatus {
        id: required(c, "id")?.to_string(),
        promotable: flag(c, "multi_state")?,
        unique: flag(c, "unique")?,
        managed: flag_or(c, "managed", true)?,
        disabled: flag(c, "disabled")?,
        failed: flag(c, "failed")?,
        target_role: c.attr("target_role").map(str::to_string),
        instances,
    })
}

fn read_resource(r: &Element, group: Option<&str>) -> Result<ResourceStatus, ClusterError> {
    let nodes = r
        .children_named("node")
        .map(|n| node_name(n, "name"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ResourceStatus {
        id: required(r, "id")?.to_string(),
        resource_agent: r.attr("resource_agent").unwrap_or("").to_string(),
        role: Role::from_name(required(r, "role")?),
        target_role: r.attr("target_role").map(str::to_string),
        active: flag(r, "active")?,
        orphaned: flag(r, "orphaned")?,
        blocked: flag(r, "blocked")?,
        managed: flag_or(r, "managed", true)?,
        failed: flag(r, "failed")?,
        failure_ignored: flag(r, "failure_ignored")?,
        nodes,
        group: group.map(str::to_string),
        pending: r.attr("pending").map(str::to_string),
    })
}

fn read_pending(history: &Element, st: &mut ClusterStatus) -> Result<(), ClusterError> {
    for n in history.children_named("node") {
        let node = node_name(n, "name")?;
        for rh in n.children_named("resource_history") {
            let resource = required(rh, "id")?;
            for op in rh.children_named("operation_history") {
                let call: Option<i64> = number(op, "call")?;
                let rc: Option<i32> = number(op, "rc")?;
                if call == Some(-1) || rc == Some(RC_PENDING) {
                    st.pending.push(PendingOperation {
                        node: node.clone(),
                        resource: resource.to_string(),
                        task: required(op, "task")?.to_string(),
                        interval_ms: number(op, "interval")?.unwrap_or(0),
                    });
                }
            }
        }
    }
    Ok(())
}

fn read_failure(f: &Element) -> Result<Failure, ClusterError> {
    Ok(Failure {
        op_key: required(f, "op_key")?.to_string(),
        node: node_name(f, "node")?,
        task: f.attr("task").map(str::to_string),
        exit_status: f.attr("exitstatus").unwrap_or("").to_string(),
        exit_reason: f.attr("exitreason").unwrap_or("").to_string(),
        exit_code: number(f, "exitcode")?,
        status: f.attr("status").unwrap_or("").to_string(),
        call: number(f, "call")?,
        interval_ms: number(f, "interval")?,
        last_rc_change: f.attr("last-rc-change").map(str::to_string),
    })
}

/// The element as it might have been printed, for error messages.
fn describe(e: &Element) -> String {
    let mut s = format!("<{}", e.name);
    for (k, v) in &e.attrs {
        s.push_str(&format!(" {k}=\"{v}\""));
    }
    s.push('>');
    s
}

fn required<'a>(e: &'a Element, name: &str) -> Result<&'a str, ClusterError> {
    e.attr(name).ok_or_else(|| {
        ClusterError::parse(
            format!("crm_mon XML (<{}> without {name})", e.name),
            describe(e),
        )
    })
}

/// A node name attribute; an unusable one is an error about crm_mon's XML
/// that shows the element (not only the bad name, out of its context).
fn node_name(e: &Element, attr: &str) -> Result<NodeName, ClusterError> {
    NodeName::new(required(e, attr)?).map_err(|err| match err {
        ClusterError::Parse { what, .. } => ClusterError::parse(
            format!("crm_mon XML ({attr} of <{}> is not {what})", e.name),
            describe(e),
        ),
        other => other,
    })
}

/// A boolean attribute, `false` when absent.
fn flag(e: &Element, name: &str) -> Result<bool, ClusterError> {
    flag_or(e, name, false)
}

fn flag_or(e: &Element, name: &str, default: bool) -> Result<bool, ClusterError> {
    match e.attr(name) {
        None => Ok(default),
        Some("true" | "1" | "yes") => Ok(true),
        Some("false" | "0" | "no") => Ok(false),
        Some(_) => Err(ClusterError::parse(
            format!("crm_mon XML ({name} of <{}> is not a boolean)", e.name),
            describe(e),
        )),
    }
}

/// A numeric attribute, `None` when absent; a trailing `ms` (as in
/// `interval="10000ms"`) is ignored.
fn number<T: FromStr>(e: &Element, name: &str) -> Result<Option<T>, ClusterError> {
    match e.attr(name) {
        None => Ok(None),
        Some(v) => {
            let digits = v.strip_suffix("ms").unwrap_or(v);
            digits.parse().map(Some).map_err(|_| {
                ClusterError::parse(
                    format!("crm_mon XML ({name} of <{}> is not a number)", e.name),
                    describe(e),
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::testing::OfflineCib;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    /// A 3-node cluster: node1 promoted with the VIP, node2 unpromoted with a
    /// failed monitor, node3 offline and in standby.
    const PROMOTED: &str = include_str!("fixtures/crm_mon-promoted-failed-monitor.xml");
    /// node1 promoting (operation in flight), node2 in maintenance, the VIP
    /// unmanaged after a start that timed out.
    const PROMOTING: &str = include_str!("fixtures/crm_mon-promoting.xml");
    /// crm_mon with no cluster running.
    const NO_CLUSTER: &str = include_str!("fixtures/crm_mon-no-cluster.xml");
    /// Recorded in a running 2-node namespaced cluster (tests/harness) after
    /// a switchover: node2 promoted with the VIP, node1 unpromoted.
    const LIVE_STEADY: &str = include_str!("fixtures/crm_mon-live-steady.xml");
    /// The same cluster after Redis was killed on node1: a failed monitor.
    const LIVE_FAILED: &str = include_str!("fixtures/crm_mon-live-failed-monitor.xml");
    /// The same cluster after node2 (the primary) was powered off and fenced.
    const LIVE_OFFLINE: &str = include_str!("fixtures/crm_mon-live-offline.xml");

    #[test]
    fn no_quorum_policy_reads_pacemakers_values_and_nothing_else() {
        for (v, want) in [
            ("stop", Some(NoQuorumPolicy::Stop)),
            ("demote", Some(NoQuorumPolicy::Demote)),
            ("freeze", Some(NoQuorumPolicy::Freeze)),
            ("ignore", Some(NoQuorumPolicy::Ignore)),
            ("suicide", Some(NoQuorumPolicy::Suicide)),
            ("fence", Some(NoQuorumPolicy::Suicide)),
            ("Stop", None),
            ("", None),
        ] {
            assert_eq!(NoQuorumPolicy::parse(v), want, "{v:?}");
        }
        let ends: Vec<bool> = [
            NoQuorumPolicy::Stop,
            NoQuorumPolicy::Demote,
            NoQuorumPolicy::Freeze,
            NoQuorumPolicy::Ignore,
            NoQuorumPolicy::Suicide,
        ]
        .map(NoQuorumPolicy::ends_the_promoted_role)
        .to_vec();
        assert_eq!(ends, [true, true, false, false, true]);
    }

    fn names(v: &[&NodeName]) -> Vec<String> {
        v.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn nodes_show_online_standby_and_the_dc() {
        let st = parse_crm_mon(PROMOTED).unwrap();
        assert_eq!(st.dc.as_ref().map(NodeName::as_str), Some("node1"));
        assert!(st.with_quorum);
        assert!(!st.stonith_enabled);
        assert_eq!(st.no_quorum_policy, Some(NoQuorumPolicy::Stop));
        assert_eq!(names(&st.online_nodes()), ["node1", "node2"]);
        let n1 = st.node("node1").unwrap();
        assert!(n1.online && n1.is_dc && !n1.standby);
        assert_eq!(n1.resources_running, 2);
        let n3 = st.node("node3").unwrap();
        assert!(!n3.online && n3.standby && !n3.is_dc);
        assert_eq!(n3.kind, "member");
    }

    #[test]
    fn the_promotable_clone_shows_each_instance_and_its_role() {
        let st = parse_crm_mon(PROMOTED).unwrap();
        let clone = st.find_clone("stack-clone").unwrap();
        assert!(clone.promotable && clone.managed);
        assert_eq!(clone.instances.len(), 3);
        assert_eq!(names(&clone.promoted_nodes()), ["node1"]);
        assert_eq!(names(&clone.unpromoted_nodes()), ["node2"]);
        let on2 = clone.instance_on("node2").unwrap();
        assert_eq!(on2.id, "stack");
        assert_eq!(on2.resource_agent, "ocf:pacemaker:Stateful");
        assert!(on2.active && on2.failed && on2.managed);
        let stopped = &clone.instances[2];
        assert_eq!(stopped.role, Role::Stopped);
        assert!(!stopped.active && stopped.node().is_none());
    }

    #[test]
    fn a_primitive_shows_where_it_runs() {
        let st = parse_crm_mon(PROMOTED).unwrap();
        let vip = st.resource("vip").unwrap();
        assert_eq!(vip.resource_agent, "ocf:heartbeat:IPaddr2");
        assert_eq!(vip.role, Role::Started);
        assert_eq!(vip.node().map(NodeName::as_str), Some("node1"));
        assert!(vip.group.is_none());
    }

    #[test]
    fn node_attributes_include_promotion_scores() {
        let st = parse_crm_mon(PROMOTED).unwrap();
        assert_eq!(st.node_attribute("node1", "master-stack"), Some("10"));
        assert_eq!(
            st.node_attribute("node2", "master-stack"),
            Some("-INFINITY")
        );
        assert_eq!(
            st.node_attribute("node1", "rapidpro-lsn"),
            Some("0/3000060")
        );
        assert_eq!(st.node_attribute("node3", "master-stack"), None);
    }

    #[test]
    fn a_failed_monitor_carries_its_exit_reason() {
        let st = parse_crm_mon(PROMOTED).unwrap();
        assert_eq!(st.failures.len(), 1);
        let f = &st.failures[0];
        assert_eq!(f.op_key, "stack_monitor_11000");
        assert_eq!(f.resource(), Some("stack"));
        assert_eq!(f.node.as_str(), "node2");
        assert_eq!(f.task.as_deref(), Some("monitor"));
        assert_eq!(f.exit_code, Some(1));
        assert_eq!(f.exit_status, "error");
        assert_eq!(f.exit_reason, "replication from node1 is broken");
        assert_eq!(f.status, "complete");
        assert_eq!(f.call, Some(8));
        assert_eq!(f.interval_ms, Some(11000));
        assert!(st.pending.is_empty());
    }

    #[test]
    fn an_operation_in_flight_is_pending() {
        let st = parse_crm_mon(PROMOTING).unwrap();
        assert_eq!(
            st.pending,
            vec![PendingOperation {
                node: NodeName::new("node1").unwrap(),
                resource: "stack".to_string(),
                task: "promote".to_string(),
                interval_ms: 0,
            }]
        );
        let clone = st.find_clone("stack-clone").unwrap();
        let on1 = clone.instance_on("node1").unwrap();
        assert_eq!(on1.role, Role::Promoting);
        assert!(on1.role.is_pending());
    }

    #[test]
    fn maintenance_and_unmanaged_resources_are_shown() {
        let st = parse_crm_mon(PROMOTING).unwrap();
        assert!(st.node("node2").unwrap().maintenance);
        assert_eq!(st.dc.as_ref().map(NodeName::as_str), Some("node2"));
        let on2 = st
            .find_clone("stack-clone")
            .unwrap()
            .instance_on("node2")
            .unwrap();
        assert!(!on2.managed);
        let vip = st.resource("vip").unwrap();
        assert!(!vip.managed && vip.failed);
        let f = &st.failures[0];
        assert_eq!(
            (f.status.as_str(), f.exit_reason.as_str()),
            ("Timed Out", "Timed Out")
        );
        assert_eq!(f.resource(), Some("vip"));
    }

    #[test]
    fn crm_mon_reporting_no_cluster_is_no_cluster() {
        match parse_crm_mon(NO_CLUSTER).unwrap_err() {
            ClusterError::NoCluster { tool, detail } => {
                assert_eq!(tool, "crm_mon");
                assert!(detail.contains("Connection refused"), "{detail}");
            }
            other => panic!("expected NoCluster, got {other:?}"),
        }
    }

    #[test]
    fn other_reported_errors_keep_their_code_and_message() {
        let xml = r#"<pacemaker-result api-version="2.25" request="crm_mon">
  <status code="105" message="No such object"><errors><error>crm_mon: no such thing</error></errors></status>
</pacemaker-result>"#;
        match parse_crm_mon(xml).unwrap_err() {
            ClusterError::Reported { code, message, .. } => {
                assert_eq!(code, 105);
                assert_eq!(message, "crm_mon: no such thing");
            }
            other => panic!("expected Reported, got {other:?}"),
        }
    }

    #[test]
    fn legacy_master_and_slave_roles_are_read() {
        let xml = r#"<crm_mon version="1.1.18"><nodes><node name="a" online="true"/></nodes>
<resources><clone id="ms" multi_state="true">
<resource id="pg" resource_agent="ocf::heartbeat:pgsql" role="Master" active="true"><node name="a" id="1" cached="false"/></resource>
<resource id="pg" resource_agent="ocf::heartbeat:pgsql" role="Slave" active="true"><node name="b" id="2" cached="false"/></resource>
</clone></resources></crm_mon>"#;
        let st = parse_crm_mon(xml).unwrap();
        let ms = st.find_clone("ms").unwrap();
        assert_eq!(names(&ms.promoted_nodes()), ["a"]);
        assert_eq!(names(&ms.unpromoted_nodes()), ["b"]);
    }

    #[test]
    fn groups_and_cloned_groups_are_flattened_with_their_group() {
        let xml = r#"<pacemaker-result>
<resources>
  <group id="app" number_resources="2">
    <resource id="web" resource_agent="systemd:nginx" role="Started" active="true"><node name="n1"/></resource>
    <resource id="worker" resource_agent="systemd:worker" role="Stopped" active="false"/>
  </group>
  <clone id="g-clone" multi_state="false"><group id="g:0"><resource id="a" resource_agent="ocf:pacemaker:Dummy" role="Started"><node name="n2"/></resource></group></clone>
  <bundle id="b" type="podman"><replica id="0"><resource id="b-ip" resource_agent="ocf:heartbeat:IPaddr2" role="Started"><node name="n1"/></resource></replica></bundle>
  <unknown-thing/>
</resources>
<status code="0" message="OK"/>
</pacemaker-result>"#;
        let st = parse_crm_mon(xml).unwrap();
        let ids: Vec<_> = st
            .resources
            .iter()
            .map(|r| (r.id.as_str(), r.group.as_deref()))
            .collect();
        assert_eq!(
            ids,
            [
                ("web", Some("app")),
                ("worker", Some("app")),
                ("b-ip", Some("b"))
            ]
        );
        let c = st.find_clone("g-clone").unwrap();
        assert!(!c.promotable);
        assert_eq!(c.instances[0].group.as_deref(), Some("g:0"));
        assert_eq!(c.instance_on("n2").unwrap().id, "a");
    }

    #[test]
    fn truncated_output_is_an_error_at_every_cut() {
        // Cut the captured output at every byte: never a panic, and an error
        // unless the cut leaves a complete document.
        for (i, _) in PROMOTED.char_indices() {
            let cut = &PROMOTED[..i];
            if cut.trim_end() == PROMOTED.trim_end() {
                continue;
            }
            assert!(parse_crm_mon(cut).is_err(), "accepted a cut at byte {i}");
        }
    }

    #[test]
    fn unexpected_documents_are_errors() {
        let cases = [
            "",
            "not xml",
            "<cib/>",
            "<pacemaker-result><nodes><node online=\"true\"/></nodes></pacemaker-result>",
            "<pacemaker-result><nodes><node name=\"two words\"/></nodes></pacemaker-result>",
            "<pacemaker-result><nodes><node name=\"n\" online=\"maybe\"/></nodes></pacemaker-result>",
            "<pacemaker-result><resources><resource id=\"x\"/></resources></pacemaker-result>",
            "<pacemaker-result><failures><failure op_key=\"k\" node=\"n\" exitcode=\"x\"/></failures></pacemaker-result>",
            "<pacemaker-result><status code=\"abc\"/></pacemaker-result>",
        ];
        for xml in cases {
            let e = parse_crm_mon(xml).unwrap_err();
            assert!(matches!(e, ClusterError::Parse { .. }), "{xml}: {e:?}");
        }
    }

    #[test]
    fn a_bad_node_name_is_an_error_about_crm_mon_showing_the_element() {
        // Found by the fuzz targets (rapidproctl said only "could not read a
        // node name ... from \"two words\"").
        for xml in [
            r#"<pacemaker-result><nodes><node name="two words" id="1"/></nodes></pacemaker-result>"#,
            r#"<pacemaker-result><summary><current_dc present="true" name=""/></summary></pacemaker-result>"#,
            r#"<pacemaker-result><failures><failure op_key="k" node="a&#10;b"/></failures></pacemaker-result>"#,
        ] {
            let e = parse_crm_mon(xml).unwrap_err().to_string();
            assert!(e.starts_with("could not read crm_mon XML ("), "{e}");
            assert!(e.contains("is not a node name"), "{e}");
            assert!(e.contains("from \"<"), "{e}");
        }
    }

    #[test]
    fn the_status_serializes_for_rapidproctl_json() {
        let st = parse_crm_mon(PROMOTED).unwrap();
        let v = serde_json::to_value(&st).unwrap();
        assert_eq!(v["dc"], "node1");
        assert_eq!(v["clones"][0]["instances"][0]["role"], "Promoted");
        assert_eq!(v["node_attributes"]["node2"]["master-stack"], "-INFINITY");
    }

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/cluster/fixtures")
    }

    /// Builds the fixture's CIB with the script that made it and runs the
    /// real crm_mon on it: the fixtures stay what crm_mon prints.
    fn crm_mon_on_scenario(scenario: &str) -> ClusterStatus {
        let cib = OfflineCib::new(&[]);
        cib.tool(
            "sh",
            &[
                &fixtures().join("make-cib.sh").to_string_lossy(),
                scenario,
                &cib.path().to_string_lossy(),
            ],
        );
        cib.cluster()
            .status(&Deadline::after(Duration::from_secs(10)))
            .unwrap()
    }

    #[test]
    fn crm_mon_on_the_fixture_cibs_reads_as_the_captured_output() {
        assert_eq!(
            crm_mon_on_scenario("promoted"),
            parse_crm_mon(PROMOTED).unwrap()
        );
        assert_eq!(
            crm_mon_on_scenario("promoting"),
            parse_crm_mon(PROMOTING).unwrap()
        );
    }

    #[test]
    fn with_no_cluster_status_is_no_cluster_at_once() {
        let t = Instant::now();
        let err = Cluster::live()
            .status(&Deadline::after(Duration::from_secs(10)))
            .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert!(err.is_no_cluster(), "{err:?}");
    }

    #[test]
    fn a_live_cluster_shows_the_promoted_node_its_scores_and_health() {
        let st = parse_crm_mon(LIVE_STEADY).unwrap();
        let clone = st.find_clone("stack-clone").unwrap();
        assert_eq!(names(&clone.promoted_nodes()), ["node2"]);
        assert_eq!(names(&clone.unpromoted_nodes()), ["node1"]);
        assert_eq!(clone.instances[0].resource_agent, "ocf:rapidpro:stack");
        assert_eq!(
            st.resource("vip").unwrap().node().map(NodeName::as_str),
            Some("node2")
        );
        assert_eq!(st.node_attribute("node1", "master-stack"), Some("1000"));
        assert_eq!(st.node_attribute("node2", "master-stack"), Some("1001"));
        assert_eq!(st.node("node1").unwrap().health.as_deref(), Some("green"));
        assert!(st.stonith_enabled);
        assert!(st.failures.is_empty() && st.pending.is_empty());
    }

    #[test]
    fn a_live_failed_monitor_keeps_the_agents_exit_reason() {
        let st = parse_crm_mon(LIVE_FAILED).unwrap();
        let f = &st.failures[0];
        assert_eq!(f.resource(), Some("stack"));
        assert_eq!(f.node.as_str(), "node1");
        assert_eq!(f.exit_reason, "Redis 243 died (stale pidfile)");
    }

    #[test]
    fn a_powered_off_node_is_offline_with_its_instance_stopped() {
        let st = parse_crm_mon(LIVE_OFFLINE).unwrap();
        let n2 = st.node("node2").unwrap();
        assert!(!n2.online && !n2.unclean);
        let clone = st.find_clone("stack-clone").unwrap();
        assert_eq!(names(&clone.promoted_nodes()), ["node1"]);
        assert!(clone.instance_on("node2").is_none());
        assert!(clone.instances.iter().any(|i| i.role == Role::Stopped));
        assert_eq!(st.dc.as_ref().map(NodeName::as_str), Some("node1"));
    }
}
