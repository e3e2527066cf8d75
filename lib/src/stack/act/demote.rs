//! `demote`.

use super::follow::{follow_redis_primary_within, start_redis_replica, wait_ready};
use super::shutdown::{shut_down, stop_writes, Local};
use super::start::start_postgres_standby;
use super::{load_state, primary_desc, save_state, set_score};
use crate::cluster::NodeName;
use crate::deadline::Deadline;
use crate::ocf::env::OcfEnv;
use crate::postgres::db::Db;
use crate::redis;
use crate::stack::decide::{self, OwnData, ShutdownFacts, AHEAD_SCORE, CANDIDATE_SCORE};
use crate::stack::{Ctx, Error, Outcome};

/// `demote`: Redis made a replica of primary_host first, at once; then
/// PostgreSQL's writes stopped, before any wait ([`stop_writes`]); then
/// PostgreSQL shut down in bounded steps ([`shut_down`]) and restarted as a
/// standby of primary_host.
///
/// The order is what bounds a cut-off or hung primary's damage: the
/// virtual IP stops only after the demote, so every second the demote
/// waits is a second in which clients still reach this node.
pub fn demote(env: &OcfEnv, deadline: Deadline) -> Result<Outcome, Error> {
    let ctx = Ctx::checked(env, deadline)?;
    if let redis::ProcessState::Running(_) = redis::process_state(&ctx.redis) {
        if let Err(e) = follow_redis_primary_within(&ctx, decide::LOCAL_PROBE) {
            // start_redis_replica below tries again, and fails the demote
            // if Redis still cannot be made a replica.
            log::warn!("cannot make Redis a replica before PostgreSQL's shutdown: {e}");
        }
    }
    // Pacemaker demotes the instance it holds Promoted, so no other node was
    // promoted since: a PostgreSQL found down or frozen here is the failed
    // primary, whose WAL every standby's is a prefix of. Not so for Redis
    // found down next to a running PostgreSQL: the replica holds what the
    // dead master had only in memory, and a restart in place would serve
    // its older dump, so the promotion moves (RUNBOOK's exception).
    let mut own_data = OwnData::Standby;
    match stop_writes(&ctx) {
        Local::NotRunning => own_data = OwnData::FailedPrimary,
        Local::Standby => {}
        Local::Primary { facts, db } => {
            // A standby that started streaming since this primary's last
            // monitor has no promotion score yet (its stop deleted it):
            // score every streaming standby now, or a switchover right after
            // a rejoin leaves no node to promote (seen in the cluster tests).
            score_streaming_standbys(&ctx, &db);
            drop(db);
            log::info!("stopping the primary to restart it as a standby");
            shut_down(&ctx, facts)?;
        }
        // A standby has no writes to stop: the start below reports on it.
        // Only a primary is worth killing for the virtual IP's sake.
        Local::Frozen if ctx.pg.is_standby_configured() => {}
        Local::Frozen => {
            shut_down(&ctx, ShutdownFacts::Frozen)?;
            own_data = OwnData::FailedPrimary;
        }
    }
    start_postgres_standby(&ctx)?;
    start_redis_replica(&ctx)?;
    wait_ready(&ctx)?;
    let mut state = load_state(&ctx);
    state.forget();
    state.own_data = own_data;
    let score = match own_data {
        OwnData::FailedPrimary => {
            log::info!(
                "PostgreSQL was down: this failed primary holds every standby's WAL; scoring it \
                 above them, to recover it in place"
            );
            AHEAD_SCORE
        }
        OwnData::Standby => CANDIDATE_SCORE,
    };
    if set_score(&ctx, &ctx.node, score) {
        state.scores.insert(ctx.node.to_string(), score);
    }
    save_state(&ctx, &state);
    log::info!("demoted, following {}", primary_desc(&ctx));
    Ok(Outcome::ok())
}

/// Sets the promotion score of every standby streaming from this primary
/// within maxlag (as the primary's monitor does), best effort.
fn score_streaming_standbys(ctx: &Ctx<'_>, db: &Db) {
    let rows = match db.standbys() {
        Ok(r) => r,
        Err(e) => {
            log::warn!("cannot read pg_stat_replication before the demote: {e}");
            return;
        }
    };
    let none: [&str; 0] = [];
    let want = decide::standby_scores(&rows, ctx.cfg.maxlag, None, none, ctx.node.as_str());
    for (node, score) in want.iter().filter(|(_, s)| **s > CANDIDATE_SCORE) {
        if let Ok(n) = NodeName::new(node) {
            set_score(ctx, &n, *score);
        }
    }
}
