//! Two servers and a network split (issue 14): a 2-node cluster with a
//! quorum device (corosync-qnetd on a host of its own on the bridge, not a
//! node; `ffsplit` with heuristics that ping the nodes' gateway), configured
//! by `pcs-examples/rapidpro-cluster.pcs.sh` with `QNETD_HOST`.
//!
//! Every case runs the writer through the VIP and the in-node watcher (never
//! two writable primaries nor two Redis masters, the cut-off node included),
//! then heals and checks that the other node comes back as a streaming
//! standby (case 5 of the issue, after each case).

use std::time::Instant;

use rapidpro_ha_harness::netns::mono_now;
use rapidpro_ha_harness::{poll, NsCluster, STACK_AGENT};

use super::bin;
use super::cluster::{
    assert_primary, boot_and_rejoin, finish_load, start_load, steady_pair, wait_one_promoted, Load,
    SETTLE,
};
use super::cluster_fencing::{
    assert_partition_watched, fenced_since, shorten_orphan_retries, wait_port_gone,
};

/// Two nodes with a quorum device, synchronous replication and `pg_rewind`,
/// configured as README's "Two servers and a network split" says.
fn qdevice_pair(name: &str) -> NsCluster {
    NsCluster::builder(name)
        .nodes(2)
        .agent(bin())
        .param("rewind", "true")
        .param("sync_replication", "on")
        .qdevice(true)
        .build()
}

/// The quorum device's checks of `rapidproctl check`.
const QDEVICE_CHECKS: [&str; 5] = [
    "quorum device",
    "qdevice",
    "qnetd connection",
    "qdevice heuristics",
    "qdevice vote",
];

/// Runs `rapidproctl --json args…` (the freshly built one) inside `node`,
/// whatever its exit status, and parses what it printed.
#[track_caller]
fn ctl_json(c: &NsCluster, node: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec![env!("CARGO_BIN_EXE_rapidproctl"), "--json"];
    all.extend_from_slice(args);
    let out = c
        .node(node)
        .exec(&all, std::time::Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "rapidproctl {args:?} printed no JSON ({e}): {}",
            out.failure_message()
        )
    })
}

/// The status of each of `rapidproctl check`'s quorum device checks on
/// `node`, as `(check, status, message)`.
fn qdevice_checks(c: &NsCluster, node: &str) -> Vec<(String, String, String)> {
    let chk = ctl_json(c, node, &["check"]);
    chk["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks in {chk:#}"))
        .iter()
        .filter(|k| QDEVICE_CHECKS.iter().any(|q| k["check"] == *q))
        .map(|k| {
            (
                k["check"].as_str().unwrap_or_default().to_owned(),
                k["status"].as_str().unwrap_or_default().to_owned(),
                k["detail"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// `rapidproctl status` and `check` on every node show the device
/// connected, its heuristics passing and its vote cast, and every one of
/// its checks ok.
#[track_caller]
fn assert_qdevice_ok(c: &NsCluster) {
    for n in c.nodes() {
        let st = ctl_json(c, &n.name, &["status"]);
        let q = &st["quorum_device"];
        assert!(
            q["configured"] == true
                && q["two_node"] == false
                && q["algorithm"] == "ffsplit"
                && q["connection"] == "connected"
                && q["heuristics_result"] == "pass"
                && q["vote"] == "cast",
            "rapidproctl status on {}: {q:#}",
            n.name
        );
        let checks = qdevice_checks(c, &n.name);
        assert_eq!(checks.len(), QDEVICE_CHECKS.len(), "{checks:?}");
        assert!(
            checks.iter().all(|(_, status, _)| status == "ok"),
            "rapidproctl check on {}: {checks:#?}",
            n.name
        );
    }
}

/// Waits for a steady pair, lets whichever node loses the split vanish
/// fast (`shorten_orphan_retries`), and starts the load; returns (primary,
/// standby, load).
fn ready_to_split(c: &NsCluster) -> (String, String, Load) {
    let (primary, standby) = steady_pair(c);
    for n in c.nodes() {
        shorten_orphan_retries(c, &n.name);
    }
    (primary, standby, start_load(c))
}

/// Waits until `name` was fenced since `since`; returns when.
#[track_caller]
fn wait_fenced(c: &NsCluster, name: &str, since: Instant) -> Instant {
    poll(&format!("{name} fenced"), SETTLE, || {
        fenced_since(c, since)
            .into_iter()
            .find(|e| e.node == name)
            .map(|e| e.at)
    })
}

/// Only `expected` was fenced since `since`.
#[track_caller]
fn assert_only_fenced(c: &NsCluster, expected: &str, since: Instant, scenario: &str) {
    let fenced: Vec<String> = fenced_since(c, since).into_iter().map(|e| e.node).collect();
    assert!(
        fenced.iter().all(|n| n == expected),
        "{scenario}: only {expected} may be fenced, fenced: {fenced:?}\n{}",
        c.diagnostics()
    );
}

/// The end of a split that `winner` won and `loser` lost by fencing:
/// `winner` alone is Promoted with the VIP, only `loser` was fenced, and the
/// in-node watcher never saw two writable primaries nor two Redis masters
/// (`loser` sampled until its fencing); then `loser` boots (its veth went
/// with its namespaces: the boot attaches a working link again, the repair)
/// and streams from `winner` (case 5), and the load loses no acknowledged
/// write.
#[allow(clippy::too_many_arguments)]
#[track_caller]
fn assert_split_then_rejoin(
    c: &NsCluster,
    load: Load,
    winner: &str,
    loser: &str,
    start: Instant,
    start_mono: u64,
    fenced_at: Instant,
    scenario: &str,
) {
    c.wait_settled(winner, SETTLE);
    assert_primary(c, winner);
    assert_only_fenced(c, loser, start, scenario);
    assert_partition_watched(c, loser, start_mono, Some(fenced_at), scenario);
    wait_port_gone(c, loser, fenced_at);
    let rejoined = boot_and_rejoin(c, loser, winner);
    eprintln!(
        "measured: {scenario}: {loser} booted and streaming from {winner} after {:.2} s",
        rejoined.as_secs_f64()
    );
    finish_load(c, load, scenario);
}

#[test]
fn primary_link_cut_the_standby_wins_the_vote_and_the_old_primary_rejoins() {
    primary_link_cut(
        &qdevice_pair("split_primary"),
        "primary's link cut (qdevice)",
    );
}

#[test]
fn the_crm_script_sets_up_the_same_quorum_device_and_the_standby_wins_a_primary_link_cut() {
    // crmsh's users' path: rapidpro-cluster.crm.sh edits COROSYNC_CONF
    // itself (crmsh has no offline qdevice command).
    let c = NsCluster::builder("split_primary_crm")
        .nodes(2)
        .agent(bin())
        .param("rewind", "true")
        .param("sync_replication", "on")
        .crmsh(true)
        .qdevice(true)
        .build();
    primary_link_cut(&c, "primary's link cut (qdevice, crm script)");
}

/// Case 1: the primary's link is cut; the standby gets qnetd's vote, fences
/// the primary and is promoted; the old primary comes back as a standby.
fn primary_link_cut(c: &NsCluster, scenario: &str) {
    let (primary, standby, load) = ready_to_split(c);
    assert_qdevice_ok(c);

    let start = Instant::now();
    let start_mono = mono_now();
    c.partition(&primary);
    let promoted = wait_one_promoted(c, &standby, Some(&standby));
    let took = start.elapsed();
    let fenced_at = wait_fenced(c, &primary, start);
    eprintln!(
        "measured: {scenario}: {primary} fenced after {:.2} s, {standby} Promoted with the VIP \
         after {:.2} s",
        (fenced_at - start).as_secs_f64(),
        took.as_secs_f64()
    );
    assert_eq!(promoted, standby, "{}", c.diagnostics());
    assert_split_then_rejoin(
        c, load, &standby, &primary, start, start_mono, fenced_at, scenario,
    );
}

#[test]
fn standby_link_cut_the_primary_keeps_writing_and_the_standby_rejoins() {
    let c = qdevice_pair("split_standby");
    let (primary, standby, load) = ready_to_split(&c);

    let start = Instant::now();
    let start_mono = mono_now();
    c.partition(&standby);
    let fenced_at = wait_fenced(&c, &standby, start);
    eprintln!(
        "measured: standby's link cut (qdevice): {standby} fenced after {:.2} s",
        (fenced_at - start).as_secs_f64()
    );
    assert_eq!(
        wait_one_promoted(&c, &primary, Some(&primary)),
        primary,
        "{}",
        c.diagnostics()
    );
    assert_split_then_rejoin(
        &c,
        load,
        &primary,
        &standby,
        start,
        start_mono,
        fenced_at,
        "standby's link cut (qdevice)",
    );
}

/// With both nodes reaching the gateway and qnetd, the heuristics tie, and
/// `ffsplit` gives the vote to the partition with the lowest node id
/// (corosync-qdevice's default `tie_breaker: lowest`): node1.
const TIE_WINNER: &str = "node1";

#[test]
fn link_between_the_nodes_cut_exactly_one_side_keeps_running() {
    let c = qdevice_pair("split_between");
    let (primary, standby, load) = ready_to_split(&c);
    let loser = if TIE_WINNER == primary {
        standby.clone()
    } else {
        primary.clone()
    };

    let start = Instant::now();
    let start_mono = mono_now();
    c.cut_between(&primary, &standby);
    let fenced_at = wait_fenced(&c, &loser, start);
    let promoted = wait_one_promoted(&c, TIE_WINNER, Some(TIE_WINNER));
    let took = start.elapsed();
    eprintln!(
        "measured: link between the nodes cut (qdevice, primary {primary}): {loser} fenced \
         after {:.2} s, {TIE_WINNER} Promoted with the VIP after {:.2} s",
        (fenced_at - start).as_secs_f64(),
        took.as_secs_f64()
    );
    assert_eq!(promoted, TIE_WINNER, "{}", c.diagnostics());
    // The winner's blackhole route goes: the link between the nodes is
    // repaired before the loser boots.
    c.mend_between(&primary, &standby);
    assert_split_then_rejoin(
        &c,
        load,
        TIE_WINNER,
        &loser,
        start,
        start_mono,
        fenced_at,
        "link between the nodes cut (qdevice)",
    );
}

/// Whether node `ask` has quorum, as its crm_mon says.
fn has_quorum(c: &NsCluster, ask: &str) -> Option<bool> {
    c.status(ask).ok().map(|st| st.with_quorum)
}

#[test]
fn qnetd_down_then_a_node_fails_the_survivor_stops_until_qnetd_is_back() {
    let c = qdevice_pair("split_qnetd_down");
    let (primary, standby) = steady_pair(&c);
    let load = start_load(&c);

    // The arbiter goes: both nodes still make 2 of 3 votes; nothing moves.
    c.qnetd_power_off();
    std::thread::sleep(std::time::Duration::from_secs(8));
    for n in [&primary, &standby] {
        assert_eq!(
            has_quorum(&c, n),
            Some(true),
            "{n} lost quorum with both nodes up and qnetd down:\n{}",
            c.quorumtool(n)
        );
    }
    assert_eq!(
        wait_one_promoted(&c, &primary, Some(&primary)),
        primary,
        "{}",
        c.diagnostics()
    );
    load.wait_for_acks(20);
    // What RUNBOOK's "The quorum device host is down or unreachable" tells
    // to look at: votequorum counts 2 votes of 3 expected.
    let q = c.quorumtool(&primary);
    eprintln!("measured: qnetd down: corosync-quorumtool -s on {primary}:\n{q}");
    let field = |name: &str| {
        q.lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_owned()))
    };
    assert_eq!(
        (field("Expected votes:"), field("Total votes:")),
        (Some("3".to_owned()), Some("2".to_owned())),
        "corosync-quorumtool -s with qnetd down:\n{q}"
    );
    // rapidproctl says so, loudly: the device is not connected, its vote
    // not cast, while the cluster still runs.
    let checks = qdevice_checks(&c, &primary);
    eprintln!("measured: qnetd down: rapidproctl check on {primary}: {checks:?}");
    for name in ["qnetd connection", "qdevice vote"] {
        assert!(
            checks
                .iter()
                .any(|(k, status, _)| k == name && status == "error"),
            "rapidproctl check with qnetd down: {name} is not an error: {checks:#?}"
        );
    }

    // Then the standby fails: the survivor has 1 vote of 3, no quorum, and
    // with no-quorum-policy=stop it stops everything and fences nobody.
    let start = Instant::now();
    c.power_off(&standby);
    poll(&format!("{primary} without quorum"), SETTLE, || {
        (has_quorum(&c, &primary) == Some(false)).then_some(())
    });
    poll(&format!("{primary}'s stack stopped"), SETTLE, || {
        let st = c.status(&primary).ok()?;
        let running = st
            .of_agent(STACK_AGENT)
            .any(|r| r.role != "Stopped" && r.nodes.contains(&primary));
        (!running).then_some(())
    });
    let stopped = start.elapsed();
    eprintln!(
        "measured: qnetd down, then {standby} powered off: {primary} lost quorum and stopped \
         its stack after {:.2} s",
        stopped.as_secs_f64()
    );
    assert!(
        fenced_since(&c, start).is_empty(),
        "a node without quorum fenced: {:?}",
        fenced_since(&c, start)
    );

    // qnetd back: the survivor gets the vote, fences the lost node (already
    // off) and promotes itself.
    let back = Instant::now();
    c.qnetd_boot();
    c.wait_qdevice_vote(&primary, SETTLE);
    let promoted = wait_one_promoted(&c, &primary, Some(&primary));
    eprintln!(
        "measured: qnetd back: {primary} Promoted with the VIP after {:.2} s",
        back.elapsed().as_secs_f64()
    );
    assert_eq!(promoted, primary, "{}", c.diagnostics());
    let rejoined = boot_and_rejoin(&c, &standby, &primary);
    eprintln!(
        "measured: qnetd down: {standby} booted and streaming from {primary} after {:.2} s",
        rejoined.as_secs_f64()
    );
    finish_load(&c, load, "qnetd down, then a node fails (qdevice)");
}

#[test]
fn without_a_third_host_the_ping_rule_only_demotes_a_cut_off_primary_that_won_the_fence_race() {
    // The fallback of README's "Two servers and a network split", and its
    // remaining risk, measured: two_node, priority-fencing-delay, and the
    // ping clone with its rule.
    let c = NsCluster::builder("split_ping")
        .nodes(2)
        .agent(bin())
        .param("rewind", "true")
        .param("sync_replication", "on")
        .ping_gateway(true)
        .build();
    let (primary, standby, load) = ready_to_split(&c);

    let start = Instant::now();
    let start_mono = mono_now();
    c.partition(&primary);
    // The fence race: the Promoted side wins it (priority-fencing-delay).
    let fenced_at = wait_fenced(&c, &standby, start);
    // Then the rule: the cut-off primary reaches no PING_HOSTS and gives up
    // the Promoted role, with nowhere to go.
    poll(
        &format!("{primary} giving up the Promoted role"),
        SETTLE,
        || {
            let st = c.status(&primary).ok()?;
            st.nodes_with_role(STACK_AGENT, "Promoted")
                .is_empty()
                .then_some(())
        },
    );
    let demoting = start.elapsed();
    eprintln!(
        "measured: primary's link cut (two_node + ping): {standby} fenced after {:.2} s, \
         {primary} demoting by the ping rule after {:.2} s (the VIP goes once the demote ends); \
         nothing Promoted until the heal",
        (fenced_at - start).as_secs_f64(),
        demoting.as_secs_f64()
    );
    assert_only_fenced(&c, &standby, start, "primary's link cut (two_node + ping)");
    assert_partition_watched(
        &c,
        &primary,
        start_mono,
        None,
        "primary's link cut (two_node + ping)",
    );

    // The heal: the old primary reaches its gateway again, is promoted
    // again, and the fenced standby boots and streams from it.
    // The demote of a primary whose standby is gone can take a minute
    // (PostgreSQL's fast shutdown waits for its WAL sender: the issue
    // "Failover at the floor"); the role comes back only after it.
    let heal = Instant::now();
    c.heal(&primary);
    poll(&format!("{primary} Promoted again"), 3 * SETTLE, || {
        let st = c.status(&primary).ok()?;
        (st.nodes_with_role(STACK_AGENT, "Promoted") == [primary.clone()]).then_some(())
    });
    let promoted = wait_one_promoted(&c, &primary, Some(&primary));
    eprintln!(
        "measured: primary's link cut (two_node + ping): healed, {promoted} Promoted again \
         after {:.2} s",
        heal.elapsed().as_secs_f64()
    );
    wait_port_gone(&c, &standby, fenced_at);
    let rejoined = boot_and_rejoin(&c, &standby, &primary);
    eprintln!(
        "measured: primary's link cut (two_node + ping): {standby} booted and streaming after \
         {:.2} s",
        rejoined.as_secs_f64()
    );
    finish_load(&c, load, "primary's link cut (two_node + ping)");
}
