//! Reaping the daemons the agent leaves behind.
//!
//! `pg_ctl start` forks the postmaster and exits; `redis-server --daemonize
//! yes` forks and its parent exits. Such orphans are re-parented to the
//! nearest child subreaper, or to PID 1. On the machines this project runs
//! its tests on, PID 1 is a sandbox init that reaps only every few seconds,
//! and until then a dead daemon is a zombie, which still answers
//! `kill(pid, 0)`. Right after a `kill -9` of the postmaster, PostgreSQL
//! would refuse to start ("lock file postmaster.pid already exists": its
//! `CreateLockFile` probes the old pid with `kill(pid, 0)`), `pg_ctl status`
//! would report it running, and the agent's "is redis gone yet" loop would
//! wait for nothing. How long that lasts depends on the sandbox, not on the
//! code under test; the tests must see what a system whose init reaps at once
//! shows.
//!
//! So the test process makes itself a child subreaper
//! (`PR_SET_CHILD_SUBREAPER`, see prctl(2)): orphans from its descendants
//! become its children, and a background thread reaps those that die.
//!
//! It must not reap the children other code is waiting for. It reaps a dead
//! child only if
//! - it was not spawned by [`crate::run_command`] (those are registered here
//!   while they run, and registration happens under the same lock as the
//!   scan, so there is no window), and
//! - it is not in the test process's own process group: children that the
//!   tests spawn with a plain `std::process::Command` inherit that group and
//!   keep their exit status for `Child::wait`. Orphaned daemons have called
//!   `setsid` (postmaster, redis) or live in the agent's process group.

use std::collections::BTreeSet;
use std::io;
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard, Once};
use std::thread;
use std::time::Duration;

use nix::sys::prctl;
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::{getpgrp, getpid, Pid};

use crate::proc;

/// Pids of children spawned by `run_command` that have not been waited for.
static REGISTERED: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());
static START: Once = Once::new();
/// How often the background thread looks for dead orphans.
const INTERVAL: Duration = Duration::from_millis(50);

fn registered() -> MutexGuard<'static, BTreeSet<u32>> {
    // A panic while holding the lock cannot leave the set inconsistent.
    REGISTERED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes this process a child subreaper and starts the reaping thread, once.
pub(crate) fn ensure_started() {
    START.call_once(|| {
        if let Err(e) = prctl::set_child_subreaper(true) {
            eprintln!(
                "harness: cannot become a child subreaper ({e}); \
                 killed servers may linger as zombies"
            );
            return;
        }
        thread::Builder::new()
            .name("harness-reaper".into())
            .spawn(|| loop {
                thread::sleep(INTERVAL);
                reap_orphans();
            })
            .expect("harness: cannot start the reaper thread");
    });
}

/// Spawns `cmd` and registers the child so that the reaper leaves it alone.
pub(crate) fn spawn_registered(cmd: &mut Command) -> io::Result<Child> {
    let mut set = registered();
    let child = cmd.spawn()?;
    set.insert(child.id());
    Ok(child)
}

/// Forgets a child of `run_command` once it has been waited for.
pub(crate) fn unregister(pid: u32) {
    registered().remove(&pid);
}

/// Reaps every dead orphan of this process (see the module docs for which).
pub(crate) fn reap_orphans() {
    let set = registered();
    let me = getpid().as_raw();
    let my_group = getpgrp().as_raw();
    for st in proc::all_stats() {
        let ours = st.ppid == me && st.is_zombie() && st.pgrp != my_group;
        if ours && !set.contains(&(st.pid as u32)) {
            let _ = waitpid(Pid::from_raw(st.pid), Some(WaitPidFlag::WNOHANG));
        }
    }
}
