//! The Pacemaker cluster, as the agent and the operator tools see it.
//!
//! Everything here goes through Pacemaker's own command-line tools
//! (`crm_attribute`, `attrd_updater`, `crm_node`, `cibadmin`, `crm_mon`), run by
//! [`crate::cmd`] with a timeout of at most [`CALL_TIMEOUT`] and never past the
//! action's [`Deadline`]. Their output is read by pure parsers tested against
//! captured samples.
//!
//! Two facts shape the API:
//! - The agent must work where no cluster answers: `ocf-tester` runs every
//!   action with no cluster at all. A tool that cannot reach its daemon yields
//!   [`ClusterError::NoCluster`], which callers log and survive.
//! - `CIB_file` (Pacemaker's standard variable, see `crm_attribute(8)`) makes
//!   `crm_attribute`, `cibadmin` and `crm_mon` work on a CIB XML file instead of
//!   the live cluster. Tests and benchmarks use it. `attrd_updater` and
//!   `crm_node` ignore it and still need live daemons, so where they would be
//!   used this module falls back to the file (see [`Cluster::publish_private`]
//!   and [`Cluster::partition`]).
//!
//! Which of the two a call works on is a value, [`Cluster`], and not the
//! process environment: a function that takes no `Cluster` cannot be
//! pointed at a file behind its caller's back, and a test can aim two
//! handles at two files in one process. The environment variable is read
//! in one place, [`Cluster::from_cib_env`], by the binaries as they start.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cmd::{self, CommandError, Output, Spec};
use crate::deadline::Deadline;

pub mod admin;
mod attributes;
mod crm_mon;
pub(crate) mod xml;

pub use attributes::{
    parse_attrd_query, parse_score, promotion_attribute, stale_attribute, INFINITY,
};
pub use crm_mon::{
    parse_crm_mon, CloneStatus, ClusterStatus, Failure, NoQuorumPolicy, NodeStatus,
    PendingOperation, ResourceStatus, Role,
};

/// The environment variable that points Pacemaker's tools at a CIB file.
pub const CIB_FILE_ENV: &str = "CIB_file";
/// The longest any single cluster tool call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest `crm_node -n` may take when looking up the local node's name.
pub const NODE_NAME_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest node name accepted (a host name is at most 253 bytes, a Linux
/// nodename at most 64).
pub const MAX_NODE_NAME_LEN: usize = 255;

const CRM_NODE: &str = "crm_node";
const CIBADMIN: &str = "cibadmin";

/// Pacemaker's `CRM_EX_DISCONNECT`: "Lost connection to cluster".
const EXIT_DISCONNECT: i32 = 102;
/// Pacemaker's `CRM_EX_NOSUCH`: the object (attribute, node) does not exist.
const EXIT_NOSUCH: i32 = 105;

/// What tools say when no daemon answers them (Pacemaker 2.1.5):
/// `crm_attribute` "Could not connect to the CIB: Transport endpoint is not
/// connected", `crm_node`/`attrd_updater` "Connection refused".
const NO_CLUSTER_MARKERS: [&str; 4] = [
    "Connection refused",
    "Transport endpoint is not connected",
    "Could not connect",
    "Not connected",
];

/// Why a cluster query or update failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The tool could not be run, timed out or failed; the error names the
    /// command line, its exit status and its stderr.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// No cluster answered (Pacemaker not running on this node, or not yet).
    /// Callers that only publish information log this and carry on.
    #[error("{tool}: no cluster answered: {detail}")]
    NoCluster {
        /// The tool that was run.
        tool: String,
        /// What it said.
        detail: String,
    },
    /// A tool's output did not read as expected.
    #[error("could not read {what} from {}", excerpt(input))]
    Parse {
        /// What was being read.
        what: String,
        /// The text that did not parse (shown shortened).
        input: String,
    },
    /// A tool ran and reported an error in its structured output.
    #[error("{tool} reported an error (code {code}): {message}")]
    Reported {
        /// The tool that was run.
        tool: String,
        /// Its Pacemaker exit code.
        code: i32,
        /// Its message.
        message: String,
    },
}

impl ClusterError {
    /// Whether the error only means that no cluster is running here, which
    /// callers may treat as "nothing to publish" rather than a failure.
    pub fn is_no_cluster(&self) -> bool {
        matches!(self, ClusterError::NoCluster { .. })
    }

    pub(crate) fn parse(what: impl Into<String>, input: impl Into<String>) -> Self {
        ClusterError::Parse {
            what: what.into(),
            input: input.into(),
        }
    }
}

/// The input of a parse error as shown: quoted and cut at 120 characters.
fn excerpt(input: &str) -> String {
    const MAX: usize = 120;
    let mut s: String = input.chars().take(MAX).collect();
    if input.chars().count() > MAX {
        s.push_str("...");
    }
    format!("{s:?}")
}

/// A cluster node's name, as Pacemaker knows it (`crm_node -n`, `uname -n`).
///
/// Checked when built: not empty, at most [`MAX_NODE_NAME_LEN`] bytes, no
/// whitespace and no control characters, so it can be passed to a tool as one
/// argument and found again in the tools' space-separated output.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct NodeName(String);

impl NodeName {
    /// Checks `s` and wraps it.
    pub fn new(s: &str) -> Result<Self, ClusterError> {
        let bad = |why: &str| ClusterError::parse(format!("a node name ({why})"), s);
        if s.is_empty() {
            return Err(bad("empty"));
        }
        if s.len() > MAX_NODE_NAME_LEN {
            return Err(bad("too long"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("whitespace or control character"));
        }
        Ok(NodeName(s.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for NodeName {
    type Err = ClusterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeName::new(s)
    }
}

impl AsRef<str> for NodeName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The cluster a call works on: the running one, or a CIB file.
///
/// With a file, the handle hands `CIB_file` to each tool it runs, on that
/// child's environment only (see [`crate::cmd`]: children start with a
/// cleared environment), which is what Pacemaker's tools understand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cluster {
    /// `None`: the live cluster.
    cib: Option<PathBuf>,
}

impl Cluster {
    /// The running cluster, through its daemons.
    pub fn live() -> Self {
        Cluster { cib: None }
    }

    /// A CIB XML file, as with `CIB_file=PATH` for Pacemaker's tools.
    pub fn from_cib_file(path: impl Into<PathBuf>) -> Self {
        Cluster {
            cib: Some(path.into()),
        }
    }

    /// The cluster a `CIB_file` value names, as Pacemaker reads the variable:
    /// unset or empty is the live cluster. The one place that interprets it;
    /// binaries pass what they found in their environment (rapidproctl's
    /// and rapidpro-alert's `main`, the agent's [`crate::ocf::OcfEnv`]).
    pub fn from_cib_env(value: Option<&OsStr>) -> Self {
        match value.filter(|v| !v.is_empty()) {
            Some(file) => Cluster::from_cib_file(file),
            None => Cluster::live(),
        }
    }

    /// The CIB file this handle works on, if not the live cluster.
    pub fn cib_file(&self) -> Option<&Path> {
        self.cib.as_deref()
    }

    /// A tool call aimed at this cluster (see [`tool`]).
    pub(crate) fn tool(&self, program: &str, timeout: Duration) -> Spec {
        tool(program, self.cib_file(), timeout)
    }
}

/// A tool call aimed at the live cluster (`cib` is `None`) or at a CIB file.
///
/// The child's environment is cleared ([`crate::cmd`]): it gets Pacemaker's
/// own settings (`PCMK_*`, `HA_*`: logging, IPC buffer size; no secret)
/// and `CIB_file` only when `cib` names one. In particular it never sees
/// the operation's default-target variables: with
/// `OCF_RESKEY_CRM_meta_on_node` inherited, `attrd_updater --query --all`
/// answers for this node alone (Pacemaker 2.1.5), and promote saw no other
/// standby's position. Every call names its node explicitly instead.
pub(crate) fn tool(program: &str, cib: Option<&Path>, timeout: Duration) -> Spec {
    let spec = Spec::new(program)
        .timeout(timeout)
        .inherit_prefixed("PCMK_")
        .inherit_prefixed("HA_");
    match cib {
        Some(file) => spec.env(CIB_FILE_ENV, file),
        None => spec,
    }
}

/// Runs a cluster tool; a failure that says no cluster answered becomes
/// [`ClusterError::NoCluster`].
pub(crate) fn run_tool(spec: &Spec) -> Result<Output, ClusterError> {
    cmd::run(spec).map_err(|e| classify(spec, e))
}

/// Maps "could not reach the daemon" failures to [`ClusterError::NoCluster`].
fn classify(spec: &Spec, e: CommandError) -> ClusterError {
    match &e {
        CommandError::Failed {
            code,
            stderr,
            stdout,
            ..
        } if *code == Some(EXIT_DISCONNECT)
            || says_no_cluster(stderr)
            || says_no_cluster(stdout) =>
        {
            ClusterError::NoCluster {
                tool: spec.program().to_string_lossy().into_owned(),
                detail: no_cluster_line(stderr)
                    .or_else(|| last_line(stderr))
                    .unwrap_or("not connected")
                    .to_string(),
            }
        }
        _ => ClusterError::Command(e),
    }
}

fn says_no_cluster(text: &str) -> bool {
    NO_CLUSTER_MARKERS.iter().any(|m| text.contains(m))
}

/// Whether a failure means "no such attribute or node" (`CRM_EX_NOSUCH`),
/// and not that the CIB itself could not be reached (which a missing
/// `CIB_file` also reports as "No such device or address").
pub(crate) fn is_not_found(e: &ClusterError) -> bool {
    match e {
        ClusterError::Command(CommandError::Failed { code, stderr, .. }) => {
            !says_no_cluster(stderr)
                && (*code == Some(EXIT_NOSUCH)
                    || stderr.contains("No such device or address")
                    || stderr.contains("does not exist"))
        }
        _ => false,
    }
}

/// The line of `text` that says no cluster answered.
fn no_cluster_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).find(|l| says_no_cluster(l))
}

fn last_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).rfind(|l| !l.is_empty())
}

impl Cluster {
    /// The name of the local node, the way a Pacemaker agent should find it.
    ///
    /// In order: `on_node` (from `OCF_RESKEY_CRM_meta_on_node`) when set and a
    /// valid name; else `crm_node -n` (given at most [`NODE_NAME_TIMEOUT`] and
    /// what is left of `deadline`); else the kernel's nodename, which is what
    /// `uname -n` prints (read with `gethostname(2)`: glibc implements it with
    /// `uname(2)`, so no process is started). Never fails: a name that cannot be
    /// read at all ends up as `localhost`.
    ///
    /// `pacemakerd -$` is deliberately not parsed: resource-agents 4.12's
    /// `ocf_local_nodename` misreads it and falls back to `uname -n`.
    pub fn local_node_name(&self, on_node: Option<&str>, deadline: &Deadline) -> NodeName {
        if let Some(name) = on_node.map(str::trim).filter(|s| !s.is_empty()) {
            match NodeName::new(name) {
                Ok(n) => return n,
                Err(e) => log::warn!("ignoring OCF_RESKEY_CRM_meta_on_node: {e}"),
            }
        }
        let spec = self
            .tool(CRM_NODE, deadline.cap(NODE_NAME_TIMEOUT))
            .arg("--name");
        match run_tool(&spec) {
            Ok(out) => match out.stdout.lines().next().map(str::trim).map(NodeName::new) {
                Some(Ok(n)) => return n,
                _ => log::debug!("crm_node --name printed no node name: {:?}", out.stdout),
            },
            Err(e) => log::debug!("local node name: {e}; using the kernel's nodename"),
        }
        kernel_nodename()
    }
}

/// The kernel's nodename (`uname -n`), or `localhost` if it is unusable.
fn kernel_nodename() -> NodeName {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| NodeName::new(&h.to_string_lossy()).ok())
        .unwrap_or_else(|| NodeName("localhost".to_string()))
}

impl Cluster {
    /// The nodes of the local partition: the members this node can talk to,
    /// from `crm_node --partition` (one line of names separated by spaces).
    ///
    /// With a CIB file, `crm_node` would still ask the live controller, so the
    /// partition is read from the file instead: the nodes whose `node_state` says
    /// they are in the membership (`in_ccm`) with a running controller (`crmd`).
    pub fn partition(&self, deadline: &Deadline) -> Result<Vec<NodeName>, ClusterError> {
        let timeout = deadline.cap(CALL_TIMEOUT);
        match self.cib_file() {
            None => {
                let out = run_tool(&self.tool(CRM_NODE, timeout).arg("--partition"))?;
                parse_partition(&out.stdout)
            }
            Some(_) => {
                let spec = self.tool(CIBADMIN, timeout).args([
                    "--query",
                    "--xpath=//node_state",
                    "--no-children",
                ]);
                match run_tool(&spec) {
                    Ok(out) => parse_cib_members(&out.stdout),
                    Err(e) if is_not_found(&e) => Ok(Vec::new()),
                    Err(e) => Err(e),
                }
            }
        }
    }
}

impl Cluster {
    /// Every node the cluster knows, up or not: the names in the CIB's
    /// `nodes` section (`cibadmin --query --scope=nodes`), which a CIB file
    /// answers too. A primary that acknowledges commits asynchronously
    /// marks every other node stale, including one that is down.
    pub fn nodes(&self, deadline: &Deadline) -> Result<Vec<NodeName>, ClusterError> {
        let spec = self
            .tool(CIBADMIN, deadline.cap(CALL_TIMEOUT))
            .args(["--query", "--scope=nodes"]);
        let out = run_tool(&spec)?;
        parse_cib_nodes(&out.stdout)
    }
}

/// The `uname` of every `node` element of the CIB's `nodes` section.
pub(crate) fn parse_cib_nodes(text: &str) -> Result<Vec<NodeName>, ClusterError> {
    let root = xml::parse(text).map_err(|e| ClusterError::parse(format!("nodes ({e})"), text))?;
    let mut nodes = Vec::new();
    let mut elements = root.descendants_named("node");
    if root.name == "node" {
        elements.insert(0, &root);
    }
    for n in elements {
        let uname = n
            .attr("uname")
            .ok_or_else(|| ClusterError::parse("node without uname", text))?;
        nodes.push(NodeName::new(uname)?);
    }
    Ok(nodes)
}

/// Reads `crm_node --partition` output: node names separated by whitespace.
pub fn parse_partition(text: &str) -> Result<Vec<NodeName>, ClusterError> {
    text.split_whitespace().map(NodeName::new).collect()
}

/// Reads the members out of `node_state` elements (from `cibadmin --query`):
/// those in the membership with a running controller. Pacemaker 2.1 writes
/// `in_ccm="true"` and `crmd="online"`; later versions write the time the node
/// joined, so a number other than 0 also counts.
pub(crate) fn parse_cib_members(text: &str) -> Result<Vec<NodeName>, ClusterError> {
    let root =
        xml::parse(text).map_err(|e| ClusterError::parse(format!("node_state ({e})"), text))?;
    let mut states = root.descendants_named("node_state");
    if root.name == "node_state" {
        states.insert(0, &root);
    }
    let joined = |v: Option<&str>, word: &str| match v {
        Some(v) if v == word => true,
        Some(v) => v.parse::<u64>().is_ok_and(|t| t > 0),
        None => false,
    };
    let mut nodes = Vec::new();
    for s in states {
        if joined(s.attr("in_ccm"), "true") && joined(s.attr("crmd"), "online") {
            let uname = s
                .attr("uname")
                .ok_or_else(|| ClusterError::parse("node_state without uname", text))?;
            nodes.push(NodeName::new(uname)?);
        }
    }
    Ok(nodes)
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn node_names_are_checked() {
        assert_eq!(
            NodeName::new("node-1.example").unwrap().as_str(),
            "node-1.example"
        );
        assert_eq!(NodeName::new("node1").unwrap().to_string(), "node1");
        for bad in [
            "",
            "two words",
            "tab\there",
            "nl\n",
            "nul\0",
            &"x".repeat(256),
        ] {
            assert!(NodeName::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(NodeName::new(&"x".repeat(255)).is_ok());
    }

    #[test]
    fn a_parse_error_shows_a_shortened_input() {
        let e = ClusterError::parse("a promotion score", "x".repeat(500));
        let msg = e.to_string();
        assert!(
            msg.starts_with("could not read a promotion score from \"xxx"),
            "{msg}"
        );
        assert!(msg.len() < 200, "{msg}");
    }

    #[test]
    fn the_partition_is_read_from_crm_node_output() {
        let nodes = parse_partition("node1 node2 node3\n").unwrap();
        let names: Vec<_> = nodes.iter().map(NodeName::as_str).collect();
        assert_eq!(names, ["node1", "node2", "node3"]);
        assert!(parse_partition("").unwrap().is_empty());
    }

    #[test]
    fn members_are_read_from_node_states() {
        let xml = r#"<xpath-query>
  <node_state id="1" uname="node1" in_ccm="true" crmd="online" join="member" expected="member"/>
  <node_state id="2" uname="node2" in_ccm="false" crmd="offline" join="down" expected="down"/>
  <node_state id="3" uname="node3" in_ccm="1700000000" crmd="1700000001" join="member"/>
  <node_state id="4" uname="node4" in_ccm="true" crmd="0"/>
</xpath-query>"#;
        let names: Vec<_> = parse_cib_members(xml)
            .unwrap()
            .into_iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(names, ["node1", "node3"]);
        // One match: cibadmin prints the element itself.
        let one = r#"<node_state id="1" uname="node1" in_ccm="true" crmd="online"/>"#;
        assert_eq!(parse_cib_members(one).unwrap().len(), 1);
        assert!(parse_cib_members("<xpath-query><node_state").is_err());
    }

    #[test]
    fn with_no_cluster_the_local_node_is_the_kernels_nodename() {
        let t = Instant::now();
        let name = Cluster::live().local_node_name(None, &Deadline::after(Duration::from_secs(10)));
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        // What `uname -n` prints, the fallback every agent ends up with.
        let uname = cmd::run(&Spec::new("uname").arg("-n")).unwrap();
        assert_eq!(name.as_str(), uname.stdout.trim());
    }

    #[test]
    fn on_node_wins_when_valid() {
        let d = Deadline::after(Duration::from_secs(5));
        assert_eq!(
            Cluster::live().local_node_name(Some("node7"), &d).as_str(),
            "node7"
        );
        // An invalid value is not used.
        assert_ne!(
            Cluster::live()
                .local_node_name(Some("two words"), &d)
                .as_str(),
            "two words"
        );
    }

    #[test]
    fn two_handles_on_two_cib_files_never_see_each_others_writes() {
        // What the hidden CIB_file input made impossible in one process.
        let (a, b) = (
            testing::OfflineCib::new(&["node1"]),
            testing::OfflineCib::new(&["node1"]),
        );
        let (a, b, n1) = (a.cluster(), b.cluster(), NodeName::new("node1").unwrap());
        let d = Deadline::after(Duration::from_secs(10));
        a.set_promotion_score("stack", &n1, 7, &d).unwrap();
        b.publish_private("lsn-stack", &n1, "1#0/1", &d).unwrap();
        assert_eq!(a.get_promotion_score("stack", &n1, &d).unwrap(), Some(7));
        assert_eq!(b.get_promotion_score("stack", &n1, &d).unwrap(), None);
        let one = std::slice::from_ref(&n1);
        assert!(a.read_private("lsn-stack", one, &d).unwrap().is_empty());
        assert_eq!(b.read_private("lsn-stack", one, &d).unwrap().len(), 1);
    }

    #[test]
    fn a_cib_file_value_names_a_file_unless_unset_or_empty() {
        let file = Cluster::from_cib_env(Some(OsStr::new("/tmp/cib.xml")));
        assert_eq!(file.cib_file(), Some(Path::new("/tmp/cib.xml")));
        assert_eq!(Cluster::from_cib_env(Some(OsStr::new(""))), Cluster::live());
        assert_eq!(Cluster::from_cib_env(None), Cluster::live());
    }

    #[test]
    fn with_no_cluster_the_partition_is_no_cluster() {
        let err = Cluster::live()
            .partition(&Deadline::after(Duration::from_secs(5)))
            .unwrap_err();
        assert!(err.is_no_cluster(), "{err:?}");
    }

    #[test]
    fn an_offline_cib_gives_the_partition_of_its_online_nodes() {
        let cib = testing::OfflineCib::new(&["node1", "node2", "node3"]);
        cib.set_node_state("node3", false);
        let nodes = cib
            .cluster()
            .partition(&Deadline::after(Duration::from_secs(5)))
            .unwrap();
        let names: Vec<_> = nodes.iter().map(NodeName::as_str).collect();
        assert_eq!(names, ["node1", "node2"]);
    }
}
