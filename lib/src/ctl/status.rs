//! `rapidproctl status` and `rapidproctl state [NODE]`: every node at a
//! glance, as `patronictl list` shows a Patroni cluster.
//!
//! The sources, in one pass: `crm_mon --output-as=xml` (nodes, roles,
//! failed and in-flight operations), `cibadmin --query` (the stack's
//! parameters, the VIP's address, `#health-*` attributes), the DC's
//! controller state (`crmadmin`: idle or in a transition), the nodes'
//! addresses and the quorum device from `corosync.conf` (with a device:
//! `corosync-qdevice-tool` and `corosync-quorumtool`, [`super::qdevice`]),
//! then each node's PostgreSQL and Redis asked over TCP ([`super::probe`]). [`assemble`] turns these into the
//! report and is pure, so the unit tests feed it recorded inputs.
//!
//! JSON field names (stable; `null` when unknown):
//! - `cluster`: `name`, `dc`, `quorum`, `controller_state` (the DC's, such as
//!   `S_IDLE`), `idle`, `maintenance_mode`, `stonith_enabled`,
//!   `stack_resource` (the promotable clone's id), `promoted` (node);
//! - `vip`: `resource`, `address`, `node`;
//! - `nodes[]`: `name`, `address`, `state` (`online`, `standby`,
//!   `maintenance`, `pending`, `unclean`, `offline`), `role` (the stack
//!   instance's: `Promoted`, `Unpromoted`, `Stopped`, `Promoting`...),
//!   `promotion_score`, `health` (`green`, `yellow`, `red`),
//!   `health_attributes` (`#health-*` → value), `vip` (bool), `postgres`
//!   {`role` (`primary`, `standby`, `down`), `timeline`, `lsn` (primary:
//!   current; standby: replayed), `receive_lsn`, `replay_lsn`, `lag_bytes`
//!   (primary's current LSN minus this standby's replayed LSN, from the
//!   primary's `pg_stat_replication`), `replication_state` (that row's
//!   `state`), `sync_state`, `receiver` (WAL receiver status), `replay_paused`,
//!   `error`}, `redis` {`role` (`master`, `replica`, `down`), `link` (`up`,
//!   `down`, `null` on a master), `master_host`, `error`}, `app[]`
//!   {`resource`, `running`}, `failed_actions[]` (as below), `pending[]`
//!   {`resource`, `operation`, `interval_ms`}, `transient` (an operation in
//!   flight on the node or a role change under way);
//! - `failed_actions[]`: `node`, `resource`, `operation`, `interval_ms`,
//!   `rc`, `exit_status`, `exit_reason`, `status`, `last_rc_change`;
//! - `quorum_device`: `configured`, `two_node`, `model`, `host`, `port`,
//!   `algorithm` (`ffsplit`...), `tie_breaker`, `heuristics_mode` (`on`,
//!   `sync`, `off`), `heuristics` (the `exec_NAME` names), then this node's
//!   daemon: `daemon` (`running`, `not_running`, `not_installed`,
//!   `unknown`), `connection` (to qnetd: `connected`, `connecting`,
//!   `connect_failed`, `disconnected`), `heuristics_result` (`pass`, `fail`,
//!   `undefined`), `vote` (`cast`, `not_cast`); `nodes[]` {`name`, `nodeid`,
//!   `local`, `device` (`alive`, `not_alive`, `not_registered`),
//!   `vote_cast`} (votequorum's view); `error`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::cluster::{self, admin, Cluster, ClusterStatus, NodeName, ResourceStatus, Role};
use crate::config::Config;
use crate::deadline::Deadline;

use super::cib::{self, CibFacts};
use super::corosync;
use super::probe::{self, PgProbe, RedisProbe, Timeouts};
use super::qdevice::{self, QuorumDeviceView};
use super::table::{pairs, Table};
use super::{human_bytes, Error, Outcome};

/// The id of the application group (`pcs-examples`: uwsgi, celery,
/// celerybeat, nginx).
pub const APP_GROUP: &str = "app";
/// The promotion score attribute of the stack resource.
const PROMOTION_ATTRIBUTE_PREFIX: &str = "master-";

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusReport {
    /// Cluster-wide facts.
    pub cluster: ClusterView,
    /// The virtual IP, if configured.
    pub vip: Option<VipView>,
    /// Every node Pacemaker knows.
    pub nodes: Vec<NodeView>,
    /// Every failed operation.
    pub failed_actions: Vec<FailedAction>,
    /// The quorum device (the 2-node arbiter) and its vote.
    pub quorum_device: QuorumDeviceView,
}

/// Cluster-wide facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterView {
    /// `cluster-name`.
    pub name: Option<String>,
    /// The Designated Controller.
    pub dc: Option<String>,
    /// Whether the partition has quorum.
    pub quorum: bool,
    /// The DC's controller state (`S_IDLE`...).
    pub controller_state: Option<String>,
    /// Whether the DC is idle (no transition computed or running).
    pub idle: Option<bool>,
    /// Cluster-wide maintenance mode.
    pub maintenance_mode: bool,
    /// Fencing enabled.
    pub stonith_enabled: bool,
    /// The promotable clone of `ocf:rapidpro:stack`.
    pub stack_resource: Option<String>,
    /// The node where it is promoted (none, or the first of several).
    pub promoted: Option<String>,
}

/// The virtual IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VipView {
    /// Its resource id.
    pub resource: String,
    /// Its address.
    pub address: Option<String>,
    /// Where it runs.
    pub node: Option<String>,
}

/// One node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeView {
    /// Its name.
    pub name: String,
    /// Its address (`ring0_addr`).
    pub address: Option<String>,
    /// `online`, `standby`, `maintenance`, `pending`, `unclean`, `offline`.
    pub state: String,
    /// The stack instance's role there.
    pub role: String,
    /// The stack's promotion score there (`master-stack`).
    pub promotion_score: Option<String>,
    /// `green`, `yellow` or `red`.
    pub health: String,
    /// The node's `#health-*` attributes.
    pub health_attributes: BTreeMap<String, String>,
    /// Holds the virtual IP.
    pub vip: bool,
    /// Its PostgreSQL.
    pub postgres: PgView,
    /// Its Redis.
    pub redis: RedisView,
    /// The application group's resources and whether each runs here.
    pub app: Vec<AppView>,
    /// Failed operations on this node.
    pub failed_actions: Vec<FailedAction>,
    /// Operations in flight on this node.
    pub pending: Vec<PendingView>,
    /// An operation in flight here, or a role change under way.
    pub transient: bool,
}

/// A node's PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct PgView {
    /// `primary`, `standby` or `down`.
    pub role: String,
    /// Its timeline.
    pub timeline: Option<u32>,
    /// Primary: current WAL location; standby: replayed location.
    pub lsn: Option<String>,
    /// Standby: last WAL received.
    pub receive_lsn: Option<String>,
    /// Standby: last WAL replayed.
    pub replay_lsn: Option<String>,
    /// Bytes of WAL the primary has and this standby has not replayed.
    pub lag_bytes: Option<u64>,
    /// The primary's `pg_stat_replication.state` for this standby.
    pub replication_state: Option<String>,
    /// The primary's `pg_stat_replication.sync_state` for this standby.
    pub sync_state: Option<String>,
    /// The WAL receiver's status on this standby.
    pub receiver: Option<String>,
    /// Replay paused on this standby.
    pub replay_paused: bool,
    /// Why it could not be asked.
    pub error: Option<String>,
}

/// A node's Redis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct RedisView {
    /// `master`, `replica` or `down`.
    pub role: String,
    /// A replica's link: `up` or `down`.
    pub link: Option<String>,
    /// The master a replica follows.
    pub master_host: Option<String>,
    /// Why it could not be asked.
    pub error: Option<String>,
}

/// One resource of the application group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppView {
    /// Its id.
    pub resource: String,
    /// Runs on this node.
    pub running: bool,
}

/// An operation in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingView {
    /// The resource.
    pub resource: String,
    /// The action.
    pub operation: String,
    /// Its interval (0: one-off).
    pub interval_ms: u64,
}

/// A failed operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedAction {
    /// Where.
    pub node: String,
    /// The resource.
    pub resource: String,
    /// The action.
    pub operation: String,
    /// Its interval (0: one-off).
    pub interval_ms: u64,
    /// The agent's exit code.
    pub rc: Option<i32>,
    /// The result in words.
    pub exit_status: String,
    /// The agent's exit reason.
    pub exit_reason: String,
    /// The execution status (`complete`, `Timed Out`...).
    pub status: String,
    /// When.
    pub last_rc_change: Option<String>,
}

impl FailedAction {
    /// One line: `stack monitor (16 s) on node1: error (rc 1): reason`.
    pub fn describe(&self) -> String {
        let mut s = format!("{} {}", self.resource, self.operation);
        if self.interval_ms > 0 {
            s.push_str(&format!(" ({} s)", self.interval_ms / 1000));
        }
        s.push_str(&format!(" on {}: {}", self.node, self.exit_status));
        if let Some(rc) = self.rc {
            s.push_str(&format!(" (rc {rc})"));
        }
        if !self.exit_reason.is_empty() && self.exit_reason != self.exit_status {
            s.push_str(&format!(": {}", self.exit_reason));
        }
        if self.status != "complete" && !self.status.is_empty() {
            s.push_str(&format!(" [{}]", self.status));
        }
        if let Some(t) = &self.last_rc_change {
            s.push_str(&format!(" at {t}"));
        }
        s
    }
}

/// Everything read from the cluster before the servers are asked.
#[derive(Debug, Clone)]
pub struct Sources {
    /// `crm_mon`.
    pub cluster: ClusterStatus,
    /// The CIB.
    pub cib: CibFacts,
    /// Node name to address.
    pub addresses: BTreeMap<String, String>,
    /// The DC's controller state, if it could be read.
    pub controller_state: Option<String>,
    /// The quorum device's configuration and state.
    pub quorum: qdevice::Observed,
}

impl Sources {
    /// Reads crm_mon, the CIB, the DC's state and `corosync.conf`
    /// (addresses of nodes it does not list are their names).
    pub fn read(cluster: &Cluster, deadline: &Deadline) -> Result<Sources, Error> {
        let status = cluster.status(deadline)?;
        let cib = cib::query(cluster, deadline)?;
        let cluster = status;
        let mut addresses = match corosync::addresses(Path::new(corosync::COROSYNC_CONF)) {
            Ok(a) => a,
            Err(e) => {
                log::warn!("{e}; using node names as addresses");
                BTreeMap::new()
            }
        };
        for n in &cluster.nodes {
            addresses
                .entry(n.name.to_string())
                .or_insert_with(|| n.name.to_string());
        }
        let controller_state = cluster.dc.as_ref().and_then(|dc| {
            admin::controller_state(dc, deadline)
                .map_err(|e| log::warn!("controller state of {dc}: {e}"))
                .ok()
        });
        let quorum = qdevice::observe(Path::new(corosync::COROSYNC_CONF), deadline);
        Ok(Sources {
            cluster,
            cib,
            addresses,
            controller_state,
            quorum,
        })
    }

    /// The stack's parameters, checked.
    pub fn config(&self) -> Result<Config, Error> {
        Ok(self.cib.require_stack()?.config()?)
    }

    /// Probes the servers of every node.
    pub fn probe(&self, t: Timeouts) -> Result<BTreeMap<String, (PgProbe, RedisProbe)>, Error> {
        let cfg = self.config()?;
        let nodes: Vec<(String, String)> = self
            .cluster
            .nodes
            .iter()
            .map(|n| {
                let name = n.name.to_string();
                let addr = self.addresses.get(&name).cloned().unwrap_or(name.clone());
                (name, addr)
            })
            .collect();
        Ok(probe::all(&nodes, &cfg, t))
    }
}

/// Reads everything and builds the report. A stack whose parameters cannot
/// be read still gives a report, with the reason in every node's
/// `postgres.error` and `redis.error`.
pub fn report(cluster: &Cluster, deadline: &Deadline) -> Result<StatusReport, Error> {
    let src = Sources::read(cluster, deadline)?;
    let probes = match src.probe(Timeouts::default()) {
        Ok(p) => p,
        Err(e) => {
            let why = e.to_string();
            src.cluster
                .nodes
                .iter()
                .map(|n| {
                    (
                        n.name.to_string(),
                        (
                            PgProbe {
                                error: Some(why.clone()),
                                ..PgProbe::default()
                            },
                            RedisProbe {
                                info: None,
                                error: Some(why.clone()),
                            },
                        ),
                    )
                })
                .collect()
        }
    };
    Ok(assemble(&src, &probes))
}

/// Every instance and primitive (clone instances and group members
/// included), with the clone it belongs to.
fn all_resources(st: &ClusterStatus) -> impl Iterator<Item = &ResourceStatus> {
    st.resources
        .iter()
        .chain(st.clones.iter().flat_map(|c| c.instances.iter()))
}

fn runs_on(r: &ResourceStatus, node: &str) -> bool {
    r.nodes.iter().any(|n| n.as_str() == node)
}

/// Whether a resource is between roles: an operation under way, or running
/// although its configured target role says it should be stopped, or
/// promoted although it may only run unpromoted.
fn in_transition(r: &ResourceStatus) -> bool {
    if r.role.is_pending() || r.pending.is_some() {
        return true;
    }
    match r.target_role.as_deref() {
        Some("Stopped") => r.active,
        Some("Unpromoted" | "Slave") => r.role == Role::Promoted,
        _ => false,
    }
}

/// The worse of two health colours.
fn worse<'a>(a: &'a str, b: &'a str) -> &'a str {
    let rank = |c: &str| match c {
        "red" => 2,
        "yellow" => 1,
        _ => 0,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

/// A health attribute's value as a colour: Pacemaker accepts colours and
/// scores; a negative score counts as yellow here, `-INFINITY` as red.
fn colour(v: &str) -> &str {
    match v.trim().to_ascii_lowercase().as_str() {
        "red" => "red",
        "yellow" => "yellow",
        "green" => "green",
        "-infinity" => "red",
        other if other.parse::<i64>().is_ok_and(|n| n < 0) => "yellow",
        _ => "green",
    }
}

fn node_state(n: &cluster::NodeStatus) -> &'static str {
    if !n.online {
        if n.unclean {
            "unclean"
        } else {
            "offline"
        }
    } else if n.unclean {
        "unclean"
    } else if n.standby || n.standby_onfail {
        "standby"
    } else if n.maintenance {
        "maintenance"
    } else if n.pending {
        "pending"
    } else {
        "online"
    }
}

/// Builds the report from what was read (pure).
pub fn assemble(src: &Sources, probes: &BTreeMap<String, (PgProbe, RedisProbe)>) -> StatusReport {
    let st = &src.cluster;
    let stack = src.cib.stack.as_ref();
    let clone = stack.and_then(|s| s.clone_id.as_deref().and_then(|id| st.find_clone(id)));
    let promoted: Vec<&NodeName> = clone.map(|c| c.promoted_nodes()).unwrap_or_default();
    let vip_cfg = src.cib.vip();
    let vip_rsc = vip_cfg.and_then(|v| st.resource(&v.id));
    let vip_node = vip_rsc
        .filter(|r| r.active)
        .and_then(ResourceStatus::node)
        .map(NodeName::to_string);
    let score_attr = stack.map(|s| format!("{PROMOTION_ATTRIBUTE_PREFIX}{}", s.id));
    let app: Vec<&ResourceStatus> = st
        .resources
        .iter()
        .filter(|r| r.group.as_deref() == Some(APP_GROUP))
        .collect();
    let failed: Vec<FailedAction> = st
        .failures
        .iter()
        .map(|f| FailedAction {
            node: f.node.to_string(),
            resource: f
                .resource()
                .map(str::to_string)
                .unwrap_or_else(|| f.op_key.clone()),
            operation: f.task.clone().unwrap_or_default(),
            interval_ms: f.interval_ms.unwrap_or(0),
            rc: f.exit_code,
            exit_status: f.exit_status.clone(),
            exit_reason: f.exit_reason.clone(),
            status: f.status.clone(),
            last_rc_change: f.last_rc_change.clone(),
        })
        .collect();
    // The primary's view of its standbys, by application_name.
    let primary_rows: BTreeMap<&str, &crate::postgres::db::StandbyRow> = probes
        .values()
        .filter(|(pg, _)| pg.role() == "primary")
        .flat_map(|(pg, _)| pg.standbys.iter())
        .map(|r| (r.name.as_str(), r))
        .collect();

    let nodes = st
        .nodes
        .iter()
        .map(|n| {
            let name = n.name.as_str();
            let instance = clone.and_then(|c| c.instance_on(name));
            let role = instance
                .map(|r| r.role.to_string())
                .unwrap_or_else(|| Role::Stopped.to_string());
            let health_attributes = src.cib.health_attributes(name);
            let node_failed: Vec<FailedAction> =
                failed.iter().filter(|f| f.node == name).cloned().collect();
            let mut health = n.health.as_deref().map(colour).unwrap_or("green");
            for v in health_attributes.values() {
                health = worse(health, colour(v));
            }
            if !node_failed.is_empty() {
                health = worse(health, "yellow");
            }
            let pending: Vec<PendingView> = st
                .pending
                .iter()
                .filter(|p| p.node.as_str() == name)
                .map(|p| PendingView {
                    resource: p.resource.clone(),
                    operation: p.task.clone(),
                    interval_ms: p.interval_ms,
                })
                .collect();
            let transient = !pending.is_empty()
                || all_resources(st).any(|r| runs_on(r, name) && in_transition(r));
            let (pg, rd) = probes
                .get(name)
                .cloned()
                .unwrap_or_else(|| (PgProbe::default(), RedisProbe::default()));
            NodeView {
                name: name.to_string(),
                address: src.addresses.get(name).cloned(),
                state: node_state(n).to_string(),
                role,
                promotion_score: score_attr
                    .as_deref()
                    .and_then(|a| st.node_attribute(name, a))
                    .map(str::to_string),
                health: health.to_string(),
                health_attributes,
                vip: vip_node.as_deref() == Some(name),
                postgres: pg_view(&pg, primary_rows.get(name).copied()),
                redis: redis_view(&rd),
                app: app
                    .iter()
                    .map(|r| AppView {
                        resource: r.id.clone(),
                        running: r.active && runs_on(r, name),
                    })
                    .collect(),
                failed_actions: node_failed,
                pending,
                transient,
            }
        })
        .collect();

    StatusReport {
        cluster: ClusterView {
            name: src.cib.properties.get("cluster-name").cloned(),
            dc: st.dc.as_ref().map(NodeName::to_string),
            quorum: st.with_quorum,
            controller_state: src.controller_state.clone(),
            idle: src
                .controller_state
                .as_deref()
                .map(|s| s == admin::CONTROLLER_IDLE),
            maintenance_mode: st.maintenance_mode,
            stonith_enabled: st.stonith_enabled,
            stack_resource: stack.map(|s| s.promotable_id().to_string()),
            promoted: promoted.first().map(|n| n.to_string()),
        },
        vip: vip_cfg.map(|v| VipView {
            resource: v.id.clone(),
            address: Some(v.ip.clone()),
            node: vip_node.clone(),
        }),
        nodes,
        failed_actions: failed,
        quorum_device: qdevice::view(&src.quorum),
    }
}

fn pg_view(pg: &PgProbe, row: Option<&crate::postgres::db::StandbyRow>) -> PgView {
    let mut v = PgView {
        role: pg.role().to_string(),
        error: pg.error.clone(),
        ..PgView::default()
    };
    if let Some(s) = &pg.status {
        v.timeline = s.position().map(|p| p.timeline);
        v.receive_lsn = s.receive_lsn.map(|l| l.to_string());
        v.replay_lsn = s.replay_lsn.map(|l| l.to_string());
        v.lsn = if s.in_recovery {
            s.replay_lsn.map(|l| l.to_string())
        } else {
            s.current_lsn.map(|l| l.to_string())
        };
        if s.in_recovery {
            v.receiver = s.receiver_status.as_ref().map(ToString::to_string);
            v.replay_paused = s.replay_paused;
        } else {
            // A primary's own replay/receive positions are left from its
            // time as a standby: not shown.
            v.receive_lsn = None;
            v.replay_lsn = None;
        }
    }
    if let Some(r) = row {
        v.lag_bytes = Some(r.replay_lag());
        v.replication_state = Some(r.state.to_string());
        v.sync_state = Some(r.sync_state.to_string());
    }
    v
}

fn redis_view(rd: &RedisProbe) -> RedisView {
    RedisView {
        role: rd.role().to_string(),
        link: rd.link().map(str::to_string),
        master_host: rd.info.as_ref().and_then(|i| {
            i.master_host
                .as_ref()
                .map(|h| format!("{h}:{}", i.master_port.unwrap_or(0)))
        }),
        error: rd.error.clone(),
    }
}

fn dash(v: Option<impl ToString>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "-".into())
}

/// The first line: the cluster, its DC and the VIP.
fn summary_line(r: &StatusReport) -> String {
    let c = &r.cluster;
    let mut s = format!("Cluster {}", c.name.as_deref().unwrap_or("(unnamed)"));
    s.push_str(&format!(
        ": DC {}, {}",
        c.dc.as_deref().unwrap_or("none"),
        if c.quorum { "quorum" } else { "NO QUORUM" }
    ));
    match c.idle {
        Some(true) => s.push_str(", idle"),
        Some(false) => s.push_str(&format!(
            ", transition in progress ({})",
            c.controller_state.as_deref().unwrap_or("?")
        )),
        None => {}
    }
    if c.maintenance_mode {
        s.push_str(", MAINTENANCE MODE");
    }
    if !c.stonith_enabled {
        s.push_str(", fencing disabled");
    }
    if let Some(v) = &r.vip {
        s.push_str(&format!(
            "; VIP {} on {}",
            v.address.as_deref().unwrap_or("?"),
            v.node.as_deref().unwrap_or("no node")
        ));
    }
    s.push('\n');
    s
}

fn pg_cell(p: &PgView) -> String {
    match (&p.role[..], &p.receiver) {
        ("standby", Some(r)) if r != "streaming" => format!("standby ({r})"),
        ("standby", None) => "standby (no receiver)".into(),
        ("standby", _) if p.replay_paused => "standby (paused)".into(),
        (role, _) => role.to_string(),
    }
}

fn redis_cell(r: &RedisView) -> String {
    match &r.link {
        Some(l) => format!("{}, link {l}", r.role),
        None => r.role.clone(),
    }
}

fn app_cell(n: &NodeView) -> String {
    let running: Vec<&str> = n
        .app
        .iter()
        .filter(|a| a.running)
        .map(|a| a.resource.as_str())
        .collect();
    if running.is_empty() {
        "-".into()
    } else if running.len() == n.app.len() {
        format!("all {} ({})", running.len(), running.join(","))
    } else {
        running.join(",")
    }
}

fn node_row(n: &NodeView, with_app: bool) -> Vec<String> {
    let mut row = vec![
        n.name.clone(),
        n.state.clone(),
        n.role.clone(),
        n.health.clone(),
        if n.vip { "yes".into() } else { "no".into() },
        pg_cell(&n.postgres),
        dash(n.postgres.timeline),
        dash(n.postgres.lsn.as_ref()),
        dash(n.postgres.lag_bytes.map(human_bytes)),
        redis_cell(&n.redis),
    ];
    if with_app {
        row.push(app_cell(n));
    }
    row.push(if n.transient {
        "yes".into()
    } else {
        "no".into()
    });
    row
}

fn header(with_app: bool) -> Vec<&'static str> {
    let mut h = vec![
        "Node",
        "State",
        "Role",
        "Health",
        "VIP",
        "PostgreSQL",
        "TL",
        "LSN",
        "Lag",
        "Redis",
    ];
    if with_app {
        h.push("App");
    }
    h.push("Transient");
    h
}

/// The notes under the table: failed actions, operations in flight,
/// servers that could not be asked, health attributes that are not green.
fn notes(nodes: &[&NodeView], failed: &[&FailedAction]) -> String {
    let mut s = String::new();
    if !failed.is_empty() {
        s.push_str("Failed actions:\n");
        for f in failed {
            s.push_str(&format!("  {}\n", f.describe()));
        }
    }
    let pending: Vec<String> = nodes
        .iter()
        .flat_map(|n| {
            n.pending
                .iter()
                .map(move |p| format!("  {}: {} {}\n", n.name, p.resource, p.operation))
        })
        .collect();
    if !pending.is_empty() {
        s.push_str("In flight:\n");
        s.extend(pending);
    }
    let mut unreachable = Vec::new();
    for n in nodes {
        if let Some(e) = &n.postgres.error {
            unreachable.push(format!("  {} PostgreSQL: {e}\n", n.name));
        }
        if let Some(e) = &n.redis.error {
            unreachable.push(format!("  {} Redis: {e}\n", n.name));
        }
    }
    if !unreachable.is_empty() {
        s.push_str("Not answering:\n");
        s.extend(unreachable);
    }
    let sick: Vec<String> = nodes
        .iter()
        .flat_map(|n| {
            n.health_attributes
                .iter()
                .filter(|(_, v)| colour(v) != "green")
                .map(move |(k, v)| format!("  {}: {k} = {v}\n", n.name))
        })
        .collect();
    if !sick.is_empty() {
        s.push_str("Health attributes:\n");
        s.extend(sick);
    }
    s
}

/// `status`, as text: the summary line, the table, the notes.
pub fn render(r: &StatusReport) -> String {
    let with_app = r.nodes.iter().any(|n| !n.app.is_empty());
    let mut t = Table::new(&header(with_app));
    for n in &r.nodes {
        t.row(node_row(n, with_app));
    }
    let mut s = summary_line(r);
    s.push_str(&t.render());
    s.push_str(&qdevice::render(&r.quorum_device, r.nodes.len()));
    let nodes: Vec<&NodeView> = r.nodes.iter().collect();
    let failed: Vec<&FailedAction> = r.failed_actions.iter().collect();
    s.push_str(&notes(&nodes, &failed));
    s
}

/// `rapidproctl status`.
pub fn status(cluster: &Cluster, deadline: &Deadline) -> Result<Outcome, Error> {
    let r = report(cluster, deadline)?;
    let json = serde_json::to_value(&r).expect("the report serializes");
    Ok(Outcome::ok(json, render(&r)))
}

/// `state`, as text: one node's facts, one per line.
pub fn render_node(n: &NodeView) -> String {
    let pg = &n.postgres;
    let mut items = vec![
        ("node", n.name.clone()),
        ("state", n.state.clone()),
        ("role", n.role.clone()),
        (
            "transient",
            if n.transient {
                "yes (an operation is running or a role change is under way)".into()
            } else {
                "no".into()
            },
        ),
        ("health", n.health.clone()),
        ("vip", if n.vip { "yes".into() } else { "no".into() }),
        ("postgresql", pg_cell(pg)),
        ("timeline", dash(pg.timeline)),
        ("lsn", dash(pg.lsn.as_ref())),
        ("lag", dash(pg.lag_bytes.map(|b| format!("{b} bytes")))),
        ("redis", redis_cell(&n.redis)),
    ];
    if let Some(s) = &n.promotion_score {
        items.push(("promotion score", s.clone()));
    }
    if !n.app.is_empty() {
        items.push(("app", app_cell(n)));
    }
    let mut s = pairs(&items);
    let failed: Vec<&FailedAction> = n.failed_actions.iter().collect();
    s.push_str(&notes(&[n], &failed));
    s
}

/// `rapidproctl state [NODE]`: `node` or, by default, this node.
pub fn state(cluster: &Cluster, node: Option<&str>, deadline: &Deadline) -> Result<Outcome, Error> {
    let name = match node {
        Some(n) => n.to_string(),
        None => cluster.local_node_name(None, deadline).to_string(),
    };
    let r = report(cluster, deadline)?;
    let n = r.nodes.iter().find(|n| n.name == name).ok_or_else(|| {
        let known: Vec<&str> = r.nodes.iter().map(|n| n.name.as_str()).collect();
        Error::Usage(format!(
            "no node {name:?} in the cluster (nodes: {})",
            known.join(", ")
        ))
    })?;
    let json = serde_json::to_value(n).expect("the node serializes");
    Ok(Outcome::ok(json, render_node(n)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::parse_crm_mon;
    use crate::postgres::queries::{parse_standby, parse_status};
    use crate::redis::parse_info_replication;

    const STEADY: &str = include_str!("../cluster/fixtures/crm_mon-live-steady.xml");
    const FAILED: &str = include_str!("../cluster/fixtures/crm_mon-live-failed-monitor.xml");
    const OFFLINE: &str = include_str!("../cluster/fixtures/crm_mon-live-offline.xml");
    const PROMOTING: &str = include_str!("../cluster/fixtures/crm_mon-promoting.xml");
    const CIB: &str = include_str!("fixtures/cib-live.xml");
    /// The test cluster's `corosync.conf`: two nodes, `two_node`, no device.
    const COROSYNC: &str = include_str!("fixtures/corosync.conf");

    fn row(v: &[Option<&str>]) -> Vec<Option<String>> {
        v.iter().map(|c| c.map(str::to_string)).collect()
    }

    /// node2 primary at 0/3000100 with node1 streaming, replayed to 0/3000000.
    fn primary() -> PgProbe {
        PgProbe {
            status: Some(
                parse_status(&row(&[
                    Some("f"),
                    Some("0/3000100"),
                    Some("000000020000000000000003"),
                    Some("0/1789158"),
                    Some("0/1789158"),
                    Some("f"),
                    Some("2"),
                    Some("0"),
                    None,
                    None,
                    Some("ANY 1 (*)"),
                    Some(""),
                    Some("150010"),
                ]))
                .unwrap(),
            ),
            standbys: vec![parse_standby(&row(&[
                Some("node1"),
                Some("10.200.200.11"),
                Some("streaming"),
                Some("quorum"),
                Some("0/3000100"),
                Some("0/3000100"),
                Some("0/3000100"),
                Some("0/3000000"),
                Some("0/3000100"),
                None,
                None,
                None,
            ]))
            .unwrap()],
            error: None,
        }
    }

    fn standby() -> PgProbe {
        PgProbe {
            status: Some(
                parse_status(&row(&[
                    Some("t"),
                    None,
                    None,
                    Some("0/3000100"),
                    Some("0/3000000"),
                    Some("f"),
                    Some("2"),
                    Some("2"),
                    Some("streaming"),
                    Some("2"),
                    Some(""),
                    Some("host=10.200.200.100"),
                    Some("150010"),
                ]))
                .unwrap(),
            ),
            standbys: vec![],
            error: None,
        }
    }

    fn master() -> RedisProbe {
        RedisProbe {
            info: Some(parse_info_replication("role:master\r\nconnected_slaves:1\r\n").unwrap()),
            error: None,
        }
    }

    fn replica() -> RedisProbe {
        RedisProbe {
            info: Some(
                parse_info_replication(
                    "role:slave\r\nmaster_host:10.200.200.100\r\nmaster_port:6379\r\nmaster_link_status:up\r\n",
                )
                .unwrap(),
            ),
            error: None,
        }
    }

    fn down(why: &str) -> (PgProbe, RedisProbe) {
        (
            PgProbe {
                error: Some(why.into()),
                ..PgProbe::default()
            },
            RedisProbe {
                info: None,
                error: Some(why.into()),
            },
        )
    }

    fn sources(crm_mon: &str) -> Sources {
        Sources {
            cluster: parse_crm_mon(crm_mon).unwrap(),
            cib: cib::parse(CIB).unwrap(),
            addresses: [("node1", "10.200.200.11"), ("node2", "10.200.200.12")]
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            controller_state: Some("S_IDLE".into()),
            quorum: qdevice::Observed {
                config: Ok(corosync::parse_quorum(COROSYNC).unwrap()),
                nodes: 2,
                daemon: None,
                votequorum: None,
            },
        }
    }

    fn probes(p: Vec<(&str, (PgProbe, RedisProbe))>) -> BTreeMap<String, (PgProbe, RedisProbe)> {
        p.into_iter().map(|(n, v)| (n.to_string(), v)).collect()
    }

    #[test]
    fn a_steady_pair_shows_roles_vip_and_lag() {
        let r = assemble(
            &sources(STEADY),
            &probes(vec![
                ("node1", (standby(), replica())),
                ("node2", (primary(), master())),
            ]),
        );
        assert_eq!(r.cluster.promoted.as_deref(), Some("node2"));
        assert_eq!(r.cluster.stack_resource.as_deref(), Some("stack-clone"));
        assert_eq!(r.cluster.idle, Some(true));
        assert_eq!(r.cluster.name.as_deref(), Some("rapidpro"));
        let vip = r.vip.as_ref().unwrap();
        assert_eq!(vip.address.as_deref(), Some("10.200.200.100"));
        assert_eq!(vip.node.as_deref(), Some("node2"));
        let n1 = &r.nodes[0];
        assert_eq!(n1.name, "node1");
        assert_eq!(
            (n1.state.as_str(), n1.role.as_str()),
            ("online", "Unpromoted")
        );
        assert!(!n1.vip && !n1.transient);
        assert_eq!(n1.postgres.role, "standby");
        assert_eq!(n1.postgres.lag_bytes, Some(0x100));
        assert_eq!(n1.postgres.lsn.as_deref(), Some("0/3000000"));
        assert_eq!(n1.postgres.sync_state.as_deref(), Some("quorum"));
        assert_eq!(n1.postgres.receiver.as_deref(), Some("streaming"));
        assert_eq!(n1.postgres.timeline, Some(2));
        assert_eq!(n1.redis.role, "replica");
        assert_eq!(n1.redis.link.as_deref(), Some("up"));
        assert_eq!(n1.promotion_score.as_deref(), Some("1000"));
        // The recorded CIB has #health-disk=yellow on node1.
        assert_eq!(n1.health, "yellow");
        let n2 = &r.nodes[1];
        assert_eq!((n2.role.as_str(), n2.vip), ("Promoted", true));
        assert_eq!(n2.postgres.role, "primary");
        assert_eq!(n2.postgres.lsn.as_deref(), Some("0/3000100"));
        assert_eq!(n2.postgres.lag_bytes, None);
        assert_eq!(n2.postgres.replay_lsn, None);
        assert_eq!(
            (n2.redis.role.as_str(), n2.redis.link.as_deref()),
            ("master", None)
        );
        assert_eq!(n2.health, "green");
        assert!(r.failed_actions.is_empty());
    }

    #[test]
    fn the_json_has_the_documented_field_names() {
        let r = assemble(
            &sources(STEADY),
            &probes(vec![
                ("node1", (standby(), replica())),
                ("node2", (primary(), master())),
            ]),
        );
        let v = serde_json::to_value(&r).unwrap();
        for k in ["cluster", "vip", "nodes", "failed_actions", "quorum_device"] {
            assert!(v.get(k).is_some(), "{k}");
        }
        for k in [
            "configured",
            "two_node",
            "model",
            "host",
            "port",
            "algorithm",
            "tie_breaker",
            "heuristics_mode",
            "heuristics",
            "daemon",
            "connection",
            "heuristics_result",
            "vote",
            "nodes",
            "error",
        ] {
            assert!(v["quorum_device"].get(k).is_some(), "quorum_device.{k}");
        }
        assert_eq!(v["quorum_device"]["configured"], false);
        assert_eq!(v["quorum_device"]["two_node"], true);
        let n = &v["nodes"][0];
        for k in [
            "name",
            "address",
            "state",
            "role",
            "promotion_score",
            "health",
            "health_attributes",
            "vip",
            "postgres",
            "redis",
            "app",
            "failed_actions",
            "pending",
            "transient",
        ] {
            assert!(n.get(k).is_some(), "nodes[].{k}");
        }
        for k in [
            "role",
            "timeline",
            "lsn",
            "receive_lsn",
            "replay_lsn",
            "lag_bytes",
            "replication_state",
            "sync_state",
            "receiver",
            "replay_paused",
            "error",
        ] {
            assert!(n["postgres"].get(k).is_some(), "postgres.{k}");
        }
        for k in ["role", "link", "master_host", "error"] {
            assert!(n["redis"].get(k).is_some(), "redis.{k}");
        }
        assert_eq!(v["vip"]["node"], "node2");
        assert_eq!(v["nodes"][0]["health_attributes"]["#health-disk"], "yellow");
        assert_eq!(v["cluster"]["promoted"], "node2");
    }

    #[test]
    fn a_failed_monitor_is_listed_with_its_reason_and_colours_the_node() {
        let r = assemble(
            &sources(FAILED),
            &probes(vec![
                ("node1", (standby(), replica())),
                ("node2", (primary(), master())),
            ]),
        );
        assert_eq!(r.failed_actions.len(), 1);
        let f = &r.failed_actions[0];
        assert_eq!(
            (f.node.as_str(), f.resource.as_str(), f.operation.as_str()),
            ("node1", "stack", "monitor")
        );
        assert_eq!(f.rc, Some(1));
        assert_eq!(f.exit_reason, "Redis 243 died (stale pidfile)");
        assert_eq!(
            f.describe(),
            "stack monitor (16 s) on node1: error (rc 1): Redis 243 died (stale pidfile) at 2026-11-26 00:00:20Z"
        );
        assert_eq!(r.nodes[0].failed_actions.len(), 1);
        assert!(r.nodes[1].failed_actions.is_empty());
        assert_eq!(r.nodes[0].health, "yellow");
        let text = render(&r);
        assert!(
            text.contains("Failed actions:\n  stack monitor (16 s) on node1"),
            "{text}"
        );
    }

    #[test]
    fn a_powered_off_node_is_offline_stopped_and_down() {
        let r = assemble(
            &sources(OFFLINE),
            &probes(vec![
                ("node1", (primary(), master())),
                ("node2", down("10.200.200.12:5432: No route to host")),
            ]),
        );
        let n2 = &r.nodes[1];
        assert_eq!(
            (n2.state.as_str(), n2.role.as_str()),
            ("offline", "Stopped")
        );
        assert_eq!(
            (n2.postgres.role.as_str(), n2.redis.role.as_str()),
            ("down", "down")
        );
        assert!(!n2.vip);
        assert_eq!(r.vip.as_ref().unwrap().node.as_deref(), Some("node1"));
        assert_eq!(r.cluster.promoted.as_deref(), Some("node1"));
        let text = render(&r);
        assert!(
            text.contains("node2 PostgreSQL: 10.200.200.12:5432: No route to host"),
            "{text}"
        );
    }

    #[test]
    fn an_operation_in_flight_makes_its_node_transient() {
        let mut src = sources(PROMOTING);
        // The recorded promoting cluster runs ocf:pacemaker:Stateful as
        // "stack" in "stack-clone", like the recorded CIB.
        src.controller_state = Some("S_TRANSITION_ENGINE".into());
        let r = assemble(&src, &probes(vec![]));
        let n1 = r.nodes.iter().find(|n| n.name == "node1").unwrap();
        assert!(n1.transient);
        assert_eq!(n1.role, "Promoting");
        assert_eq!(
            n1.pending,
            [PendingView {
                resource: "stack".into(),
                operation: "promote".into(),
                interval_ms: 0
            }]
        );
        let n2 = r.nodes.iter().find(|n| n.name == "node2").unwrap();
        assert!(!n2.transient);
        assert_eq!(n2.state, "maintenance");
        assert_eq!(r.cluster.idle, Some(false));
        let text = render(&r);
        assert!(
            text.contains("transition in progress (S_TRANSITION_ENGINE)"),
            "{text}"
        );
        assert!(
            text.contains("In flight:\n  node1: stack promote"),
            "{text}"
        );
    }

    #[test]
    fn a_target_role_of_stopped_on_a_running_resource_is_a_transition() {
        let mut st = parse_crm_mon(STEADY).unwrap();
        let vip = st.resources.iter_mut().find(|r| r.id == "vip").unwrap();
        assert!(!in_transition(vip));
        vip.target_role = Some("Stopped".into());
        assert!(in_transition(vip));
        // A promotable clone's default target role is not a transition.
        let inst = &mut st.clones[0].instances[1];
        inst.target_role = Some("Promoted".into());
        assert!(!in_transition(inst));
    }

    #[test]
    fn the_app_group_shows_where_it_runs() {
        let xml = STEADY.replace(
            "<resource id=\"fence-sandbox\"",
            "<group id=\"app\" number_resources=\"2\">\
             <resource id=\"uwsgi\" resource_agent=\"ocf:heartbeat:anything\" role=\"Started\" active=\"true\" orphaned=\"false\" blocked=\"false\" managed=\"true\" failed=\"false\" failure_ignored=\"false\" nodes_running_on=\"1\"><node name=\"node2\" id=\"2\" cached=\"true\"/></resource>\
             <resource id=\"celery\" resource_agent=\"ocf:heartbeat:anything\" role=\"Stopped\" active=\"false\" orphaned=\"false\" blocked=\"false\" managed=\"true\" failed=\"false\" failure_ignored=\"false\" nodes_running_on=\"0\"/>\
             </group><resource id=\"fence-sandbox\"",
        );
        let r = assemble(&sources(&xml), &probes(vec![]));
        let apps = |i: usize| -> Vec<(String, bool)> {
            r.nodes[i]
                .app
                .iter()
                .map(|a| (a.resource.clone(), a.running))
                .collect()
        };
        assert_eq!(apps(0), [("uwsgi".into(), false), ("celery".into(), false)]);
        assert_eq!(apps(1), [("uwsgi".into(), true), ("celery".into(), false)]);
        let text = render(&r);
        assert!(text.contains("| App "), "{text}");
        assert!(text.contains(" uwsgi "), "{text}");
    }

    #[test]
    fn the_table_has_one_row_per_node() {
        let r = assemble(
            &sources(STEADY),
            &probes(vec![
                ("node1", (standby(), replica())),
                ("node2", (primary(), master())),
            ]),
        );
        let text = render(&r);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "Cluster rapidpro: DC node2, quorum, idle; VIP 10.200.200.100 on node2"
        );
        assert!(lines[2].starts_with("| Node "), "{text}");
        assert!(
            lines[4].starts_with("| node1 | online | Unpromoted | yellow | no "),
            "{text}"
        );
        assert!(lines[4].contains("| 256 B |"), "{text}");
        assert!(lines[4].contains("| replica, link up |"), "{text}");
        assert!(
            lines[5].starts_with("| node2 | online | Promoted   | green  | yes "),
            "{text}"
        );
        assert!(
            text.contains("Health attributes:\n  node1: #health-disk = yellow"),
            "{text}"
        );
    }

    #[test]
    fn health_colours_take_the_worst() {
        assert_eq!(worse("green", "yellow"), "yellow");
        assert_eq!(worse("red", "yellow"), "red");
        assert_eq!(colour("RED"), "red");
        assert_eq!(colour("-INFINITY"), "red");
        assert_eq!(colour("-10"), "yellow");
        assert_eq!(colour("100"), "green");
    }

    #[test]
    fn the_quorum_device_is_a_line_under_the_table_and_an_object_in_the_json() {
        let steady = probes(vec![
            ("node1", (standby(), replica())),
            ("node2", (primary(), master())),
        ]);
        let text = render(&assemble(&sources(STEADY), &steady));
        assert!(
            text.contains("\nQuorum device: none (two_node: in a network split the fence race"),
            "{text}"
        );
        let mut src = sources(STEADY);
        src.quorum = qdevice::Observed {
            config: Ok(
                corosync::parse_quorum(include_str!("fixtures/corosync-qdevice.conf")).unwrap(),
            ),
            nodes: 2,
            daemon: Some(qdevice::Daemon::NotRunning("exit code 3".into())),
            votequorum: Some(qdevice::Votequorum::Answered(
                qdevice::parse_quorum_status(include_str!("fixtures/quorumtool-qdevice-lost.txt"))
                    .unwrap(),
            )),
        };
        let r = assemble(&src, &steady);
        let text = render(&r);
        assert!(
            text.contains(
                "\nQuorum device: net 10.200.200.3:5403 (ffsplit, heuristics on): this node \
                 corosync-qdevice NOT RUNNING, NO VOTE; votes: node1 no vote, node2 no device\n"
            ),
            "{text}"
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["quorum_device"]["daemon"], "not_running");
        assert_eq!(v["quorum_device"]["vote"], "not_cast");
        assert_eq!(v["quorum_device"]["nodes"][1]["device"], "not_registered");
        // The existing keys are unchanged.
        assert_eq!(v["cluster"]["promoted"], "node2");
    }

    #[test]
    fn one_node_renders_as_key_value_lines() {
        let r = assemble(
            &sources(STEADY),
            &probes(vec![
                ("node1", (standby(), replica())),
                ("node2", (primary(), master())),
            ]),
        );
        let text = render_node(&r.nodes[0]);
        assert!(text.starts_with("node:             node1\n"), "{text}");
        assert!(text.contains("transient:        no\n"), "{text}");
        assert!(text.contains("lag:              256 bytes\n"), "{text}");
    }
}
