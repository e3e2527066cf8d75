//! The quorum device: the arbiter that lets two nodes survive a network
//! split (issue 14), as `rapidproctl status` shows it and `rapidproctl
//! check` judges it.
//!
//! With two nodes and `two_node: 1`, each half of a split keeps quorum and
//! the fence race decides: a primary cut off from its clients still wins it
//! (it is favoured by `priority-fencing-delay`) and powers off the healthy
//! standby, and RapidPro stays down until the link heals. A quorum device
//! (`corosync-qdevice` on each node, `corosync-qnetd` on a third host) gives
//! the third vote to the side that still reaches the arbiter and passes its
//! heuristics; the other side loses quorum and stops without fencing.
//!
//! Three sources, read by [`observe`]:
//! - `corosync.conf` (`quorum.device`, `two_node`, the nodelist), through
//!   [`super::corosync::parse_quorum`];
//! - `corosync-qdevice-tool -sv`, this node's daemon: its connection to
//!   qnetd, its heuristics result, whether its poll casts the vote (the
//!   format of `qdevices/qdevice-ipc-cmd.c` and `qdevice-net-ipc-cmd.c`);
//! - `corosync-quorumtool -s -p`, votequorum's view of every member's
//!   device: `A`/`NA` (alive), `V`/`NV` (vote cast), `MW`/`NMW` (master
//!   wins), `NR` (no device registered), and the `Qdevice` line (the format
//!   of corosync's `tools/corosync-quorumtool.c`).
//!
//! [`verdicts`] (the checks) and [`view`] (the `status` object) are pure
//! functions of the [`Observed`] facts. Whatever cannot be asked is a
//! finding, never "ok": a configured device whose state is unknown is a
//! device that may not vote when it is needed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::cmd::{self, CommandError, Spec};
use crate::deadline::Deadline;
use crate::stack::decide::QUORUMTOOL_NOT_QUORATE;

use super::check::{check, Check, Status};
use super::corosync::{self, Algorithm, DeviceConfig, DeviceModel, HeuristicsMode, QuorumConfig};

/// How long each of the two tools may take (they answer from memory over
/// a local socket; a hung daemon must not hang `status`).
const TOOL_TIMEOUT: Duration = Duration::from_secs(5);

/// `corosync-qdevice-tool`'s exit code when its socket does not answer
/// (`QDEVICE_TOOL_EXIT_CODE_SOCKET_CONNECT`): the daemon is not running.
const QDEVICE_TOOL_NOT_RUNNING: i32 = 3;

/// Where the operator reads about the choice.
const SEE: &str = "README \"Two servers and a network split\"";

/// Serializes a fact as its `Display` text.
macro_rules! serialize_as_display {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }
    )*};
}

/// The qdevice-net connection to qnetd (`State:` of `corosync-qdevice-tool
/// -s`, `qdevice_net_ipc_cmd_status_add_state`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// `Connected`: talking to qnetd.
    Connected,
    /// `Connecting`.
    Connecting,
    /// `Connect failed`: qnetd did not answer or refused.
    ConnectFailed,
    /// `Disconnected`: a disconnect is scheduled.
    Disconnected,
    /// Anything else, as printed.
    Other(String),
}

impl Connection {
    fn parse(v: &str) -> Connection {
        match v {
            "Connected" => Connection::Connected,
            "Connecting" => Connection::Connecting,
            "Connect failed" => Connection::ConnectFailed,
            "Disconnected" => Connection::Disconnected,
            other => Connection::Other(other.to_string()),
        }
    }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Connection::Connected => "connected",
            Connection::Connecting => "connecting",
            Connection::ConnectFailed => "connect_failed",
            Connection::Disconnected => "disconnected",
            Connection::Other(s) => s,
        })
    }
}

/// The latest heuristics result (`Heuristics result:`, `tlv_heuristics_to_str`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeuristicsResult {
    /// Every `exec_` command exited 0 in time.
    Pass,
    /// One failed or timed out.
    Fail,
    /// Not run yet.
    Undefined,
    /// Anything else, as printed.
    Other(String),
}

impl HeuristicsResult {
    fn parse(v: &str) -> HeuristicsResult {
        // "Pass (regular: Pass, membership: Fail, connect: Fail)" with -v:
        // the first word is the latest result.
        match v.split_whitespace().next().unwrap_or("") {
            "Pass" => HeuristicsResult::Pass,
            "Fail" => HeuristicsResult::Fail,
            "Undefined" => HeuristicsResult::Undefined,
            _ => HeuristicsResult::Other(v.to_string()),
        }
    }
}

impl fmt::Display for HeuristicsResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeuristicsResult::Pass => "pass",
            HeuristicsResult::Fail => "fail",
            HeuristicsResult::Undefined => "undefined",
            HeuristicsResult::Other(s) => s,
        })
    }
}

/// `Poll timer running:`: whether qdevice polls votequorum, and with the
/// vote (qnetd answered ACK) or without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollTimer {
    /// `No`: waiting for qnetd's reply, not voting.
    Stopped,
    /// `Yes`: voting, but qnetd decided this node gets no vote.
    NoVote,
    /// `Yes (cast vote)`.
    CastVote,
}

/// What `corosync-qdevice-tool -sv` says about this node's daemon.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DaemonStatus {
    /// `Model:` (`Net`).
    pub model: Option<String>,
    /// `Node ID:`.
    pub node_id: Option<u32>,
    /// `Heuristics:`: the mode the running daemon uses.
    pub heuristics_mode: Option<HeuristicsMode>,
    /// `QNetd host:` (`host:port`).
    pub qnetd_host: Option<String>,
    /// `Algorithm:`.
    pub algorithm: Option<Algorithm>,
    /// `Tie-breaker:` as printed.
    pub tie_breaker: Option<String>,
    /// `Poll timer running:`.
    pub poll_timer: Option<PollTimer>,
    /// `State:` of the net model.
    pub connection: Option<Connection>,
    /// `Heuristics result:` (printed only while heuristics are enabled).
    pub heuristics_result: Option<HeuristicsResult>,
}

/// Parses `corosync-qdevice-tool -s [-v]`.
///
/// Lines are `Key:<tabs>value` in two sections, `Qdevice information` and
/// `Qdevice-net information`; indented lines (node lists) are skipped.
/// Both sections have an `HB interval:`, so keys are read per section.
pub fn parse_daemon_status(text: &str) -> Result<DaemonStatus, String> {
    #[derive(PartialEq)]
    enum Section {
        None,
        Generic,
        Net,
    }
    let mut section = Section::None;
    let mut generic: BTreeMap<&str, &str> = BTreeMap::new();
    let mut net: BTreeMap<&str, &str> = BTreeMap::new();
    for line in text.lines() {
        match line.trim() {
            "Qdevice information" => section = Section::Generic,
            "Qdevice-net information" => section = Section::Net,
            _ if line.starts_with([' ', '\t']) => {}
            t => {
                if let Some((k, v)) = t.split_once(':') {
                    match section {
                        Section::Generic => generic.insert(k.trim(), v.trim()),
                        Section::Net => net.insert(k.trim(), v.trim()),
                        Section::None => None,
                    };
                }
            }
        }
    }
    if section == Section::None {
        return Err(format!(
            "no \"Qdevice information\" in its output: {:?}",
            first_line(text)
        ));
    }
    let own = |m: &BTreeMap<&str, &str>, k: &str| m.get(k).map(|v| v.to_string());
    Ok(DaemonStatus {
        model: own(&generic, "Model"),
        node_id: generic.get("Node ID").and_then(|v| v.parse().ok()),
        heuristics_mode: generic
            .get("Heuristics")
            .map(|v| HeuristicsMode::from_tool(v)),
        qnetd_host: own(&net, "QNetd host"),
        algorithm: net.get("Algorithm").map(|v| Algorithm::from_tool(v)),
        tie_breaker: own(&net, "Tie-breaker"),
        poll_timer: net.get("Poll timer running").map(|v| {
            if !v.starts_with("Yes") {
                PollTimer::Stopped
            } else if v.contains("(cast vote)") {
                PollTimer::CastVote
            } else {
                PollTimer::NoVote
            }
        }),
        connection: net.get("State").map(|v| Connection::parse(v)),
        heuristics_result: net
            .get("Heuristics result")
            .map(|v| HeuristicsResult::parse(v)),
    })
}

fn first_line(text: &str) -> &str {
    text.lines().find(|l| !l.trim().is_empty()).unwrap_or("")
}

/// A member's quorum device, from the `Qdevice` column of
/// `corosync-quorumtool -s -p`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberDevice {
    /// `NR`: no quorum device registered on that node.
    NotRegistered,
    /// `A|NA,V|NV,MW|NMW`.
    Registered {
        /// `A`: the device polls votequorum in time.
        alive: bool,
        /// `V`: its vote is counted.
        vote_cast: bool,
        /// `MW`: master wins (not used by the net model).
        master_wins: bool,
    },
}

impl MemberDevice {
    fn parse(v: &str) -> Option<MemberDevice> {
        if v == "NR" {
            return Some(MemberDevice::NotRegistered);
        }
        let f: Vec<&str> = v.split(',').collect();
        match f[..] {
            [a @ ("A" | "NA"), c @ ("V" | "NV"), m @ ("MW" | "NMW")] => {
                Some(MemberDevice::Registered {
                    alive: a == "A",
                    vote_cast: c == "V",
                    master_wins: m == "MW",
                })
            }
            _ => None,
        }
    }
}

/// One row of the membership table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// `Nodeid`.
    pub nodeid: u32,
    /// `Votes`.
    pub votes: u32,
    /// `Qdevice`.
    pub device: MemberDevice,
    /// `Name` (the nodelist's name).
    pub name: String,
    /// Marked `(local)`.
    pub local: bool,
}

/// What `corosync-quorumtool -s -p` says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QuorumStatus {
    /// `Quorate:`.
    pub quorate: bool,
    /// `Expected votes:`.
    pub expected_votes: Option<u32>,
    /// `Total votes:`.
    pub total_votes: Option<u32>,
    /// `Flags:` has `Qdevice`: a device is registered with votequorum.
    pub device_registered: bool,
    /// `Flags:` has `2Node`.
    pub two_node: bool,
    /// The members.
    pub members: Vec<Member>,
    /// The `Qdevice` line: the votes it adds for this node (`0` and
    /// `(votes N)` when this node's device casts no vote).
    pub device_votes: Option<u32>,
}

/// Parses `corosync-quorumtool -s -p`.
///
/// `-p` makes the `Qdevice` column always present; without it the column
/// is shown only when a device is registered somewhere, and rows without
/// it parse as [`MemberDevice::NotRegistered`]. Node id 0 is the device's
/// own line (`VOTEQUORUM_QDEVICE_NODEID`).
pub fn parse_quorum_status(text: &str) -> Result<QuorumStatus, String> {
    let mut q = QuorumStatus::default();
    let mut quorate = None;
    let mut with_device_column = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(cols) = with_device_column {
            let f: Vec<&str> = t.split_whitespace().collect();
            let (Some(id), Some(votes)) = (
                f.first().and_then(|v| v.parse::<u32>().ok()),
                f.get(1).and_then(|v| v.parse::<u32>().ok()),
            ) else {
                continue;
            };
            if id == 0 {
                q.device_votes = Some(votes);
                continue;
            }
            let (device, rest) = if cols {
                match f.get(2).and_then(|v| MemberDevice::parse(v)) {
                    Some(d) => (d, &f[3..]),
                    None => return Err(format!("an unknown Qdevice column in {t:?}")),
                }
            } else {
                (MemberDevice::NotRegistered, &f[2..])
            };
            q.members.push(Member {
                nodeid: id,
                votes,
                device,
                name: rest.first().unwrap_or(&"").to_string(),
                local: rest.contains(&"(local)"),
            });
            continue;
        }
        if t.starts_with("Nodeid") {
            with_device_column = Some(t.split_whitespace().any(|c| c == "Qdevice"));
            continue;
        }
        let Some((k, v)) = t.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.trim() {
            "Quorate" => quorate = Some(v == "Yes"),
            "Expected votes" => q.expected_votes = v.parse().ok(),
            "Total votes" => q.total_votes = v.parse().ok(),
            "Flags" => {
                let flags: Vec<&str> = v.split_whitespace().collect();
                q.device_registered = flags.contains(&"Qdevice");
                q.two_node = flags.contains(&"2Node");
            }
            _ => {}
        }
    }
    q.quorate = quorate
        .ok_or_else(|| format!("no \"Quorate:\" line in its output: {:?}", first_line(text)))?;
    Ok(q)
}

/// This node's corosync-qdevice, as far as it could be asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Daemon {
    /// It answered.
    Running(DaemonStatus),
    /// Its socket does not answer: not running (the tool's message).
    NotRunning(String),
    /// `corosync-qdevice-tool` is not installed: neither is the daemon.
    NotInstalled,
    /// It could not be asked, or said something unreadable.
    Unknown(String),
}

/// Votequorum's view, as far as it could be asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Votequorum {
    /// It answered.
    Answered(QuorumStatus),
    /// `corosync-quorumtool` is not installed.
    NotInstalled,
    /// It could not be asked (Corosync down), or said something unreadable.
    Unknown(String),
}

/// Everything [`verdicts`] and [`view`] decide from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The `quorum` section, or why `corosync.conf` could not be read.
    pub config: Result<QuorumConfig, String>,
    /// The nodes of the nodelist.
    pub nodes: usize,
    /// This node's daemon; `None` when no device is configured (not asked).
    pub daemon: Option<Daemon>,
    /// Votequorum; `None` when no device is configured (not asked).
    pub votequorum: Option<Votequorum>,
}

impl Observed {
    fn device(&self) -> Option<&DeviceConfig> {
        self.config.as_ref().ok().and_then(|c| c.device.as_ref())
    }
}

/// Runs a tool: `Err(None)` when it is not installed.
fn ask(spec: &Spec) -> Result<cmd::Output, Option<String>> {
    match cmd::run_unchecked(spec) {
        Ok(o) => Ok(o),
        Err(CommandError::NotFound { .. }) => Err(None),
        Err(e) => Err(Some(e.to_string())),
    }
}

fn failure(o: &cmd::Output) -> String {
    let err = o.stderr.trim();
    let why = err.lines().last().unwrap_or("");
    format!(
        "{}{}",
        cmd::describe_status(&o.status),
        if why.is_empty() {
            String::new()
        } else {
            format!(": {why}")
        }
    )
}

/// Who ran `corosync-qdevice-tool`: its socket is root's, so only root can
/// tell "not running" from "may not connect" (the tool exits
/// [`QDEVICE_TOOL_NOT_RUNNING`] for both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asker {
    Root,
    OtherUser,
}

/// What `corosync-qdevice-tool -s -v`'s result says (pure).
fn daemon_from(o: &cmd::Output, asker: Asker) -> Daemon {
    match (o.code(), asker) {
        (Some(0), _) => match parse_daemon_status(&o.stdout) {
            Ok(s) => Daemon::Running(s),
            Err(e) => Daemon::Unknown(format!("corosync-qdevice-tool: {e}")),
        },
        (Some(QDEVICE_TOOL_NOT_RUNNING), Asker::Root) => Daemon::NotRunning(failure(o)),
        // A user who may not open the socket: not "not running".
        (Some(QDEVICE_TOOL_NOT_RUNNING), Asker::OtherUser) => Daemon::Unknown(format!(
            "corosync-qdevice-tool -s -v: {} (run rapidproctl as root)",
            failure(o)
        )),
        _ => Daemon::Unknown(format!("corosync-qdevice-tool -s -v: {}", failure(o))),
    }
}

/// What `corosync-quorumtool -s -p`'s result says (pure).
fn votequorum_from(o: &cmd::Output) -> Votequorum {
    match o.code() {
        Some(0 | QUORUMTOOL_NOT_QUORATE) => match parse_quorum_status(&o.stdout) {
            Ok(s) => Votequorum::Answered(s),
            Err(e) => Votequorum::Unknown(format!("corosync-quorumtool: {e}")),
        },
        _ => Votequorum::Unknown(format!("corosync-quorumtool -s -p: {}", failure(o))),
    }
}

/// Asks `corosync-qdevice-tool -s -v`.
fn ask_daemon(deadline: &Deadline) -> Daemon {
    let spec = Spec::new("corosync-qdevice-tool")
        .args(["-s", "-v"])
        .timeout(deadline.cap(TOOL_TIMEOUT));
    match ask(&spec) {
        Err(None) => Daemon::NotInstalled,
        Err(Some(e)) => Daemon::Unknown(e),
        Ok(o) => daemon_from(
            &o,
            if nix::unistd::Uid::effective().is_root() {
                Asker::Root
            } else {
                Asker::OtherUser
            },
        ),
    }
}

/// Asks `corosync-quorumtool -s -p`.
fn ask_votequorum(deadline: &Deadline) -> Votequorum {
    let spec = Spec::new("corosync-quorumtool")
        .args(["-s", "-p"])
        .timeout(deadline.cap(TOOL_TIMEOUT));
    match ask(&spec) {
        Err(None) => Votequorum::NotInstalled,
        Err(Some(e)) => Votequorum::Unknown(e),
        Ok(o) => votequorum_from(&o),
    }
}

/// Reads `corosync.conf` at `conf` and, when it configures a quorum device,
/// asks this node's daemon and votequorum. Never fails: what cannot be read
/// is an observation.
pub fn observe(conf: &Path, deadline: &Deadline) -> Observed {
    let text = std::fs::read_to_string(conf).map_err(|e| format!("{}: {e}", conf.display()));
    let config = text
        .as_deref()
        .map_err(Clone::clone)
        .and_then(|t| corosync::parse_quorum(t).map_err(|e| e.to_string()));
    let nodes = text
        .as_deref()
        .ok()
        .and_then(|t| corosync::parse_nodelist(t).ok())
        .map_or(0, |n| n.len());
    let configured = config.as_ref().is_ok_and(|c| c.device.is_some());
    Observed {
        config,
        nodes,
        daemon: configured.then(|| ask_daemon(deadline)),
        votequorum: configured.then(|| ask_votequorum(deadline)),
    }
}

/// The configuration: is there an arbiter, and is it set up to work?
fn config_check(o: &Observed) -> Check {
    const NAME: &str = "quorum device";
    let c = match &o.config {
        Ok(c) => c,
        Err(e) => {
            return check(
                NAME,
                Status::Error,
                format!(
                    "cannot read corosync.conf ({e}): cannot tell whether an arbiter decides a \
                     network split"
                ),
            )
        }
    };
    let Some(d) = &c.device else {
        return match o.nodes {
            2 => check(
                NAME,
                Status::Warning,
                format!(
                    "none on a 2-node cluster ({}): in a network split a primary cut off from \
                     its clients still wins the fence race and powers off the healthy standby, \
                     and RapidPro stays down until the link heals; add an arbiter on a third \
                     host: run pcs-examples/rapidpro-cluster.pcs.sh with QNETD_HOST=<host> (see \
                     {SEE})",
                    if c.two_node {
                        "two_node: each side keeps quorum and the fence race decides"
                    } else {
                        "no two_node either: losing either node loses quorum"
                    }
                ),
            ),
            n => check(
                NAME,
                Status::Ok,
                format!("none; {n} nodes: the majority decides a split"),
            ),
        };
    };
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    match &d.model {
        DeviceModel::Net => {}
        DeviceModel::Missing => errors
            .push("quorum.device.model is missing: corosync-qdevice needs model: net".to_string()),
        DeviceModel::Other(m) => errors.push(format!(
            "quorum.device.model is {m:?}: corosync-qdevice supports only net"
        )),
    }
    if d.host.is_none() {
        errors.push(
            "quorum.device.net.host is missing: the address of the corosync-qnetd host is needed"
                .into(),
        );
    }
    if c.two_node {
        errors.push(
            "two_node is set as well: Corosync refuses two_node with a quorum device; remove it \
             (pcs quorum device add does)"
                .into(),
        );
    }
    if c.last_man_standing || c.auto_tie_breaker {
        errors.push(
            "last_man_standing or auto_tie_breaker is set: votequorum then disables the quorum \
             device; remove them"
                .into(),
        );
    }
    match &d.algorithm {
        Algorithm::Ffsplit => {
            if d.votes.as_deref().is_some_and(|v| v != "1") {
                errors.push(format!(
                    "votes is {}: ffsplit needs quorum.device.votes: 1",
                    d.votes.as_deref().unwrap_or_default()
                ));
            }
        }
        Algorithm::Lms => {}
        a @ (Algorithm::TwoNodeLms | Algorithm::Test) => warnings.push(format!(
            "algorithm {a} is meant for developers (corosync-qdevice(8)): use ffsplit"
        )),
        Algorithm::Other(a) => {
            errors.push(format!("algorithm {a:?} is unknown: use ffsplit (or lms)"))
        }
    }
    match &d.heuristics_mode {
        HeuristicsMode::Off => warnings.push(
            "heuristics are off: when both nodes still reach qnetd but not each other, the \
             tie-breaker picks the survivor, not which side reaches the network; add heuristics \
             that ping the default gateway (QNETD_HOST setup in pcs-examples)"
                .into(),
        ),
        HeuristicsMode::Other(m) => {
            errors.push(format!("heuristics.mode {m:?} is unknown: on, sync or off"))
        }
        HeuristicsMode::On | HeuristicsMode::Sync if d.heuristics_execs.is_empty() => warnings
            .push(format!(
                "heuristics.mode is {} but no exec_NAME command is configured",
                d.heuristics_mode
            )),
        HeuristicsMode::On | HeuristicsMode::Sync => {}
    }
    let summary = describe_config(d);
    if !errors.is_empty() {
        errors.extend(warnings);
        check(
            NAME,
            Status::Error,
            format!("{summary}: {}", errors.join("; ")),
        )
    } else if !warnings.is_empty() {
        check(
            NAME,
            Status::Warning,
            format!("{summary}: {}", warnings.join("; ")),
        )
    } else {
        check(NAME, Status::Ok, summary)
    }
}

/// `net, qnetd 10.200.200.3:5403, ffsplit, tie_breaker lowest, heuristics
/// on (gateway)`.
fn describe_config(d: &DeviceConfig) -> String {
    let model = match &d.model {
        DeviceModel::Net => "net".to_string(),
        DeviceModel::Missing => "no model".to_string(),
        DeviceModel::Other(m) => m.clone(),
    };
    let mut s = format!(
        "{model}, qnetd {}:{}, {}, tie_breaker {}, heuristics {}",
        d.host.as_deref().unwrap_or("?"),
        d.port.as_deref().unwrap_or("5403"),
        d.algorithm,
        d.tie_breaker.as_deref().unwrap_or("lowest"),
        d.heuristics_mode
    );
    if !d.heuristics_execs.is_empty() {
        let names: Vec<&str> = d.heuristics_execs.keys().map(String::as_str).collect();
        s.push_str(&format!(" ({})", names.join(", ")));
    }
    s
}

/// What goes wrong when this node's device does not vote.
const NO_VOTE: &str = "this node gets no vote from the arbiter: if the other node fails now, \
                       this one loses quorum and stops everything";

/// This node's daemon: running, connected, heuristics, as far as known.
fn daemon_checks(d: &DeviceConfig, daemon: &Daemon) -> Vec<Check> {
    let host = format!(
        "{}:{}",
        d.host.as_deref().unwrap_or("?"),
        d.port.as_deref().unwrap_or("5403")
    );
    let s = match daemon {
        Daemon::NotInstalled => {
            return vec![check(
                "qdevice",
                Status::Error,
                format!(
                    "a quorum device is configured but corosync-qdevice is not installed on this \
                     node: {NO_VOTE}; apt install corosync-qdevice, then systemctl enable --now \
                     corosync-qdevice (pcs quorum device add does both on every node)"
                ),
            )]
        }
        Daemon::NotRunning(why) => {
            return vec![check(
                "qdevice",
                Status::Error,
                format!(
                    "corosync-qdevice is not running on this node ({why}): {NO_VOTE}; systemctl \
                     enable --now corosync-qdevice, and journalctl -u corosync-qdevice for why it \
                     stopped"
                ),
            )]
        }
        Daemon::Unknown(why) => {
            return vec![check(
                "qdevice",
                Status::Error,
                format!(
                    "cannot ask corosync-qdevice on this node ({why}): cannot tell whether it \
                     votes; corosync-qdevice-tool -sv shows its state"
                ),
            )]
        }
        Daemon::Running(s) => s,
    };
    let mut v = vec![check(
        "qdevice",
        Status::Ok,
        format!(
            "running, model {}, node id {}",
            s.model.as_deref().unwrap_or("?"),
            s.node_id.map_or("?".into(), |n| n.to_string())
        ),
    )];
    let algo = s
        .algorithm
        .as_ref()
        .map_or("?".to_string(), ToString::to_string);
    let shown = s.qnetd_host.as_deref().unwrap_or(&host);
    v.push(match &s.connection {
        Some(Connection::Connected) => check(
            "qnetd connection",
            Status::Ok,
            format!(
                "connected to {shown} ({algo}, tie-breaker: {})",
                s.tie_breaker.as_deref().unwrap_or("?")
            ),
        ),
        Some(c) => check(
            "qnetd connection",
            Status::Error,
            format!(
                "{c} to qnetd at {shown}: {NO_VOTE}; on {}: systemctl status corosync-qnetd; \
                 from here: TCP port {} open, and the TLS certificates (pcs qdevice setup / pcs \
                 quorum device add set them up); RUNBOOK: the qnetd host is down",
                d.host.as_deref().unwrap_or("the qnetd host"),
                d.port.as_deref().unwrap_or("5403")
            ),
        ),
        None => check(
            "qnetd connection",
            Status::Error,
            "corosync-qdevice-tool shows no State: cannot tell whether it reaches qnetd",
        ),
    });
    let running_mode = s.heuristics_mode.as_ref();
    if d.heuristics_mode.enabled() || running_mode.is_some_and(HeuristicsMode::enabled) {
        let names: Vec<&str> = d.heuristics_execs.keys().map(String::as_str).collect();
        let cmds = if names.is_empty() {
            "its exec_ commands".to_string()
        } else {
            format!("exec_{}", names.join(", exec_"))
        };
        v.push(match (&s.heuristics_result, running_mode) {
            (_, Some(m)) if *m != d.heuristics_mode => check(
                "qdevice heuristics",
                Status::Warning,
                format!(
                    "corosync.conf says mode {} but the running corosync-qdevice uses {m}: \
                     restart it (systemctl restart corosync-qdevice) to apply corosync.conf",
                    d.heuristics_mode
                ),
            ),
            (Some(HeuristicsResult::Pass), _) => {
                check("qdevice heuristics", Status::Ok, format!("pass ({cmds})"))
            }
            (Some(HeuristicsResult::Fail), _) => check(
                "qdevice heuristics",
                Status::Error,
                format!(
                    "fail on this node: {cmds} did not all succeed in time, so in a split this \
                     side loses the arbiter's vote; check this node's network (ip route, ping the \
                     gateway), or fix the command in corosync.conf (pcs quorum device heuristics \
                     update)"
                ),
            ),
            (r, _) => check(
                "qdevice heuristics",
                Status::Warning,
                format!(
                    "no result yet ({}): cannot tell whether this node passes {cmds}; run \
                     rapidproctl check again in a minute",
                    r.as_ref()
                        .map_or("not shown".to_string(), ToString::to_string)
                ),
            ),
        });
    }
    v
}

/// The votes, for every member, from votequorum.
fn vote_check(vq: &Votequorum) -> Check {
    const NAME: &str = "qdevice vote";
    let q =
        match vq {
            Votequorum::NotInstalled => return check(
                NAME,
                Status::Error,
                "corosync-quorumtool is not installed: cannot tell whether the quorum device's \
                 vote counts (apt install corosync)",
            ),
            Votequorum::Unknown(why) => {
                return check(
                    NAME,
                    Status::Error,
                    format!(
                    "cannot ask votequorum ({why}): cannot tell whether the quorum device's vote \
                     counts; is Corosync running on this node?"
                ),
                )
            }
            Votequorum::Answered(q) => q,
        };
    let mut problems = Vec::new();
    if !q.device_registered {
        problems.push(
            "votequorum has no quorum device registered (no Qdevice flag): corosync-qdevice is \
             not running or was refused; journalctl -u corosync-qdevice"
                .to_string(),
        );
    }
    let mut cast = Vec::new();
    for m in &q.members {
        match m.device {
            MemberDevice::NotRegistered => problems.push(format!(
                "{}: no quorum device registered (systemctl enable --now corosync-qdevice there)",
                m.name
            )),
            MemberDevice::Registered { alive: false, .. } => problems.push(format!(
                "{}: its corosync-qdevice does not poll votequorum (not alive)",
                m.name
            )),
            MemberDevice::Registered {
                vote_cast: false, ..
            } => problems.push(format!(
                "{}: its device casts no vote (not connected to qnetd, or qnetd gave this \
                 partition no vote)",
                m.name
            )),
            MemberDevice::Registered { .. } => cast.push(m.name.as_str()),
        }
    }
    if q.members.is_empty() {
        problems.push("votequorum lists no member".into());
    }
    if !q.quorate {
        problems.push("this partition is not quorate: it runs nothing".into());
    }
    let votes = format!(
        "{} of {} expected votes",
        q.total_votes.map_or("?".into(), |v| v.to_string()),
        q.expected_votes.map_or("?".into(), |v| v.to_string())
    );
    if problems.is_empty() {
        check(
            NAME,
            Status::Ok,
            format!("cast on {}; quorate with {votes}", cast.join(", ")),
        )
    } else {
        check(
            NAME,
            Status::Error,
            format!(
                "{} ({votes}): a node whose device casts no vote loses quorum as soon as its \
                 peer fails, and the arbiter cannot decide a split for it",
                problems.join("; ")
            ),
        )
    }
}

/// The checks of `rapidproctl check` (pure): the configuration, then, with
/// a device configured, this node's daemon and every member's vote.
pub fn verdicts(o: &Observed) -> Vec<Check> {
    let mut v = vec![config_check(o)];
    let Some(d) = o.device() else {
        return v;
    };
    let daemon = o
        .daemon
        .clone()
        .unwrap_or_else(|| Daemon::Unknown("not asked".into()));
    v.extend(daemon_checks(d, &daemon));
    let vq = o
        .votequorum
        .clone()
        .unwrap_or_else(|| Votequorum::Unknown("not asked".into()));
    v.push(vote_check(&vq));
    v
}

/// This node's daemon, for `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DaemonState {
    /// It answered.
    Running,
    /// Not running.
    NotRunning,
    /// Not installed.
    NotInstalled,
    /// Could not be asked.
    Unknown,
}

/// A member's device, for `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberDeviceState {
    /// Registered and polling.
    Alive,
    /// Registered, not polling in time.
    NotAlive,
    /// No device registered on that node.
    NotRegistered,
}

/// One member, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberView {
    /// Its name.
    pub name: String,
    /// Its node id.
    pub nodeid: u32,
    /// This node.
    pub local: bool,
    /// Its device.
    pub device: MemberDeviceState,
    /// Its device's vote counts.
    pub vote_cast: bool,
}

/// Whether this node's device casts its vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Vote {
    /// Counted.
    Cast,
    /// Not counted.
    NotCast,
}

serialize_as_display!(Algorithm, HeuristicsMode, Connection, HeuristicsResult);

/// The `quorum_device` object of `status --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuorumDeviceView {
    /// `corosync.conf` has `quorum { device { } }`.
    pub configured: bool,
    /// `two_node` is set (`null`: corosync.conf unreadable).
    pub two_node: Option<bool>,
    /// `net`.
    pub model: Option<String>,
    /// The qnetd host.
    pub host: Option<String>,
    /// Its port (`null`: the default, 5403).
    pub port: Option<String>,
    /// `ffsplit`, `lms`...
    pub algorithm: Option<Algorithm>,
    /// `lowest` (the default), `highest` or a node id.
    pub tie_breaker: Option<String>,
    /// `on`, `sync` or `off`.
    pub heuristics_mode: Option<HeuristicsMode>,
    /// The `exec_NAME` names.
    pub heuristics: Vec<String>,
    /// This node's corosync-qdevice (`null`: not asked, no device).
    pub daemon: Option<DaemonState>,
    /// Its connection to qnetd: `connected`, `connecting`,
    /// `connect_failed`, `disconnected`.
    pub connection: Option<Connection>,
    /// Its latest heuristics result: `pass`, `fail`, `undefined`.
    pub heuristics_result: Option<HeuristicsResult>,
    /// This node's device vote: `cast`, `not_cast`.
    pub vote: Option<Vote>,
    /// Every member's device, from votequorum.
    pub nodes: Vec<MemberView>,
    /// What could not be read or asked.
    pub error: Option<String>,
}

/// The `status` object (pure).
pub fn view(o: &Observed) -> QuorumDeviceView {
    let d = o.device();
    let mut errors = Vec::new();
    if let Err(e) = &o.config {
        errors.push(format!("corosync.conf: {e}"));
    }
    let (daemon, status) = match &o.daemon {
        None => (None, None),
        Some(Daemon::Running(s)) => (Some(DaemonState::Running), Some(s)),
        Some(Daemon::NotRunning(_)) => (Some(DaemonState::NotRunning), None),
        Some(Daemon::NotInstalled) => (Some(DaemonState::NotInstalled), None),
        Some(Daemon::Unknown(e)) => {
            errors.push(format!("corosync-qdevice: {e}"));
            (Some(DaemonState::Unknown), None)
        }
    };
    let quorum = match &o.votequorum {
        Some(Votequorum::Answered(q)) => Some(q),
        Some(Votequorum::NotInstalled) => {
            errors.push("corosync-quorumtool is not installed".into());
            None
        }
        Some(Votequorum::Unknown(e)) => {
            errors.push(format!("votequorum: {e}"));
            None
        }
        None => None,
    };
    let nodes: Vec<MemberView> = quorum
        .map(|q| {
            q.members
                .iter()
                .map(|m| {
                    let (device, vote_cast) = match m.device {
                        MemberDevice::NotRegistered => (MemberDeviceState::NotRegistered, false),
                        MemberDevice::Registered {
                            alive, vote_cast, ..
                        } => (
                            if alive {
                                MemberDeviceState::Alive
                            } else {
                                MemberDeviceState::NotAlive
                            },
                            vote_cast,
                        ),
                    };
                    MemberView {
                        name: m.name.clone(),
                        nodeid: m.nodeid,
                        local: m.local,
                        device,
                        vote_cast,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    // Votequorum's flag for this node; the daemon's poll timer when
    // votequorum could not be asked.
    let vote = nodes
        .iter()
        .find(|m| m.local)
        .map(|m| m.vote_cast)
        .or_else(|| {
            status
                .and_then(|s| s.poll_timer)
                .map(|p| p == PollTimer::CastVote)
        })
        .or(match daemon {
            Some(DaemonState::NotRunning | DaemonState::NotInstalled) => Some(false),
            _ => None,
        })
        .map(|c| if c { Vote::Cast } else { Vote::NotCast });
    QuorumDeviceView {
        configured: d.is_some(),
        two_node: o.config.as_ref().ok().map(|c| c.two_node),
        model: d.and_then(|d| match &d.model {
            DeviceModel::Net => Some("net".to_string()),
            DeviceModel::Missing => None,
            DeviceModel::Other(m) => Some(m.clone()),
        }),
        host: d.and_then(|d| d.host.clone()),
        port: d.and_then(|d| d.port.clone()),
        algorithm: d.map(|d| d.algorithm.clone()),
        tie_breaker: d.map(|d| d.tie_breaker.clone().unwrap_or_else(|| "lowest".into())),
        heuristics_mode: d.map(|d| d.heuristics_mode.clone()),
        heuristics: d
            .map(|d| d.heuristics_execs.keys().cloned().collect())
            .unwrap_or_default(),
        daemon,
        connection: status.and_then(|s| s.connection.clone()),
        heuristics_result: status.and_then(|s| s.heuristics_result.clone()),
        vote,
        nodes,
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    }
}

/// One line for `status`'s text: `Quorum device: net 10.200.200.3:5403
/// (ffsplit, heuristics on): this node connected, heuristics pass, vote
/// cast; votes: node1 cast, node2 cast`.
pub fn render(v: &QuorumDeviceView, nodes: usize) -> String {
    if !v.configured {
        return match (v.two_node, &v.error) {
            (None, Some(e)) => format!("Quorum device: unknown ({e})\n"),
            (Some(true), _) if nodes == 2 => "Quorum device: none (two_node: in a network split \
                                              the fence race decides; see rapidproctl check)\n"
                .to_string(),
            (Some(false), _) if nodes == 2 => "Quorum device: none (2 nodes without two_node: \
                                               losing either node loses quorum; see rapidproctl \
                                               check)\n"
                .to_string(),
            _ => "Quorum device: none\n".to_string(),
        };
    }
    let mut s = format!(
        "Quorum device: {} {}:{} ({}, heuristics {})",
        v.model.as_deref().unwrap_or("?"),
        v.host.as_deref().unwrap_or("?"),
        v.port.as_deref().unwrap_or("5403"),
        v.algorithm
            .as_ref()
            .map_or("?".to_string(), ToString::to_string),
        v.heuristics_mode
            .as_ref()
            .map_or("?".to_string(), ToString::to_string),
    );
    let mut here = Vec::new();
    match v.daemon {
        Some(DaemonState::Running) => {
            here.push(
                v.connection
                    .as_ref()
                    .map_or("connection unknown".into(), |c| {
                        c.to_string().replace('_', " ")
                    }),
            );
            if let Some(r) = &v.heuristics_result {
                here.push(format!("heuristics {r}"));
            }
        }
        Some(DaemonState::NotRunning) => here.push("corosync-qdevice NOT RUNNING".into()),
        Some(DaemonState::NotInstalled) => here.push("corosync-qdevice NOT INSTALLED".into()),
        Some(DaemonState::Unknown) | None => here.push("corosync-qdevice state unknown".into()),
    }
    here.push(match v.vote {
        Some(Vote::Cast) => "vote cast".into(),
        Some(Vote::NotCast) => "NO VOTE".into(),
        None => "vote unknown".into(),
    });
    s.push_str(&format!(": this node {}", here.join(", ")));
    if !v.nodes.is_empty() {
        let votes: Vec<String> = v
            .nodes
            .iter()
            .map(|m| {
                let state = match (m.device, m.vote_cast) {
                    (MemberDeviceState::NotRegistered, _) => "no device",
                    (MemberDeviceState::NotAlive, _) => "device not alive",
                    (MemberDeviceState::Alive, true) => "cast",
                    (MemberDeviceState::Alive, false) => "no vote",
                };
                format!("{} {state}", m.name)
            })
            .collect();
        s.push_str(&format!("; votes: {}", votes.join(", ")));
    }
    if let Some(e) = &v.error {
        s.push_str(&format!(" ({e})"));
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests;
