//! `start`: PostgreSQL as a standby of primary_host and Redis as its
//! replica. Never starts a primary.

use super::follow::{follow_primary, start_redis_replica, wait_ready};
use super::history::check_history;
use super::{forget_scores, local_db, primary_conninfo, primary_desc, remember_own_data, stale};
use crate::deadline::Deadline;
use crate::ocf::env::OcfEnv;
use crate::postgres::server::ProcessState;
use crate::stack::decide::{self, History, OwnData, PrimaryAt, StartRefusal, Who};
use crate::stack::observe;
use crate::stack::{Ctx, Error, Outcome};

/// `start`: returns when PostgreSQL and Redis both answer as followers.
pub fn start(env: &OcfEnv, deadline: Deadline) -> Result<Outcome, Error> {
    let ctx = Ctx::checked(env, deadline)?;
    forget_scores(&ctx);
    let primary = start_postgres_standby(&ctx)?;
    if matches!(primary, PrimaryAt::Writable) {
        // It follows another primary now: its data is a standby's.
        remember_own_data(&ctx, OwnData::Standby);
    }
    start_redis_replica(&ctx)?;
    // No primary to follow: this node may have to become it, unless a
    // primary marked it stale. A score now lets Pacemaker promote at once.
    stale::score_self(&ctx, &primary);
    wait_ready(&ctx)?;
    log::info!("started unpromoted, following {}", primary_desc(&ctx));
    Ok(Outcome::ok())
}

/// The error a refused start exits with.
fn refused(r: StartRefusal) -> Error {
    Error::Failed(r.to_string())
}

/// Brings PostgreSQL up as a standby (or checks it already is one), after
/// making sure its history can follow the primary's. Returns what answers
/// at primary_host. Also the second half of `demote`.
pub(super) fn start_postgres_standby(ctx: &Ctx<'_>) -> Result<PrimaryAt, Error> {
    match ctx.pg.process_state() {
        ProcessState::Running(_) => {
            let db = local_db(ctx)?;
            decide::start_running(db.in_recovery()?).map_err(refused)?;
            follow_primary(ctx, &db)?;
            return observe::trusted_primary_at(ctx);
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
    let plan = decide::start(&facts).map_err(refused)?;
    // Act.
    if plan.crash_recover_first {
        // Crash recovery in single-user mode, which never accepts a
        // connection, ends with a checkpoint after the last record.
        log::info!("finishing the crash recovery of this old primary in single-user mode");
        ctx.pg.crash_recover(&ctx.deadline)?;
        control = ctx.pg.controldata(&ctx.deadline)?;
    }
    let unknown =
        |t: Option<u32>| t.map_or_else(|| "an unknown one".to_string(), |t| t.to_string());
    match plan.history {
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
                    unknown(primary)
                );
            }
            check_history(ctx, who.name(), &control)?
        }
        History::Unverifiable {
            local,
            primary,
            state,
        } => log::warn!(
            "this standby's data is on timeline {local}, the primary's on {}, and it was not \
             stopped cleanly ({state}): its history cannot be checked before it starts",
            unknown(primary)
        ),
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
    ctx.pg.configure_standby(&primary_conninfo(ctx))?;
    ctx.pg.start(&ctx.deadline)?;
    Ok(primary)
}
