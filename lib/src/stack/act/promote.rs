//! `promote`.

use std::time::{Duration, Instant};

use super::follow::start_redis_replica;
use super::{
    clear_own_position, hand_promotion_to, load_state, local_db, partition_positions, primary_desc,
    redis_local, save_state, set_score, write_score,
};
use crate::cluster::NodeName;
use crate::deadline::Deadline;
use crate::ocf::env::OcfEnv;
use crate::postgres::db::{Db, LocalStatus};
use crate::postgres::server::{wait_until, wait_until_every, ProcessState, WRITES_OFF_SETTING};
use crate::redis::{self, Role};
use crate::stack::decide::{
    self, OwnData, PromoteFacts, PromoteRefusal, CANDIDATE_SCORE, PROMOTED_SCORE,
};
use crate::stack::observe;
use crate::stack::{Ctx, Error, Outcome};

/// How often promote asks whether PostgreSQL left recovery once it was
/// signalled: a query over the local socket, well under a millisecond.
const PROMOTION_POLL: Duration = Duration::from_millis(5);

/// How often promote signals the startup process again while PostgreSQL
/// stays in recovery. A request that arrives while the WAL receiver has just
/// failed to connect (the VIP is moving) is seen, and then the startup
/// process sleeps out `wal_retrieve_retry_interval` before it acts on it
/// (PostgreSQL 15's WaitForWALToBecomeAvailable: the wake-up was spent on
/// the streaming state). Seen in a 3-node switchover: "received promote
/// request", then 500 ms until "redo done". Another signal ends the sleep;
/// the promotion itself usually takes a few milliseconds, so it costs
/// nothing otherwise.
const PROMOTION_NUDGE: Duration = Duration::from_millis(50);

/// How long promote waits for the WAL senders it ends to exit: a sender
/// exits within milliseconds of its signal, even with its peer gone.
const SENDER_END_WAIT: Duration = Duration::from_millis(500);

/// `promote`: refuses when another primary answers at primary_host or a
/// standby is ahead of this one; otherwise promotes PostgreSQL, then Redis,
/// and returns once both accept writes.
pub fn promote(env: &OcfEnv, deadline: Deadline) -> Result<Outcome, Error> {
    let started = Instant::now();
    let ctx = Ctx::checked(env, deadline)?;
    if !matches!(ctx.pg.process_state(), ProcessState::Running(_)) {
        return Err(Error::Failed(
            "PostgreSQL is not running: cannot promote".into(),
        ));
    }
    let db = local_db(&ctx)?;
    let st = db.status()?;
    if ctx.pg.writes_off_persisted() {
        // Left by a demote or stop that stopped this node's writes (a start
        // removes it; a primary whose demote failed keeps it): a promoted
        // node must accept writes.
        log::info!("resetting {WRITES_OFF_SETTING}, set when this node last stopped its writes");
        db.execute(
            "ALTER SYSTEM",
            &format!("ALTER SYSTEM RESET {WRITES_OFF_SETTING}"),
        )?;
        db.execute("pg_reload_conf()", "SELECT pg_reload_conf()")?;
    }
    let mut checked = started.elapsed();
    let mut names = None;
    if st.in_recovery {
        names = Some(promote_standby_safely(&ctx, &db, &st)?);
        checked = started.elapsed();
    }
    // Decided: this node becomes the primary. Its promotion score is a
    // cluster tool call (tens of milliseconds), written while PostgreSQL
    // and Redis are promoted rather than after; a promote that fails
    // after it is followed by a demote or a stop, which score again.
    // The nodes this transition demoted left their scores to this promote
    // (decide::demote_own_score): lowered first, so no moment shows two
    // nodes at the promoted score.
    let demoted: Vec<NodeName> = load_state(&ctx)
        .demoted_beside
        .iter()
        .filter_map(|n| NodeName::new(n).ok())
        .collect();
    let (cluster, instance, node, deadline) =
        (&ctx.cluster, ctx.env.instance(), &ctx.node, &ctx.deadline);
    let (promoted, scored) = std::thread::scope(|s| {
        let score = s.spawn(|| {
            for other in &demoted {
                write_score(cluster, instance, other, CANDIDATE_SCORE, deadline);
            }
            let ok = write_score(cluster, instance, node, PROMOTED_SCORE, deadline);
            (ok, started.elapsed())
        });
        let promoted = promote_both(&ctx, &db, &st, names, started, checked);
        let scored = score.join().unwrap_or((false, started.elapsed()));
        (promoted, scored)
    });
    let (pg_done, redis_done) = promoted?;
    let (score_set, score_done) = scored;
    // The post-promote notification clears it as well: here, it would cost
    // every promotion one more cluster tool call before it returns.
    if !env.notify_enabled() {
        clear_own_position(&ctx);
    }
    let mut state = load_state(&ctx);
    state.forget();
    state.demoted_beside.clear();
    state.own_data = OwnData::Standby;
    // Only a real promotion starts asynchronous (README's window of `on`).
    state.since_promotion = st.in_recovery;
    if score_set {
        state.scores.insert(ctx.node.to_string(), PROMOTED_SCORE);
    }
    save_state(&ctx, &state);
    // Where a promotion's time goes, for whoever times a failover.
    log::info!(
        "promoted in {} ms: checks {} ms, PostgreSQL {} ms, Redis {} ms, score written {} ms \
         after the checks (beside them)",
        started.elapsed().as_millis(),
        checked.as_millis(),
        (pg_done - checked).as_millis(),
        (redis_done - pg_done).as_millis(),
        score_done.saturating_sub(checked).as_millis()
    );
    Ok(Outcome::ok())
}

/// Promotes PostgreSQL (when `names`, the `synchronous_standby_names` to
/// promote with, says it is a standby), then Redis; returns when each was
/// done, from `started`.
fn promote_both(
    ctx: &Ctx<'_>,
    db: &Db,
    st: &LocalStatus,
    names: Option<&'static str>,
    started: Instant,
    checked: Duration,
) -> Result<(Duration, Duration), Error> {
    if let Some(names) = names {
        if st.synchronous_standby_names != names {
            db.alter_system("synchronous_standby_names", names)?;
        }
        if !db.request_promotion()? {
            return Err(Error::Failed(
                "pg_promote() could not signal PostgreSQL's startup process (see its log)".into(),
            ));
        }
        // Bounded 2 s before the action's deadline, to report.
        let wait = ctx
            .deadline
            .remaining()
            .saturating_sub(Duration::from_secs(2));
        let mut signalled = Instant::now();
        let writable = wait_until_every(&Deadline::after(wait), PROMOTION_POLL, || {
            if matches!(db.in_recovery(), Ok(false)) {
                return true;
            }
            if signalled.elapsed() >= PROMOTION_NUDGE {
                // Errors are left to the wait: "recovery is not in
                // progress" means it is done.
                let _ = db.request_promotion();
                signalled = Instant::now();
            }
            false
        });
        if !writable {
            return Err(Error::Failed(format!(
                "PostgreSQL still in recovery {} s after pg_promote() (see its log)",
                wait.as_secs()
            )));
        }
        log::info!("PostgreSQL promoted");
        end_wal_senders(db);
    }
    let pg_done = started.elapsed().max(checked);
    promote_redis(ctx)?;
    Ok((pg_done, started.elapsed()))
}

/// Ends the WAL senders this node ran as a standby ([`Db::end_wal_senders`])
/// before the post-promote notification's watcher counts them as live
/// standbys. Not a failure when it cannot: the promotion is done, and the
/// sync of the standbys still runs.
fn end_wal_senders(db: &Db) {
    match db.end_wal_senders(SENDER_END_WAIT) {
        Ok((0, _)) => {}
        Ok((n, 0)) => log::info!("ended {n} WAL sender(s) left from before the promotion"),
        Ok((n, left)) => log::warn!(
            "signalled {n} WAL sender(s) left from before the promotion; {left} still listed"
        ),
        Err(e) => log::warn!("could not end the WAL senders left from before the promotion: {e}"),
    }
}

/// Observes what a promotion depends on, asks [`decide::promote`], and
/// acts on a refusal (hands the promotion to a peer ahead) or on the plan
/// (resumes paused replay). Returns the `synchronous_standby_names` to
/// promote with.
fn promote_standby_safely(ctx: &Ctx<'_>, db: &Db, st: &LocalStatus) -> Result<&'static str, Error> {
    // Observe: primary_host's probe (up to its 0.2 s window when nothing
    // holds the address, 0.05 s when Pacemaker's lists show the promoted
    // role leaving its holders) while the partition and the published
    // positions are read (two cluster tools) on another thread.
    let probe = decide::promote_probe(ctx.env.transition().as_ref());
    let t = Instant::now();
    let (cluster, resource, node, deadline) =
        (&ctx.cluster, ctx.env.resource(), &ctx.node, &ctx.deadline);
    let (primary_at, (nodes, peers)) = std::thread::scope(|s| {
        let read = s.spawn(move || partition_positions(cluster, resource, node, deadline));
        let primary_at = observe::primary_at_by(ctx, probe);
        let probed = t.elapsed();
        let read = read.join().unwrap_or_else(|_| {
            log::warn!("reading the partition and the positions failed: deciding alone");
            (Vec::new(), Vec::new())
        });
        log::info!(
            "observed in {} ms (primary_host {} ms{})",
            t.elapsed().as_millis(),
            probed.as_millis(),
            match probe {
                observe::Probe::Released =>
                    ", 0.05 s window: the promoted role leaves its holders \
                                            in this transition",
                _ => "",
            }
        );
        (primary_at, read)
    });
    let primary_at = primary_at?;
    let own = st.position();
    if let Some(own) = own {
        let members: Vec<&str> = nodes.iter().map(|n| n.as_str()).collect();
        let seen: Vec<String> = peers.iter().map(|(n, p)| format!("{n} at {p}")).collect();
        log::info!(
            "this node is at {own}; partition: {}; standbys published: {}",
            members.join(" "),
            if seen.is_empty() {
                "none".to_string()
            } else {
                seen.join(", ")
            }
        );
    }
    // Decide.
    let facts = PromoteFacts {
        primary_at: &primary_at,
        own,
        peers: &peers,
        replay_paused: st.replay_paused,
        sync: ctx.cfg.sync_replication,
    };
    // Act.
    let plan = match decide::promote(&facts) {
        Ok(plan) => plan,
        Err(refusal) => return Err(refuse_promotion(ctx, refusal)),
    };
    if plan.resume_replay_first {
        log::warn!("WAL replay is paused; resuming it before promotion");
        db.execute("pg_wal_replay_resume()", "SELECT pg_wal_replay_resume()")?;
        let target = st.receive_lsn.unwrap_or_default();
        let caught_up = wait_until(&ctx.deadline, || {
            db.status()
                .map(|s| s.replay_lsn.unwrap_or_default() >= target)
                .unwrap_or(false)
        });
        if !caught_up {
            return Err(Error::Failed(format!(
                "replay did not reach the received WAL ({target}) before the timeout"
            )));
        }
    }
    Ok(plan.synchronous_standby_names)
}

/// The error a refused promotion exits with; a peer ahead gets the
/// promotion handed over first: the next transition promotes it, as PAF
/// does, but with the ranking the right way round.
fn refuse_promotion(ctx: &Ctx<'_>, refusal: PromoteRefusal) -> Error {
    let why = match refusal {
        PromoteRefusal::PrimaryAnswers => {
            format!(
                "a writable primary already answers at {}",
                primary_desc(ctx)
            )
        }
        PromoteRefusal::CannotTell(r) => {
            format!(
                "cannot tell whether {} is a primary: {r}",
                primary_desc(ctx)
            )
        }
        PromoteRefusal::Untrusted(e) => {
            format!("cannot tell whether primary_host is a primary: {e}")
        }
        PromoteRefusal::NoPosition => {
            return Error::Failed("cannot read this standby's WAL position".into())
        }
        PromoteRefusal::PeerAhead { peer, peer_at, own } => {
            match NodeName::new(&peer) {
                Ok(n) => hand_promotion_to(ctx, &n),
                Err(_) => {
                    set_score(ctx, &ctx.node, CANDIDATE_SCORE);
                }
            }
            format!("{peer} is ahead ({peer_at}) of this node ({own})")
        }
    };
    Error::PromotionRefused(why)
}

fn promote_redis(ctx: &Ctx<'_>) -> Result<(), Error> {
    if !matches!(
        redis::process_state(&ctx.redis),
        redis::ProcessState::Running(_)
    ) {
        start_redis_replica(ctx)?;
    }
    let mut c = redis_local(ctx)?;
    if c.info_replication()?.role != Role::Master {
        c.replicaof(None)?;
        log::info!("Redis promoted");
    }
    let ok = wait_until(
        &ctx.deadline,
        || matches!(c.info_replication(), Ok(i) if i.role == Role::Master),
    );
    if ok {
        Ok(())
    } else {
        Err(Error::Failed("Redis did not become master".into()))
    }
}
