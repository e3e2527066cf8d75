//! A hung primary, and a primary whose standby cannot confirm its WAL: the
//! agent against real servers (issue 15). The monitor finds a frozen
//! postmaster before its timeout; demote and stop end it in bounded steps
//! (fast, immediate, SIGKILL) instead of waiting out their own timeouts;
//! a demote whose standby is unreachable makes Redis a replica and stops
//! PostgreSQL's writes before any shutdown wait, and returns within
//! seconds. No acknowledged commit is lost, and the node starts (and is
//! promoted) again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rapidpro_ha_harness::{Node, Pair};

use super::agent;
use super::agent_node::{primary_and_standby, signal, OCF_RUNNING_PROMOTED, OCF_SUCCESS};

const OCF_FAILED_PROMOTED: i32 = 9;

/// Pacemaker's recommended timeouts (meta-data), in milliseconds.
const MONITOR_TIMEOUT: &str = "20000";
const DEMOTE_TIMEOUT: &str = "120000";
const STOP_TIMEOUT: &str = "120000";

/// What the tests allow a demote or stop of a frozen or cut-off primary:
/// far below its 120 s timeout, which is what they used to wait out.
const FEW_SECONDS: Duration = Duration::from_secs(10);

/// Pids of live (not zombie) processes whose working directory is the
/// node's data directory: the postmaster and its children.
fn processes_in_pgdata(node: &Node) -> Vec<i32> {
    let dir = std::fs::canonicalize(&node.pgdata).expect("pgdata");
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c == dir))
        .collect()
}

/// A table with `n` rows on the primary `node`, committed and acknowledged.
fn committed_rows(node: &Node, n: u32) {
    node.psql("create table acked(n int primary key)");
    node.psql(&format!("insert into acked select generate_series(1, {n})"));
}

fn count_rows(node: &Node) -> String {
    node.psql("select count(*) from acked")
}

/// Freezes node1's postmaster (SIGSTOP, as a dead disk freezes it) and
/// checks that node1's monitor reports "failed promoted" with a reason
/// within its timeout.
fn freeze_primary_and_monitor(pair: &Pair) -> i32 {
    let n1 = &pair.nodes[0];
    let pid = n1.postmaster_pid().expect("node1's postmaster");
    signal(pid, "-STOP");
    let t = Instant::now();
    let out = agent(n1, n1)
        .meta("timeout", MONITOR_TIMEOUT)
        .run("monitor");
    let took = t.elapsed();
    out.assert_code(OCF_FAILED_PROMOTED);
    out.assert_reason_contains("is stopped");
    assert!(took < Duration::from_secs(20), "the monitor took {took:?}");
    eprintln!("monitor of the frozen primary: {took:?}");
    pid
}

#[test]
fn a_frozen_primary_fails_its_monitor_and_its_demote_kills_it_within_seconds() {
    let pair = Pair::new("frozen_primary_demote");
    let n1 = &pair.nodes[0];
    primary_and_standby(&pair);
    committed_rows(n1, 1000);
    let pid = freeze_primary_and_monitor(&pair);
    // Pacemaker demotes while the virtual IP is still on node1: node1 is
    // its own primary_host.
    let t = Instant::now();
    let out = agent(n1, n1).meta("timeout", DEMOTE_TIMEOUT).run("demote");
    let took = t.elapsed();
    eprintln!("demote of the frozen primary: {took:?}");
    out.assert_code(OCF_SUCCESS);
    assert!(took < FEW_SECONDS, "the demote took {took:?}");
    assert!(
        std::fs::metadata(format!("/proc/{pid}")).is_err()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            }),
        "the frozen postmaster {pid} still runs"
    );
    // Restarted as a standby, after crash recovery: every committed row.
    assert_eq!(n1.psql("select pg_is_in_recovery()"), "t");
    assert_eq!(count_rows(n1), "1000");
    agent(n1, n1).run("monitor").assert_code(OCF_SUCCESS);
    // And it can be the primary again, accepting writes.
    agent(n1, n1).run("promote").assert_code(OCF_SUCCESS);
    n1.psql("insert into acked values (1001)");
}

#[test]
fn a_frozen_primary_is_stopped_within_seconds_and_starts_again() {
    let pair = Pair::new("frozen_primary_stop");
    let n1 = &pair.nodes[0];
    primary_and_standby(&pair);
    committed_rows(n1, 1000);
    let pid = freeze_primary_and_monitor(&pair);
    let backends = processes_in_pgdata(n1);
    assert!(
        backends.len() > 1,
        "postmaster {pid} has children: {backends:?}"
    );
    let t = Instant::now();
    let out = agent(n1, n1).meta("timeout", STOP_TIMEOUT).run("stop");
    let took = t.elapsed();
    eprintln!("stop of the frozen primary: {took:?}");
    out.assert_code(OCF_SUCCESS);
    assert!(took < FEW_SECONDS, "the stop took {took:?}");
    assert_eq!(processes_in_pgdata(n1), Vec::<i32>::new(), "left running");
    assert_eq!(n1.postmaster_pid(), None);
    assert!(
        !n1.pgdata.join("postmaster.pid").exists(),
        "stale postmaster.pid left behind"
    );
    agent(n1, n1).run("monitor").assert_code(7);
    // A start after SIGKILL: stale shared memory and crash recovery.
    agent(n1, n1).run("start").assert_code(OCF_SUCCESS);
    assert_eq!(count_rows(n1), "1000");
}

/// What a writer saw, one attempt after the other on new sessions.
#[derive(Debug, Default)]
struct Writes {
    /// (row, acknowledged, when).
    attempts: Vec<(u32, bool, Instant)>,
}

#[test]
fn a_primary_whose_standby_cannot_confirm_demotes_within_seconds_and_stops_writes_first() {
    let pair = Pair::new("unconfirmed_standby_demote");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    primary_and_standby(&pair);
    committed_rows(n1, 10);
    // node2's WAL receiver frozen: it holds its connection but confirms
    // nothing, so a fast shutdown of node1 waits for it (wal_sender_timeout).
    let receiver: i32 = n2
        .psql("select pid from pg_stat_wal_receiver")
        .parse()
        .expect("node2's WAL receiver pid");
    signal(receiver, "-STOP");

    // A writer on node1, a new session per row; a watcher of node1's Redis
    // role and of its postmaster.
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(Mutex::new(Writes::default()));
    let writer = {
        let (stop, writes, n1) = (stop.clone(), writes.clone(), n1.clone());
        std::thread::spawn(move || {
            for k in 11.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let ok = n1
                    .try_psql(&format!(
                        "set synchronous_commit = local; insert into acked values ({k})"
                    ))
                    .is_ok();
                writes
                    .lock()
                    .unwrap()
                    .attempts
                    .push((k, ok, Instant::now()));
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let old_pid = n1.postmaster_pid().expect("node1's postmaster");
    let seen = Arc::new(Mutex::new((None::<Instant>, None::<Instant>)));
    let watcher = {
        let (stop, seen, n1) = (stop.clone(), seen.clone(), n1.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let replica = n1
                    .try_redis_cli(&["info", "replication"])
                    .is_ok_and(|i| i.contains("role:slave"));
                let gone = n1.postmaster_pid() != Some(old_pid);
                let now = Instant::now();
                let mut s = seen.lock().unwrap();
                if replica && s.0.is_none() {
                    s.0 = Some(now);
                }
                if gone && s.1.is_none() {
                    s.1 = Some(now);
                }
                drop(s);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    // Some writes acknowledged before the demote.
    rapidpro_ha_harness::poll("writes before the demote", Duration::from_secs(30), || {
        (writes
            .lock()
            .unwrap()
            .attempts
            .iter()
            .filter(|a| a.1)
            .count()
            >= 5)
            .then_some(())
    });

    let began = Instant::now();
    let out = agent(n1, n1).meta("timeout", DEMOTE_TIMEOUT).run("demote");
    let took = began.elapsed();
    signal(receiver, "-CONT");
    // A few attempts on the standby node1 has become.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    watcher.join().unwrap();
    eprintln!(
        "demote with an unconfirming standby: {took:?}\n{}",
        out.stderr
    );
    out.assert_code(OCF_SUCCESS);
    assert!(took < FEW_SECONDS, "the demote took {took:?}");

    let (replica_at, gone_at) = *seen.lock().unwrap();
    let replica_at = replica_at.expect("node1's Redis became a replica");
    let gone_at = gone_at.expect("node1's old postmaster exited");
    assert!(
        replica_at < gone_at,
        "Redis became a replica {:?} after the demote began, the old postmaster was gone {:?} after",
        replica_at - began,
        gone_at - began
    );
    let writes = writes.lock().unwrap();
    let first_refused = writes
        .attempts
        .iter()
        .position(|a| !a.1)
        .expect("some write was refused");
    assert!(
        writes.attempts[first_refused..].iter().all(|a| !a.1),
        "a write was acknowledged after one was refused: {:?}",
        &writes.attempts[first_refused..]
    );
    assert!(
        writes.attempts[first_refused].2 < gone_at,
        "writes were still accepted until the old postmaster exited"
    );
    // No acknowledged commit lost: node1, restarted as a standby, has them.
    let acked: Vec<u32> = writes
        .attempts
        .iter()
        .filter(|a| a.1)
        .map(|a| a.0)
        .collect();
    let have = n1.psql(&format!(
        "select count(*) from acked where n = any(array{acked:?}::int[]) or n <= 10"
    ));
    assert_eq!(
        have,
        (acked.len() + 10).to_string(),
        "acknowledged rows lost"
    );
    assert_eq!(n1.psql("select pg_is_in_recovery()"), "t");
    let auto_conf = std::fs::read_to_string(n1.pgdata.join("postgresql.auto.conf")).unwrap();
    assert!(
        !auto_conf.contains("default_transaction_read_only"),
        "the standby's start left the demote's setting: {auto_conf}"
    );

    // A standby left read-only by a demote that did not finish (its
    // setting persisted, no start since) is writable once promoted.
    n1.psql("alter system set default_transaction_read_only = on");
    n1.psql("select pg_reload_conf()");
    agent(n1, n1).run("promote").assert_code(OCF_SUCCESS);
    agent(n1, n1)
        .run("monitor")
        .assert_code(OCF_RUNNING_PROMOTED);
    rapidpro_ha_harness::poll("node1 accepting writes", Duration::from_secs(5), || {
        n1.try_psql("insert into acked values (1000000)").ok()
    });
    assert_eq!(n1.psql("show default_transaction_read_only"), "off");
}
