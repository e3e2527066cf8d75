//! `demote`.

use super::follow::{follow_redis_primary_within, start_redis_replica, wait_ready};
use super::shutdown::{shut_down, stop_writes, Local};
use super::start::start_postgres_standby;
use super::{load_state, primary_desc, save_state, set_score, unix_now, write_score};
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
    let started = std::time::Instant::now();
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
    // Recorded by the pre-demote notification when this transition promotes
    // another node ([`decide::demote_own_score`]).
    let (handed_over_at, now) = (load_state(&ctx).handed_over_at, unix_now());
    let redis_done = started.elapsed();
    let mut writes_done = redis_done;
    // A primary's own score, when written beside its shutdown.
    let mut own_scored = None;
    match stop_writes(&ctx) {
        Local::NotRunning => own_data = OwnData::FailedPrimary,
        Local::Standby => {}
        Local::Primary { facts, db } => {
            // A standby that started streaming since this primary's last
            // monitor has no promotion score yet (its stop deleted it):
            // score every streaming standby now, or a switchover right after
            // a rejoin leaves no node to promote (seen in the cluster tests).
            let scores = streaming_standby_scores(&ctx, &db);
            drop(db);
            writes_done = started.elapsed();
            log::info!("stopping the primary to restart it as a standby");
            // The scores are cluster tool calls: written while PostgreSQL
            // shuts down, not before, this node's own (a candidate's: it
            // held the primary's, and stopped cleanly) last.
            let (cluster, instance, deadline) = (&ctx.cluster, ctx.env.instance(), &ctx.deadline);
            let own = &ctx.node;
            let own_score = decide::demote_own_score(OwnData::Standby, handed_over_at, now);
            let (down, own_set) = std::thread::scope(|s| {
                let scoring = s.spawn(move || {
                    for (node, score) in &scores {
                        write_score(cluster, instance, node, *score, deadline);
                    }
                    own_score
                        .is_some_and(|score| write_score(cluster, instance, own, score, deadline))
                });
                let down = shut_down(&ctx, facts);
                (down, scoring.join().unwrap_or(false))
            });
            down?;
            own_scored = Some(own_set);
        }
        // A standby has no writes to stop: the start below reports on it.
        // Only a primary is worth killing for the virtual IP's sake.
        Local::Frozen if ctx.pg.is_standby_configured() => {}
        Local::Frozen => {
            shut_down(&ctx, ShutdownFacts::Frozen)?;
            own_data = OwnData::FailedPrimary;
        }
    }
    let down = started.elapsed();
    start_postgres_standby(&ctx)?;
    let pg_up = started.elapsed();
    start_redis_replica(&ctx)?;
    wait_ready(&ctx)?;
    let ready = started.elapsed();
    let mut state = load_state(&ctx);
    state.forget();
    state.own_data = own_data;
    state.handed_over_at = None;
    let score = decide::demote_own_score(own_data, handed_over_at, now);
    match score {
        Some(AHEAD_SCORE) => log::info!(
            "PostgreSQL was down: this failed primary holds every standby's WAL; scoring it \
             above them, to recover it in place"
        ),
        None => log::info!(
            "this node's score is left to the promote of the same transition, which lowers it \
             (a score written here would abort the transition before the VIP's stop)"
        ),
        Some(_) => {}
    }
    let score_set = match (own_scored, score) {
        (Some(set), _) => set,
        (None, Some(score)) => set_score(&ctx, &ctx.node, score),
        (None, None) => false,
    };
    if let (true, Some(score)) = (score_set, score) {
        state.scores.insert(ctx.node.to_string(), score);
    }
    save_state(&ctx, &state);
    // Where a demote's time goes, for whoever times a switchover.
    log::info!(
        "demoted in {} ms: Redis {} ms, writes stopped {} ms, shutdown {} ms, standby started \
         {} ms, ready {} ms, score {} ms",
        started.elapsed().as_millis(),
        redis_done.as_millis(),
        (writes_done - redis_done).as_millis(),
        (down - writes_done).as_millis(),
        (pg_up - down).as_millis(),
        (ready - pg_up).as_millis(),
        (started.elapsed() - ready).as_millis()
    );
    log::info!("demoted, following {}", primary_desc(&ctx));
    Ok(Outcome::ok())
}

/// The promotion score of every standby streaming from this primary within
/// maxlag, as the primary's monitor would set it; none if
/// `pg_stat_replication` cannot be read (logged).
fn streaming_standby_scores(ctx: &Ctx<'_>, db: &Db) -> Vec<(NodeName, i64)> {
    let rows = match db.standbys() {
        Ok(r) => r,
        Err(e) => {
            log::warn!("cannot read pg_stat_replication before the demote: {e}");
            return Vec::new();
        }
    };
    let none: [&str; 0] = [];
    let want = decide::standby_scores(&rows, ctx.cfg.maxlag, None, none, ctx.node.as_str());
    want.iter()
        .filter(|(_, s)| **s > CANDIDATE_SCORE)
        .filter_map(|(node, score)| Some((NodeName::new(node).ok()?, *score)))
        .collect()
}
