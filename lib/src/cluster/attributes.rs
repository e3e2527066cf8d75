//! Node attributes: promotion scores and private attributes.
//!
//! A promotion score is the transient node attribute `master-<resource>`
//! (lifetime `reboot`, so it vanishes when the node leaves). Pacemaker promotes
//! the instance on the node with the highest score; a negative score means
//! "never promote here".
//!
//! Private attributes live only in `pacemaker-attrd` and are never written to
//! the CIB, so setting one never starts a new transition. PAF passes each
//! standby's LSN from the pre-promote notify to the promote this way; this
//! agent does the same.

use crate::deadline::Deadline;

use super::{is_not_found, run_tool, Cluster, ClusterError, NodeName, CALL_TIMEOUT};

/// Pacemaker's INFINITY: scores at or beyond ±1,000,000 count as infinite.
pub const INFINITY: i64 = 1_000_000;

const CRM_ATTRIBUTE: &str = "crm_attribute";
const ATTRD_UPDATER: &str = "attrd_updater";
/// The prefix of promotion-score attributes, kept by Pacemaker 2.1 for
/// compatibility (`crm_attribute --promotion` writes `master-<rsc>`).
const PROMOTION_PREFIX: &str = "master-";
const LIFETIME_REBOOT: &str = "--lifetime=reboot";
/// Permanent node attributes (the `nodes` section of the CIB): they
/// survive a node's reboot and a restart of the whole cluster.
const LIFETIME_FOREVER: &str = "--lifetime=forever";

/// The permanent node attribute that marks a node stale for `resource`: a
/// primary acknowledged commits asynchronously that the node may lack
/// ([`crate::stack::decide::stale_mark`]). Its value says who marked it and
/// up to which WAL location, for the operator.
pub fn stale_attribute(resource: &str) -> String {
    let base = match resource.rfind(':') {
        Some(i) => &resource[..i],
        None => resource,
    };
    format!("rapidpro-stale-{base}")
}

/// Pacemaker's promotion-score attribute for a resource instance:
/// `master-` and the instance name without its clone suffix, so that
/// `stack:1` and `stack` both give `master-stack`.
///
/// This is what `crm_attribute --promotion` computes (Pacemaker's
/// `clone_strip`: everything from the last `:` is dropped; an XML ID, and so a
/// resource name, cannot itself contain a colon).
pub fn promotion_attribute(resource_instance: &str) -> String {
    let base = match resource_instance.rfind(':') {
        Some(i) => &resource_instance[..i],
        None => resource_instance,
    };
    format!("{PROMOTION_PREFIX}{base}")
}

/// A score as Pacemaker writes it: `INFINITY`/`-INFINITY` at the limits.
fn score_value(score: i64) -> String {
    if score >= INFINITY {
        "INFINITY".to_string()
    } else if score <= -INFINITY {
        "-INFINITY".to_string()
    } else {
        score.to_string()
    }
}

/// Reads a score as Pacemaker does: an integer, or `INFINITY`, `+INFINITY`,
/// `-INFINITY` (any case). Values beyond ±[`INFINITY`] are clamped to it.
pub fn parse_score(text: &str) -> Result<i64, ClusterError> {
    let t = text.trim();
    let score = if t.eq_ignore_ascii_case("INFINITY") || t.eq_ignore_ascii_case("+INFINITY") {
        INFINITY
    } else if t.eq_ignore_ascii_case("-INFINITY") {
        -INFINITY
    } else {
        t.parse::<i64>()
            .map_err(|_| ClusterError::parse("a promotion score", text))?
    };
    Ok(score.clamp(-INFINITY, INFINITY))
}

fn node_arg(node: &NodeName) -> String {
    format!("--node={node}")
}

fn name_arg(name: &str) -> String {
    format!("--name={name}")
}

/// `--update=VALUE` in one argument: `crm_attribute` 2.1.5 reads a separate
/// `-INFINITY` as a cluster of short options ("Could not map name=FINITY";
/// fixed in 2.1.6), so a value starting with `-` must be glued to its option.
fn update_arg(value: &str) -> String {
    format!("--update={value}")
}

impl Cluster {
    /// Sets the promotion score of `resource_instance` on `node`:
    /// `crm_attribute --lifetime=reboot --node=NODE --name=master-RSC --update=SCORE`.
    ///
    /// Scores at or beyond ±[`INFINITY`] are written as `INFINITY`/`-INFINITY`.
    /// With no cluster, fails with [`ClusterError::NoCluster`].
    pub fn set_promotion_score(
        &self,
        resource_instance: &str,
        node: &NodeName,
        score: i64,
        deadline: &Deadline,
    ) -> Result<(), ClusterError> {
        let name = promotion_attribute(resource_instance);
        self.update_node_attribute(&name, node, &score_value(score), deadline)
    }

    /// Reads the promotion score of `resource_instance` on `node`
    /// (`crm_attribute --query --quiet`). `Ok(None)` when there is none, or when
    /// the node is unknown to the cluster.
    pub fn get_promotion_score(
        &self,
        resource_instance: &str,
        node: &NodeName,
        deadline: &Deadline,
    ) -> Result<Option<i64>, ClusterError> {
        let name = promotion_attribute(resource_instance);
        match self.query_node_attribute(&name, node, deadline)? {
            Some(v) => parse_score(&v).map(Some),
            None => Ok(None),
        }
    }

    /// Deletes the promotion score of `resource_instance` on `node`
    /// (`crm_attribute --delete`); a score that is not there is success.
    pub fn delete_promotion_score(
        &self,
        resource_instance: &str,
        node: &NodeName,
        deadline: &Deadline,
    ) -> Result<(), ClusterError> {
        let name = promotion_attribute(resource_instance);
        self.delete_node_attribute(&name, node, deadline)
    }

    /// Marks `node` stale for `resource` (`value` says who and up to
    /// where), or clears the mark: a permanent node attribute,
    /// `crm_attribute --lifetime=forever`.
    pub fn set_stale(
        &self,
        resource: &str,
        node: &NodeName,
        value: Option<&str>,
        deadline: &Deadline,
    ) -> Result<(), ClusterError> {
        let name = stale_attribute(resource);
        match value {
            Some(v) => self.update_attribute(LIFETIME_FOREVER, &name, node, v, deadline),
            None => self.delete_attribute(LIFETIME_FOREVER, &name, node, deadline),
        }
    }

    /// The stale mark of `node` for `resource`, if any.
    pub fn stale_mark(
        &self,
        resource: &str,
        node: &NodeName,
        deadline: &Deadline,
    ) -> Result<Option<String>, ClusterError> {
        self.query_attribute(LIFETIME_FOREVER, &stale_attribute(resource), node, deadline)
    }

    /// Publishes a private node attribute: one that lives only in
    /// `pacemaker-attrd` and is never written to the CIB, so it never aborts a
    /// transition (`attrd_updater --private --name=NAME --node=NODE --update=VALUE`).
    /// Used to pass data between notify and promote, as PAF does.
    ///
    /// `attrd_updater` returns once the local attrd has the request; other nodes
    /// see the value a moment later.
    ///
    /// **CIB file**: attrd is not in use (`attrd_updater` ignores `CIB_file`),
    /// so the value is written into the file as an ordinary transient
    /// attribute instead (`crm_attribute --lifetime=reboot --update=VALUE`).
    pub fn publish_private(
        &self,
        name: &str,
        node: &NodeName,
        value: &str,
        deadline: &Deadline,
    ) -> Result<(), ClusterError> {
        if self.cib_file().is_some() {
            return self.update_node_attribute(name, node, value, deadline);
        }
        let spec = self.tool(ATTRD_UPDATER, deadline.cap(CALL_TIMEOUT)).args([
            "--private".to_string(),
            name_arg(name),
            node_arg(node),
            update_arg(value),
        ]);
        run_tool(&spec).map(drop)
    }

    /// Reads private attribute `name` on `nodes`
    /// (`attrd_updater --query --all --name=NAME`), in the order of `nodes`.
    /// Values of other nodes (such as nodes outside the partition) are left out,
    /// as are empty values, which is what `attrd_updater --delete` leaves behind.
    /// So an empty `nodes` always gives an empty answer: pass the nodes whose
    /// values count, usually [`Cluster::partition`].
    ///
    /// **CIB file**: each node's value is read from the file instead
    /// (`crm_attribute --lifetime=reboot --query`), where
    /// [`Cluster::publish_private`] put it.
    pub fn read_private(
        &self,
        name: &str,
        nodes: &[NodeName],
        deadline: &Deadline,
    ) -> Result<Vec<(NodeName, String)>, ClusterError> {
        let mut found = Vec::new();
        if self.cib_file().is_some() {
            for node in nodes {
                if let Some(v) = self.query_node_attribute(name, node, deadline)? {
                    found.push((node.clone(), v));
                }
            }
            return Ok(found);
        }
        let spec = self.tool(ATTRD_UPDATER, deadline.cap(CALL_TIMEOUT)).args([
            "--query".to_string(),
            "--all".to_string(),
            name_arg(name),
        ]);
        let all = match run_tool(&spec) {
            Ok(out) => parse_attrd_query(&out.stdout),
            Err(e) if is_not_found(&e) => Vec::new(),
            Err(e) => return Err(e),
        };
        for node in nodes {
            if let Some((n, v)) = all.iter().find(|(n, v)| n == node && !v.is_empty()) {
                found.push((n.clone(), v.clone()));
            }
        }
        Ok(found)
    }

    /// Deletes private attribute `name` on `node`
    /// (`attrd_updater --private --delete`; Pacemaker 2.1 empties the value,
    /// which [`Cluster::read_private`] treats as absent). Absent is success.
    ///
    /// **CIB file**: the attribute is deleted from the file instead
    /// (`crm_attribute --lifetime=reboot --delete`).
    pub fn delete_private(
        &self,
        name: &str,
        node: &NodeName,
        deadline: &Deadline,
    ) -> Result<(), ClusterError> {
        if self.cib_file().is_some() {
            return self.delete_node_attribute(name, node, deadline);
        }
        // --private too: should the delete create the attribute, it stays out of the CIB.
        let spec = self.tool(ATTRD_UPDATER, deadline.cap(CALL_TIMEOUT)).args([
            "--private".to_string(),
            "--delete".to_string(),
            name_arg(name),
            node_arg(node),
        ]);
        match run_tool(&spec) {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Reads `attrd_updater --query` output, one attribute per line:
/// `name="lsn" host="node1" value="1#0/3000060"`.
///
/// Fields may come in any order and others may appear (later Pacemakers add
/// `scope=` and `id=`); `value` is last, and Pacemaker 2.1 prints it without
/// escaping, so it runs to the line's final quote. Lines without a valid
/// `host` or a closed `value` are skipped.
pub fn parse_attrd_query(text: &str) -> Vec<(NodeName, String)> {
    text.lines()
        .filter_map(|line| {
            let fields = attrd_fields(line);
            let host = fields.iter().find(|(k, _)| *k == "host")?.1;
            let value = fields.iter().find(|(k, _)| *k == "value")?.1;
            Some((NodeName::new(host).ok()?, value.to_string()))
        })
        .collect()
}

/// The `key="value"` pairs of one line; `value` takes the rest of the line.
fn attrd_fields(line: &str) -> Vec<(&str, &str)> {
    let mut fields = Vec::new();
    let mut rest = line.trim();
    while let Some(eq) = rest.find("=\"") {
        let key = rest[..eq].trim();
        let after = &rest[eq + 2..];
        if key == "value" {
            if let Some(v) = after.strip_suffix('"') {
                fields.push((key, v));
            }
            break;
        }
        let Some(end) = after.find('"') else { break };
        fields.push((key, &after[..end]));
        rest = &after[end + 1..];
    }
    fields
}

impl Cluster {
    /// `crm_attribute --lifetime=reboot --node=NODE --name=NAME --update=VALUE`.
    fn update_node_attribute(
        &self,
        name: &str,
        node: &NodeName,
        value: &str,
        deadline: &Deadline,
    ) -> Result<(), ClusterError> {
        self.update_attribute(LIFETIME_REBOOT, name, node, value, deadline)
    }

    fn update_attribute(
        &self,
        lifetime: &str,
        name: &str,
        node: &NodeName,
        value: &str,
        deadline: &Deadline,
    ) -> Result<(), ClusterError> {
        let spec = self.tool(CRM_ATTRIBUTE, deadline.cap(CALL_TIMEOUT)).args([
            lifetime.to_string(),
            node_arg(node),
            name_arg(name),
            update_arg(value),
        ]);
        run_tool(&spec).map(drop)
    }

    /// `crm_attribute --lifetime=reboot --node=NODE --name=NAME --query --quiet`;
    /// `None` when the attribute or the node does not exist.
    fn query_node_attribute(
        &self,
        name: &str,
        node: &NodeName,
        deadline: &Deadline,
    ) -> Result<Option<String>, ClusterError> {
        self.query_attribute(LIFETIME_REBOOT, name, node, deadline)
    }

    fn query_attribute(
        &self,
        lifetime: &str,
        name: &str,
        node: &NodeName,
        deadline: &Deadline,
    ) -> Result<Option<String>, ClusterError> {
        let spec = self.tool(CRM_ATTRIBUTE, deadline.cap(CALL_TIMEOUT)).args([
            lifetime.to_string(),
            node_arg(node),
            name_arg(name),
            "--query".to_string(),
            "--quiet".to_string(),
        ]);
        match run_tool(&spec) {
            Ok(out) => {
                // One line; old versions printed "(null)" for an attribute with no value.
                let v = out.stdout.strip_suffix('\n').unwrap_or(&out.stdout);
                if v.trim().is_empty() || v == "(null)" {
                    Ok(None)
                } else {
                    Ok(Some(v.to_string()))
                }
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `crm_attribute --lifetime=reboot --node=NODE --name=NAME --delete`;
    /// an attribute (or node) that is not there is success.
    fn delete_node_attribute(
        &self,
        name: &str,
        node: &NodeName,
        deadline: &Deadline,
    ) -> Result<(), ClusterError> {
        self.delete_attribute(LIFETIME_REBOOT, name, node, deadline)
    }

    fn delete_attribute(
        &self,
        lifetime: &str,
        name: &str,
        node: &NodeName,
        deadline: &Deadline,
    ) -> Result<(), ClusterError> {
        let spec = self.tool(CRM_ATTRIBUTE, deadline.cap(CALL_TIMEOUT)).args([
            lifetime.to_string(),
            node_arg(node),
            name_arg(name),
            "--delete".to_string(),
        ]);
        match run_tool(&spec) {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::testing::OfflineCib;
    use std::time::{Duration, Instant};

    fn node(n: &str) -> NodeName {
        NodeName::new(n).unwrap()
    }

    fn deadline() -> Deadline {
        Deadline::after(Duration::from_secs(10))
    }

    #[test]
    fn the_promotion_attribute_drops_the_clone_suffix() {
        assert_eq!(promotion_attribute("stack"), "master-stack");
        assert_eq!(promotion_attribute("stack:0"), "master-stack");
        assert_eq!(promotion_attribute("stack:12"), "master-stack");
        assert_eq!(promotion_attribute("pg-db"), "master-pg-db");
    }

    #[test]
    fn scores_read_as_pacemaker_reads_them() {
        assert_eq!(parse_score("1000\n").unwrap(), 1000);
        assert_eq!(parse_score("-1000").unwrap(), -1000);
        assert_eq!(parse_score("+5").unwrap(), 5);
        assert_eq!(parse_score("INFINITY").unwrap(), INFINITY);
        assert_eq!(parse_score("+INFINITY").unwrap(), INFINITY);
        assert_eq!(parse_score("-INFINITY\n").unwrap(), -INFINITY);
        assert_eq!(parse_score("-infinity").unwrap(), -INFINITY);
        assert_eq!(parse_score("5000000").unwrap(), INFINITY);
        assert_eq!(parse_score("-5000000").unwrap(), -INFINITY);
        for bad in ["", "ten", "1.5", "- 1", "INFINITYX", "99999999999999999999"] {
            let e = parse_score(bad).unwrap_err();
            assert!(matches!(e, ClusterError::Parse { .. }), "{bad:?}: {e:?}");
        }
    }

    #[test]
    fn scores_are_written_as_pacemaker_writes_them() {
        assert_eq!(score_value(10), "10");
        assert_eq!(score_value(-1000), "-1000");
        assert_eq!(score_value(INFINITY), "INFINITY");
        assert_eq!(score_value(i64::MAX), "INFINITY");
        assert_eq!(score_value(-INFINITY), "-INFINITY");
        assert_eq!(score_value(i64::MIN), "-INFINITY");
    }

    #[test]
    fn attrd_query_lines_give_hosts_and_values() {
        // attrd_updater 2.1.5 --query --all.
        let text = "name=\"lsn-stack\" host=\"node1\" value=\"1#0/3000060\"\n\
                    name=\"lsn-stack\" host=\"node2\" value=\"\"\n\
                    name=\"lsn-stack\" host=\"node3\" value=\"say \"hi\" = x\"\n";
        let got = parse_attrd_query(text);
        assert_eq!(
            got,
            vec![
                (node("node1"), "1#0/3000060".to_string()),
                (node("node2"), String::new()),
                (node("node3"), "say \"hi\" = x".to_string()),
            ]
        );
    }

    #[test]
    fn attrd_query_lines_in_the_later_format_are_read_too() {
        let text = "scope=\"status\" id=\"status-1-lsn\" name=\"lsn\" host=\"node1\" value=\"7\"";
        assert_eq!(
            parse_attrd_query(text),
            vec![(node("node1"), "7".to_string())]
        );
    }

    #[test]
    fn malformed_attrd_lines_are_skipped() {
        let text = "garbage\n\
                    name=\"x\" value=\"no host\"\n\
                    name=\"x\" host=\"two words\" value=\"1\"\n\
                    name=\"x\" host=\"node1\" value=\"unterminated\n\
                    name=\"x\" host=\"node2\n\
                    \n\
                    name=\"x\" host=\"node4\" value=\"4\"";
        assert_eq!(
            parse_attrd_query(text),
            vec![(node("node4"), "4".to_string())]
        );
    }

    #[test]
    fn a_negative_score_round_trips_through_an_offline_cib() {
        let cib = OfflineCib::new(&["node1", "node2"]);
        let p = cib.cluster();
        let n1 = node("node1");
        p.set_promotion_score("stack:0", &n1, -1000, &deadline())
            .unwrap();
        assert_eq!(
            p.get_promotion_score("stack", &n1, &deadline()).unwrap(),
            Some(-1000)
        );
        // The attribute is the one crm_attribute --promotion would use.
        let out = cib.tool(
            "crm_attribute",
            &[
                "--node=node1",
                "--name=master-stack",
                "--lifetime=reboot",
                "--query",
                "--quiet",
            ],
        );
        assert_eq!(out.stdout.trim(), "-1000");
    }

    /// A stale mark is a permanent attribute (the CIB's `nodes` section),
    /// so a reboot, which clears transient attributes, keeps it.
    #[test]
    fn a_stale_mark_is_permanent_and_clears() {
        let cib = OfflineCib::new(&["node1", "node2"]);
        let p = cib.cluster();
        let n2 = node("node2");
        assert_eq!(p.stale_mark("stack", &n2, &deadline()).unwrap(), None);
        p.set_stale("stack:1", &n2, Some("node1@0/3000060"), &deadline())
            .unwrap();
        assert_eq!(
            p.stale_mark("stack", &n2, &deadline()).unwrap().as_deref(),
            Some("node1@0/3000060")
        );
        let xml = std::fs::read_to_string(cib.path()).unwrap();
        let nodes = &xml[xml.find("<nodes>").unwrap()..xml.find("</nodes>").unwrap()];
        assert!(nodes.contains("rapidpro-stale-stack"), "{xml}");
        p.set_stale("stack", &n2, None, &deadline()).unwrap();
        assert_eq!(p.stale_mark("stack", &n2, &deadline()).unwrap(), None);
        let nodes = p.nodes(&deadline()).unwrap();
        assert_eq!(nodes, vec![node("node1"), n2]);
    }

    #[test]
    fn infinite_scores_round_trip_through_an_offline_cib() {
        let cib = OfflineCib::new(&["node1"]);
        let p = cib.cluster();
        let n1 = node("node1");
        p.set_promotion_score("stack", &n1, -INFINITY, &deadline())
            .unwrap();
        assert_eq!(
            p.get_promotion_score("stack", &n1, &deadline()).unwrap(),
            Some(-INFINITY)
        );
        p.set_promotion_score("stack", &n1, 2 * INFINITY, &deadline())
            .unwrap();
        assert_eq!(
            p.get_promotion_score("stack", &n1, &deadline()).unwrap(),
            Some(INFINITY)
        );
    }

    #[test]
    fn a_missing_score_reads_as_none_and_deletes_as_success() {
        let cib = OfflineCib::new(&["node1", "node2"]);
        let p = cib.cluster();
        let n2 = node("node2");
        assert_eq!(
            p.get_promotion_score("stack", &n2, &deadline()).unwrap(),
            None
        );
        p.delete_promotion_score("stack", &n2, &deadline()).unwrap();
        p.set_promotion_score("stack", &n2, 5, &deadline()).unwrap();
        assert_eq!(
            p.get_promotion_score("stack", &n2, &deadline()).unwrap(),
            Some(5)
        );
        p.delete_promotion_score("stack", &n2, &deadline()).unwrap();
        assert_eq!(
            p.get_promotion_score("stack", &n2, &deadline()).unwrap(),
            None
        );
        p.delete_promotion_score("stack", &n2, &deadline()).unwrap();
    }

    #[test]
    fn a_node_unknown_to_the_cib_has_no_score_but_cannot_get_one() {
        let cib = OfflineCib::new(&["node1"]);
        let p = cib.cluster();
        let ghost = node("ghost");
        assert_eq!(
            p.get_promotion_score("stack", &ghost, &deadline()).unwrap(),
            None
        );
        p.delete_promotion_score("stack", &ghost, &deadline())
            .unwrap();
        let err = p
            .set_promotion_score("stack", &ghost, 1, &deadline())
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("crm_attribute") && msg.contains("ghost"),
            "{msg}"
        );
    }

    #[test]
    fn a_missing_cib_file_is_no_cluster_not_a_missing_score() {
        let cib = OfflineCib::new(&["node1"]);
        let missing = cib.path().with_file_name("missing.xml");
        let err = Cluster::from_cib_file(missing)
            .get_promotion_score("stack", &node("node1"), &deadline())
            .unwrap_err();
        assert!(err.is_no_cluster(), "{err:?}");
    }

    #[test]
    fn private_attributes_use_the_offline_cib_when_one_is_set() {
        let cib = OfflineCib::new(&["node1", "node2", "node3"]);
        let p = cib.cluster();
        let (n1, n2, n3) = (node("node1"), node("node2"), node("node3"));
        p.publish_private("lsn-stack", &n2, "1#0/3000060", &deadline())
            .unwrap();
        p.publish_private("lsn-stack", &n1, "-1#0/0", &deadline())
            .unwrap();
        p.publish_private("lsn-stack", &n3, "2#0/1", &deadline())
            .unwrap();
        // Only the asked nodes, in their order.
        let got = p
            .read_private("lsn-stack", &[n2.clone(), n1.clone()], &deadline())
            .unwrap();
        assert_eq!(
            got,
            vec![
                (n2.clone(), "1#0/3000060".to_string()),
                (n1.clone(), "-1#0/0".to_string())
            ]
        );
        p.delete_private("lsn-stack", &n2, &deadline()).unwrap();
        p.delete_private("lsn-stack", &n2, &deadline()).unwrap();
        let got = p
            .read_private("lsn-stack", &[n1.clone(), n2, n3.clone()], &deadline())
            .unwrap();
        assert_eq!(
            got,
            vec![(n1, "-1#0/0".to_string()), (n3, "2#0/1".to_string())]
        );
        // No nodes asked, no values.
        assert!(p
            .read_private("lsn-stack", &[], &deadline())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn with_no_cluster_a_promotion_score_is_no_cluster_at_once() {
        let t = Instant::now();
        let err = Cluster::live()
            .set_promotion_score("stack", &node("node1"), -1000, &deadline())
            .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        match &err {
            ClusterError::NoCluster { tool, detail } => {
                assert_eq!(tool, "crm_attribute");
                assert!(!detail.is_empty());
            }
            other => panic!("expected NoCluster, got {other:?}"),
        }
        let get = Cluster::live()
            .get_promotion_score("stack", &node("node1"), &deadline())
            .unwrap_err();
        assert!(get.is_no_cluster(), "{get:?}");
        let del = Cluster::live()
            .delete_promotion_score("stack", &node("node1"), &deadline())
            .unwrap_err();
        assert!(del.is_no_cluster(), "{del:?}");
    }

    #[test]
    fn with_no_cluster_private_attributes_are_no_cluster() {
        let n1 = node("node1");
        let e = Cluster::live()
            .publish_private("lsn", &n1, "1", &deadline())
            .unwrap_err();
        assert!(e.is_no_cluster(), "{e:?}");
        let e = Cluster::live()
            .read_private("lsn", std::slice::from_ref(&n1), &deadline())
            .unwrap_err();
        assert!(e.is_no_cluster(), "{e:?}");
        let e = Cluster::live()
            .delete_private("lsn", &n1, &deadline())
            .unwrap_err();
        assert!(e.is_no_cluster(), "{e:?}");
    }

    #[test]
    fn a_passed_deadline_starts_nothing_long() {
        let t = Instant::now();
        let err = Cluster::live().set_promotion_score(
            "stack",
            &node("node1"),
            1,
            &Deadline::after(Duration::ZERO),
        );
        assert!(err.is_err());
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    }
}
