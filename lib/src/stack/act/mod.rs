//! The OCF actions of `ocf:rapidpro:stack`.
//!
//! Invariants kept by every action:
//! - PostgreSQL is only ever started with `standby.signal`: a primary exists
//!   only through `promote` (PAF's pre-demote notify once restarted a crashed
//!   primary as a primary, and a write was committed there);
//! - Redis is only ever started with `replicaof` in its configuration;
//! - an old primary whose history diverged is never started as a standby on
//!   top of that history: it is rewound (`rewind=true`) or refused;
//! - the recurring monitor spawns no process unless something changed.

//!
//! One file per action; each executes what [`super::decide`] planned from
//! what [`super::observe`] read. The helpers below are shared: connections,
//! conninfo strings, scores and the state file.

mod demote;
mod detached;
mod follow;
mod guard;
mod history;
mod monitor;
mod monitor_primary;
mod notify;
mod promote;
mod shutdown;
mod stale;
mod start;
mod stop;
mod validate;
mod watch;

pub use demote::demote;
pub use guard::{guard_main, GUARD_ARG};
pub use monitor::monitor;
pub use notify::notify;
pub use promote::promote;
pub use start::start;
pub use stop::stop;
pub use validate::validate_all;
pub use watch::{watcher_main, WATCH_ARG};

use super::state::State;
use super::{Ctx, Error};
use crate::cluster::{Cluster, ClusterError, NodeName};
use crate::deadline::Deadline;
use crate::postgres::db::{Db, Host, Target};
use crate::postgres::server::conninfo_value;
use crate::postgres::tls::PgTls;
use crate::postgres::Position;
use crate::redis;

/// Private attribute carrying a standby's position from pre-promote to
/// promote.
pub fn position_attribute(resource: &str) -> String {
    format!("rapidpro-position-{resource}")
}

/// Deletes the position this node published for a promotion (best effort).
pub(super) fn clear_own_position(ctx: &Ctx<'_>) {
    clear_position(&ctx.cluster, ctx.env.resource(), &ctx.node, &ctx.deadline);
}

/// [`clear_own_position`] from the parts of the context that can be shared
/// with a thread.
pub(super) fn clear_position(
    cluster: &Cluster,
    resource: &str,
    node: &NodeName,
    deadline: &Deadline,
) {
    best_effort(
        "clearing this node's published position",
        cluster.delete_private(&position_attribute(resource), node, deadline),
    );
}

/// The partition's nodes and the positions its other standbys published
/// for a promotion (standbys outside the partition are ignored, as
/// Pacemaker ignores their scores); no nodes or no positions if they cannot
/// be read, which is logged. Read by promote, on a thread of its own while
/// it probes primary_host: so it takes the parts of the context it needs,
/// which can be shared between threads.
pub(super) fn partition_positions(
    cluster: &Cluster,
    resource: &str,
    own: &NodeName,
    deadline: &Deadline,
) -> (Vec<NodeName>, Vec<(String, Position)>) {
    let nodes = cluster.partition(deadline).unwrap_or_else(|e| {
        log::warn!("cannot list the partition's nodes: {e}");
        Vec::new()
    });
    let peers = positions_among(cluster, resource, own, &nodes, deadline).unwrap_or_else(|e| {
        log::warn!(
            "cannot read the positions the standbys published ({e}): deciding on this node's \
             data alone"
        );
        Vec::new()
    });
    (nodes, peers)
}

/// The positions the standbys among `nodes` other than this one published
/// for a promotion, with the error: the node about to be promoted stops
/// waiting for positions it cannot read.
pub(super) fn read_positions(
    ctx: &Ctx<'_>,
    nodes: &[NodeName],
) -> Result<Vec<(String, Position)>, ClusterError> {
    positions_among(
        &ctx.cluster,
        ctx.env.resource(),
        &ctx.node,
        nodes,
        &ctx.deadline,
    )
}

fn positions_among(
    cluster: &Cluster,
    resource: &str,
    own: &NodeName,
    nodes: &[NodeName],
    deadline: &Deadline,
) -> Result<Vec<(String, Position)>, ClusterError> {
    let attr = position_attribute(resource);
    let published = cluster.read_private(&attr, nodes, deadline)?;
    Ok(published
        .into_iter()
        .filter(|(n, _)| n != own)
        .filter_map(|(n, v)| match v.parse::<Position>() {
            Ok(p) => Some((n.to_string(), p)),
            Err(e) => {
                log::warn!("ignoring the position published by {n}: {e}");
                None
            }
        })
        .collect())
}

// ---------------------------------------------------------------- helpers

pub(super) fn local_target<'c>(ctx: &'c Ctx<'_>) -> Target<'c> {
    Target {
        host: Host::Socket(&ctx.cfg.pghost),
        port: ctx.cfg.pgport,
        user: &ctx.cfg.system_user,
        password: None,
        dbname: "postgres",
        peer_uid: Some(ctx.pg.uid),
        tls: &PgTls::DISABLED,
    }
}

/// The local server over its unix socket. The handshake gets the query
/// timeout, not the short TCP connect timeout: a busy local server that
/// forks a backend slowly is not a failed one.
pub(super) fn local_db(ctx: &Ctx<'_>) -> Result<Db, Error> {
    let handshake = ctx.cfg.query_timeout.max(ctx.cfg.connect_timeout);
    Ok(Db::connect(
        &local_target(ctx),
        handshake,
        ctx.cfg.query_timeout,
        &ctx.deadline,
    )?)
}

/// The primary at primary_host, as the replication user sees it.
pub(super) fn primary_target<'c>(ctx: &'c Ctx<'_>) -> Target<'c> {
    Target {
        host: Host::Tcp(&ctx.cfg.primary_host),
        port: ctx.cfg.primary_port,
        user: &ctx.cfg.repl_user,
        password: ctx.primary_password(),
        dbname: "postgres",
        peer_uid: None,
        tls: &ctx.cfg.pg_tls,
    }
}

pub(super) fn primary_desc(ctx: &Ctx<'_>) -> String {
    format!("{}:{}", ctx.cfg.primary_host, ctx.cfg.primary_port)
}

/// `primary_conninfo` for this node: application_name is the node name, so
/// the primary's `pg_stat_replication` says which node each standby is;
/// the WAL receiver (libpq) gets the agent's `sslmode` and `sslrootcert`.
pub(super) fn primary_conninfo(ctx: &Ctx<'_>) -> String {
    let mut s = format!(
        "host={} port={} user={} application_name={}{}",
        conninfo_value(&ctx.cfg.primary_host),
        ctx.cfg.primary_port,
        conninfo_value(&ctx.cfg.repl_user),
        conninfo_value(ctx.node.as_str()),
        ctx.cfg.pg_tls.conninfo(),
    );
    if let Some(p) = &ctx.cfg.repl_password {
        s.push_str(&format!(" password={}", conninfo_value(p)));
    }
    s
}

/// pg_rewind's `--source-server`, with the agent's `sslmode` and
/// `sslrootcert` (no password: it goes through the environment).
pub(super) fn source_conninfo(ctx: &Ctx<'_>) -> String {
    format!(
        "host={} port={} user={} dbname=postgres connect_timeout={}{}",
        conninfo_value(&ctx.cfg.primary_host),
        ctx.cfg.primary_port,
        conninfo_value(&ctx.cfg.repl_user),
        ctx.cfg.connect_timeout.as_secs().max(1),
        ctx.cfg.pg_tls.conninfo(),
    )
}

pub(super) fn redis_local(ctx: &Ctx<'_>) -> Result<redis::Conn, Error> {
    Ok(redis::connect(
        &ctx.redis.endpoint(),
        ctx.cfg.redis_password.as_deref(),
        ctx.deadline.cap(ctx.cfg.query_timeout),
    )?)
}

/// Runs a cluster call whose failure must not fail the action (no cluster
/// under ocf-tester): logs it and says whether it worked.
pub(super) fn best_effort(what: &str, r: Result<(), ClusterError>) -> bool {
    match r {
        Ok(()) => true,
        Err(ClusterError::NoCluster { .. }) => {
            log::debug!("{what}: no cluster answers");
            false
        }
        Err(e) => {
            log::warn!("{what}: {e}");
            false
        }
    }
}

pub(super) fn set_score(ctx: &Ctx<'_>, node: &NodeName, score: i64) -> bool {
    write_score(&ctx.cluster, ctx.env.instance(), node, score, &ctx.deadline)
}

/// [`set_score`] from the parts of the context that can be shared with a
/// thread: a score written while something else waits.
pub(super) fn write_score(
    cluster: &Cluster,
    instance: &str,
    node: &NodeName,
    score: i64,
    deadline: &Deadline,
) -> bool {
    best_effort(
        &format!("setting the promotion score of {node} to {score}"),
        cluster.set_promotion_score(instance, node, score, deadline),
    )
}

/// Hands the promotion to `peer`, a standby ahead of this node: scored
/// above every candidate, this node back to a candidate's score. The score
/// change makes Pacemaker compute a new transition, which promotes `peer`.
pub(super) fn hand_promotion_to(ctx: &Ctx<'_>, peer: &NodeName) {
    set_score(ctx, peer, crate::stack::decide::AHEAD_SCORE);
    set_score(ctx, &ctx.node, crate::stack::decide::CANDIDATE_SCORE);
}

pub(super) fn load_state(ctx: &Ctx<'_>) -> State {
    State::load(&ctx.state_path)
}

pub(super) fn save_state(ctx: &Ctx<'_>, s: &State) {
    if let Err(e) = s.save(&ctx.state_path) {
        log::warn!("cannot save the agent's state: {e}");
    }
}

pub(super) fn forget_scores(ctx: &Ctx<'_>) {
    let mut s = load_state(ctx);
    if s != State::default() {
        s.forget();
        save_state(ctx, &s);
    }
}

/// Records whose data this node holds ([`crate::stack::decide::OwnData`]),
/// writing the state file only on a change.
pub(super) fn remember_own_data(ctx: &Ctx<'_>, own: crate::stack::decide::OwnData) {
    let mut s = load_state(ctx);
    if s.own_data != own {
        s.own_data = own;
        save_state(ctx, &s);
    }
}

pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
