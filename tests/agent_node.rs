//! One node's agent against real servers: start, stop, promote, demote,
//! monitor, notify, and the refusals that keep data safe.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rapidpro_ha_harness::{offline_cib, poll, Cluster, Node, Pair};

use super::{agent, bin, wait_redis_link, wait_streaming};

pub(crate) const OCF_SUCCESS: i32 = 0;
pub(crate) const OCF_ERR_GENERIC: i32 = 1;
const OCF_NOT_RUNNING: i32 = 7;
pub(crate) const OCF_RUNNING_PROMOTED: i32 = 8;
const OCF_FAILED_PROMOTED: i32 = 9;
const OCF_DEGRADED: i32 = 190;

/// Starts both nodes unpromoted, promotes node1, and waits until node2
/// streams from it.
pub(crate) fn primary_and_standby(pair: &Pair) {
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    agent(n1, n1).run("start").assert_code(OCF_SUCCESS);
    agent(n2, n1).run("start").assert_code(OCF_SUCCESS);
    agent(n1, n1).run("promote").assert_code(OCF_SUCCESS);
    post_promote(&[n1, n2], n1);
    wait_streaming(n2);
    wait_redis_link(n2);
}

/// The post-promote notification, on every node, as Pacemaker sends it.
pub(crate) fn post_promote(nodes: &[&Node], promoted: &Node) {
    for n in nodes {
        agent(n, promoted)
            .notify("post", "promote", &[("promote_uname", &promoted.name)])
            .run("notify")
            .assert_code(OCF_SUCCESS);
    }
}

/// Planned switchover from `old` to `new`, in Pacemaker's order: demote,
/// promote, post-promote notify.
fn switchover(old: &Node, new: &Node) {
    agent(old, new).run("demote").assert_code(OCF_SUCCESS);
    agent(new, new).run("promote").assert_code(OCF_SUCCESS);
    post_promote(&[old, new], new);
    wait_streaming(old);
    wait_redis_link(old);
}

#[test]
fn start_brings_both_nodes_up_unpromoted() {
    let pair = Pair::new("start_unpromoted");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    agent(n1, n1).run("start").assert_code(OCF_SUCCESS);
    agent(n2, n1).run("start").assert_code(OCF_SUCCESS);
    for n in [n1, n2] {
        assert_eq!(n.psql("select pg_is_in_recovery()"), "t", "{}", n.name);
        assert!(n.pgdata.join("standby.signal").exists());
        let info = n.redis_cli(&["info", "replication"]);
        assert!(info.contains("role:slave"), "{}: {info}", n.name);
        agent(n, n1).run("monitor").assert_code(OCF_SUCCESS);
    }
}

#[test]
fn start_never_makes_a_primary_even_on_a_primarys_data() {
    let pair = Pair::new("start_old_primary");
    let n1 = &pair.nodes[0];
    agent(n1, n1).run("start").assert_code(OCF_SUCCESS);
    agent(n1, n1).run("promote").assert_code(OCF_SUCCESS);
    agent(n1, n1).run("stop").assert_code(OCF_SUCCESS);
    assert!(!n1.pgdata.join("standby.signal").exists());
    agent(n1, n1).run("start").assert_code(OCF_SUCCESS);
    assert_eq!(n1.psql("select pg_is_in_recovery()"), "t");
    agent(n1, n1).run("monitor").assert_code(OCF_SUCCESS);
}

#[test]
fn promote_and_demote_both_ways_keep_rows_and_keys() {
    let pair = Pair::new("switchover");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    primary_and_standby(&pair);
    agent(n1, n1)
        .run("monitor")
        .assert_code(OCF_RUNNING_PROMOTED);
    agent(n2, n1).run("monitor").assert_code(OCF_SUCCESS);

    n1.psql("insert into sms(body) values ('before switchover')");
    n1.redis_cli(&["set", "k1", "v1"]);
    // Let the standby have it, as a synchronous commit would ensure.
    poll("row on node2", Duration::from_secs(30), || {
        (n2.try_psql("select count(*) from sms").ok()? == "1").then_some(())
    });
    poll("key on node2", Duration::from_secs(30), || {
        (n2.try_redis_cli(&["get", "k1"]).ok()? == "v1").then_some(())
    });

    switchover(n1, n2);
    agent(n2, n2)
        .run("monitor")
        .assert_code(OCF_RUNNING_PROMOTED);
    agent(n1, n2).run("monitor").assert_code(OCF_SUCCESS);
    assert_eq!(n2.psql("select body from sms"), "before switchover");
    assert_eq!(n2.redis_cli(&["get", "k1"]), "v1");
    assert_eq!(n2.psql("select pg_is_in_recovery()"), "f");
    n2.psql("insert into sms(body) values ('after switchover')");
    n2.redis_cli(&["set", "k2", "v2"]);

    switchover(n2, n1);
    agent(n1, n1)
        .run("monitor")
        .assert_code(OCF_RUNNING_PROMOTED);
    agent(n2, n1).run("monitor").assert_code(OCF_SUCCESS);
    assert_eq!(n1.psql("select count(*) from sms"), "2");
    assert_eq!(n1.redis_cli(&["get", "k2"]), "v2");
    // Timeline 1 in the template, 2 on node1's first promotion, 3 on
    // node2, 4 back on node1.
    assert_eq!(
        n1.psql("select substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"),
        "00000004"
    );
}

#[test]
fn actions_are_idempotent() {
    let pair = Pair::new("idempotent");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    for _ in 0..2 {
        agent(n1, n1).run("start").assert_code(OCF_SUCCESS);
    }
    agent(n2, n1).run("start").assert_code(OCF_SUCCESS);
    for _ in 0..2 {
        agent(n1, n1).run("promote").assert_code(OCF_SUCCESS);
        agent(n1, n1)
            .run("monitor")
            .assert_code(OCF_RUNNING_PROMOTED);
    }
    for _ in 0..2 {
        agent(n1, n1).run("demote").assert_code(OCF_SUCCESS);
        agent(n1, n1).run("monitor").assert_code(OCF_SUCCESS);
    }
    // Demoting an instance that was never promoted is fine too.
    agent(n2, n1).run("demote").assert_code(OCF_SUCCESS);
    for n in [n1, n2] {
        for _ in 0..2 {
            agent(n, n1).run("stop").assert_code(OCF_SUCCESS);
            agent(n, n1).run("monitor").assert_code(OCF_NOT_RUNNING);
        }
        assert!(n.postmaster_pid().is_none() && n.redis_pid().is_none());
    }
}

#[test]
fn probes_report_stopped_unpromoted_and_promoted() {
    let pair = Pair::new("probes");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    let probe = |n: &Node| {
        n.agent(bin())
            .primary(n1)
            .meta("interval", "0")
            .run("monitor")
    };
    probe(n1).assert_code(OCF_NOT_RUNNING);
    probe(n2).assert_code(OCF_NOT_RUNNING);
    primary_and_standby(&pair);
    probe(n1).assert_code(OCF_RUNNING_PROMOTED);
    probe(n2).assert_code(OCF_SUCCESS);
}

#[test]
fn a_killed_postmaster_fails_the_monitor_and_stop_still_succeeds() {
    let pair = Pair::new("kill_postmaster");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    primary_and_standby(&pair);

    n1.kill9_postgres();
    let out = agent(n1, n1).run("monitor");
    out.assert_code(OCF_FAILED_PROMOTED);
    out.assert_reason_contains("postmaster");
    agent(n1, n1).run("stop").assert_code(OCF_SUCCESS);
    agent(n1, n1).run("monitor").assert_code(OCF_NOT_RUNNING);

    n2.kill9_postgres();
    agent(n2, n1).run("monitor").assert_code(OCF_ERR_GENERIC);
    agent(n2, n1).run("stop").assert_code(OCF_SUCCESS);
    agent(n2, n1).run("monitor").assert_code(OCF_NOT_RUNNING);

    // The crashed old primary comes back as a standby, with its data.
    agent(n1, n1).run("start").assert_code(OCF_SUCCESS);
    assert_eq!(n1.psql("select pg_is_in_recovery()"), "t");

    // Everything killed, as by a power loss: the pid files are stale. A
    // probe finds nothing running (no failure counted against
    // migration-threshold at every reboot); a recurring monitor fails.
    n1.kill9_postgres();
    n1.kill9_redis();
    agent(n1, n1)
        .meta("interval", "0")
        .run("monitor")
        .assert_code(OCF_NOT_RUNNING);
    agent(n1, n1).run("monitor").assert_code(OCF_ERR_GENERIC);
    agent(n1, n1).run("start").assert_code(OCF_SUCCESS);
    agent(n1, n1).run("monitor").assert_code(OCF_SUCCESS);
}

#[test]
fn a_second_primary_at_primary_host_blocks_promote_even_when_pacemaker_lists_its_role_leaving() {
    let pair = Pair::new("two_masters");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    primary_and_standby(&pair);
    let out = agent(n2, n1).run("promote");
    out.assert_code(OCF_ERR_GENERIC);
    out.assert_reason_contains("writable primary already answers");
    // The promote's own lists (as Pacemaker 2.1 gives them with
    // notify=true) say node1's role leaves in this transition, as in a
    // power-off: the probe's window shrinks to 0.05 s, and the primary
    // that still answers there is found all the same.
    let out = agent(n2, n1)
        .meta("notify_promoted_uname", &n1.name)
        .meta("notify_demote_uname", &n1.name)
        .meta("notify_stop_uname", &n1.name)
        .meta("notify_promote_uname", &n2.name)
        .run("promote");
    out.assert_code(OCF_ERR_GENERIC);
    out.assert_reason_contains("writable primary already answers");
    assert!(
        out.stderr.contains("0.05 s window"),
        "the shorter window was not taken:\n{out}"
    );
    assert_eq!(n2.psql("select pg_is_in_recovery()"), "t");
    assert!(n2
        .redis_cli(&["info", "replication"])
        .contains("role:slave"));
}

/// Three nodes sharing an offline CIB, node1 primary, node2 and node3
/// streaming.
fn three_nodes(name: &str) -> (Cluster, std::path::PathBuf) {
    let c = Cluster::new(name, 3);
    let cib = offline_cib(c.dir.path(), &["node1", "node2", "node3"]);
    let n = &c.nodes;
    let a = |node: &Node| agent(node, &n[0]).env("CIB_file", cib.display().to_string());
    a(&n[0]).run("start").assert_code(OCF_SUCCESS);
    a(&n[1]).run("start").assert_code(OCF_SUCCESS);
    a(&n[2]).run("start").assert_code(OCF_SUCCESS);
    a(&n[0]).run("promote").assert_code(OCF_SUCCESS);
    wait_streaming(&n[1]);
    wait_streaming(&n[2]);
    (c, cib)
}

fn score(cib: &Path, node: &str) -> Option<String> {
    let out = std::process::Command::new("crm_attribute")
        .args(["-N", node, "-n", "master-stack", "-l", "reboot", "-G", "-q"])
        .env("CIB_file", cib)
        .output()
        .expect("crm_attribute runs");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The primary is gone; Pacemaker notifies the standbys before promoting
/// `target`.
fn failover_to(c: &Cluster, cib: &Path, target: &Node) -> rapidpro_ha_harness::AgentOutput {
    let n = &c.nodes;
    agent(&n[0], &n[0]).run("stop").assert_code(OCF_SUCCESS);
    let lists = [
        ("promote_uname", target.name.as_str()),
        ("unpromoted_uname", "node2 node3"),
        ("active_uname", "node2 node3"),
    ];
    for node in &n[1..] {
        agent(node, target)
            .env("CIB_file", cib.display().to_string())
            .notify("pre", "promote", &lists)
            .run("notify")
            .assert_code(OCF_SUCCESS);
    }
    agent(target, target)
        .env("CIB_file", cib.display().to_string())
        .run("promote")
}

#[test]
fn in_a_switchover_the_demote_leaves_its_score_to_the_promote_which_lowers_it_before_its_own() {
    // Every score written during Pacemaker's transition aborts it; the
    // demote's would stop the VIP only after the promotion.
    let (c, cib) = three_nodes("handover_scores");
    let n = &c.nodes;
    let a = |node: &Node| agent(node, &n[1]).env("CIB_file", cib.display().to_string());
    a(&n[0]).run("monitor").assert_code(OCF_RUNNING_PROMOTED);
    assert_eq!(score(&cib, "node1").as_deref(), Some("1001"));
    let lists = [
        ("demote_uname", "node1"),
        ("promote_uname", "node2"),
        ("promoted_uname", "node1"),
        ("unpromoted_uname", "node2 node3"),
        ("active_uname", "node1 node2 node3"),
    ];
    // Every node's notification, as Pacemaker sends them.
    let notify_all = |kind: &str, op: &str| {
        for node in n {
            a(node)
                .notify(kind, op, &lists)
                .run("notify")
                .assert_code(OCF_SUCCESS);
        }
    };
    notify_all("pre", "demote");
    a(&n[0]).run("demote").assert_code(OCF_SUCCESS);
    assert_eq!(
        score(&cib, "node1").as_deref(),
        Some("1001"),
        "the demote wrote a score during the transition"
    );
    notify_all("post", "demote");
    notify_all("pre", "promote");
    a(&n[1]).run("promote").assert_code(OCF_SUCCESS);
    assert_eq!(score(&cib, "node1").as_deref(), Some("1"));
    assert_eq!(score(&cib, "node2").as_deref(), Some("1001"));
    // A demote with no promotion elsewhere in its transition (quorum lost,
    // or a recovery in place) scores itself at once, as before.
    a(&n[1])
        .notify(
            "pre",
            "demote",
            &[("demote_uname", "node2"), ("promoted_uname", "node2")],
        )
        .run("notify")
        .assert_code(OCF_SUCCESS);
    a(&n[1]).run("demote").assert_code(OCF_SUCCESS);
    assert_eq!(score(&cib, "node2").as_deref(), Some("1"));
}

#[test]
fn a_standby_with_paused_replay_is_refused_promotion() {
    let (c, cib) = three_nodes("paused_standby");
    let n = &c.nodes;
    n[2].psql("select pg_wal_replay_pause()");
    for i in 0..50 {
        n[0].psql(&format!("insert into sms(body) values ('row {i}')"));
    }
    poll("node2 replays every row", Duration::from_secs(30), || {
        (n[1].try_psql("select count(*) from sms").ok()? == "50").then_some(())
    });
    // The primary's monitor scores the standbys from their lag.
    agent(&n[0], &n[0])
        .env("CIB_file", cib.display().to_string())
        .run("monitor")
        .assert_code(OCF_RUNNING_PROMOTED);
    assert_eq!(score(&cib, "node1").as_deref(), Some("1001"));
    assert_eq!(score(&cib, "node2").as_deref(), Some("1000"));

    let out = failover_to(&c, &cib, &n[2]);
    out.assert_code(OCF_ERR_GENERIC);
    out.assert_reason_contains("node2 is ahead");
    assert_eq!(n[2].psql("select pg_is_in_recovery()"), "t");
    // The promotion is handed to node2.
    assert_eq!(score(&cib, "node2").as_deref(), Some("1005"));
    assert_eq!(score(&cib, "node3").as_deref(), Some("1"));
    agent(&n[1], &n[1])
        .env("CIB_file", cib.display().to_string())
        .run("promote")
        .assert_code(OCF_SUCCESS);
    assert_eq!(n[1].psql("select count(*) from sms"), "50");
}

#[test]
fn a_standby_with_a_lower_lsn_is_refused_promotion() {
    let (c, cib) = three_nodes("lower_lsn");
    let n = &c.nodes;
    // node3 stops; the primary goes on writing; node3 comes back after the
    // primary is gone, with less WAL than node2.
    agent(&n[2], &n[0]).run("stop").assert_code(OCF_SUCCESS);
    for i in 0..20 {
        n[0].psql(&format!("insert into sms(body) values ('row {i}')"));
    }
    poll("node2 has every row", Duration::from_secs(30), || {
        (n[1].try_psql("select count(*) from sms").ok()? == "20").then_some(())
    });
    agent(&n[0], &n[0]).run("stop").assert_code(OCF_SUCCESS);
    agent(&n[2], &n[2]).run("start").assert_code(OCF_SUCCESS);
    let out = failover_to(&c, &cib, &n[2]);
    out.assert_code(OCF_ERR_GENERIC);
    out.assert_reason_contains("node2 is ahead");
    assert_eq!(n[2].psql("select count(*) from sms"), "0");
}

/// Digest of every file in a data directory: contents and names.
fn digest(dir: &Path) -> BTreeMap<String, u64> {
    use std::hash::{Hash, Hasher};
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(&p).unwrap_or_default().hash(&mut h);
                out.insert(
                    p.strip_prefix(dir).unwrap().display().to_string(),
                    h.finish(),
                );
            }
        }
    }
    out
}

/// node1 writes WAL node2 never receives, then node2 becomes the primary
/// on a new timeline: node1's history has diverged.
pub(crate) fn diverge(pair: &Pair) {
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    primary_and_standby(pair);
    n1.psql("insert into sms(body) values ('shared')");
    poll("node2 has the shared row", Duration::from_secs(30), || {
        (n2.try_psql("select count(*) from sms").ok()? == "1").then_some(())
    });
    agent(n2, n1).run("stop").assert_code(OCF_SUCCESS);
    n1.psql("insert into sms(body) values ('only on the old primary')");
    n1.psql("checkpoint");
    agent(n1, n1).run("stop").assert_code(OCF_SUCCESS);
    agent(n2, n2).run("start").assert_code(OCF_SUCCESS);
    agent(n2, n2).run("promote").assert_code(OCF_SUCCESS);
    post_promote(&[n2], n2);
    n2.psql("insert into sms(body) values ('on the new primary')");
}

/// Without rewind, start refuses a diverged node with the reason and does
/// not run it. A cleanly stopped node's data directory is left untouched;
/// a crashed one's only gets its crash recovery finished (`crashed`).
fn assert_refused(n1: &Node, n2: &Node, crashed: bool) -> rapidpro_ha_harness::AgentOutput {
    let before = digest(&n1.pgdata);
    let out = agent(n1, n2).param("rewind", "false").run("start");
    out.assert_code(OCF_ERR_GENERIC);
    out.assert_reason_contains("diverged");
    out.assert_reason_contains("rebuild");
    assert!(
        n1.postmaster_pid().is_none(),
        "the diverged node must not run"
    );
    if !crashed {
        let after = digest(&n1.pgdata);
        let changed: Vec<_> = after
            .iter()
            .filter(|(f, h)| before.get(*f) != Some(h))
            .map(|(f, _)| f)
            .chain(before.keys().filter(|f| !after.contains_key(*f)))
            .collect();
        assert!(
            changed.is_empty(),
            "the data directory was modified: {changed:?}"
        );
    }
    out
}

/// With rewind, start rewinds a diverged node, which then streams the new
/// primary's rows and has lost its own unsent one.
fn assert_rejoins_with_rewind(n1: &Node, n2: &Node) -> rapidpro_ha_harness::AgentOutput {
    let out = agent(n1, n2).param("rewind", "true").run("start");
    out.assert_code(OCF_SUCCESS);
    wait_streaming(n1);
    poll(
        "node1 has the new primary's row",
        Duration::from_secs(30),
        || {
            let rows = n1.try_psql("select body from sms order by id").ok()?;
            rows.contains("on the new primary").then_some(rows)
        },
    );
    let rows = n1.psql("select body from sms order by id");
    assert!(!rows.contains("only on the old primary"), "{rows}");
    wait_redis_link(n1);
    agent(n1, n2).run("monitor").assert_code(OCF_SUCCESS);
    out
}

/// node1, the primary, commits a row node2 never receives and is killed;
/// node2 is promoted. With `demote_first`, node1 is first demoted and
/// stopped while nothing answers at primary_host, as Pacemaker does when
/// the failure bans it (the VIP is already gone).
fn crash_diverge(pair: &Pair, demote_first: bool) {
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    primary_and_standby(pair);
    agent(n2, n1).run("stop").assert_code(OCF_SUCCESS);
    n1.psql("insert into sms(body) values ('only on the old primary')");
    // A last record that dirties no page, as a commit often is.
    n1.psql("select pg_logical_emit_message(true, 'rapidpro', 'unsent')");
    n1.kill9_postgres();
    if demote_first {
        agent(n1, n2).run("demote").assert_code(OCF_SUCCESS);
    }
    agent(n1, n2).run("stop").assert_code(OCF_SUCCESS);
    agent(n2, n2).run("start").assert_code(OCF_SUCCESS);
    agent(n2, n2).run("promote").assert_code(OCF_SUCCESS);
    post_promote(&[n2], n2);
    n2.psql("insert into sms(body) values ('on the new primary')");
}

#[test]
fn a_diverged_old_primary_is_refused_and_left_untouched_without_rewind() {
    let pair = Pair::new("diverged_norewind");
    diverge(&pair);
    assert_refused(&pair.nodes[0], &pair.nodes[1], false);
}

#[test]
fn a_diverged_old_primary_rejoins_with_rewind() {
    let pair = Pair::new("diverged_rewind");
    diverge(&pair);
    assert_rejoins_with_rewind(&pair.nodes[0], &pair.nodes[1]);
}

#[test]
fn a_crashed_diverged_old_primary_is_refused_too() {
    let pair = Pair::new("diverged_crash");
    crash_diverge(&pair, false);
    assert_refused(&pair.nodes[0], &pair.nodes[1], true);
    assert_rejoins_with_rewind(&pair.nodes[0], &pair.nodes[1]);
}

/// The demote must not hide the crashed primary's unsent WAL: it comes
/// back as a standby, and a later start against the new primary must
/// still find the divergence (a CI run once saw it start and loop on
/// "forked off before current recovery point").
#[test]
fn a_crashed_primary_demoted_before_the_promotion_is_still_found_diverged() {
    let pair = Pair::new("diverged_demoted");
    crash_diverge(&pair, true);
    assert_refused(&pair.nodes[0], &pair.nodes[1], false);
    assert_rejoins_with_rewind(&pair.nodes[0], &pair.nodes[1]);
}

/// A cut-off primary demotes (nothing answers at primary_host) and restarts
/// as a standby, then is fenced before it rejoins: its data, crashed in
/// recovery on the old timeline, still holds the WAL nobody received. The
/// start against the new primary must find the divergence, and rewind it or
/// refuse (a CI run saw such a fenced primary start without a check and
/// never stream: "forked off before current recovery point").
fn demoted_alone_then_crashed(name: &str) -> Pair {
    let pair = Pair::new(name);
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    primary_and_standby(&pair);
    agent(n2, n1).run("stop").assert_code(OCF_SUCCESS);
    n1.psql("insert into sms(body) values ('only on the old primary')");
    n1.psql("select pg_logical_emit_message(true, 'rapidpro', 'unsent')");
    agent(n1, n2).run("demote").assert_code(OCF_SUCCESS);
    n1.kill9_postgres();
    n1.kill9_redis();
    agent(n2, n2).run("start").assert_code(OCF_SUCCESS);
    agent(n2, n2).run("promote").assert_code(OCF_SUCCESS);
    post_promote(&[n2], n2);
    n2.psql("insert into sms(body) values ('on the new primary')");
    pair
}

#[test]
fn a_primary_demoted_alone_then_crashed_as_a_standby_is_found_diverged_and_rewound() {
    let pair = demoted_alone_then_crashed("demoted_crashed_rewind");
    let out = assert_rejoins_with_rewind(&pair.nodes[0], &pair.nodes[1]);
    for said in ["replaying its own WAL alone", "rewinding it with pg_rewind"] {
        assert!(out.stderr.contains(said), "{said:?} in {}", out.stderr);
    }
}

#[test]
fn a_primary_demoted_alone_then_crashed_as_a_standby_is_refused_without_rewind() {
    let pair = demoted_alone_then_crashed("demoted_crashed_norewind");
    let out = assert_refused(&pair.nodes[0], &pair.nodes[1], true);
    assert!(
        out.stderr.contains("replaying its own WAL alone"),
        "{}",
        out.stderr
    );
}

/// The heal of a cut-off primary (`cluster_cutoff` saw it under load):
/// node1 diverged, and its `pg_wal` holds the history of node2's new
/// timeline (its WAL receiver fetched it as the link came back), but
/// nothing answers at primary_host when it starts (Pacemaker was
/// recovering the VIP, whose start waited for this very start).
/// PostgreSQL refuses such data with `recovery_target_timeline=latest`
/// ("requested timeline 2 is not a child of this server's history"): the
/// start failed, and the failed start banned the node. It must start on its
/// own timeline and never be a candidate; once the primary answers, its
/// monitor fails, and the restart Pacemaker then runs rewinds it.
#[test]
fn a_diverged_node_holding_the_new_timelines_history_starts_alone_then_its_monitor_has_it_rewound()
{
    use std::os::unix::fs::MetadataExt;
    let pair = Pair::new("diverged_history");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    diverge(&pair);
    let tl: u32 = n2
        .psql("select timeline_id from pg_control_checkpoint()")
        .parse()
        .unwrap();
    let name = format!("{tl:08X}.history");
    let copy = n1.pgdata.join("pg_wal").join(&name);
    std::fs::copy(n2.pgdata.join("pg_wal").join(&name), &copy).unwrap();
    let owner = std::fs::metadata(&n1.pgdata).unwrap();
    std::os::unix::fs::chown(&copy, Some(owner.uid()), Some(owner.gid())).unwrap();
    let cib = offline_cib(pair.dir.path(), &["node1", "node2"]);
    let cib_env = cib.display().to_string();

    // Nothing answers at primary_host: a closed port, as the VIP's address
    // while Pacemaker recovers it (node1 itself would serve its own WAL).
    let closed = rapidpro_ha_harness::free_port().to_string();
    let out = agent(n1, n1)
        .param("primary_port", &closed)
        .env("CIB_file", &cib_env)
        .run("start");
    out.assert_code(OCF_SUCCESS);
    assert!(out.stderr.contains("on its own timeline"), "{}", out.stderr);
    assert!(n1.postmaster_pid().is_some(), "node1's PostgreSQL must run");
    assert_eq!(
        score(&cib, "node1"),
        None,
        "data past the new timeline's fork must never be a promotion candidate"
    );
    // Nor does its monitor make it one while no primary answers.
    agent(n1, n1)
        .param("primary_port", &closed)
        .env("CIB_file", &cib_env)
        .run("monitor")
        .assert_code(OCF_SUCCESS);
    assert_eq!(
        score(&cib, "node1"),
        None,
        "the monitor of a node past the fork made it a promotion candidate"
    );

    // The primary answers at primary_host now.
    let monitor = |rewind: &str| {
        agent(n1, n2)
            .param("rewind", rewind)
            .env("CIB_file", &cib_env)
            .run("monitor")
    };
    // Without rewind nothing can fix it but a rebuild: degraded, with the fix.
    let out = monitor("false");
    out.assert_code(OCF_DEGRADED);
    out.assert_reason_contains("rapidproctl rebuild");
    // With it, a failure: Pacemaker restarts it, and the start rewinds.
    let out = monitor("true");
    out.assert_code(OCF_ERR_GENERIC);
    out.assert_reason_contains("rewinds");
    agent(n1, n2).run("stop").assert_code(OCF_SUCCESS);
    let out = assert_rejoins_with_rewind(n1, n2);
    assert!(
        out.stderr.contains("rewinding it with pg_rewind"),
        "{}",
        out.stderr
    );
}

/// node1 moves to a new timeline while node2 is down: demoted (nothing
/// answers), then promoted again.
fn new_timeline_on(n1: &Node) {
    let before = n1.psql("select timeline_id from pg_control_checkpoint()");
    agent(n1, n1).run("demote").assert_code(OCF_SUCCESS);
    agent(n1, n1).run("promote").assert_code(OCF_SUCCESS);
    n1.psql("checkpoint");
    let after = n1.psql("select timeline_id from pg_control_checkpoint()");
    assert_ne!(before, after, "node1 did not change timeline");
}

/// A standby down during a failover is on an older timeline than the new
/// primary. Cleanly stopped, its history is checked and it follows; crashed,
/// it first replays its own WAL alone and is stopped cleanly (pg_rewind
/// reads only cleanly stopped data), then is checked the same way (a CI run
/// once failed the start of a fenced standby on that check).
#[test]
fn a_standby_down_during_a_failover_follows_the_new_timeline_stopped_or_crashed() {
    let pair = Pair::new("older_timeline");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    primary_and_standby(&pair);
    for crashed in [true, false] {
        n1.psql("insert into sms(body) values ('before')");
        wait_streaming(n2);
        if crashed {
            n2.kill9_postgres();
            n2.kill9_redis();
        } else {
            agent(n2, n1).run("stop").assert_code(OCF_SUCCESS);
        }
        new_timeline_on(n1);
        let body = format!("after, crashed={crashed}");
        n1.psql(&format!("insert into sms(body) values ('{body}')"));
        let out = agent(n2, n1).run("start");
        out.assert_code(OCF_SUCCESS);
        if crashed {
            assert!(
                out.stderr.contains("replaying its own WAL alone"),
                "{}",
                out.stderr
            );
        }
        assert!(out.stderr.contains("no rewind required"), "{}", out.stderr);
        wait_streaming(n2);
        poll(
            "node2 has the new timeline's row",
            Duration::from_secs(30),
            || {
                let rows = n2.try_psql("select body from sms").ok()?;
                rows.contains(&body).then_some(())
            },
        );
        wait_redis_link(n2);
        agent(n2, n1).run("monitor").assert_code(OCF_SUCCESS);
    }
}

/// pg_ctl reports a standby started, then its postmaster exits (as when
/// the startup process hits a full disk during WAL redo): start fails at
/// once with the reason, not at the end of its timeout (a soak run saw a
/// start hang with PostgreSQL long gone).
#[test]
fn a_postgres_that_exits_after_starting_fails_the_start_at_once() {
    let pair = Pair::new("exits_after_start");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    primary_and_standby(&pair);
    agent(n2, n1).run("stop").assert_code(OCF_SUCCESS);
    // The agent's own connections are refused: start keeps waiting for
    // PostgreSQL to answer until it is killed.
    let hba = n2.pgdata.join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(&hba, format!("local all all reject\n{old}")).unwrap();
    let (out, after_kill) = std::thread::scope(|s| {
        let start = s.spawn(|| agent(n2, n1).meta("timeout", "60000").run("start"));
        poll("node2's postmaster up", Duration::from_secs(30), || {
            n2.postmaster_pid()
        });
        std::thread::sleep(Duration::from_secs(2));
        assert!(
            !start.is_finished(),
            "start returned while it cannot connect"
        );
        n2.kill9_postgres();
        let killed = std::time::Instant::now();
        let out = start.join().unwrap();
        (out, killed.elapsed())
    });
    out.assert_code(OCF_ERR_GENERIC);
    out.assert_reason_contains("exited");
    assert!(
        after_kill < Duration::from_secs(10),
        "start took {after_kill:?} to notice that PostgreSQL exited"
    );
    std::fs::write(&hba, old).unwrap();
    agent(n2, n1).run("stop").assert_code(OCF_SUCCESS);
    agent(n2, n1).run("start").assert_code(OCF_SUCCESS);
    wait_streaming(n2);
}

/// A replication break is reported degraded only once it outlasts two
/// monitor intervals (here 1 s): not at the first monitor, nor by a probe.
#[track_caller]
fn assert_degraded_after_two_intervals(node: &Node, primary: &Node, reason: &str) {
    let monitor = || agent(node, primary).meta("interval", "1000").run("monitor");
    monitor().assert_code(OCF_SUCCESS);
    node.agent(bin())
        .primary(primary)
        .meta("interval", "0")
        .run("monitor")
        .assert_code(OCF_SUCCESS);
    std::thread::sleep(Duration::from_millis(2100));
    let out = monitor();
    out.assert_code(OCF_DEGRADED);
    out.assert_reason_contains(reason);
}

#[test]
fn a_broken_redis_link_is_degraded_while_the_master_answers() {
    let pair = Pair::new("redis_link");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    primary_and_standby(&pair);
    agent(n2, n1).run("monitor").assert_code(OCF_SUCCESS);
    // Point the replica somewhere no master answers.
    let closed = rapidpro_ha_harness::free_port().to_string();
    n2.redis_cli(&["replicaof", "127.0.0.1", &closed]);
    poll("link down", Duration::from_secs(10), || {
        let i = n2.try_redis_cli(&["info", "replication"]).ok()?;
        i.contains("master_link_status:down").then_some(())
    });
    assert_degraded_after_two_intervals(n2, n1, "Redis replica link down");
    // The post-promote notification re-points it.
    agent(n2, n1)
        .notify("post", "promote", &[("promote_uname", "node1")])
        .run("notify")
        .assert_code(OCF_SUCCESS);
    wait_redis_link(n2);
    agent(n2, n1).run("monitor").assert_code(OCF_SUCCESS);
}

#[test]
fn a_standby_not_streaming_from_a_live_primary_is_degraded() {
    let pair = Pair::new("pg_link");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    primary_and_standby(&pair);
    let closed = rapidpro_ha_harness::free_port();
    n2.psql(&format!(
        "alter system set primary_conninfo = 'host=127.0.0.1 port={closed} user=replicator'"
    ));
    n2.psql("select pg_reload_conf()");
    poll("node2 stops streaming", Duration::from_secs(30), || {
        let s = n2
            .try_psql("select count(*) from pg_stat_wal_receiver where status = 'streaming'")
            .ok()?;
        (s == "0").then_some(())
    });
    assert_degraded_after_two_intervals(n2, n1, "not streaming");
    // With no primary at all, a lone standby is not degraded: it may be
    // the next primary.
    agent(n1, n1).run("stop").assert_code(OCF_SUCCESS);
    agent(n2, n1).run("monitor").assert_code(OCF_SUCCESS);
}

#[test]
fn a_killed_redis_fails_the_promoted_monitor() {
    let pair = Pair::new("kill_redis");
    let (n1, _) = (&pair.nodes[0], &pair.nodes[1]);
    primary_and_standby(&pair);
    n1.kill9_redis();
    let out = agent(n1, n1).run("monitor");
    out.assert_code(OCF_FAILED_PROMOTED);
    out.assert_reason_contains("Redis");
    agent(n1, n1).run("demote").assert_code(OCF_SUCCESS);
    agent(n1, n1).run("promote").assert_code(OCF_SUCCESS);
    agent(n1, n1)
        .run("monitor")
        .assert_code(OCF_RUNNING_PROMOTED);
}

/// [`primary_and_standby`], then the primary's monitor, after which
/// commits wait for the standby (`sync_replication=on`).
fn synchronous_pair(name: &str) -> Pair {
    let pair = Pair::new(name);
    let n1 = &pair.nodes[0];
    primary_and_standby(&pair);
    agent(n1, n1)
        .run("monitor")
        .assert_code(OCF_RUNNING_PROMOTED);
    assert_eq!(n1.psql("show synchronous_standby_names"), "ANY 1 (*)");
    pair
}

#[test]
fn sync_replication_on_waits_for_a_streaming_standby_only() {
    let pair = synchronous_pair("sync_on");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    poll(
        "node2 is a synchronous standby",
        Duration::from_secs(30),
        || {
            let s = n1
                .try_psql("select sync_state from pg_stat_replication")
                .ok()?;
            (s == "quorum").then_some(())
        },
    );
    agent(n2, n1).run("stop").assert_code(OCF_SUCCESS);
    agent(n1, n1)
        .run("monitor")
        .assert_code(OCF_RUNNING_PROMOTED);
    assert_eq!(n1.psql("show synchronous_standby_names"), "");
    // Writes go on without a standby.
    n1.psql("insert into sms(body) values ('alone')");
}

/// Holds `lock` with `flock(1)` for `secs`, as the watcher's sync would,
/// and returns once it is held.
fn hold_lock(lock: &Path, secs: &str) -> std::process::Child {
    let holder = std::process::Command::new("flock")
        .arg(lock)
        .args(["sleep", secs])
        .spawn()
        .unwrap();
    poll("the lock is held", Duration::from_secs(5), || {
        (!lock_is_free(lock)?).then_some(())
    });
    holder
}

/// Whether nobody holds `lock` (`flock(1)` without waiting); None if it
/// could not be asked.
fn lock_is_free(lock: &Path) -> Option<bool> {
    let status = std::process::Command::new("flock")
        .args(["--nonblock", "--conflict-exit-code", "75"])
        .arg(lock)
        .arg("true")
        .status()
        .ok()?;
    match status.code() {
        Some(0) => Some(true),
        Some(75) => Some(false),
        _ => None,
    }
}

/// CI saw a monitor that observed before a standby streamed write its view
/// after the watcher had made that standby promotable: a stale mark and a
/// -1000, and no promotable node when the primary was lost.
#[test]
fn a_primary_monitor_writes_its_view_of_the_standbys_only_under_the_sync_lock() {
    let pair = synchronous_pair("sync_lock");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    agent(n2, n1).run("stop").assert_code(OCF_SUCCESS);
    let lock = n1.state_dir.join("stack.sync.lock");
    // Held for 1.5 s: the monitor waits, then syncs what it sees after.
    let mut holder = hold_lock(&lock, "1.5");
    let monitor = {
        let n1 = n1.clone();
        std::thread::spawn(move || agent(&n1, &n1).run("monitor"))
    };
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        n1.psql("show synchronous_standby_names"),
        "ANY 1 (*)",
        "the monitor synced while another held the sync lock"
    );
    monitor.join().unwrap().assert_code(OCF_RUNNING_PROMOTED);
    holder.wait().unwrap();
    assert_eq!(n1.psql("show synchronous_standby_names"), "");
    // Held for longer than the monitor waits: it syncs without the lock
    // rather than fail the primary, and says so.
    let mut holder = hold_lock(&lock, "8");
    let out = agent(n1, n1).run("monitor");
    out.assert_code(OCF_RUNNING_PROMOTED);
    assert!(
        out.stderr.contains("syncing the standbys without it"),
        "{out}"
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
}

#[test]
fn sync_replication_strict_is_degraded_without_a_standby() {
    let pair = Pair::new("sync_strict");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    primary_and_standby(&pair);
    agent(n2, n1).run("stop").assert_code(OCF_SUCCESS);
    let out = agent(n1, n1)
        .param("sync_replication", "strict")
        .run("monitor");
    out.assert_code(191);
    out.assert_reason_contains("strict");
    assert_eq!(n1.psql("show synchronous_standby_names"), "ANY 1 (*)");
}

#[test]
fn the_steady_state_monitor_makes_no_process_and_execs_nothing_but_itself() {
    let (c, cib) = three_nodes("strace_monitor");
    let n = &c.nodes;
    wait_redis_link(&n[1]);
    let cib_env = cib.display().to_string();
    for node in [&n[0], &n[1]] {
        // The first monitor may set scores; the next ones must not.
        agent(node, &n[0])
            .env("CIB_file", cib_env.clone())
            .run("monitor");
        let log = c.dir.path().join(format!("strace-{}.log", node.name));
        let out = agent(node, &n[0])
            .env("CIB_file", cib_env.clone())
            .strace(&log)
            .run("monitor");
        out.assert_code(if node.name == "node1" {
            OCF_RUNNING_PROMOTED
        } else {
            OCF_SUCCESS
        });
        let trace = std::fs::read_to_string(&log).unwrap();
        let execs: Vec<&str> = trace
            .lines()
            .filter(|l| l.contains("execve(") && !l.contains("= -1"))
            .collect();
        assert_eq!(execs.len(), 1, "{}: {execs:#?}", node.name);
        assert!(execs[0].contains("rapidpro-agent"), "{execs:?}");
        // Threads are allowed (Redis is asked on one while PostgreSQL
        // answers); a process is not, even one that never execs.
        let (threads, processes) = clones(&trace);
        assert!(
            processes.is_empty(),
            "{}: the steady-state monitor made a process: {processes:#?}",
            node.name
        );
        assert!(
            !threads.is_empty(),
            "{}: no clone traced at all, so the trace proves nothing:\n{trace}",
            node.name
        );
    }
}

/// The successful clones in an strace log (`fork`, `vfork`, `clone`,
/// `clone3`), as (threads, processes): a thread shares its creator's
/// thread group (`CLONE_THREAD`); anything else is a new process.
fn clones(trace: &str) -> (Vec<&str>, Vec<&str>) {
    trace
        .lines()
        .filter(|l| {
            ["fork(", "vfork(", "clone(", "clone3("]
                .iter()
                .any(|call| l.contains(call))
        })
        .filter(|l| !l.contains("= -1"))
        .partition(|l| l.contains("CLONE_THREAD"))
}

#[test]
fn debian_layout_with_the_configuration_apart_from_the_data_works() {
    let pair = Pair::new("debian_layout");
    let n1 = &pair.nodes[0];
    // /etc/postgresql/15/main style: postgresql.conf elsewhere, pointing at
    // the data directory with data_directory, hba_file and ident_file.
    let conf = n1.dir.join("etc");
    std::fs::create_dir_all(&conf).unwrap();
    for f in ["postgresql.conf", "pg_hba.conf", "pg_ident.conf"] {
        std::fs::rename(n1.pgdata.join(f), conf.join(f)).unwrap();
    }
    let mut pgconf = std::fs::read_to_string(conf.join("postgresql.conf")).unwrap();
    pgconf.push_str(&format!(
        "data_directory = '{}'\nhba_file = '{}'\nident_file = '{}'\n",
        n1.pgdata.display(),
        conf.join("pg_hba.conf").display(),
        conf.join("pg_ident.conf").display()
    ));
    std::fs::write(conf.join("postgresql.conf"), pgconf).unwrap();
    let a = || agent(n1, n1).param("datadir", conf.display().to_string());
    a().run("validate-all").assert_code(OCF_SUCCESS);
    a().run("start").assert_code(OCF_SUCCESS);
    a().run("promote").assert_code(OCF_SUCCESS);
    a().run("monitor").assert_code(OCF_RUNNING_PROMOTED);
    a().run("demote").assert_code(OCF_SUCCESS);
    a().run("monitor").assert_code(OCF_SUCCESS);
    a().run("stop").assert_code(OCF_SUCCESS);
    a().run("monitor").assert_code(OCF_NOT_RUNNING);
    assert!(!n1.pgdata.join("postgresql.conf").exists());
}

#[test]
fn a_new_primary_does_not_wait_for_the_standbys_of_its_past() {
    // sync_replication=on: node1 was a primary with a synchronous standby,
    // then a standby; when it is promoted again with no standby left, its
    // commits must not wait for one.
    let pair = Pair::new("sync_past");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    primary_and_standby(&pair);
    agent(n1, n1)
        .run("monitor")
        .assert_code(OCF_RUNNING_PROMOTED);
    assert_eq!(n1.psql("show synchronous_standby_names"), "ANY 1 (*)");
    switchover(n1, n2);
    agent(n2, n2)
        .run("monitor")
        .assert_code(OCF_RUNNING_PROMOTED);
    assert_eq!(n2.psql("show synchronous_standby_names"), "ANY 1 (*)");
    // node2 is lost; node1 is promoted.
    n2.kill9_postgres();
    n2.kill9_redis();
    agent(n1, n1).run("promote").assert_code(OCF_SUCCESS);
    assert_eq!(n1.psql("show synchronous_standby_names"), "");
    let t = std::time::Instant::now();
    n1.psql("set statement_timeout = '5s'; insert into sms(body) values ('alone')");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "the commit waited {:?}",
        t.elapsed()
    );
}

/// Sends `sig` (`-STOP`, `-CONT`, …) to `pid` with kill(1).
#[track_caller]
pub(crate) fn signal(pid: i32, sig: &str) {
    let st = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(st.success(), "kill {sig} {pid}");
}

#[test]
fn a_promotion_ends_wal_senders_left_from_before_so_commits_never_wait_for_a_gone_follower() {
    // sync_replication=on. node3 cascades from node2, as a standby does
    // that connected through the VIP while a demoted node still held it;
    // then node3's WAL receiver neither replies nor closes, as when the
    // VIP has moved: node2's sender to it stays `streaming` until
    // wal_sender_timeout.
    let (c, cib) = three_nodes("zombie_senders");
    let n = &c.nodes;
    let (n2, n3) = (&n[1], &n[2]);
    let conninfo = n3.psql("show primary_conninfo");
    let cascading = conninfo.replace(
        &format!("port={}", n[0].pgport),
        &format!("port={}", n2.pgport),
    );
    assert_ne!(
        cascading, conninfo,
        "node3's primary_conninfo names no port"
    );
    n3.psql(&format!(
        "alter system set primary_conninfo = '{}'",
        cascading.replace('\'', "''")
    ));
    n3.psql("select pg_reload_conf()");
    first_streaming(n2, "node3", Duration::from_secs(30));
    let receiver: i32 = n3
        .psql("select pid from pg_stat_wal_receiver")
        .parse()
        .expect("node3's WAL receiver");
    signal(receiver, "-STOP");
    // node1 is lost; node2 is promoted, notified, and monitored.
    let a = |node: &Node| agent(node, n2).env("CIB_file", cib.display().to_string());
    failover_to(&c, &cib, n2).assert_code(OCF_SUCCESS);
    a(n2)
        .notify(
            "post",
            "promote",
            &[
                ("promote_uname", "node2"),
                ("unpromoted_uname", "node2 node3"),
            ],
        )
        .run("notify")
        .assert_code(OCF_SUCCESS);
    a(n2).run("monitor").assert_code(OCF_RUNNING_PROMOTED);
    let committed = {
        let (tx, rx) = std::sync::mpsc::channel();
        let n2 = n2.clone();
        std::thread::spawn(move || {
            tx.send(n2.try_psql("insert into sms(body) values ('after the promotion')"))
                .ok();
        });
        rx.recv_timeout(Duration::from_secs(5))
    };
    let names = n2.psql("show synchronous_standby_names");
    let senders = n2
        .psql("select string_agg(application_name || ' ' || state, ', ') from pg_stat_replication");
    // A live node3 streams again, from the new primary.
    signal(receiver, "-CONT");
    assert!(
        matches!(committed, Ok(Ok(_))),
        "a commit on the new primary did not return within 5 s ({committed:?}): \
         synchronous_standby_names = '{names}', WAL senders: {senders}"
    );
    first_streaming(n2, "node3", Duration::from_secs(30));
}

/// A listener at `port` on 127.0.0.1 that accepts every connection for
/// `for_how_long` and never answers one, as the VIP's old holder does with
/// a connection it accepted just before the address left it; then it stops
/// listening (connections refused, as with no holder). The accepted
/// connections stay open, silent, until the returned guard is dropped.
fn silent_then_gone(for_how_long: Duration) -> (u16, std::sync::mpsc::Sender<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a local port");
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let until = std::time::Instant::now() + for_how_long;
        let mut held = Vec::new();
        while std::time::Instant::now() < until {
            if let Ok((c, _)) = listener.accept() {
                held.push(c);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        drop(listener);
        let _ = finished.recv();
        drop(held);
    });
    (port, done)
}

#[test]
fn a_promote_whose_probe_was_accepted_by_an_address_that_then_left_starts_over_and_promotes() {
    let pair = Pair::new("probe_left");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    primary_and_standby(&pair);
    n1.kill9_postgres();
    let (port, _guard) = silent_then_gone(Duration::from_millis(400));
    let t = std::time::Instant::now();
    let out = agent(n2, n2)
        .param("primary_port", port.to_string())
        .run("promote");
    let took = t.elapsed();
    out.assert_code(OCF_SUCCESS);
    assert_eq!(n2.psql("select pg_is_in_recovery()"), "f");
    // A figure, not a timed assertion: it did not wait out query_timeout.
    eprintln!("promoted {took:?} after a probe that was accepted and never answered");
}

/// Freezes `pid` (a server of node2) with SIGSTOP and checks that node2's
/// monitor fails with `reason` before a 4 s Pacemaker timeout would kill
/// the agent.
#[track_caller]
fn assert_monitor_fails_in_time_when_frozen(pair: &Pair, pid: i32, reason: &str) {
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    signal(pid, "-STOP");
    let t = std::time::Instant::now();
    let out = agent(n2, n1).meta("timeout", "4000").run("monitor");
    let took = t.elapsed();
    signal(pid, "-CONT");
    out.assert_code(OCF_ERR_GENERIC);
    out.assert_reason_contains(reason);
    assert!(took < Duration::from_secs(4), "the monitor took {took:?}");
}

#[test]
fn a_hung_postgres_fails_the_monitor_before_pacemakers_timeout() {
    let pair = Pair::new("hung_postgres");
    primary_and_standby(&pair);
    let pid = pair.nodes[1].postmaster_pid().expect("node2's postmaster");
    // Seen in /proc before any connection: a stopped postmaster answers none.
    assert_monitor_fails_in_time_when_frozen(&pair, pid, "is stopped");
}

#[test]
fn a_hung_redis_fails_the_monitor_before_pacemakers_timeout() {
    let pair = Pair::new("hung_redis");
    primary_and_standby(&pair);
    let pid = pair.nodes[1].redis_pid().expect("node2's redis");
    assert_monitor_fails_in_time_when_frozen(&pair, pid, "timed out");
}

/// The instant node `standby` is first seen streaming from `primary`
/// (`pg_stat_replication`), looked at every 20 ms for at most `within`.
fn first_streaming(primary: &Node, standby: &str, within: Duration) -> std::time::Instant {
    let sql = format!(
        "select count(*) from pg_stat_replication \
         where application_name = '{standby}' and state = 'streaming'"
    );
    let end = std::time::Instant::now() + within;
    loop {
        if primary.try_psql(&sql).ok().as_deref() == Some("1") {
            return std::time::Instant::now();
        }
        assert!(
            std::time::Instant::now() < end,
            "{standby} did not stream from {} within {within:?}",
            primary.name
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls, for at most `within` after `since`, until `primary` runs with
/// `synchronous_standby_names = 'ANY 1 (*)'` and `standby` has the best
/// standby's promotion score in `cib`; returns how long after `since`.
fn synchronous_and_promotable(
    primary: &Node,
    standby: &str,
    cib: &Path,
    since: std::time::Instant,
    within: Duration,
) -> Duration {
    loop {
        let names = primary.psql("show synchronous_standby_names");
        let scored = score(cib, standby);
        if names == "ANY 1 (*)" && scored.as_deref() == Some("1000") {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < within,
            "{within:?} after {standby} streamed: synchronous_standby_names = '{names}', \
             score of {standby} {scored:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A primary with `sync_replication=on` (the default) and no standby;
/// commits are asynchronous (its monitor emptied
/// synchronous_standby_names). Returns the cluster and its CIB file.
fn lone_primary(name: &str) -> (Cluster, std::path::PathBuf) {
    let c = Cluster::new(name, 2);
    let cib = offline_cib(c.dir.path(), &["node1", "node2"]);
    let n1 = &c.nodes[0];
    let a = agent(n1, n1).env("CIB_file", cib.display().to_string());
    a.run("start").assert_code(OCF_SUCCESS);
    a.run("promote").assert_code(OCF_SUCCESS);
    a.clone()
        .notify(
            "post",
            "promote",
            &[("promote_uname", "node1"), ("unpromoted_uname", "node1")],
        )
        .run("notify")
        .assert_code(OCF_SUCCESS);
    a.run("monitor").assert_code(OCF_RUNNING_PROMOTED);
    assert_eq!(n1.psql("show synchronous_standby_names"), "");
    n1.psql("insert into sms(body) values ('acknowledged alone')");
    (c, cib)
}

#[test]
fn a_rejoining_standby_is_promotable_and_synchronous_when_the_post_start_notification_returns() {
    let (c, cib) = lone_primary("sync_post_start");
    let (n1, n2) = (&c.nodes[0], &c.nodes[1]);
    let a = |node: &Node| agent(node, n1).env("CIB_file", cib.display().to_string());
    a(n2).run("start").assert_code(OCF_SUCCESS);
    // The lone primary acknowledged a commit node2 lacks: marked stale,
    // not promotable.
    assert_eq!(score(&cib, "node2").as_deref(), Some("-1000"));
    let (streaming, notified) = std::thread::scope(|s| {
        let seen = s.spawn(|| first_streaming(n1, "node2", Duration::from_secs(30)));
        let out = a(n1)
            .notify("post", "start", &[("start_uname", "node2")])
            .run("notify");
        out.assert_code(OCF_SUCCESS);
        (seen.join().expect("the watching thread"), out)
    });
    // Done by the notification itself: no monitor ran.
    assert_eq!(n1.psql("show synchronous_standby_names"), "ANY 1 (*)");
    assert_eq!(score(&cib, "node2").as_deref(), Some("1000"));
    // It returned because node2 was promotable, not at the end of its
    // bound (a figure, not a timed assertion: CI machines differ).
    eprintln!(
        "the post-start notification returned {:?} after node2 streamed",
        streaming.elapsed()
    );
    assert!(
        notified.stderr.contains("promotable [\"node2\"]"),
        "{}",
        notified.stderr
    );
    // Commits now wait for node2.
    n1.psql("insert into sms(body) values ('synchronous')");
    assert_eq!(
        n1.psql("select sync_state from pg_stat_replication where application_name = 'node2'"),
        "quorum"
    );
}

#[test]
fn after_a_promotion_a_standby_is_synchronous_within_a_second_of_streaming_without_a_monitor() {
    let c = Cluster::new("sync_after_promote", 2);
    let cib = offline_cib(c.dir.path(), &["node1", "node2"]);
    let (n1, n2) = (&c.nodes[0], &c.nodes[1]);
    let a = |node: &Node| agent(node, n1).env("CIB_file", cib.display().to_string());
    a(n1).run("start").assert_code(OCF_SUCCESS);
    // node2 waits for a primary at primary_host; its WAL receiver retries
    // every few seconds (wal_retrieve_retry_interval), as after a failover.
    a(n2).run("start").assert_code(OCF_SUCCESS);
    a(n1).run("promote").assert_code(OCF_SUCCESS);
    assert_eq!(n1.psql("show synchronous_standby_names"), "");
    let t = std::time::Instant::now();
    let out = a(n1)
        .notify(
            "post",
            "promote",
            &[
                ("promote_uname", "node1"),
                ("unpromoted_uname", "node1 node2"),
            ],
        )
        .run("notify");
    out.assert_code(OCF_SUCCESS);
    // The notification does not wait (the VIP starts only after it).
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // The watcher it left: its own session, nothing of the agent's
    // environment (repl_password is set), no secret on its command line.
    let pid: i32 = out
        .stderr
        .split("watcher ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no watcher started:\n{out}"));
    // stat: pid (comm) state ppid pgrp session ...: setsid is the
    // watcher's first call, a moment after its exec.
    let session = |stat: &str| -> Option<String> {
        Some(
            stat.rsplit(')')
                .next()?
                .split_whitespace()
                .nth(3)?
                .to_owned(),
        )
    };
    let mut looked = false;
    for _ in 0..50 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            break;
        };
        let (Ok(environ), Ok(cmdline)) = (
            std::fs::read(format!("/proc/{pid}/environ")),
            std::fs::read(format!("/proc/{pid}/cmdline")),
        ) else {
            break;
        };
        let environ = String::from_utf8_lossy(&environ);
        assert!(
            !environ.contains("OCF_") && !environ.contains(rapidpro_ha_harness::REPL_PASSWORD),
            "the watcher's environment: {environ}"
        );
        assert!(!String::from_utf8_lossy(&cmdline).contains(rapidpro_ha_harness::REPL_PASSWORD));
        if session(&stat) == Some(pid.to_string()) {
            looked = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if !looked {
        eprintln!("watcher {pid}: gone, or not yet in its own session, when looked at");
    }
    let streamed = first_streaming(n1, "node2", Duration::from_secs(30));
    let took = synchronous_and_promotable(n1, "node2", &cib, streamed, Duration::from_secs(3));
    eprintln!("synchronous and promotable {took:?} after node2 streamed");
    assert!(
        took < Duration::from_millis(1200),
        "synchronous and promotable {took:?} after node2 streamed"
    );
    // The watcher is gone once done: its lock is free.
    let lock = n1.state_dir.join("stack.watch.lock");
    assert!(lock.exists(), "no watcher ran: {} missing", lock.display());
    poll("the watcher exits", Duration::from_secs(5), || {
        lock_is_free(&lock)?.then_some(())
    });
}
