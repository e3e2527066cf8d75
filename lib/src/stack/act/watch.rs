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
use std::ffi::OsString;
use std::io::Read;
use std::time::{Duration, Instant};

use nix::unistd::Uid;
use serde::{Deserialize, Serialize};

use super::load_state;
use super::local_db;
use super::monitor_primary::sync_standbys;
use crate::cmd;
use crate::deadline::Deadline;
use crate::ocf::env::OcfEnv;
use crate::owned_dir::OwnedDir;
use crate::postgres::server::ProcessState;
use crate::stack::decide::{self, WaitStep};
use crate::stack::{Ctx, Error};

/// The first argument that makes the agent's binary the watcher rather
/// than an OCF action. Not an OCF action: not in `usage` nor in the
/// meta-data.
pub const WATCH_ARG: &str = "--sync-watcher";

/// The most the parameters on the watcher's standard input may weigh.
const MAX_ORDER: u64 = 60 * 1024;

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
        std::thread::sleep(decide::WAIT_POLL.min(until.saturating_duration_since(now)));
    }
}

/// What the notification tells the watcher, on its standard input.
#[derive(Debug, Serialize, Deserialize)]
struct Order {
    /// The agent's environment, without its secrets ([`watcher_vars`]).
    vars: BTreeMap<String, String>,
    /// The standbys to wait for.
    awaited: Vec<String>,
}

/// The variables the watcher gets from the agent's environment: the OCF
/// ones (parameters, meta attributes, the instance's name), `CIB_file` and
/// `HA_debug`; never a secret parameter ([`crate::config::is_secret_param`]),
/// which the watcher does not need (it talks to the local PostgreSQL over
/// its unix socket and to the cluster, never to Redis or primary_host).
/// Pure: `vars` is the agent's environment.
pub fn watcher_vars(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> BTreeMap<String, String> {
    vars.into_iter()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| match k.strip_prefix("OCF_RESKEY_") {
            Some(param) => !crate::config::is_secret_param(param),
            None => k.starts_with("OCF_") || k == "CIB_file" || k == "HA_debug",
        })
        .collect()
}

/// Leaves a watcher behind that waits for `awaited` ([`wait_for_standbys`],
/// [`decide::WATCH_FOR`]); logs and goes on if it cannot be started (the
/// next monitor does the same work, later).
pub(super) fn leave_watcher(awaited: &[String]) {
    if awaited.is_empty() {
        return;
    }
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            log::warn!("cannot start the standby watcher: the agent's path: {e}");
            return;
        }
    };
    let order = Order {
        vars: watcher_vars(std::env::vars_os()),
        awaited: awaited.to_vec(),
    };
    let input = serde_json::to_vec(&order).unwrap_or_default();
    if input.len() as u64 > MAX_ORDER {
        log::warn!("cannot start the standby watcher: its parameters are too large");
        return;
    }
    match cmd::spawn_detached(&cmd::Spec::new(&exe).arg(WATCH_ARG), &input) {
        Ok(pid) => log::info!(
            "watcher {pid} makes {} promotable and commits synchronous as soon as they stream \
             (for at most {} s)",
            awaited.join(", "),
            decide::WATCH_FOR.as_secs()
        ),
        Err(e) => log::warn!("cannot start the standby watcher: {e}"),
    }
}

/// The watcher's `main` ([`WATCH_ARG`]): its own session, no inherited
/// descriptor, the order read from standard input, then
/// [`wait_for_standbys`] under the lock `<resource>.watch.lock` in the
/// state directory. Returns the exit code (0, or 1 when it could not run).
pub fn watcher_main() -> i32 {
    // Out of execd's session and process group: a stop of the agent's
    // group does not reach it, nor it the agent's.
    let _ = nix::unistd::setsid();
    close_inherited_fds();
    let mut input = Vec::new();
    let read = std::io::stdin().take(MAX_ORDER + 1).read_to_end(&mut input);
    if let Ok(null) = std::fs::File::open("/dev/null") {
        use std::os::fd::AsRawFd;
        let _ = nix::unistd::dup2(null.as_raw_fd(), 0);
    }
    let order: Order = match read
        .ok()
        .filter(|n| (*n as u64) <= MAX_ORDER)
        .and_then(|_| serde_json::from_slice(&input).ok())
    {
        Some(o) => o,
        None => return 1,
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
    let _lock = match lock(&ctx) {
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

/// The watcher's lock in the state directory, under [`OwnedDir`]'s rules.
fn lock(ctx: &Ctx<'_>) -> Result<Option<nix::fcntl::Flock<std::fs::File>>, Error> {
    let dir = &ctx.cfg.state_dir;
    let fail = |e: String| Error::Failed(format!("the watcher's lock in {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    let owned = OwnedDir::open(dir, Uid::effective()).map_err(|e| fail(e.to_string()))?;
    owned
        .try_lock(&format!("{}.watch.lock", ctx.env.resource()))
        .map_err(|e| fail(e.to_string()))
}

/// Closes every descriptor but the standard three: whatever execd or the
/// agent left open without close-on-exec.
fn close_inherited_fds() {
    let fds: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd > 2)
            .collect(),
        Err(_) => return,
    };
    // The directory's own descriptor is among them, closed already: EBADF.
    for fd in fds {
        let _ = nix::unistd::close(fd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watcher_gets_the_ocf_variables_but_never_a_secret() {
        let vars = [
            ("OCF_RESKEY_pgdata", "/var/lib/postgresql/15/main"),
            ("OCF_RESKEY_repl_password", "s3cret"),
            ("OCF_RESKEY_redis_password", "s3cret"),
            ("OCF_RESKEY_CRM_meta_on_node", "node1"),
            ("OCF_RESOURCE_INSTANCE", "stack:0"),
            ("OCF_ROOT", "/usr/lib/ocf"),
            ("CIB_file", "/tmp/cib.xml"),
            ("HA_debug", "1"),
            ("PGPASSWORD", "s3cret"),
            ("HOME", "/root"),
            ("NOTIFY_SOCKET", "/run/systemd/notify"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let got = watcher_vars(vars);
        let names: Vec<&str> = got.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "CIB_file",
                "HA_debug",
                "OCF_RESKEY_CRM_meta_on_node",
                "OCF_RESKEY_pgdata",
                "OCF_RESOURCE_INSTANCE",
                "OCF_ROOT"
            ]
        );
        assert!(!got.values().any(|v| v.contains("s3cret")));
    }
}
