//! Waiting, on the primary, for standbys to stream, and then scoring them
//! and making commits synchronous at once ([`sync_standbys`]) rather than
//! at the next monitor (issue 15): a standby that just rejoined is then
//! promotable if the primary dies a moment later, and with
//! `sync_replication=on` commits wait for it within a poll of it
//! streaming.
//!
//! Two callers:
//! - the post-start notification waits, bounded ([`decide::START_WAIT`]),
//!   for the nodes that started;
//! - the post-promote notification cannot wait: Pacemaker starts the VIP,
//!   ordered after `promote stack-clone`, only once the clone's
//!   post-promote notifications are confirmed (`crm_simulate` shows
//!   `stack-clone_confirmed-post_notify_promoted_0 -> vip_start_0`), and
//!   the standbys reach the new primary only through the VIP. So it leaves
//!   a watcher behind ([`leave_watcher`]): the agent itself, run again with
//!   [`WATCH_ARG`] in its own session, with a cleared environment, the
//!   parameters on its standard input (never a secret: it connects to the
//!   local server over its unix socket only), no inherited descriptor, and
//!   a lock so that two never run at once. It looks every
//!   [`decide::WAIT_POLL`] for at most [`decide::WATCH_FOR`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::detached;
use super::load_state;
use super::local_db;
use super::monitor_primary::sync_standbys;
use crate::deadline::Deadline;
use crate::ocf::env::OcfEnv;
use crate::postgres::server::ProcessState;
use crate::stack::decide::{self, WaitStep};
use crate::stack::{Ctx, Error};

/// The first argument that makes the agent's binary the watcher rather
/// than an OCF action. Not an OCF action: not in `usage` nor in the
/// meta-data.
pub const WATCH_ARG: &str = "--sync-watcher";

/// Time the watcher keeps, beyond [`decide::WATCH_FOR`], for its last query
/// and for logging.
const WATCH_SLACK: Duration = Duration::from_secs(5);

/// How often the same streaming standbys are synced again while one of
/// them is not yet promotable (it has to flush past what was acknowledged
/// asynchronously, or is beyond maxlag): often enough that it is scored
/// well within a second of catching up (with 1 s, the cluster test saw
/// 1.3 s from streaming to promotable: a first sync just before the flush,
/// then a whole wait), seldom enough that a cluster without node attributes
/// (ocf-tester) does not run `crm_attribute` on every poll. A sync that
/// changes nothing runs no process.
const RESYNC: Duration = Duration::from_millis(250);

/// How long a sync waits for [`hold_sync`]'s lock: one sync of the other
/// holder, which runs a `crm_attribute` per score or mark it changes.
const SYNC_LOCK_WAIT: Duration = Duration::from_secs(3);

/// How often [`hold_sync`] tries the lock: a `flock` that does not block.
const SYNC_LOCK_POLL: Duration = Duration::from_millis(5);

/// The lock `<resource>.sync.lock` in the state directory, under which one
/// observation of the standbys and the [`sync_standbys`] that acts on it
/// run, in the monitor, the post-start notification and the watcher. Both
/// write `synchronous_standby_names`, the scores, the stale marks and the
/// state file from what they observed: unlocked, a monitor that observed
/// before a standby streamed and wrote after the watcher had made it
/// promotable marked it stale and scored it -1000 (CI, `cluster_fencing`
/// and `cluster_cutoff`: the primary then lost left no promotable node).
///
/// None, with a warning, if it cannot be had within [`SYNC_LOCK_WAIT`]: the
/// sync then runs unlocked, because a primary's monitor must not fail for
/// it. At worst a view older than the other holder's is written until the
/// next sync: a node marked stale or scored -1000 (a promotion refused),
/// or `synchronous_standby_names` emptied, which the next monitor books as
/// asynchronous commits and marks; never a commit lost unmarked.
pub(super) fn hold_sync(ctx: &Ctx<'_>) -> Option<nix::fcntl::Flock<std::fs::File>> {
    let until = Instant::now() + ctx.deadline.cap(SYNC_LOCK_WAIT);
    loop {
        match detached::lock(ctx, "sync") {
            Ok(Some(lock)) => return Some(lock),
            Ok(None) if Instant::now() < until => std::thread::sleep(SYNC_LOCK_POLL),
            Ok(None) => {
                log::warn!(
                    "the sync lock is still held after {} ms: syncing the standbys without it",
                    SYNC_LOCK_WAIT.as_millis()
                );
                return None;
            }
            Err(e) => {
                log::warn!("{e}: syncing the standbys without it");
                return None;
            }
        }
    }
}

/// Waits, bounded by `bound` and the action's deadline, until each standby
/// in `awaited` streams and is promotable, syncing ([`sync_standbys`]) as
/// soon as one streams ([`decide::wait_step`]). Does nothing unless the
/// local PostgreSQL runs; returns at once on a standby.
pub(super) fn wait_for_standbys(
    ctx: &Ctx<'_>,
    awaited: &[String],
    bound: Duration,
) -> Result<(), Error> {
    if awaited.is_empty() || !matches!(ctx.pg.process_state(), ProcessState::Running(_)) {
        return Ok(());
    }
    let started = Instant::now();
    let until = started + ctx.deadline.cap(bound);
    let db = local_db(ctx)?;
    let own = ctx.node.as_str();
    let mut last_sync: Option<(Vec<String>, Instant)> = None;
    loop {
        let lock = hold_sync(ctx);
        let (st, standbys) = db.status_and_standbys()?;
        let standbys = match st.in_recovery {
            true => Vec::new(),
            false => standbys?,
        };
        let streaming: Vec<&str> = decide::streaming_standbys(&standbys, own)
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        let state = load_state(ctx);
        let ready: Vec<&str> = streaming
            .iter()
            .copied()
            .filter(|n| state.scores.get(*n).is_some_and(|s| *s > 0))
            .collect();
        let names_ok = st.synchronous_standby_names
            == decide::sync_standby_names(ctx.cfg.sync_replication, streaming.len());
        let now = Instant::now();
        let step = decide::wait_step(
            !st.in_recovery,
            awaited,
            &streaming,
            &ready,
            names_ok,
            now >= until,
        );
        match step {
            WaitStep::Done => {
                log::info!(
                    "waited {} ms for {}: streaming {:?}, promotable {:?}",
                    started.elapsed().as_millis(),
                    awaited.join(", "),
                    streaming,
                    ready
                );
                return Ok(());
            }
            WaitStep::Sync => {
                let same = last_sync.as_ref().is_some_and(|(names, at)| {
                    *names == streaming && names_ok && now.duration_since(*at) < RESYNC
                });
                if !same {
                    sync_standbys(ctx, &db, &st, &standbys)?;
                    last_sync = Some((streaming.iter().map(|s| s.to_string()).collect(), now));
                }
            }
            WaitStep::Wait => {}
        }
        drop(lock);
        std::thread::sleep(decide::WAIT_POLL.min(until.saturating_duration_since(now)));
    }
}

/// What the notification tells the watcher, on its standard input.
#[derive(Debug, Serialize, Deserialize)]
struct Order {
    /// The agent's environment, without its secrets ([`detached::helper_vars`]):
    /// the watcher talks to the local PostgreSQL over its unix socket and
    /// to the cluster, never to Redis or primary_host.
    vars: BTreeMap<String, String>,
    /// The standbys to wait for.
    awaited: Vec<String>,
}

/// Leaves a watcher behind that waits for `awaited` ([`wait_for_standbys`],
/// [`decide::WATCH_FOR`]); logs and goes on if it cannot be started (the
/// next monitor does the same work, later).
pub(super) fn leave_watcher(awaited: &[String]) {
    if awaited.is_empty() {
        return;
    }
    let order = Order {
        vars: detached::helper_vars(std::env::vars_os(), &[]),
        awaited: awaited.to_vec(),
    };
    if let Some(pid) = detached::spawn_self(WATCH_ARG, &order, "standby watcher") {
        log::info!(
            "watcher {pid} makes {} promotable and commits synchronous as soon as they stream \
             (for at most {} s)",
            awaited.join(", "),
            decide::WATCH_FOR.as_secs()
        );
    }
}

/// The watcher's `main` ([`WATCH_ARG`]): [`detached::read_order`], then
/// [`wait_for_standbys`] under the lock `<resource>.watch.lock` in the
/// state directory. Returns the exit code (0, or 1 when it could not run).
pub fn watcher_main() -> i32 {
    let Some(order) = detached::read_order::<Order>() else {
        return 1;
    };
    let env = OcfEnv::from_vars(order.vars);
    crate::ocf::log::AgentLogger::new(env.instance(), env.debug()).install();
    let deadline = Deadline::after(decide::WATCH_FOR + WATCH_SLACK);
    let ctx = match Ctx::new(&env, deadline) {
        Ok(c) => c,
        Err(e) => {
            log::warn!("standby watcher: {e}");
            return 1;
        }
    };
    let _lock = match detached::lock(&ctx, "watch") {
        Ok(Some(l)) => l,
        Ok(None) => {
            log::info!("standby watcher: another one runs already");
            return 0;
        }
        Err(e) => {
            log::warn!("standby watcher: {e}");
            return 1;
        }
    };
    match wait_for_standbys(&ctx, &order.awaited, decide::WATCH_FOR) {
        Ok(()) => 0,
        Err(e) => {
            log::warn!("standby watcher: {e}");
            1
        }
    }
}
