//! What the operator's tool (`rapidproctl`) asks of Pacemaker beyond what
//! the agent needs: the whole CIB, the controller's state, node health
//! attributes, and moving the Promoted role.
//!
//! Everything goes through [`crate::cmd`] with a timeout, like the rest of
//! this module; parsers are pure and tested against recorded output.
//!
//! Only [`Cluster::query_cib`] can work on a CIB file; the other calls ask
//! the live daemons (controller, attrd, `crm_resource`'s scheduler), as they
//! always have, so they are free functions and take no [`Cluster`].

use std::time::Duration;

use crate::deadline::Deadline;

use super::xml;
use super::{run_tool, tool, Cluster, ClusterError, NodeName, CALL_TIMEOUT};

const CIBADMIN: &str = "cibadmin";
const CRMADMIN: &str = "crmadmin";
const CRM_RESOURCE: &str = "crm_resource";
const ATTRD_UPDATER: &str = "attrd_updater";

/// The controller state of a DC with nothing left to do (Pacemaker's
/// `S_IDLE`); `S_TRANSITION_ENGINE` and `S_POLICY_ENGINE` mean a transition
/// is being computed or carried out.
pub const CONTROLLER_IDLE: &str = "S_IDLE";
/// How long `crm_resource --cleanup` may take.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(20);

impl Cluster {
    /// The whole CIB (`cibadmin --query`).
    pub fn query_cib(&self, deadline: &Deadline) -> Result<String, ClusterError> {
        let spec = self
            .tool(CIBADMIN, deadline.cap(CALL_TIMEOUT))
            .arg("--query");
        Ok(run_tool(&spec)?.stdout)
    }
}

/// The state of the controller on `node` (`crmadmin --status=NODE
/// --output-as=xml`), such as `S_IDLE` on an idle DC or `S_NOT_DC`.
pub fn controller_state(node: &NodeName, deadline: &Deadline) -> Result<String, ClusterError> {
    let timeout = deadline.cap(CALL_TIMEOUT);
    // crmadmin waits for the controller's answer up to its own --timeout.
    let spec = tool(CRMADMIN, None, timeout + Duration::from_secs(1)).args([
        format!("--status={node}"),
        "--output-as=xml".to_string(),
        format!("--timeout={}", timeout.as_millis().max(1)),
    ]);
    parse_controller_state(&run_tool(&spec)?.stdout)
}

/// Reads `crmadmin --status --output-as=xml`:
/// `<pacemaker-result><crmd node_name="node1" state="S_IDLE" result="ok"/>`.
pub fn parse_controller_state(text: &str) -> Result<String, ClusterError> {
    let root =
        xml::parse(text).map_err(|e| ClusterError::parse(format!("crmadmin XML ({e})"), text))?;
    root.child("crmd")
        .and_then(|c| c.attr("state"))
        .map(str::to_string)
        .ok_or_else(|| ClusterError::parse("crmadmin XML (no <crmd state>)", text))
}

/// Sets a node attribute of the local node through `pacemaker-attrd`
/// (`attrd_updater --name=NAME --update=VALUE`), as health agents do for
/// `#health-*` attributes (Pacemaker Explained, "Tracking Node Health").
pub fn update_local_attribute(
    name: &str,
    value: &str,
    deadline: &Deadline,
) -> Result<(), ClusterError> {
    let spec = tool(ATTRD_UPDATER, None, deadline.cap(CALL_TIMEOUT))
        .args([format!("--name={name}"), format!("--update={value}")]);
    run_tool(&spec).map(drop)
}

/// Moves the Promoted role of the promotable clone `clone` to `node`:
/// `crm_resource --move --promoted --resource CLONE --node NODE`, which adds
/// the location constraint `cli-prefer-CLONE` (role Promoted, INFINITY).
pub fn move_promoted(
    clone: &str,
    node: &NodeName,
    deadline: &Deadline,
) -> Result<(), ClusterError> {
    promoted_constraint("--move", clone, node, deadline)
}

/// Removes the constraints `crm_resource --move/--ban --promoted` left for
/// `clone` on `node` (`crm_resource --clear --promoted --resource CLONE
/// --node NODE`); the constraints of other nodes stay.
pub fn clear_promoted(
    clone: &str,
    node: &NodeName,
    deadline: &Deadline,
) -> Result<(), ClusterError> {
    promoted_constraint("--clear", clone, node, deadline)
}

/// `crm_resource ACTION --promoted --resource CLONE --node NODE`.
fn promoted_constraint(
    action: &str,
    clone: &str,
    node: &NodeName,
    deadline: &Deadline,
) -> Result<(), ClusterError> {
    let spec = tool(CRM_RESOURCE, None, deadline.cap(CALL_TIMEOUT)).args([
        action,
        "--promoted",
        "--resource",
        clone,
        "--node",
        node.as_str(),
    ]);
    run_tool(&spec).map(drop)
}

/// Bans every instance of `clone` from `node` (`crm_resource --ban
/// --resource CLONE --node NODE`): the location constraint
/// `cli-ban-CLONE-on-NODE`, score -INFINITY. Pacemaker stops the instance
/// there and nowhere else, unlike standby mode, which stops everything on
/// the node.
pub fn ban_node(clone: &str, node: &NodeName, deadline: &Deadline) -> Result<(), ClusterError> {
    node_action("--ban", clone, node, deadline.cap(CALL_TIMEOUT))
}

/// Removes the constraints `crm_resource --ban/--move` left for `clone` on
/// `node` (`crm_resource --clear --resource CLONE --node NODE`).
pub fn clear_node(clone: &str, node: &NodeName, deadline: &Deadline) -> Result<(), ClusterError> {
    node_action("--clear", clone, node, deadline.cap(CALL_TIMEOUT))
}

/// Forgets the operation history and fail-count of `clone` on `node`
/// (`crm_resource --cleanup --resource CLONE --node NODE`): a start refused
/// on that node left its fail-count at INFINITY, which keeps the instance
/// off the node until cleaned up.
pub fn cleanup_node(clone: &str, node: &NodeName, deadline: &Deadline) -> Result<(), ClusterError> {
    // The controller re-probes the resource there before answering.
    node_action("--cleanup", clone, node, deadline.cap(CLEANUP_TIMEOUT))
}

/// `crm_resource ACTION --resource CLONE --node NODE`.
fn node_action(
    action: &str,
    clone: &str,
    node: &NodeName,
    timeout: Duration,
) -> Result<(), ClusterError> {
    let spec = tool(CRM_RESOURCE, None, timeout).args([
        action,
        "--resource",
        clone,
        "--node",
        node.as_str(),
    ]);
    run_tool(&spec).map(drop)
}

/// Waits until the cluster has no pending actions (`crm_resource --wait`),
/// at most what is left of `deadline`.
pub fn wait_settled(deadline: &Deadline) -> Result<(), ClusterError> {
    let left = deadline.remaining().max(Duration::from_secs(1));
    let spec = tool(CRM_RESOURCE, None, left + Duration::from_secs(2)).args([
        "--wait".to_string(),
        format!("--timeout={}s", left.as_secs().max(1)),
    ]);
    run_tool(&spec).map(drop)
}

/// Runs the agent's `validate-all` for `resource` with its configured
/// parameters on this node (`crm_resource --validate --resource RSC`);
/// returns the tool's exit code and what it printed.
pub fn validate_resource(
    resource: &str,
    timeout: Duration,
) -> Result<(Option<i32>, String), ClusterError> {
    let spec = tool(CRM_RESOURCE, None, timeout).args(["--validate", "--resource", resource]);
    let out = crate::cmd::run_unchecked(&spec)?;
    let mut text = out.stdout.trim().to_string();
    if !out.stderr.trim().is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(out.stderr.trim());
    }
    Ok((out.code(), text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_controller_state_is_read_from_crmadmin_xml() {
        // crmadmin --status=node1 --output-as=xml, Pacemaker 2.1.5.
        let xml = r#"<pacemaker-result api-version="2.25" request="crmadmin --status=node1 --output-as=xml">
  <crmd node_name="node1" state="S_NOT_DC" result="ok"/>
  <status code="0" message="OK"/>
</pacemaker-result>"#;
        assert_eq!(parse_controller_state(xml).unwrap(), "S_NOT_DC");
        assert!(parse_controller_state("<pacemaker-result/>").is_err());
        assert!(parse_controller_state("garbage").is_err());
    }
}
