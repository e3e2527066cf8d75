//! Processes by PID, through `/proc`: is it alive (a zombie is not), is it the
//! server we think it is, and stopping a set of them with a deadline.
//!
//! A pid read from a pidfile can be stale and reused by an unrelated process,
//! so before signalling we check `/proc/<pid>/exe` and, for the postmaster,
//! `/proc/<pid>/cwd` (PostgreSQL `chdir`s into its data directory at start).

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::reaper;

/// The fields of `/proc/<pid>/stat` we use (see proc(5)).
#[derive(Debug, Clone)]
pub(crate) struct Stat {
    pub(crate) pid: i32,
    /// The command name (at most 15 bytes), e.g. `redis-server`.
    pub(crate) comm: String,
    pub(crate) state: char,
    pub(crate) ppid: i32,
    pub(crate) pgrp: i32,
}

impl Stat {
    /// Dead but not yet reaped (`Z`), or being torn down (`X`).
    pub(crate) fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses one `/proc/<pid>/stat` line. The command name is in parentheses and
/// may itself contain spaces and parentheses, so we split after the last `)`.
pub(crate) fn parse_stat(line: &str) -> Option<Stat> {
    let (head, tail) = line.rsplit_once(')')?;
    let (pid, comm) = head.split_once(" (")?;
    let pid = pid.trim().parse().ok()?;
    let mut fields = tail.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(Stat {
        pid,
        comm: comm.to_owned(),
        state,
        ppid,
        pgrp,
    })
}

/// `/proc/<pid>/stat`, or `None` once the process has been reaped.
pub(crate) fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every process visible in `/proc`.
pub(crate) fn all_stats() -> Vec<Stat> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
        .collect()
}

/// Whether `pid` is a running process (a zombie is dead).
pub(crate) fn alive(pid: i32) -> bool {
    pid > 0 && stat(pid).is_some_and(|s| !s.is_zombie())
}

/// Live direct children of `pid`.
pub(crate) fn children(pid: i32) -> Vec<i32> {
    all_stats()
        .into_iter()
        .filter(|s| s.ppid == pid && !s.is_zombie())
        .map(|s| s.pid)
        .collect()
}

/// File name of `/proc/<pid>/exe`, e.g. `postgres`.
pub(crate) fn exe_name(pid: i32) -> Option<String> {
    let exe = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    Some(exe.file_name()?.to_string_lossy().into_owned())
}

/// `/proc/<pid>/cwd`.
pub(crate) fn cwd(pid: i32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// The first line of a pidfile (`postmaster.pid`, a Redis pidfile) as a pid.
pub(crate) fn read_pidfile(path: &Path) -> Option<i32> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().next()?.trim().parse().ok().filter(|&p| p > 0)
}

/// Whether `pid` is a live postmaster (or backend) serving `pgdata`.
pub(crate) fn is_postgres_of(pid: i32, pgdata: &Path) -> bool {
    let Ok(want) = fs::canonicalize(pgdata) else {
        return false;
    };
    alive(pid)
        && exe_name(pid).as_deref() == Some("postgres")
        && cwd(pid).is_some_and(|c| c == want)
}

/// Whether `pid` is a live `redis-server` (Debian installs it as a symlink to
/// `redis-check-rdb`, which is what `/proc/<pid>/exe` shows).
pub(crate) fn is_redis(pid: i32) -> bool {
    alive(pid)
        && exe_name(pid).is_some_and(|n| n.starts_with("redis-server") || n == "redis-check-rdb")
}

/// Sends `sig` to `pid`, ignoring "no such process".
pub(crate) fn signal(pid: i32, sig: Signal) {
    let _ = kill(Pid::from_raw(pid), sig);
}

/// Waits until none of `pids` is alive; true if that happened in time.
pub(crate) fn wait_dead(pids: &[i32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pids.iter().all(|&p| !alive(p)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `pid` has no `/proc` entry any more: dead *and* reaped, so
/// that `kill(pid, 0)` fails as it would on a system whose init reaps.
pub(crate) fn wait_reaped(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        reaper::reap_orphans();
        if stat(pid).is_none() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A process to stop, with the signal that asks it to stop cleanly.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// For messages: "node1 postmaster".
    pub(crate) label: String,
    pub(crate) pid: i32,
    /// SIGINT for a postmaster (fast shutdown), SIGTERM otherwise.
    pub(crate) polite: Signal,
}

/// Stops `targets`: the polite signal, up to `grace` for them to exit, then
/// SIGKILL for survivors and their children, up to 5 s more. Never panics
/// (it runs in `Drop`); returns a line per process still alive at the end.
pub(crate) fn stop_all(targets: &[Target], grace: Duration) -> Vec<String> {
    let mut watched: Vec<(String, i32)> = Vec::new();
    for t in targets.iter().filter(|t| alive(t.pid)) {
        // The children exit with their parent normally; if the parent needs
        // SIGKILL, they need it too (a postmaster's backends, a redis fork).
        for c in children(t.pid) {
            watched.push((format!("{} child", t.label), c));
        }
        watched.push((t.label.clone(), t.pid));
        signal(t.pid, t.polite);
        // A test may have SIGSTOPped it to fake a hang; a stopped process
        // only acts on the polite signal once continued.
        signal(t.pid, Signal::SIGCONT);
    }
    let pids: Vec<i32> = watched.iter().map(|w| w.1).collect();
    if wait_dead(&pids, grace) {
        return Vec::new();
    }
    for t in targets.iter().filter(|t| alive(t.pid)) {
        for c in children(t.pid) {
            if !pids.contains(&c) {
                watched.push((format!("{} child", t.label), c));
            }
        }
    }
    for (label, pid) in watched.iter().filter(|w| alive(w.1)) {
        eprintln!("harness: {label} (pid {pid}) still running after {grace:?}: SIGKILL");
        signal(*pid, Signal::SIGKILL);
    }
    let pids: Vec<i32> = watched.iter().map(|w| w.1).collect();
    wait_dead(&pids, Duration::from_secs(5));
    watched
        .iter()
        .filter(|w| alive(w.1))
        .map(|(label, pid)| format!("{label} (pid {pid}) survived SIGKILL"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line_with_parentheses_in_the_name() {
        let s = parse_stat("4242 (postgres: (x) y) S 1 4242 4242 0 -1 4194560 0 0").unwrap();
        assert_eq!((s.pid, s.state, s.ppid, s.pgrp), (4242, 'S', 1, 4242));
        assert_eq!(s.comm, "postgres: (x) y");
        assert!(!s.is_zombie());
        let z = parse_stat("9669 (redis-server) Z 1 9669 9669 0 -1 4").unwrap();
        assert!(z.is_zombie());
    }

    #[test]
    fn this_process_is_alive_and_not_postgres() {
        let me = std::process::id() as i32;
        assert!(alive(me));
        assert!(!is_redis(me));
        assert!(!is_postgres_of(me, Path::new("/")));
        assert!(!alive(0));
    }
}
