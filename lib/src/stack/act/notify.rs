//! `notify`.

use super::follow::{follow_primary, follow_redis_primary};
use super::watch::{leave_watcher, wait_for_standbys};
use super::{best_effort, forget_scores, local_db, position_attribute, remember_own_data};
use crate::deadline::Deadline;
use crate::ocf::env::OcfEnv;
use crate::postgres::server::ProcessState;
use crate::redis;
use crate::stack::decide::{self, NotifyPlan, OwnData};
use crate::stack::{Ctx, Error, Outcome};

/// `notify`: never fails (a failed notify would stop the clone). Publishes
/// this standby's position before a promotion, re-points followers after
/// one, and makes the primary re-assert scores when nodes come and go; on
/// the primary, a started standby is scored and made synchronous as soon
/// as it streams (after a promotion, by a watcher left behind).
pub fn notify(env: &OcfEnv, deadline: Deadline) -> Outcome {
    let Some(n) = env.notification() else {
        return Outcome::ok();
    };
    let ctx = match Ctx::new(env, deadline) {
        Ok(c) => c,
        Err(e) => {
            log::warn!("notify: {e}");
            return Outcome::ok();
        }
    };
    let plan = decide::notify(n.kind, n.operation, &n.promote, ctx.node.as_str());
    let result = match plan {
        NotifyPlan::PublishPosition => publish_position(&ctx),
        NotifyPlan::Promoted | NotifyPlan::Refollow => {
            best_effort(
                "clearing this node's published position",
                ctx.cluster.delete_private(
                    &position_attribute(env.resource()),
                    &ctx.node,
                    &ctx.deadline,
                ),
            );
            forget_scores(&ctx);
            if plan == NotifyPlan::Promoted {
                let r = checkpoint_new_timeline(&ctx);
                // The VIP starts only once this notification is done, and
                // the standbys reach this primary through it: no waiting
                // here, a watcher instead.
                leave_watcher(&decide::standbys_to_await(&n, ctx.node.as_str()));
                r
            } else {
                // Another node is the primary now: this node's data is no
                // longer the last primary's.
                remember_own_data(&ctx, OwnData::Standby);
                refollow(&ctx)
            }
        }
        NotifyPlan::ForgetScores => {
            forget_scores(&ctx);
            // A standby that started is promotable, and commits wait for
            // it, as soon as it streams: not at the next monitor.
            wait_for_standbys(
                &ctx,
                &decide::standbys_to_await(&n, ctx.node.as_str()),
                decide::START_WAIT.min(ctx.deadline.remaining() / 2),
            )
        }
        NotifyPlan::Nothing => Ok(()),
    };
    if let Err(e) = result {
        log::warn!("notify {:?}-{:?}: {e}", n.kind, n.operation);
    }
    Outcome::ok()
}

/// Pre-promote, on every standby: force a restartpoint so the control file's
/// timeline is current, then publish `timeline#lsn` as a private attribute.
fn publish_position(ctx: &Ctx<'_>) -> Result<(), Error> {
    if !matches!(ctx.pg.process_state(), ProcessState::Running(_)) {
        return Ok(());
    }
    let db = local_db(ctx)?;
    let st = db.status()?;
    if !st.in_recovery {
        return Ok(());
    }
    if let Err(e) = db.execute("CHECKPOINT", "CHECKPOINT") {
        log::warn!("restartpoint before publishing the position: {e}");
    }
    let st = db.status()?;
    let Some(pos) = st.position() else {
        return Ok(());
    };
    log::info!("publishing position {pos} for the promotion");
    ctx.cluster.publish_private(
        &position_attribute(ctx.env.resource()),
        &ctx.node,
        &pos.to_string(),
        &ctx.deadline,
    )?;
    Ok(())
}

/// Right after a promotion the control file still names the old timeline
/// until the end-of-recovery checkpoint completes, and pg_rewind compares
/// control files: an old primary checked against it in that window would be
/// told "same timeline, no rewind required" and start on a diverged
/// history. An immediate checkpoint closes the window.
pub(super) fn checkpoint_new_timeline(ctx: &Ctx<'_>) -> Result<(), Error> {
    let db = local_db(ctx)?;
    let st = db.status()?;
    if !st.in_recovery && st.checkpoint_timeline < st.primary_timeline {
        log::info!("checkpointing so the control file names the new timeline");
        db.execute("CHECKPOINT", "CHECKPOINT")?;
    }
    Ok(())
}

/// Post-promote, on the others: follow primary_host again. A node whose
/// PostgreSQL is a primary is not an "other", whatever the notification's
/// lists say (an empty or garbled promote list): its Redis stays the master.
/// Re-pointing it at primary_host, which is itself, made it a replica of
/// itself, and the next monitor failed the primary.
fn refollow(ctx: &Ctx<'_>) -> Result<(), Error> {
    if matches!(ctx.pg.process_state(), ProcessState::Running(_)) {
        let db = local_db(ctx)?;
        if !db.in_recovery()? {
            log::warn!(
                "post-promote notification that does not name this node, which runs the primary: \
                 nothing re-pointed"
            );
            return Ok(());
        }
        follow_primary(ctx, &db)?;
        leave_itself(ctx, &db);
    }
    if matches!(
        redis::process_state(&ctx.redis),
        redis::ProcessState::Running(_)
    ) {
        follow_redis_primary(ctx)?;
    }
    Ok(())
}

/// A demoted primary whose WAL receiver streams from itself
/// ([`decide::streams_from_itself`]): ends its own WAL sender that serves
/// it, so the receiver retries primary_host at once (within
/// `wal_retrieve_retry_interval`), where the new primary is about to be
/// (the VIP starts right after this notification). Best effort.
fn leave_itself(ctx: &Ctx<'_>, db: &crate::postgres::db::Db) {
    let own = ctx.node.as_str();
    match db.standbys() {
        Ok(rows) if decide::streams_from_itself(&rows, own) => {
            log::info!("this standby streams from itself: ending that WAL sender");
            let sql = format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_replication \
                 WHERE application_name = {}",
                crate::postgres::db::quote_literal(own)
            );
            if let Err(e) = db.execute("ending the WAL sender serving this node", &sql) {
                log::warn!("{e}");
            }
        }
        Ok(_) => {}
        Err(e) => log::warn!("cannot read this standby's WAL senders: {e}"),
    }
}
