//! `rapidproctl switchover [NODE]`: a planned move of the Promoted role,
//! with the checks the old manual asked people to do by hand first.
//!
//! [`judge`] decides from what was read (pure, every refusal tested); then
//! [`switchover`] acts like an administrator would:
//!
//! 1. `crm_resource --move --promoted --resource <clone> --node NODE`
//!    (a `cli-prefer-<clone>` location constraint for the Promoted role);
//! 2. waits until NODE is Promoted (with the VIP), then `crm_resource --wait`;
//! 3. `crm_resource --clear --promoted --resource <clone> --node NODE`, and
//!    waits again. The role does not flip back: the new primary's instance
//!    scores itself 1001 at promote and the old one, now a standby, gets
//!    1000 at most from the new primary's monitor (`stack::decide`);
//! 4. reports whether the old primary streams from the new one.
//!
//! The target must be streaming from the current primary
//! (`pg_stat_replication`, `application_name` = node name) and within
//! `maxlag` bytes of replayed WAL; the cluster must have no failed action,
//! no operation in flight, and an idle DC (a transition or an operation
//! under way is waited for, up to 30 s or half the timeout, before refusing).

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cluster::{admin, Cluster, ClusterStatus, NodeName, Role};
use crate::deadline::Deadline;
use crate::postgres::db::StandbyRow;
use crate::postgres::queries::WalSenderState;

use super::probe::{self, Timeouts};
use super::status::{FailedAction, Sources};
use super::{human_bytes, Error, Outcome};

/// How long a switchover may take by default, move and settling included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the cluster is polled while waiting.
const POLL: Duration = Duration::from_millis(500);
/// How long to wait for the old primary to stream once the role moved.
const STREAM_WAIT: Duration = Duration::from_secs(30);
/// How long switchover waits for a transition or an operation in flight
/// to end before it refuses (at most half its timeout).
const SETTLE_WAIT: Duration = Duration::from_secs(30);

/// What was read before deciding.
#[derive(Debug, Clone)]
pub struct Situation<'a> {
    /// crm_mon.
    pub cluster: &'a ClusterStatus,
    /// The promotable clone of the stack.
    pub clone: Option<&'a str>,
    /// The DC's controller state, if read.
    pub controller_state: Option<&'a str>,
    /// The primary's `pg_stat_replication`, or why it could not be read.
    pub standbys: Result<&'a [StandbyRow], String>,
    /// The stack's `maxlag` (0: no limit).
    pub maxlag: u64,
}

/// A switchover that passed the checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The promotable clone.
    pub clone: String,
    /// The current primary.
    pub from: String,
    /// The target.
    pub to: String,
    /// The target's replay lag, in bytes.
    pub lag_bytes: u64,
    /// The limit it was checked against (0: none).
    pub maxlag: u64,
}

/// Why a switchover is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No `ocf:rapidpro:stack` clone is configured or shown by crm_mon.
    NoStack,
    /// No node is Promoted.
    NoPrimary,
    /// More than one node is Promoted.
    SeveralPrimaries(Vec<String>),
    /// The target is not a cluster node.
    UnknownNode {
        /// The target.
        node: String,
        /// The nodes there are.
        known: Vec<String>,
    },
    /// The target is the primary already.
    TargetIsPrimary(String),
    /// The target is not an online, active node.
    TargetNotOnline {
        /// The target.
        node: String,
        /// Why (offline, standby, maintenance...).
        state: String,
    },
    /// The target's instance is not Unpromoted.
    TargetNotUnpromoted {
        /// The target.
        node: String,
        /// Its role.
        role: String,
    },
    /// No node was named and no standby streams.
    NoCandidate,
    /// No node was named and several standbys stream.
    SeveralCandidates(Vec<String>),
    /// The cluster has failed actions.
    FailedActions(Vec<String>),
    /// Operations are in flight.
    InFlight(Vec<String>),
    /// The DC is not idle.
    TransitionInProgress(String),
    /// The primary's `pg_stat_replication` could not be read.
    PrimaryUnreadable {
        /// The primary.
        node: String,
        /// Why.
        reason: String,
    },
    /// The target does not stream from the primary.
    NotStreaming {
        /// The target.
        node: String,
        /// Its `pg_stat_replication.state`, if it has a row.
        state: Option<WalSenderState>,
    },
    /// The target has not replayed enough.
    Lagging {
        /// The target.
        node: String,
        /// Its replay lag.
        lag_bytes: u64,
        /// The limit.
        maxlag: u64,
    },
}

impl Refusal {
    /// A stable identifier for scripts (`--json` `refusal`).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NoStack => "no_stack",
            Refusal::NoPrimary => "no_primary",
            Refusal::SeveralPrimaries(_) => "several_primaries",
            Refusal::UnknownNode { .. } => "unknown_node",
            Refusal::TargetIsPrimary(_) => "target_is_primary",
            Refusal::TargetNotOnline { .. } => "target_not_online",
            Refusal::TargetNotUnpromoted { .. } => "target_not_unpromoted",
            Refusal::NoCandidate => "no_candidate",
            Refusal::SeveralCandidates(_) => "several_candidates",
            Refusal::FailedActions(_) => "failed_actions",
            Refusal::InFlight(_) => "in_flight",
            Refusal::TransitionInProgress(_) => "transition_in_progress",
            Refusal::PrimaryUnreadable { .. } => "primary_unreadable",
            Refusal::NotStreaming { .. } => "not_streaming",
            Refusal::Lagging { .. } => "lagging",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoStack => write!(f, "no promotable ocf:rapidpro:stack clone is running"),
            Refusal::NoPrimary => write!(f, "no node is Promoted: nothing to move"),
            Refusal::SeveralPrimaries(n) => {
                write!(
                    f,
                    "several nodes are Promoted ({}): fix that first",
                    n.join(", ")
                )
            }
            Refusal::UnknownNode { node, known } => {
                write!(
                    f,
                    "{node} is not a cluster node (nodes: {})",
                    known.join(", ")
                )
            }
            Refusal::TargetIsPrimary(n) => write!(f, "{n} is the primary already"),
            Refusal::TargetNotOnline { node, state } => write!(f, "{node} is {state}"),
            Refusal::TargetNotUnpromoted { node, role } => {
                write!(f, "the stack on {node} is {role}, not Unpromoted")
            }
            Refusal::NoCandidate => write!(
                f,
                "no standby streams from the primary: no node to move the primary to"
            ),
            Refusal::SeveralCandidates(n) => write!(
                f,
                "several standbys stream ({}): name the target node",
                n.join(", ")
            ),
            Refusal::FailedActions(a) => write!(
                f,
                "the cluster has failed actions (clear them with `crm_resource --cleanup` once \
                 understood): {}",
                a.join("; ")
            ),
            Refusal::InFlight(a) => {
                write!(
                    f,
                    "operations are in flight: {}; wait and retry",
                    a.join("; ")
                )
            }
            Refusal::TransitionInProgress(s) => write!(
                f,
                "the cluster is in a transition (DC state {s}); wait and retry"
            ),
            Refusal::PrimaryUnreadable { node, reason } => write!(
                f,
                "cannot read pg_stat_replication on the primary {node}: {reason}"
            ),
            Refusal::NotStreaming { node, state: None } => write!(
                f,
                "{node} is not streaming from the primary (not in its pg_stat_replication)"
            ),
            Refusal::NotStreaming {
                node,
                state: Some(s),
            } => write!(f, "{node} is not streaming from the primary (state {s})"),
            Refusal::Lagging {
                node,
                lag_bytes,
                maxlag,
            } => write!(
                f,
                "{node} is {lag_bytes} bytes ({}) behind the primary, beyond maxlag {maxlag} \
                 bytes ({})",
                human_bytes(*lag_bytes),
                human_bytes(*maxlag)
            ),
        }
    }
}

/// Decides whether the Promoted role may move to `target` (or, if `None`,
/// to the one standby that streams), from what was read.
pub fn judge(s: &Situation<'_>, target: Option<&str>) -> Result<Plan, Refusal> {
    let st = s.cluster;
    let clone_id = s.clone.ok_or(Refusal::NoStack)?;
    let clone = st.find_clone(clone_id).ok_or(Refusal::NoStack)?;
    if !st.failures.is_empty() {
        return Err(Refusal::FailedActions(
            st.failures
                .iter()
                .map(|f| {
                    FailedAction {
                        node: f.node.to_string(),
                        resource: f.resource().unwrap_or(&f.op_key).to_string(),
                        operation: f.task.clone().unwrap_or_default(),
                        interval_ms: f.interval_ms.unwrap_or(0),
                        rc: f.exit_code,
                        exit_status: f.exit_status.clone(),
                        exit_reason: f.exit_reason.clone(),
                        status: f.status.clone(),
                        last_rc_change: None,
                    }
                    .describe()
                })
                .collect(),
        ));
    }
    let in_flight = super::in_flight(st);
    if !in_flight.is_empty() {
        return Err(Refusal::InFlight(in_flight));
    }
    if let Some(state) = s.controller_state {
        if state != admin::CONTROLLER_IDLE {
            return Err(Refusal::TransitionInProgress(state.to_string()));
        }
    }
    let promoted = clone.promoted_nodes();
    let from = match promoted.as_slice() {
        [] => return Err(Refusal::NoPrimary),
        [one] => one.to_string(),
        many => {
            return Err(Refusal::SeveralPrimaries(
                many.iter().map(|n| n.to_string()).collect(),
            ))
        }
    };
    let rows = s
        .standbys
        .clone()
        .map_err(|reason| Refusal::PrimaryUnreadable {
            node: from.clone(),
            reason,
        })?;
    let streaming = |name: &str| {
        rows.iter()
            .any(|r| r.name == name && r.state == WalSenderState::Streaming)
    };
    let unpromoted = |name: &str| {
        clone
            .instance_on(name)
            .is_some_and(|i| i.role == Role::Unpromoted)
    };
    let to = match target {
        Some(t) => {
            let Some(node) = st.node(t) else {
                return Err(Refusal::UnknownNode {
                    node: t.to_string(),
                    known: st.nodes.iter().map(|n| n.name.to_string()).collect(),
                });
            };
            if t == from {
                return Err(Refusal::TargetIsPrimary(from));
            }
            let state = if !node.online {
                Some("offline")
            } else if node.standby || node.standby_onfail {
                Some("in standby")
            } else if node.maintenance {
                Some("in maintenance")
            } else if node.unclean {
                Some("unclean")
            } else {
                None
            };
            if let Some(state) = state {
                return Err(Refusal::TargetNotOnline {
                    node: t.to_string(),
                    state: state.to_string(),
                });
            }
            if !unpromoted(t) {
                let role = clone
                    .instance_on(t)
                    .map(|i| i.role.to_string())
                    .unwrap_or_else(|| Role::Stopped.to_string());
                return Err(Refusal::TargetNotUnpromoted {
                    node: t.to_string(),
                    role,
                });
            }
            t.to_string()
        }
        None => {
            let candidates: Vec<String> = st
                .nodes
                .iter()
                .filter(|n| n.online && !n.standby && !n.maintenance)
                .map(|n| n.name.to_string())
                .filter(|n| *n != from && unpromoted(n) && streaming(n))
                .collect();
            match candidates.as_slice() {
                [] => return Err(Refusal::NoCandidate),
                [one] => one.clone(),
                _ => return Err(Refusal::SeveralCandidates(candidates)),
            }
        }
    };
    let row = rows.iter().find(|r| r.name == to);
    let Some(row) = row.filter(|r| r.state == WalSenderState::Streaming) else {
        return Err(Refusal::NotStreaming {
            node: to,
            state: row.map(|r| r.state.clone()),
        });
    };
    let lag = row.replay_lag();
    if s.maxlag > 0 && lag > s.maxlag {
        return Err(Refusal::Lagging {
            node: to,
            lag_bytes: lag,
            maxlag: s.maxlag,
        });
    }
    Ok(Plan {
        clone: clone_id.to_string(),
        from,
        to,
        lag_bytes: lag,
        maxlag: s.maxlag,
    })
}

/// What happened, for `--json`.
#[derive(Debug, Clone, Serialize)]
struct Report {
    from: String,
    to: String,
    dry_run: bool,
    lag_bytes: u64,
    maxlag: u64,
    promoted: Option<String>,
    vip_node: Option<String>,
    seconds_to_promoted: Option<f64>,
    seconds_total: Option<f64>,
    constraint_cleared: bool,
    old_primary: Option<OldPrimary>,
}

#[derive(Debug, Clone, Serialize)]
struct OldPrimary {
    name: String,
    role: String,
    streaming: bool,
    lag_bytes: Option<u64>,
}

/// What [`read_situation`] read: the sources, the primary's
/// `pg_stat_replication` (or why it could not be read), and `maxlag`.
type Read = (Sources, Result<Vec<StandbyRow>, String>, u64);

/// Reads the situation: crm_mon, CIB, DC state, and the primary's
/// `pg_stat_replication` over TCP.
fn read_situation(cluster: &Cluster, deadline: &Deadline) -> Result<Read, Error> {
    let src = Sources::read(cluster, deadline)?;
    let cfg = src.config()?;
    let clone = src.cib.require_stack()?.promotable_id().to_string();
    let primary = src
        .cluster
        .find_clone(&clone)
        .and_then(|c| c.promoted_nodes().first().map(|n| n.to_string()));
    let standbys = match primary {
        None => Err("no primary".to_string()),
        Some(p) => {
            let addr = src.addresses.get(&p).cloned().unwrap_or(p);
            let pg = probe::postgres(&addr, &cfg, Timeouts::default());
            let role = pg.role();
            match (pg.error, role) {
                (Some(e), _) => Err(e),
                (None, "primary") => Ok(pg.standbys),
                (None, role) => Err(format!("its PostgreSQL is {role}, not primary")),
            }
        }
    };
    Ok((src, standbys, cfg.maxlag))
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 100.0).round() / 100.0
}

/// Polls crm_mon until `to` is the only Promoted node and, if there is a
/// VIP, holds it. Returns the VIP's node.
fn wait_promoted(
    cluster: &Cluster,
    clone: &str,
    vip: Option<&str>,
    to: &str,
    deadline: &Deadline,
) -> Result<Option<String>, Error> {
    loop {
        if let Ok(st) = cluster.status(deadline) {
            let promoted: Vec<String> = st
                .find_clone(clone)
                .map(|c| c.promoted_nodes().iter().map(|n| n.to_string()).collect())
                .unwrap_or_default();
            let vip_node = vip.and_then(|v| {
                st.resource(v)
                    .filter(|r| r.active)
                    .and_then(|r| r.node())
                    .map(NodeName::to_string)
            });
            if promoted == [to] && (vip.is_none() || vip_node.as_deref() == Some(to)) {
                return Ok(vip_node);
            }
        }
        if deadline.expired() {
            return Err(Error::Timeout(format!(
                "{to} not Promoted with the VIP within the timeout"
            )));
        }
        std::thread::sleep(POLL.min(deadline.remaining()));
    }
}

/// `rapidproctl switchover [NODE]`; with `dry_run`, only the checks.
pub fn switchover(
    cluster: &Cluster,
    target: Option<&str>,
    timeout: Duration,
    dry_run: bool,
) -> Result<Outcome, Error> {
    let started = Instant::now();
    let deadline = Deadline::after(timeout);
    // A transition or an operation under way (a score changed by the last
    // monitor, a probe) usually ends within seconds: wait for it, a while.
    let settle = Deadline::after(SETTLE_WAIT.min(timeout / 2));
    let mut waited = false;
    let (src, judged) = loop {
        let (src, standbys, maxlag) = read_situation(cluster, &deadline)?;
        let clone = src.cib.require_stack()?.promotable_id().to_string();
        let situation = Situation {
            cluster: &src.cluster,
            clone: Some(&clone),
            controller_state: src.controller_state.as_deref(),
            standbys: standbys.as_deref().map_err(String::clone),
            maxlag,
        };
        let judged = judge(&situation, target);
        let transient = matches!(
            judged,
            Err(Refusal::TransitionInProgress(_) | Refusal::InFlight(_))
        );
        if !transient || settle.expired() {
            break (src, judged);
        }
        waited = true;
        std::thread::sleep(POLL.min(settle.remaining()));
    };
    let plan = match judged {
        Ok(p) => p,
        Err(r) => {
            let json = serde_json::json!({
                "refused": true,
                "refusal": r.code(),
                "reason": r.to_string(),
                "to": target,
            });
            return Ok(Outcome::with(
                json,
                format!("switchover refused: {r}\n"),
                false,
            ));
        }
    };
    let mut text = if waited {
        format!(
            "waited {:.1} s for the cluster to finish a transition\n",
            started.elapsed().as_secs_f64()
        )
    } else {
        String::new()
    };
    text += &format!(
        "switchover {} -> {}: checks passed ({} streaming, {} behind{})\n",
        plan.from,
        plan.to,
        plan.to,
        human_bytes(plan.lag_bytes),
        if plan.maxlag > 0 {
            format!(", maxlag {}", human_bytes(plan.maxlag))
        } else {
            String::new()
        }
    );
    let mut report = Report {
        from: plan.from.clone(),
        to: plan.to.clone(),
        dry_run,
        lag_bytes: plan.lag_bytes,
        maxlag: plan.maxlag,
        promoted: None,
        vip_node: None,
        seconds_to_promoted: None,
        seconds_total: None,
        constraint_cleared: false,
        old_primary: None,
    };
    if dry_run {
        text.push_str("dry run: nothing moved\n");
        let json = serde_json::to_value(&report).expect("the report serializes");
        return Ok(Outcome::ok(json, text));
    }

    let to = NodeName::new(&plan.to)?;
    let vip = src.cib.vip().map(|v| v.id.clone());
    let move_started = Instant::now();
    admin::move_promoted(&plan.clone, &to, &deadline)?;
    let waited = wait_promoted(cluster, &plan.clone, vip.as_deref(), &plan.to, &deadline).and_then(
        |vip_node| {
            let promoted_after = move_started.elapsed();
            admin::wait_settled(&deadline)?;
            Ok((vip_node, promoted_after))
        },
    );
    // The constraint goes whatever happened: left in place it would pin
    // the role to the target for good.
    let clear_deadline = Deadline::after(Duration::from_secs(15));
    let cleared = admin::clear_promoted(&plan.clone, &to, &clear_deadline);
    let (vip_node, promoted_after) = match waited {
        Ok(v) => v,
        Err(e) => {
            let note = match &cleared {
                Ok(()) => "the move constraint was cleared".to_string(),
                Err(c) => format!(
                    "the move constraint could not be cleared ({c}): run `crm_resource --clear \
                     --promoted --resource {} --node {}`",
                    plan.clone, plan.to
                ),
            };
            return Err(Error::Timeout(format!("{e}; {note}")));
        }
    };
    cleared?;
    report.constraint_cleared = true;
    report.vip_node = vip_node.clone();
    report.seconds_to_promoted = Some(secs(promoted_after));
    text.push_str(&format!(
        "{} promoted{} after {:.1} s\n",
        plan.to,
        match &vip_node {
            Some(n) => format!(" with the VIP on {n}"),
            None => String::new(),
        },
        promoted_after.as_secs_f64()
    ));
    admin::wait_settled(&deadline)?;
    let st = cluster.status(&deadline)?;
    let clone_st = st.find_clone(&plan.clone);
    let now_promoted: Vec<String> = clone_st
        .map(|c| c.promoted_nodes().iter().map(|n| n.to_string()).collect())
        .unwrap_or_default();
    report.promoted = now_promoted.first().cloned();
    if now_promoted != [plan.to.clone()] {
        return Err(Error::Timeout(format!(
            "after clearing the move constraint the Promoted role is on {:?}, not {}",
            now_promoted, plan.to
        )));
    }
    text.push_str(&format!(
        "move constraint cleared, cluster settled: {} stays Promoted\n",
        plan.to
    ));
    let old_role = clone_st
        .and_then(|c| c.instance_on(&plan.from))
        .map(|i| i.role.to_string())
        .unwrap_or_else(|| Role::Stopped.to_string());
    // The old primary streams from the new one within seconds of its
    // demote; wait a little for it, without failing the switchover.
    let old = wait_old_primary_streaming(&src, &plan, &deadline);
    let streaming = old
        .as_ref()
        .is_some_and(|r| r.state == WalSenderState::Streaming);
    let lag = old.as_ref().map(StandbyRow::replay_lag);
    text.push_str(&format!(
        "{} is now {old_role}, {}\n",
        plan.from,
        if streaming {
            format!(
                "streaming from {} ({} behind)",
                plan.to,
                human_bytes(lag.unwrap_or(0))
            )
        } else {
            format!("NOT streaming from {} yet", plan.to)
        }
    ));
    report.old_primary = Some(OldPrimary {
        name: plan.from.clone(),
        role: old_role,
        streaming,
        lag_bytes: lag,
    });
    report.seconds_total = Some(secs(started.elapsed()));
    let json = serde_json::to_value(&report).expect("the report serializes");
    Ok(Outcome::ok(json, text))
}

fn wait_old_primary_streaming(
    src: &Sources,
    plan: &Plan,
    deadline: &Deadline,
) -> Option<StandbyRow> {
    let cfg = src.config().ok()?;
    let addr = src
        .addresses
        .get(&plan.to)
        .cloned()
        .unwrap_or(plan.to.clone());
    let until = Deadline::after(deadline.cap(STREAM_WAIT));
    loop {
        let pg = probe::postgres(&addr, &cfg, Timeouts::default());
        let row = pg.standbys.into_iter().find(|r| r.name == plan.from);
        if row
            .as_ref()
            .is_some_and(|r| r.state == WalSenderState::Streaming)
            || until.expired()
        {
            return row;
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::parse_crm_mon;
    use crate::postgres::Lsn;

    const STEADY: &str = include_str!("../cluster/fixtures/crm_mon-live-steady.xml");
    const FAILED: &str = include_str!("../cluster/fixtures/crm_mon-live-failed-monitor.xml");
    const OFFLINE: &str = include_str!("../cluster/fixtures/crm_mon-live-offline.xml");
    const PROMOTING: &str = include_str!("../cluster/fixtures/crm_mon-promoting.xml");
    const THREE: &str = include_str!("../cluster/fixtures/crm_mon-promoted-failed-monitor.xml");

    fn row(name: &str, state: &str, replay: u64, current: u64) -> StandbyRow {
        StandbyRow {
            name: name.into(),
            client_addr: None,
            state: state.into(),
            sync_state: "quorum".into(),
            sent_lsn: Some(Lsn(current)),
            write_lsn: Some(Lsn(current)),
            flush_lsn: Some(Lsn(current)),
            replay_lsn: Some(Lsn(replay)),
            current_lsn: Lsn(current),
            write_lag_time: None,
            flush_lag_time: None,
            replay_lag_time: None,
        }
    }

    fn situation<'a>(st: &'a ClusterStatus, rows: &'a [StandbyRow]) -> Situation<'a> {
        Situation {
            cluster: st,
            clone: Some("stack-clone"),
            controller_state: Some("S_IDLE"),
            standbys: Ok(rows),
            maxlag: 65536,
        }
    }

    /// The recorded steady pair: node2 promoted, node1 unpromoted.
    fn steady() -> ClusterStatus {
        parse_crm_mon(STEADY).unwrap()
    }

    #[test]
    fn a_streaming_standby_within_maxlag_is_the_default_target() {
        let st = steady();
        let rows = [row("node1", "streaming", 0x3000000, 0x3000100)];
        let plan = judge(&situation(&st, &rows), None).unwrap();
        assert_eq!(
            plan,
            Plan {
                clone: "stack-clone".into(),
                from: "node2".into(),
                to: "node1".into(),
                lag_bytes: 0x100,
                maxlag: 65536,
            }
        );
        assert_eq!(judge(&situation(&st, &rows), Some("node1")).unwrap(), plan);
    }

    #[test]
    fn a_target_beyond_maxlag_is_refused_with_its_lag() {
        let st = steady();
        let rows = [row("node1", "streaming", 0x3000000, 0x3100000)];
        let r = judge(&situation(&st, &rows), Some("node1")).unwrap_err();
        assert_eq!(
            r,
            Refusal::Lagging {
                node: "node1".into(),
                lag_bytes: 0x100000,
                maxlag: 65536
            }
        );
        assert_eq!(r.code(), "lagging");
        assert_eq!(
            r.to_string(),
            "node1 is 1048576 bytes (1.0 MiB) behind the primary, beyond maxlag 65536 bytes (64.0 KiB)"
        );
        // maxlag 0 means no limit, as for the agent's promotion scores.
        let mut s = situation(&st, &rows);
        s.maxlag = 0;
        assert!(judge(&s, Some("node1")).is_ok());
    }

    #[test]
    fn a_target_not_streaming_is_refused() {
        let st = steady();
        let catchup = [row("node1", "catchup", 0x3000000, 0x3000000)];
        let r = judge(&situation(&st, &catchup), Some("node1")).unwrap_err();
        assert_eq!(
            r,
            Refusal::NotStreaming {
                node: "node1".into(),
                state: Some("catchup".into())
            }
        );
        assert!(r.to_string().contains("state catchup"), "{r}");
        let r = judge(&situation(&st, &[]), Some("node1")).unwrap_err();
        assert_eq!(
            r,
            Refusal::NotStreaming {
                node: "node1".into(),
                state: None
            }
        );
        // With no target named, no streaming standby means no candidate.
        assert_eq!(
            judge(&situation(&st, &catchup), None).unwrap_err(),
            Refusal::NoCandidate
        );
    }

    #[test]
    fn the_primary_itself_or_an_unknown_node_is_refused() {
        let st = steady();
        let rows = [row("node1", "streaming", 1, 1)];
        assert_eq!(
            judge(&situation(&st, &rows), Some("node2")).unwrap_err(),
            Refusal::TargetIsPrimary("node2".into())
        );
        let r = judge(&situation(&st, &rows), Some("node9")).unwrap_err();
        assert_eq!(
            r,
            Refusal::UnknownNode {
                node: "node9".into(),
                known: vec!["node1".into(), "node2".into()]
            }
        );
        assert_eq!(
            r.to_string(),
            "node9 is not a cluster node (nodes: node1, node2)"
        );
    }

    #[test]
    fn failed_actions_are_refused_with_their_reasons() {
        let st = parse_crm_mon(FAILED).unwrap();
        let rows = [row("node1", "streaming", 1, 1)];
        let r = judge(&situation(&st, &rows), None).unwrap_err();
        assert_eq!(r.code(), "failed_actions");
        assert!(
            r.to_string().contains("Redis 243 died (stale pidfile)"),
            "{r}"
        );
        assert!(r.to_string().contains("crm_resource --cleanup"), "{r}");
    }

    #[test]
    fn an_operation_in_flight_or_a_busy_dc_is_refused() {
        let st = parse_crm_mon(PROMOTING).unwrap();
        let mut s = situation(&st, &[]);
        // The promoting fixture also has a failed VIP start; look past it.
        let mut st2 = st.clone();
        st2.failures.clear();
        s.cluster = &st2;
        let r = judge(&s, Some("node2")).unwrap_err();
        // node1 is being promoted: wait, whatever else is wrong.
        assert_eq!(r, Refusal::InFlight(vec!["stack promote on node1".into()]));
        // A pending operation beside a promoted node.
        let mut st3 = steady();
        st3.pending = st2.pending.clone();
        let rows = [row("node1", "streaming", 1, 1)];
        let r = judge(&situation(&st3, &rows), None).unwrap_err();
        assert_eq!(r, Refusal::InFlight(vec!["stack promote on node1".into()]));
        // An instance whose role is changing.
        let mut st4 = steady();
        st4.clones[0].instances[1].role = Role::Demoting;
        let r = judge(&situation(&st4, &rows), None).unwrap_err();
        assert_eq!(r.code(), "in_flight");
        // A DC computing or running a transition.
        let st5 = steady();
        let mut s5 = situation(&st5, &rows);
        s5.controller_state = Some("S_TRANSITION_ENGINE");
        assert_eq!(
            judge(&s5, None).unwrap_err(),
            Refusal::TransitionInProgress("S_TRANSITION_ENGINE".into())
        );
    }

    #[test]
    fn an_offline_or_stopped_target_is_refused() {
        let st = parse_crm_mon(OFFLINE).unwrap();
        let mut st = st;
        st.failures.clear();
        let rows: [StandbyRow; 0] = [];
        let r = judge(&situation(&st, &rows), Some("node2")).unwrap_err();
        assert_eq!(
            r,
            Refusal::TargetNotOnline {
                node: "node2".into(),
                state: "offline".into()
            }
        );
        let mut st2 = steady();
        st2.nodes[0].standby = true;
        let rows = [row("node1", "streaming", 1, 1)];
        assert_eq!(
            judge(&situation(&st2, &rows), Some("node1")).unwrap_err(),
            Refusal::TargetNotOnline {
                node: "node1".into(),
                state: "in standby".into()
            }
        );
        let mut st3 = steady();
        st3.clones[0].instances[0].role = Role::Stopped;
        let r = judge(&situation(&st3, &rows), Some("node1")).unwrap_err();
        assert_eq!(
            r,
            Refusal::TargetNotUnpromoted {
                node: "node1".into(),
                role: "Stopped".into()
            }
        );
    }

    #[test]
    fn no_primary_several_primaries_or_no_stack_are_refused() {
        let rows = [row("node1", "streaming", 1, 1)];
        let mut st = steady();
        st.clones[0].instances[1].role = Role::Unpromoted;
        assert_eq!(
            judge(&situation(&st, &rows), None).unwrap_err(),
            Refusal::NoPrimary
        );
        let mut st = steady();
        st.clones[0].instances[0].role = Role::Promoted;
        assert_eq!(
            judge(&situation(&st, &rows), None).unwrap_err(),
            Refusal::SeveralPrimaries(vec!["node1".into(), "node2".into()])
        );
        let st = steady();
        let mut s = situation(&st, &rows);
        s.clone = None;
        assert_eq!(judge(&s, None).unwrap_err(), Refusal::NoStack);
        s.clone = Some("other-clone");
        assert_eq!(judge(&s, None).unwrap_err(), Refusal::NoStack);
    }

    #[test]
    fn an_unreadable_primary_is_refused() {
        let st = steady();
        let mut s = situation(&st, &[]);
        s.standbys = Err("connection refused".into());
        let r = judge(&s, None).unwrap_err();
        assert_eq!(
            r,
            Refusal::PrimaryUnreadable {
                node: "node2".into(),
                reason: "connection refused".into()
            }
        );
        assert_eq!(r.code(), "primary_unreadable");
    }

    #[test]
    fn several_streaming_standbys_need_a_named_target() {
        // Three nodes: node1 promoted, node2 and node3 made streaming
        // unpromoted standbys.
        let mut st = parse_crm_mon(THREE).unwrap();
        st.failures.clear();
        st.nodes[2].online = true;
        st.nodes[2].standby = false;
        let mut third = st.clones[0].instances[1].clone();
        third.nodes = vec![NodeName::new("node3").unwrap()];
        st.clones[0].instances[2] = third;
        let rows = [
            row("node2", "streaming", 5, 5),
            row("node3", "streaming", 5, 5),
        ];
        let r = judge(&situation(&st, &rows), None).unwrap_err();
        assert_eq!(
            r,
            Refusal::SeveralCandidates(vec!["node2".into(), "node3".into()])
        );
        assert_eq!(
            judge(&situation(&st, &rows), Some("node3")).unwrap().to,
            "node3"
        );
    }

    #[test]
    fn every_refusal_has_a_distinct_code() {
        let all = [
            Refusal::NoStack,
            Refusal::NoPrimary,
            Refusal::SeveralPrimaries(vec![]),
            Refusal::UnknownNode {
                node: String::new(),
                known: vec![],
            },
            Refusal::TargetIsPrimary(String::new()),
            Refusal::TargetNotOnline {
                node: String::new(),
                state: String::new(),
            },
            Refusal::TargetNotUnpromoted {
                node: String::new(),
                role: String::new(),
            },
            Refusal::NoCandidate,
            Refusal::SeveralCandidates(vec![]),
            Refusal::FailedActions(vec![]),
            Refusal::InFlight(vec![]),
            Refusal::TransitionInProgress(String::new()),
            Refusal::PrimaryUnreadable {
                node: String::new(),
                reason: String::new(),
            },
            Refusal::NotStreaming {
                node: String::new(),
                state: None,
            },
            Refusal::Lagging {
                node: String::new(),
                lag_bytes: 0,
                maxlag: 0,
            },
        ];
        let mut codes: Vec<&str> = all.iter().map(Refusal::code).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
    }
}
