//! `start`: PostgreSQL as a standby of primary_host and Redis as its
//! replica. Never starts a primary.

use super::follow::{follow_primary, start_redis_replica, wait_ready};
use super::history::check_history;
use super::{forget_scores, local_db, primary_conninfo, primary_desc, remember_own_data, stale};
use crate::deadline::Deadline;
use crate::ocf::env::OcfEnv;
use crate::postgres::history::Follow;
use crate::postgres::server::{wait_until, ProcessState, TargetTimeline};
use crate::stack::decide::{self, History, OwnData, PrimaryAt, StartRefusal, Who};
use crate::stack::observe;
use crate::stack::{Ctx, Error, Outcome};

/// `start`: returns when PostgreSQL and Redis both answer as followers.
pub fn start(env: &OcfEnv, deadline: Deadline) -> Result<Outcome, Error> {
    let ctx = Ctx::checked(env, deadline)?;
    forget_scores(&ctx);
    let (primary, target) = start_postgres_standby(&ctx)?;
    if matches!(primary, PrimaryAt::Writable) {
        // It follows another primary now: its data is a standby's.
        remember_own_data(&ctx, OwnData::Standby);
    }
    start_redis_replica(&ctx)?;
    // No primary to follow: this node may have to become it, unless a
    // primary marked it stale, or its data went past a newer timeline's
    // fork. A score now lets Pacemaker promote at once.
    if decide::start_makes_candidate(target) {
        stale::score_self(&ctx, &primary);
    }
    wait_ready(&ctx)?;
    log::info!("started unpromoted, following {}", primary_desc(&ctx));
    Ok(Outcome::ok())
}

/// How a timeline is named when it could not be read.
fn unknown(t: Option<u32>) -> String {
    t.map_or_else(|| "an unknown one".to_string(), |t| t.to_string())
}

/// [`History::ReplayAloneFirst`]: starts a crashed standby with no source
/// of WAL (`primary_conninfo` empty), waits until its startup process has
/// replayed its own `pg_wal` to the end and waits for more, then stops it
/// fast. Its control file then says "shut down in recovery", with the
/// minimum recovery point at the end of its WAL: what pg_rewind and the
/// timeline check read. Nothing is received meanwhile, so nothing of the
/// primary's is replayed before the check.
fn replay_alone(ctx: &Ctx<'_>) -> Result<(), Error> {
    ctx.pg.configure_standby("", TargetTimeline::Current)?;
    ctx.pg.start(&ctx.deadline)?;
    // Half of what is left, so that the stop and the start after it have
    // the other half.
    let wait = Deadline::after(ctx.deadline.remaining() / 2);
    let mut last = String::new();
    let replayed = wait_until(&wait, || {
        match local_db(ctx).and_then(|db| Ok(db.replayed_all_local_wal()?)) {
            Ok(done) => done,
            Err(e) => {
                last = format!(" (last: {e})");
                false
            }
        }
    });
    // Stopped either way: a standby left running without a source is no
    // use to anyone.
    ctx.pg.stop(&ctx.deadline)?;
    if !replayed {
        return Err(Error::Failed(format!(
            "this standby did not finish replaying its own WAL before the timeout{last}: its \
             history cannot be checked against {}; see the PostgreSQL log {}",
            primary_desc(ctx),
            ctx.pg.logfile.display()
        )));
    }
    log::info!("replayed this standby's own WAL alone and stopped it cleanly");
    Ok(())
}

/// The error a refused start exits with.
fn refused(r: StartRefusal) -> Error {
    Error::Failed(r.to_string())
}

/// Brings PostgreSQL up as a standby (or checks it already is one), after
/// making sure its history can follow the primary's. Returns what answers
/// at primary_host, and the timeline it recovers to
/// ([`decide::start_target`]). Also the second half of `demote`.
pub(super) fn start_postgres_standby(ctx: &Ctx<'_>) -> Result<(PrimaryAt, TargetTimeline), Error> {
    match ctx.pg.process_state() {
        ProcessState::Running(_) => {
            let db = local_db(ctx)?;
            decide::start_running(db.in_recovery()?).map_err(refused)?;
            follow_primary(ctx, &db)?;
            return Ok((observe::trusted_primary_at(ctx)?, TargetTimeline::Latest));
        }
        ProcessState::Crashed(pid) => {
            log::warn!("postmaster {pid} is gone; cleaning up before starting as a standby");
            ctx.pg.clean_after_crash(&ctx.deadline)?;
        }
        ProcessState::Stopped => {}
    }
    // Observe.
    let primary = observe::trusted_primary_at(ctx)?;
    let mut control = ctx.pg.controldata(&ctx.deadline)?;
    let facts = observe::start_facts(ctx, &primary, &control);
    // Decide.
    let mut plan = decide::start(&facts).map_err(refused)?;
    // Act.
    if let History::ReplayAloneFirst {
        local,
        primary: primary_tl,
        state,
    } = &plan.history
    {
        log::info!(
            "this standby's data is on timeline {local}, the primary's on {}, and it was not \
             stopped cleanly ({state}): replaying its own WAL alone and stopping it cleanly, \
             so that its history can be checked",
            unknown(*primary_tl)
        );
        replay_alone(ctx)?;
        // Observe and decide again: the data is now "shut down in recovery".
        control = ctx.pg.controldata(&ctx.deadline)?;
        let facts = observe::start_facts(ctx, &primary, &control);
        plan = decide::start(&facts).map_err(refused)?;
        if let History::ReplayAloneFirst { state, .. } = &plan.history {
            return Err(Error::Failed(format!(
                "this standby's data is still not stopped cleanly ({state}) after replaying \
                 its own WAL: its history cannot be checked against {}; see the PostgreSQL \
                 log {}",
                primary_desc(ctx),
                ctx.pg.logfile.display()
            )));
        }
    }
    if plan.crash_recover_first {
        // Crash recovery in single-user mode, which never accepts a
        // connection, ends with a checkpoint after the last record.
        log::info!("finishing the crash recovery of this old primary in single-user mode");
        ctx.pg.crash_recover(&ctx.deadline)?;
        control = ctx.pg.controldata(&ctx.deadline)?;
    }
    match &plan.history {
        History::BaseBackup => log::info!(
            "a base backup (backup_label present): starting it as a standby of {}, \
             PostgreSQL recovers it from its backup_label",
            primary_desc(ctx)
        ),
        History::SameTimeline => {}
        History::Check(who) => {
            if let Who::Standby { local, primary } = who {
                log::info!(
                    "this standby's data is on timeline {local}, the primary's on {}: \
                     checking that its history can follow",
                    unknown(*primary)
                );
            }
            check_history(ctx, who.name(), &control)?
        }
        // Replayed alone above; a plan still asking for it returned there.
        History::ReplayAloneFirst { .. } => {}
        History::StandbyAnswers => log::info!(
            "no primary at {} yet (a standby answers); starting as a standby",
            primary_desc(ctx)
        ),
        History::NoAnswer(r) => log::info!(
            "no primary answers at {} ({r}); starting as a standby",
            primary_desc(ctx)
        ),
        History::CannotTell(r) => log::warn!(
            "cannot tell what answers at {} ({r}); starting as a standby",
            primary_desc(ctx)
        ),
    }
    // Its own pg_wal matters only where no primary was checked.
    let local = if plan.history.checked_nothing() {
        observe::local_fork(ctx, &control)
    } else {
        None
    };
    let target = decide::start_target(&plan.history, local);
    if target == TargetTimeline::Current {
        let how = match local {
            Some(Follow::Diverged { timeline, fork }) => {
                format!("it left timeline {timeline} at {fork}, this node's data goes past that")
            }
            _ => "this node's timeline is not in that history".to_string(),
        };
        log::warn!(
            "no primary to check against, and pg_wal holds the history of a newer timeline: \
             {how}. Starting it on its own timeline, never as a candidate; once a primary \
             answers, its monitor has it restarted and rewound"
        );
    }
    ctx.pg.configure_standby(&primary_conninfo(ctx), target)?;
    ctx.pg.start(&ctx.deadline)?;
    Ok((primary, target))
}
