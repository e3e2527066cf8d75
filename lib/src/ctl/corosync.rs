//! The nodes' addresses, from the `nodelist` of `corosync.conf`.
//!
//! Pacemaker knows nodes by name; rapidproctl connects to each node's
//! PostgreSQL and Redis at the address Corosync uses for it (`ring0_addr`),
//! which is what `pcs cluster setup` writes. The file is read rather than
//! `corosync-cmapctl`, so it works on a node whose Corosync is down.

use std::collections::BTreeMap;
use std::path::Path;

use super::Error;

/// Where Corosync's configuration is on Debian.
pub const COROSYNC_CONF: &str = "/etc/corosync/corosync.conf";

/// One `node { }` block of the `nodelist`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorosyncNode {
    /// `name`; Corosync falls back to `ring0_addr` when it is absent.
    pub name: String,
    /// `nodeid`, if given.
    pub nodeid: Option<u32>,
    /// `ring0_addr`.
    pub ring0_addr: String,
}

/// Parses the `nodelist` section of a `corosync.conf`.
///
/// The format is nested `name { key: value }` sections with `#` comments.
/// Nodes without `ring0_addr` are skipped.
pub fn parse_nodelist(text: &str) -> Result<Vec<CorosyncNode>, Error> {
    let mut path: Vec<String> = Vec::new();
    let mut nodes = Vec::new();
    let mut current: Option<BTreeMap<String, String>> = None;
    for (no, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(section) = line.strip_suffix('{') {
            path.push(section.trim().to_string());
            if path == ["nodelist", "node"] {
                current = Some(BTreeMap::new());
            }
            continue;
        }
        if line == "}" {
            if path == ["nodelist", "node"] {
                if let Some(n) = current.take() {
                    if let Some(addr) = n.get("ring0_addr") {
                        nodes.push(CorosyncNode {
                            name: n.get("name").unwrap_or(addr).clone(),
                            nodeid: n.get("nodeid").and_then(|v| v.parse().ok()),
                            ring0_addr: addr.clone(),
                        });
                    }
                }
            }
            if path.pop().is_none() {
                return Err(Error::Cib(format!(
                    "corosync.conf line {}: '}}' without a section",
                    no + 1
                )));
            }
            continue;
        }
        if let (Some(n), Some((k, v))) = (current.as_mut(), line.split_once(':')) {
            n.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    if !path.is_empty() {
        return Err(Error::Cib(format!(
            "corosync.conf: section {} is never closed",
            path.join(".")
        )));
    }
    Ok(nodes)
}

/// Node name to address, from `corosync.conf` at `path`.
pub fn addresses(path: &Path) -> Result<BTreeMap<String, String>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(parse_nodelist(&text)?
        .into_iter()
        .map(|n| (n.name, n.ring0_addr))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The corosync.conf of a namespaced test cluster (tests/harness).
    const RECORDED: &str = include_str!("fixtures/corosync.conf");

    #[test]
    fn the_nodelist_gives_each_nodes_ring0_address() {
        let nodes = parse_nodelist(RECORDED).unwrap();
        assert_eq!(
            nodes,
            [
                CorosyncNode {
                    name: "node1".into(),
                    nodeid: Some(1),
                    ring0_addr: "10.200.200.11".into()
                },
                CorosyncNode {
                    name: "node2".into(),
                    nodeid: Some(2),
                    ring0_addr: "10.200.200.12".into()
                },
            ]
        );
    }

    #[test]
    fn a_node_without_a_name_is_named_by_its_address_and_comments_are_ignored() {
        let text = "# pcs\nnodelist {\n  node {\n    ring0_addr: 192.0.2.1 # first\n  }\n  node {\n    nodeid: 2\n  }\n}\n";
        let nodes = parse_nodelist(text).unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].name, "192.0.2.1");
        assert_eq!(nodes[0].nodeid, None);
    }

    #[test]
    fn unbalanced_braces_are_errors() {
        assert!(parse_nodelist("nodelist {\n node {\n").is_err());
        assert!(parse_nodelist("}\n").is_err());
    }
}
