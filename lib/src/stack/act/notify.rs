//! `notify`.

use super::follow::{follow_primary, follow_redis_primary};
use super::guard::leave_guard;
use super::watch::{leave_watcher, wait_for_standbys};
use super::{
    clear_position, forget_scores, hand_promotion_to, load_state, local_db, position_attribute,
    read_positions, remember_own_data, save_state, stale, unix_now,
};
use crate::cluster::NodeName;
use crate::deadline::Deadline;
use crate::ocf::env::OcfEnv;
use crate::postgres::server::wait_until;
use crate::postgres::server::ProcessState;
use crate::postgres::Position;
use crate::redis;
use crate::stack::decide::PrePromote;
use crate::stack::decide::{self, NotifyPlan, OwnData};
use crate::stack::observe;
use crate::stack::{Ctx, Error, Outcome};
use std::time::{Duration, Instant};

/// How long the node about to be promoted, having handed the promotion to
/// a standby ahead, keeps its pre-promote notification open once the CIB
/// shows the new score: the controller (perhaps on another node) is told of
/// the change by its own CIB, and must abort the transition before it sees
/// this notification confirmed and runs the promote. Spent only on a hand
/// over, never on a normal promotion.
const HANDOVER_GRACE: Duration = Duration::from_millis(500);

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
    let plan = decide::notify(
        n.kind,
        n.operation,
        &n.promote,
        &n.demote,
        ctx.node.as_str(),
    );
    let result = match plan {
        NotifyPlan::PublishPosition => publish_position(&ctx).map(drop),
        NotifyPlan::PublishAndHearPeers => {
            remember_demoted_beside(&ctx, decide::demoted_beside(&n.demote, ctx.node.as_str()));
            publish_position(&ctx).and_then(|own| {
                hear_peers(&ctx, own, &decide::peers_to_hear(&n, ctx.node.as_str()))
            })
        }
        NotifyPlan::HandOver => {
            let mut s = load_state(&ctx);
            s.handed_over_at = Some(unix_now());
            save_state(&ctx, &s);
            log::info!(
                "this transition promotes {}: the demote leaves this node's score to its promote",
                n.promote.join(" ")
            );
            Ok(())
        }
        NotifyPlan::Promoted | NotifyPlan::Refollow => {
            // The VIP starts only once every node's post-promote
            // notification is done: the published position (a cluster tool
            // call) is cleared beside the rest, not before it.
            let (cluster, resource, node, deadline) =
                (&ctx.cluster, ctx.env.resource(), &ctx.node, &ctx.deadline);
            std::thread::scope(|s| {
                s.spawn(move || clear_position(cluster, resource, node, deadline));
                forget_scores(&ctx);
                if plan == NotifyPlan::Promoted {
                    let r = checkpoint_new_timeline(&ctx);
                    // The standbys reach this primary through the VIP: no
                    // waiting here, a watcher instead.
                    leave_watcher(&decide::standbys_to_await(&n, ctx.node.as_str()));
                    leave_guard(&ctx);
                    r
                } else {
                    // Another node is the primary now: this node's data is
                    // no longer the last primary's.
                    remember_own_data(&ctx, OwnData::Standby);
                    refollow(&ctx)
                }
            })
        }
        NotifyPlan::ForgetScores => {
            forget_scores(&ctx);
            if decide::primary_lost(&n) {
                score_survivor(&ctx);
            }
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

/// Records, on the node about to be promoted, the nodes the same
/// transition demotes: its promote lowers their scores beside its own.
fn remember_demoted_beside(ctx: &Ctx<'_>, demoted: Vec<String>) {
    let mut s = load_state(ctx);
    if s.demoted_beside != demoted {
        s.demoted_beside = demoted;
        save_state(ctx, &s);
    }
}

/// Pre-promote, on every standby: force a restartpoint so the control file's
/// timeline is current, then publish `timeline#lsn` as a private attribute.
/// Returns the position published (none on a primary or a stopped server).
fn publish_position(ctx: &Ctx<'_>) -> Result<Option<Position>, Error> {
    if !matches!(ctx.pg.process_state(), ProcessState::Running(_)) {
        return Ok(None);
    }
    let db = local_db(ctx)?;
    let st = db.status()?;
    if !st.in_recovery {
        return Ok(None);
    }
    let t = Instant::now();
    if let Err(e) = db.execute("CHECKPOINT", "CHECKPOINT") {
        log::warn!("restartpoint before publishing the position: {e}");
    }
    let restartpoint = t.elapsed();
    let st = db.status()?;
    let Some(pos) = st.position() else {
        return Ok(None);
    };
    log::info!(
        "publishing position {pos} for the promotion (restartpoint {} ms)",
        restartpoint.as_millis()
    );
    ctx.cluster.publish_private(
        &position_attribute(ctx.env.resource()),
        &ctx.node,
        &pos.to_string(),
        &ctx.deadline,
    )?;
    Ok(Some(pos))
}

/// Pre-promote, on the node about to be promoted, at `own`: waits (at most
/// [`decide::PEERS_WAIT`]) for the positions of the standbys `expected` to
/// be published, and hands the promotion to one that is ahead
/// ([`decide::pre_promote`]). After a cold start every standby scores
/// itself alike and Pacemaker may pick one that is behind; promote would
/// then refuse, which is a failed action and a fail-count on a healthy
/// standby.
///
/// The hand-over only works if the transition is aborted before Pacemaker
/// runs this node's promote: it waits until the CIB holds the peer's new
/// score, then [`HANDOVER_GRACE`] for the controller to act on it.
/// Promote keeps its own check, for when that race is lost.
fn hear_peers(ctx: &Ctx<'_>, own: Option<Position>, expected: &[String]) -> Result<(), Error> {
    let nodes: Vec<NodeName> = expected
        .iter()
        .filter_map(|n| NodeName::new(n).ok())
        .collect();
    let started = Instant::now();
    let until = started + ctx.deadline.cap(decide::PEERS_WAIT);
    loop {
        let published = match read_positions(ctx, &nodes) {
            Ok(p) => p,
            Err(e) => {
                log::warn!(
                    "cannot read the positions the standbys published ({e}); promote checks them \
                     again"
                );
                return Ok(());
            }
        };
        let out_of_time = Instant::now() >= until;
        match decide::pre_promote(own, expected, &published, out_of_time) {
            PrePromote::Wait => std::thread::sleep(decide::PEERS_POLL),
            PrePromote::Proceed => {
                if !expected.is_empty() {
                    log::info!(
                        "no standby ahead of this node after {} ms (heard: {})",
                        started.elapsed().as_millis(),
                        heard(&published)
                    );
                }
                return Ok(());
            }
            PrePromote::HandOver { peer, peer_at, own } => {
                log::warn!(
                    "{peer} is ahead ({peer_at}) of this node ({own}), which Pacemaker is about \
                     to promote: handing the promotion to {peer} (heard: {})",
                    heard(&published)
                );
                let Ok(p) = NodeName::new(&peer) else {
                    return Ok(());
                };
                hand_promotion_to(ctx, &p);
                let seen = wait_until(
                    &Deadline::after(ctx.deadline.cap(decide::PEERS_WAIT)),
                    || {
                        matches!(
                            ctx.cluster.get_promotion_score(ctx.env.instance(), &p, &ctx.deadline),
                            Ok(Some(s)) if s == decide::AHEAD_SCORE
                        )
                    },
                );
                if !seen {
                    log::warn!("the CIB does not show {peer}'s new score yet");
                }
                std::thread::sleep(ctx.deadline.cap(HANDOVER_GRACE));
                return Ok(());
            }
        }
    }
}

/// Post-stop of the primary, on a survivor: a standby without a promotion
/// score gives itself one now if no primary answers ([`decide::primary_lost`],
/// [`stale::score_self`]), so the transition that follows can promote it.
/// A scored node (the common case) costs one attribute query.
fn score_survivor(ctx: &Ctx<'_>) {
    if !matches!(ctx.pg.process_state(), ProcessState::Running(_)) {
        return;
    }
    match ctx
        .cluster
        .get_promotion_score(ctx.env.instance(), &ctx.node, &ctx.deadline)
    {
        Ok(None) => {}
        Ok(Some(_)) => return,
        Err(e) => {
            log::debug!("cannot read this node's promotion score: {e}");
            return;
        }
    }
    match observe::primary_at_by(ctx, observe::Probe::Lan) {
        Ok(at) => {
            stale::score_self(ctx, &at);
        }
        Err(e) => log::warn!("the primary is gone; cannot tell what answers at primary_host: {e}"),
    }
}

/// The positions heard, for the log.
fn heard(published: &[(String, Position)]) -> String {
    if published.is_empty() {
        return "none".into();
    }
    published
        .iter()
        .map(|(n, p)| format!("{n} at {p}"))
        .collect::<Vec<_>>()
        .join(", ")
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
