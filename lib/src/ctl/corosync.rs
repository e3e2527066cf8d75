//! What `corosync.conf` says: the nodes' addresses (`nodelist`) and how
//! quorum is decided (`quorum`, its quorum device included).
//!
//! Pacemaker knows nodes by name; rapidproctl connects to each node's
//! PostgreSQL and Redis at the address Corosync uses for it (`ring0_addr`),
//! which is what `pcs cluster setup` writes. The file is read rather than
//! `corosync-cmapctl`, so it works on a node whose Corosync is down.

use std::collections::BTreeMap;
use std::fmt;
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
    let parsed = entries(text)?;
    let nodes = parsed
        .sections
        .iter()
        .enumerate()
        .filter(|(_, path)| *path == &["nodelist", "node"])
        .filter_map(|(section, _)| {
            let get = |key: &str| {
                parsed
                    .entries
                    .iter()
                    .find(|e| e.section == Some(section) && e.key == key)
                    .map(|e| e.value.clone())
            };
            let addr = get("ring0_addr")?;
            Some(CorosyncNode {
                name: get("name").unwrap_or_else(|| addr.clone()),
                nodeid: get("nodeid").and_then(|v| v.parse().ok()),
                ring0_addr: addr,
            })
        })
        .collect();
    Ok(nodes)
}

/// One `key: value` line of `corosync.conf`, with the sections it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// The enclosing sections, outermost first (`["quorum", "device"]`).
    path: Vec<String>,
    /// The innermost enclosing section, as an index into
    /// [`Parsed::sections`] (which tells two `node { }` apart).
    section: Option<usize>,
    key: String,
    value: String,
}

/// What [`entries`] read: every `key: value` in order, and every section
/// opened (an empty `device { }` has no entries but is configured).
struct Parsed {
    entries: Vec<Entry>,
    sections: Vec<Vec<String>>,
}

/// Every `key: value` and section of a `corosync.conf`, in order.
///
/// As Corosync's own parser (`coroparse.c`) does, only a line whose first
/// non-blank character is `#` is a comment: a `#` inside a value is part
/// of it, which matters for a heuristics command (`exec_NAME`).
fn entries(text: &str) -> Result<Parsed, Error> {
    let mut path: Vec<String> = Vec::new();
    // The index in `out.sections` of each open section, innermost last.
    let mut open: Vec<usize> = Vec::new();
    let mut out = Parsed {
        entries: Vec::new(),
        sections: Vec::new(),
    };
    for (no, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(section) = line.strip_suffix('{') {
            path.push(section.trim().to_string());
            open.push(out.sections.len());
            out.sections.push(path.clone());
        } else if line == "}" {
            open.pop();
            if path.pop().is_none() {
                return Err(Error::Cib(format!(
                    "corosync.conf line {}: '}}' without a section",
                    no + 1
                )));
            }
        } else if let Some((k, v)) = line.split_once(':') {
            out.entries.push(Entry {
                path: path.clone(),
                section: open.last().copied(),
                key: k.trim().to_string(),
                value: v.trim().to_string(),
            });
        }
    }
    if !path.is_empty() {
        return Err(Error::Cib(format!(
            "corosync.conf: section {} is never closed",
            path.join(".")
        )));
    }
    Ok(out)
}

/// `quorum.device.model`: only `net` (a `corosync-qnetd` arbiter) exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceModel {
    /// `net`.
    Net,
    /// No `model` key: corosync-qdevice refuses to start.
    Missing,
    /// Anything else, as written.
    Other(String),
}

/// `quorum.device.net.algorithm`, also what `corosync-qdevice-tool` shows
/// as `Algorithm:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Algorithm {
    /// `ffsplit` ("Fifty-Fifty split"): one vote to the larger partition,
    /// between equal ones to the better heuristics score. The default.
    Ffsplit,
    /// `lms` (last man standing).
    Lms,
    /// `2nodelms`: for developers, says corosync-qdevice(8).
    TwoNodeLms,
    /// `test`: for developers.
    Test,
    /// Anything else, as written.
    Other(String),
}

impl Algorithm {
    /// From the `corosync.conf` spelling; an absent key is `ffsplit`.
    pub fn from_config(v: Option<&str>) -> Algorithm {
        match v.map(str::to_ascii_lowercase).as_deref() {
            None | Some("ffsplit") => Algorithm::Ffsplit,
            Some("lms") => Algorithm::Lms,
            Some("2nodelms") => Algorithm::TwoNodeLms,
            Some("test") => Algorithm::Test,
            Some(_) => Algorithm::Other(v.unwrap_or_default().to_string()),
        }
    }

    /// From `corosync-qdevice-tool -s` (`tlv_decision_algorithm_type_to_str`).
    pub fn from_tool(v: &str) -> Algorithm {
        match v {
            "Fifty-Fifty split" => Algorithm::Ffsplit,
            "LMS" => Algorithm::Lms,
            "2 Node LMS" => Algorithm::TwoNodeLms,
            "Test" => Algorithm::Test,
            other => Algorithm::Other(other.to_string()),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Algorithm::Ffsplit => "ffsplit",
            Algorithm::Lms => "lms",
            Algorithm::TwoNodeLms => "2nodelms",
            Algorithm::Test => "test",
            Algorithm::Other(s) => s,
        })
    }
}

/// `quorum.device.heuristics.mode`, also `corosync-qdevice-tool -sv`'s
/// `Heuristics:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeuristicsMode {
    /// `off` (the default): no heuristics, a tie is decided by
    /// `tie_breaker` alone.
    Off,
    /// `on`: run at start, on membership changes, on connect and regularly.
    On,
    /// `sync`: run at start, on membership changes and on connect only.
    Sync,
    /// Anything else, as written.
    Other(String),
}

impl HeuristicsMode {
    /// From the `corosync.conf` spelling; an absent key is `off`.
    pub fn from_config(v: Option<&str>) -> HeuristicsMode {
        match v.map(str::to_ascii_lowercase).as_deref() {
            None | Some("off") => HeuristicsMode::Off,
            Some("on") => HeuristicsMode::On,
            Some("sync") => HeuristicsMode::Sync,
            Some(_) => HeuristicsMode::Other(v.unwrap_or_default().to_string()),
        }
    }

    /// From `corosync-qdevice-tool -sv` (`qdevice_heuristics_mode_to_str`).
    pub fn from_tool(v: &str) -> HeuristicsMode {
        match v {
            "Disabled" => HeuristicsMode::Off,
            "Enabled" => HeuristicsMode::On,
            "Enabled only on sync" => HeuristicsMode::Sync,
            other => HeuristicsMode::Other(other.to_string()),
        }
    }

    /// Whether heuristics run at all.
    pub fn enabled(&self) -> bool {
        matches!(self, HeuristicsMode::On | HeuristicsMode::Sync)
    }
}

impl fmt::Display for HeuristicsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeuristicsMode::Off => "off",
            HeuristicsMode::On => "on",
            HeuristicsMode::Sync => "sync",
            HeuristicsMode::Other(s) => s,
        })
    }
}

/// The `quorum { device { } }` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    /// `model`.
    pub model: DeviceModel,
    /// `votes` (corosync-qdevice's default: the nodes' votes minus one).
    pub votes: Option<String>,
    /// `net.host`: the `corosync-qnetd` server.
    pub host: Option<String>,
    /// `net.port` (default 5403).
    pub port: Option<String>,
    /// `net.algorithm`.
    pub algorithm: Algorithm,
    /// `net.tie_breaker` as written (`lowest`, the default; `highest`; a
    /// node id).
    pub tie_breaker: Option<String>,
    /// `heuristics.mode`.
    pub heuristics_mode: HeuristicsMode,
    /// `heuristics.exec_NAME`: NAME to command.
    pub heuristics_execs: BTreeMap<String, String>,
}

/// The `quorum` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QuorumConfig {
    /// `two_node: 1`: quorum is 1 of 2 votes, so each half of a split keeps
    /// quorum and the fence race decides.
    pub two_node: bool,
    /// `last_man_standing: 1`: votequorum then disables a quorum device.
    pub last_man_standing: bool,
    /// `auto_tie_breaker: 1`: votequorum then disables a quorum device.
    pub auto_tie_breaker: bool,
    /// `device { }`, if any.
    pub device: Option<DeviceConfig>,
}

fn flag(v: Option<&str>) -> bool {
    matches!(
        v.map(str::to_ascii_lowercase).as_deref(),
        Some("1" | "yes" | "on" | "true")
    )
}

/// Parses the `quorum` section of a `corosync.conf`. A quorum device is
/// configured when the file has a `quorum { device { } }` section.
pub fn parse_quorum(text: &str) -> Result<QuorumConfig, Error> {
    let parsed = entries(text)?;
    let all = &parsed.entries;
    // The last value wins, as in Corosync's cmap.
    let get = |path: &[&str], key: &str| -> Option<&str> {
        all.iter()
            .rev()
            .find(|e| e.path == path && e.key == key)
            .map(|e| e.value.as_str())
    };
    let has_device = parsed.sections.iter().any(|p| p == &["quorum", "device"]);
    let device = has_device.then(|| {
        let dev = ["quorum", "device"];
        let net = ["quorum", "device", "net"];
        let heur = ["quorum", "device", "heuristics"];
        DeviceConfig {
            model: match get(&dev, "model") {
                None => DeviceModel::Missing,
                Some(m) if m.eq_ignore_ascii_case("net") => DeviceModel::Net,
                Some(m) => DeviceModel::Other(m.to_string()),
            },
            votes: get(&dev, "votes").map(str::to_string),
            host: get(&net, "host").map(str::to_string),
            port: get(&net, "port").map(str::to_string),
            algorithm: Algorithm::from_config(get(&net, "algorithm")),
            tie_breaker: get(&net, "tie_breaker").map(str::to_string),
            heuristics_mode: HeuristicsMode::from_config(get(&heur, "mode")),
            heuristics_execs: all
                .iter()
                .filter(|e| e.path == heur)
                .filter_map(|e| {
                    e.key
                        .strip_prefix("exec_")
                        .map(|name| (name.to_string(), e.value.clone()))
                })
                .collect(),
        }
    });
    let q = ["quorum"];
    Ok(QuorumConfig {
        two_node: flag(get(&q, "two_node")),
        last_man_standing: flag(get(&q, "last_man_standing")),
        auto_tie_breaker: flag(get(&q, "auto_tie_breaker")),
        device,
    })
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
    fn a_node_without_a_name_is_named_by_its_address_and_comment_lines_are_ignored() {
        let text = "# pcs\nnodelist {\n  node {\n    # first\n    ring0_addr: 192.0.2.1\n  }\n  node {\n    nodeid: 2\n  }\n}\n";
        let nodes = parse_nodelist(text).unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].name, "192.0.2.1");
        assert_eq!(nodes[0].nodeid, None);
    }

    /// As Corosync reads it: `corosync -t` on `nodeid: 1 # c` says `Value of
    /// key "nodelist.node.0.nodeid" is expected to be integer ..., but "1 #
    /// c" was given`. Only a line that starts with `#` is a comment.
    #[test]
    fn a_hash_after_a_value_is_part_of_the_value_as_corosync_reads_it() {
        let text =
            "nodelist {\n  node {\n    ring0_addr: 192.0.2.1 # first\n    nodeid: 1\n  }\n}\n";
        let nodes = parse_nodelist(text).unwrap();
        assert_eq!(nodes[0].ring0_addr, "192.0.2.1 # first");
        assert_eq!(nodes[0].nodeid, Some(1));
    }

    #[test]
    fn two_nodes_keep_their_own_keys() {
        let text = "nodelist {\n  node {\n    ring0_addr: 10.0.0.1\n    name: a\n    nodeid: 1\n  }\n  node {\n    nodeid: 2\n    ring0_addr: 10.0.0.2\n  }\n}\n";
        let nodes = parse_nodelist(text).unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!((nodes[0].name.as_str(), nodes[0].nodeid), ("a", Some(1)));
        assert_eq!(
            (nodes[1].name.as_str(), nodes[1].nodeid),
            ("10.0.0.2", Some(2))
        );
    }

    /// The test cluster's file with the quorum device `pcs quorum device
    /// add model net host=... algorithm=ffsplit heuristics mode=on
    /// exec_gateway=...` adds (written in pcs's layout, not recorded).
    const WITH_QDEVICE: &str = include_str!("fixtures/corosync-qdevice.conf");

    #[test]
    fn a_two_node_cluster_without_a_device_has_two_node_and_no_device() {
        let q = parse_quorum(RECORDED).unwrap();
        assert_eq!(
            q,
            QuorumConfig {
                two_node: true,
                ..QuorumConfig::default()
            }
        );
    }

    #[test]
    fn the_quorum_device_gives_model_host_algorithm_and_heuristics() {
        let q = parse_quorum(WITH_QDEVICE).unwrap();
        assert!(!q.two_node);
        let d = q.device.unwrap();
        assert_eq!(d.model, DeviceModel::Net);
        assert_eq!(d.votes.as_deref(), Some("1"));
        assert_eq!(d.host.as_deref(), Some("10.200.200.3"));
        assert_eq!(d.port, None);
        assert_eq!(d.algorithm, Algorithm::Ffsplit);
        assert_eq!(d.tie_breaker, None);
        assert_eq!(d.heuristics_mode, HeuristicsMode::On);
        assert_eq!(
            d.heuristics_execs.get("gateway").map(String::as_str),
            Some("/bin/ping -q -c 1 -W 1 10.200.200.1")
        );
        // The nodelist is still read from the same file.
        assert_eq!(parse_nodelist(WITH_QDEVICE).unwrap().len(), 2);
    }

    #[test]
    fn an_empty_device_section_is_a_device_with_its_defaults_and_no_model() {
        let q = parse_quorum("quorum {\n  two_node: 1\n  device {\n  }\n}\n").unwrap();
        assert!(q.two_node);
        let d = q.device.unwrap();
        assert_eq!(d.model, DeviceModel::Missing);
        assert_eq!(d.algorithm, Algorithm::Ffsplit);
        assert_eq!(d.heuristics_mode, HeuristicsMode::Off);
        assert!(d.heuristics_execs.is_empty());
    }

    #[test]
    fn only_whole_line_comments_are_comments_in_the_quorum_section() {
        let text = "quorum {\n # two_node: 1\n device {\n  model: NET\n  net {\n   algorithm: lms\n   tie_breaker: 2\n  }\n  heuristics {\n   mode: sync\n   exec_x: /bin/sh -c 'exit 0 # ok'\n  }\n }\n}\n";
        let q = parse_quorum(text).unwrap();
        assert!(!q.two_node);
        let d = q.device.unwrap();
        assert_eq!(d.model, DeviceModel::Net);
        assert_eq!(d.algorithm, Algorithm::Lms);
        assert_eq!(d.tie_breaker.as_deref(), Some("2"));
        assert_eq!(d.heuristics_mode, HeuristicsMode::Sync);
        assert_eq!(d.heuristics_execs["x"], "/bin/sh -c 'exit 0 # ok'");
    }

    #[test]
    fn a_device_outside_the_quorum_section_is_not_a_quorum_device() {
        let q = parse_quorum("totem {\n device {\n  model: net\n }\n}\n").unwrap();
        assert_eq!(q.device, None);
    }

    #[test]
    fn algorithms_and_heuristics_modes_read_both_spellings() {
        assert_eq!(
            Algorithm::from_config(Some("2nodelms")),
            Algorithm::TwoNodeLms
        );
        assert_eq!(
            Algorithm::from_config(Some("fifty")),
            Algorithm::Other("fifty".into())
        );
        assert_eq!(
            Algorithm::from_tool("Fifty-Fifty split"),
            Algorithm::Ffsplit
        );
        assert_eq!(Algorithm::from_tool("2 Node LMS"), Algorithm::TwoNodeLms);
        assert_eq!(
            HeuristicsMode::from_tool("Enabled only on sync"),
            HeuristicsMode::Sync
        );
        assert_eq!(HeuristicsMode::from_tool("Disabled"), HeuristicsMode::Off);
        assert!(!HeuristicsMode::Off.enabled() && HeuristicsMode::On.enabled());
        assert_eq!(Algorithm::Ffsplit.to_string(), "ffsplit");
    }

    #[test]
    fn unbalanced_braces_are_errors() {
        assert!(parse_nodelist("nodelist {\n node {\n").is_err());
        assert!(parse_nodelist("}\n").is_err());
        assert!(parse_quorum("quorum {\n").is_err());
        assert!(parse_quorum("}\n").is_err());
    }
}
