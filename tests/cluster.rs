//! The agent in a real Pacemaker 2.1 + Corosync 3 cluster: nodes in Linux
//! namespaces on this machine (see `rapidpro_ha_harness::netns`), configured
//! with `pcs-examples/rapidpro-cluster.pcs.sh`, with a virtual IP and
//! sandbox fencing. Each test prints the times it measured.

use std::time::{Duration, Instant};

use rapidpro_ha_harness::netns::{mono_now, Service, WatchReport, MAX_GAP};
use rapidpro_ha_harness::workload::{
    missing_rows, missing_sms, CeleryReport, CeleryWatcher, Writer,
};
use rapidpro_ha_harness::{poll, NsCluster, NsNode, STACK_AGENT, VIP_AGENT};

use super::bin;

/// Longest wait for the cluster to settle after a change.
pub const SETTLE: Duration = Duration::from_secs(90);

/// A 2-node cluster with the application tier.
pub fn cluster(name: &str) -> NsCluster {
    NsCluster::builder(name)
        .nodes(2)
        .agent(bin())
        .app(true)
        .build()
}

/// A cluster whose old primaries rejoin: after a power-off (and after a
/// demote whose last WAL never reached the standby), the old primary has WAL
/// past the new primary's fork point, and only `pg_rewind` brings it back.
pub fn cluster_with_rewind(name: &str) -> NsCluster {
    NsCluster::builder(name)
        .nodes(2)
        .agent(bin())
        .app(true)
        .param("rewind", "true")
        .build()
}

/// Waits until, as node `ask` sees it, exactly one node is Promoted (node
/// `expected`, if given) and every other online node Unpromoted, with the
/// VIP started on the promoted node; returns the promoted node.
#[track_caller]
pub fn wait_one_promoted(c: &NsCluster, ask: &str, expected: Option<&str>) -> String {
    let what = format!(
        "one Promoted stack instance ({}), the others Unpromoted, the VIP with it, seen from {ask}",
        expected.unwrap_or("any node")
    );
    poll(&what, SETTLE, || {
        let st = c.status(ask).ok()?;
        let promoted = st.nodes_with_role(STACK_AGENT, "Promoted");
        let unpromoted = st.nodes_with_role(STACK_AGENT, "Unpromoted");
        let vip = st.nodes_with_role(VIP_AGENT, "Started");
        let online = st.online();
        let ok = promoted.len() == 1
            && expected.iter().all(|e| promoted[0] == *e)
            && unpromoted.len() + 1 == online.len()
            && vip == promoted;
        ok.then(|| promoted[0].clone())
    })
}

/// Waits until `node`'s PostgreSQL streams from the primary and its Redis
/// replica link is up.
#[track_caller]
pub fn wait_replicating(node: &NsNode) {
    // The same WAL receiver streaming 2 s apart: a receiver the primary
    // keeps rejecting (diverged timeline) shows "streaming" for a moment
    // every 5 s.
    let receiver = || {
        node.psql("select pid from pg_stat_wal_receiver where status = 'streaming'")
            .ok()
            .filter(|pid| !pid.is_empty())
    };
    poll(
        &format!("{} streaming WAL from the primary, steadily", node.name),
        SETTLE,
        || {
            let first = receiver()?;
            std::thread::sleep(Duration::from_secs(2));
            (receiver()? == first).then_some(())
        },
    );
    poll(
        &format!("{}'s Redis master_link_status:up", node.name),
        SETTLE,
        || {
            let s = node.redis_cli(&["info", "replication"]).ok()?;
            s.contains("master_link_status:up").then_some(())
        },
    );
}

/// Waits until `primary` commits synchronously (see
/// [`NsCluster::wait_synchronous`]).
#[track_caller]
pub fn wait_synchronous(c: &NsCluster, primary: &str) {
    c.wait_synchronous(primary, SETTLE);
}

/// Waits until the cluster is steady: one node Promoted with the VIP, the
/// transition settled, the other node replicating from it. Returns
/// (primary, standby); for 2-node clusters.
#[track_caller]
pub fn steady_pair(c: &NsCluster) -> (String, String) {
    let primary = wait_one_promoted(c, "node1", None);
    c.wait_settled("node1", SETTLE);
    let standby = other(c, &primary);
    wait_replicating(c.node(&standby));
    // Steady means synchronous: until the primary's first monitor after the
    // standby streams, sync_replication=on acknowledges commits at once
    // (README's window), and a fault then may lose one legitimately.
    wait_synchronous(c, &primary);
    (primary, standby)
}

/// Boots `old` and waits until it is back Unpromoted and replicating from
/// `primary`, which stays the one Promoted node, with the VIP; returns how
/// long that took from the boot.
#[track_caller]
pub fn boot_and_rejoin(c: &NsCluster, old: &str, primary: &str) -> Duration {
    let boot = Instant::now();
    c.boot(old);
    poll(&format!("{old} back as Unpromoted"), SETTLE, || {
        let st = c.status(primary).ok()?;
        st.nodes_with_role(STACK_AGENT, "Unpromoted")
            .iter()
            .any(|n| n == old)
            .then_some(())
    });
    c.wait_settled(primary, SETTLE);
    assert_eq!(
        wait_one_promoted(c, primary, Some(primary)),
        primary,
        "{}",
        c.diagnostics()
    );
    wait_replicating(c.node(old));
    let rejoined = boot.elapsed();
    assert_primary(c, primary);
    rejoined
}

/// The promoted node holds the VIP, no other node does, and its PostgreSQL
/// is writable.
#[track_caller]
pub fn assert_primary(c: &NsCluster, primary: &str) {
    for n in c.nodes().iter().filter(|n| n.is_up()) {
        let has = n.has_address(c.vip());
        assert_eq!(
            has,
            n.name == primary,
            "VIP {} on {}: {has}\n{}",
            c.vip(),
            n.name,
            c.diagnostics()
        );
    }
    let p = c.node(primary);
    assert_eq!(
        p.psql("select pg_is_in_recovery()")
            .unwrap_or_else(|e| panic!("{e}")),
        "f"
    );
}

/// `crm_failcount --query` of resource `rsc` on `node`, asked on `ask`:
/// the number, `u64::MAX` for INFINITY, `None` if it cannot be read.
pub fn fail_count(c: &NsCluster, ask: &str, rsc: &str, node: &str) -> Option<u64> {
    let out = c
        .node(ask)
        .run(&[
            "crm_failcount",
            "--query",
            "--resource",
            rsc,
            "--node",
            node,
        ])
        .ok()?;
    let value = out
        .split_whitespace()
        .find_map(|w| w.strip_prefix("value="))?;
    match value {
        "INFINITY" | "+INFINITY" => Some(u64::MAX),
        v => v.parse().ok(),
    }
}

pub fn other(c: &NsCluster, name: &str) -> String {
    c.nodes()
        .iter()
        .find(|n| n.name != name)
        .map(|n| n.name.clone())
        .expect("another node")
}

/// Every node but `primary`, in the cluster's order.
pub fn standbys_of(c: &NsCluster, primary: &str) -> Vec<String> {
    c.nodes()
        .iter()
        .map(|n| n.name.clone())
        .filter(|n| n != primary)
        .collect()
}

/// Waits until one node is Promoted, the transition settled and every
/// other node replicates from it; returns the primary and the others
/// ([`standbys_of`]). Not synchronous: see [`steady_pair`] for that.
#[track_caller]
pub fn settled_with_standbys(c: &NsCluster) -> (String, Vec<String>) {
    let primary = wait_one_promoted(c, "node1", None);
    c.wait_settled("node1", SETTLE);
    let standbys = standbys_of(c, &primary);
    for s in &standbys {
        wait_replicating(c.node(s));
    }
    (primary, standbys)
}

#[test]
fn bootstrap_promotes_one_node_and_puts_the_vip_on_it() {
    let c = cluster("bootstrap");
    // Watch from the first moment: never two primaries while bootstrapping
    // (the in-node watcher samples from before the nodes boot).
    let mark = WatchMark::at_build(&c);
    let celery = watch_celery(&c);
    let primary = wait_one_promoted(&c, "node1", None);
    c.wait_settled("node1", SETTLE);
    let primary_again = wait_one_promoted(&c, "node1", None);
    assert_eq!(primary, primary_again, "{}", c.diagnostics());
    let standby = other(&c, &primary);
    wait_replicating(c.node(&standby));
    let settled = c.pacemaker_started().elapsed();
    assert_primary(&c, &primary);
    assert_eq!(
        c.node(&standby)
            .psql("select pg_is_in_recovery()")
            .unwrap_or_else(|e| panic!("{e}")),
        "t"
    );
    eprintln!(
        "measured: bootstrap, pacemakerd start to {primary} promoted with the VIP and \
         {standby} streaming: {:.1} s",
        settled.as_secs_f64()
    );
    // Writes through the VIP are acknowledged and all on the primary.
    finish_load(
        &c,
        Load {
            writer: Writer::start(c.client_netns_pid(), c.vip(), PG_PORT),
            sms: Some(Writer::start_sms(c.client_netns_pid(), c.vip(), HTTP_PORT)),
            celery,
            mark,
        },
        "bootstrap",
    );
}

/// With the app tier, a watcher of where celery runs (the nodes'
/// processes, from the host).
pub fn watch_celery(c: &NsCluster) -> Option<CeleryWatcher> {
    c.has_app().then(|| CeleryWatcher::start(c.node_inits()))
}

/// The start of a window of the in-node watcher's report: when, and which
/// nodes ran then (by PID 1, to tell a node up all along from a rebooted
/// one).
#[derive(Debug, Clone)]
pub struct WatchMark {
    since: u64,
    up: Vec<(String, i32)>,
}

impl WatchMark {
    /// Now.
    pub fn now(c: &NsCluster) -> WatchMark {
        WatchMark {
            since: mono_now(),
            up: up_nodes(c),
        }
    }

    /// When `c` started Pacemaker (its nodes were up: the watcher samples
    /// from before they booted).
    pub fn at_build(c: &NsCluster) -> WatchMark {
        WatchMark {
            since: rapidpro_ha_harness::netns::mono_of(c.pacemaker_started()),
            up: up_nodes(c),
        }
    }

    /// The window's start, `CLOCK_MONOTONIC` ns.
    pub fn since(&self) -> u64 {
        self.since
    }
}

fn up_nodes(c: &NsCluster) -> Vec<(String, i32)> {
    c.nodes()
        .iter()
        .filter(|n| n.is_up())
        .filter_map(|n| Some((n.name.clone(), n.init_pid()?)))
        .collect()
}

/// Asserts what the in-node watcher saw from `mark` until now, and prints
/// it: never two writable PostgreSQL primaries nor two Redis masters (not
/// even for an instant between two samples of each: see
/// `netns::watch::report`), every node that ran sampled every 250 ms at
/// least (per service, the gap between two samples below [`MAX_GAP`], and
/// as many samples as the window's 250 ms slices), and a primary seen at
/// all (the watcher could read roles). Returns the report.
#[track_caller]
pub fn assert_watched(c: &NsCluster, mark: &WatchMark, scenario: &str) -> WatchReport {
    let until = mono_now();
    let up_now = up_nodes(c);
    // Every node still up is sampled past `until`, so a gap across the
    // window's end is seen.
    poll(
        &format!("{scenario}: the watcher sampling every running node after the window"),
        Duration::from_secs(5),
        || {
            let after = c.watch_report(until, u64::MAX);
            up_now
                .iter()
                .all(|(n, _)| {
                    after.samples(n, Service::Pg) > 0 && after.samples(n, Service::Redis) > 0
                })
                .then_some(())
        },
    );
    let r = c.watch_report(mark.since, until);
    let window = Duration::from_nanos(until - mark.since);
    let per = MAX_GAP.as_nanos() as u64;
    let mut rounds = usize::MAX;
    for ((node, service), st) in &r.stats {
        let all_along = mark.up.iter().any(|u| up_now.contains(u) && u.0 == *node);
        let needed = if all_along {
            (until - mark.since) / per
        } else {
            st.covered / per
        } as usize;
        if all_along {
            rounds = rounds.min(st.samples);
        }
        assert!(
            st.samples >= needed,
            "{scenario}: the watcher sampled {node}'s {service:?} {} times in {:.1} s, fewer than once per {} ms ({needed}) (up all along: {all_along})",
            st.samples,
            window.as_secs_f64(),
            MAX_GAP.as_millis()
        );
        assert!(
            st.max_gap < per,
            "{scenario}: {node}'s {service:?} not sampled for {} ms (gap ending {:.3} s into the window; at most {} ms)",
            st.max_gap / 1_000_000,
            (st.max_gap_end as f64 - mark.since as f64) / 1e9,
            MAX_GAP.as_millis()
        );
    }
    for (node, _) in mark.up.iter().filter(|u| up_now.contains(u)) {
        for service in [Service::Pg, Service::Redis] {
            assert!(
                r.samples(node, service) > 0,
                "{scenario}: the watcher never sampled {node}'s {service:?}, up all along"
            );
        }
    }
    for service in [Service::Pg, Service::Redis] {
        let primaries: usize = r
            .stats
            .iter()
            .filter(|((_, s), _)| *s == service)
            .map(|(_, st)| st.primary)
            .sum();
        assert!(
            primaries > 0,
            "{scenario}: the watcher never saw a {service:?} primary in {:.1} s (could it read \
             roles? Redis AUTH with the cluster's password?)",
            window.as_secs_f64()
        );
    }
    let unknown: usize = r.stats.values().map(|s| s.unknown).sum();
    eprintln!(
        "measured: {scenario}: watcher: {} in {:.1} s, max gap {} ms, {unknown} unknown \
         samples, two primaries {} ms (upper bound from sampling {} ms), two Redis masters {} ms \
         (upper bound {} ms)",
        // Rounds are counted on the nodes up all along; a scenario that took
        // every node down once has none (this printed "0 rounds").
        if rounds == usize::MAX {
            "no node up all along to count rounds on".to_string()
        } else {
            format!("{rounds} rounds")
        },
        window.as_secs_f64(),
        r.max_gap_ms(),
        r.pg.known_ns / 1_000_000,
        r.pg.upper_ns / 1_000_000,
        r.redis.known_ns / 1_000_000,
        r.redis.upper_ns / 1_000_000,
    );
    assert!(
        r.pg.known.is_empty(),
        "{scenario}: two writable PostgreSQL primaries for {} ms: {}\n{}",
        r.pg.known_ns / 1_000_000,
        r.describe(&r.pg),
        c.diagnostics()
    );
    assert!(
        r.redis.known.is_empty(),
        "{scenario}: two Redis masters for {} ms: {}\n{}",
        r.redis.known_ns / 1_000_000,
        r.describe(&r.redis),
        c.diagnostics()
    );
    r
}

/// PostgreSQL, Redis and the app's HTTP ports inside the nodes.
pub const PG_PORT: u16 = 5432;
pub const HTTP_PORT: u16 = 80;

/// The writer (rows through the VIP), with the app tier the SMS sender
/// (incoming SMS through the VIP) and the celery watcher, and the start
/// of the in-node watcher's window (two primaries?) of a scenario.
pub struct Load {
    writer: Writer,
    sms: Option<Writer>,
    celery: Option<CeleryWatcher>,
    mark: WatchMark,
}

impl Load {
    /// Waits until at least `n` more writes are acknowledged through the VIP.
    #[track_caller]
    pub fn wait_for_acks(&self, n: usize) {
        self.writer.wait_for_acks(n, SETTLE);
    }
}

/// Starts writing through the VIP (rows, and with the app tier incoming
/// SMS) and watching every node, once writes are acknowledged.
pub fn start_load(c: &NsCluster) -> Load {
    let pid = c.client_netns_pid();
    let writer = Writer::start(pid, c.vip(), PG_PORT);
    writer.wait_for_acks(20, SETTLE);
    let sms = c.has_app().then(|| {
        let sms = Writer::start_sms(pid, c.vip(), HTTP_PORT);
        sms.wait_for_acks(10, SETTLE);
        sms
    });
    Load {
        writer,
        sms,
        celery: watch_celery(c),
        mark: WatchMark::now(c),
    }
}

/// Waits until writes flow again, stops the load, and asserts: every
/// acknowledged row (and SMS) is on the primary (read through the VIP),
/// no celery on two nodes, and over the load's window what
/// [`assert_watched`] asserts (never two writable PostgreSQL servers nor
/// two Redis masters, every node sampled every 250 ms). Prints the figures.
#[track_caller]
pub fn finish_load(c: &NsCluster, load: Load, scenario: &str) {
    finish_load_checking(c, load, scenario, Celery::OnOneNode);
}

/// What [`finish_load`] asserts of celery.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Celery {
    /// Never a worker nor celerybeat on two nodes at once.
    OnOneNode,
    /// Without fencing, the majority starts the app group once it promoted,
    /// while a cut-off node stops its own only when its Pacemaker gets to
    /// it: both may run for a moment. Printed, not asserted; the data tier
    /// they need is asserted instead (no second Redis master nor writable
    /// primary, by the watcher).
    MayOverlapWithoutFencing,
}

/// [`finish_load`], with `celery` saying what is asserted of celery.
#[track_caller]
pub fn finish_load_checking(c: &NsCluster, load: Load, scenario: &str, celery: Celery) {
    load.writer.wait_for_acks(20, SETTLE);
    if let Some(sms) = &load.sms {
        sms.wait_for_acks(10, SETTLE);
    }
    let w = load.writer.stop();
    let seen = load.celery.map(CeleryWatcher::stop).unwrap_or_default();
    if let Some(sms) = load.sms {
        let s = sms.stop();
        let lost = missing_sms(c.client_netns_pid(), c.vip(), PG_PORT, &s.acked);
        eprintln!(
            "measured: {scenario}: {} incoming SMS acknowledged through the VIP, {} refused or \
             timed out, longest gap {:.2} s; celery seen on exactly one node in {} of {} rounds \
             (longest {} ms apart)",
            s.acked.len(),
            s.failures,
            s.longest_gap.as_secs_f64(),
            seen.celery_rounds,
            seen.rounds,
            seen.max_gap.as_millis()
        );
        assert!(
            lost.is_empty(),
            "{scenario}: {} acknowledged incoming SMS lost: {:?}\n{}",
            lost.len(),
            &lost[..lost.len().min(20)],
            c.diagnostics()
        );
        match celery {
            Celery::OnOneNode => assert_celery_once(&seen, scenario),
            Celery::MayOverlapWithoutFencing => eprintln!(
                "measured: {scenario}: celery on two nodes at once (no fencing): {:?}",
                seen.dual_celery
            ),
        }
    }
    let missing = missing_rows(c.client_netns_pid(), c.vip(), PG_PORT, &w.acked);
    eprintln!(
        "measured: {scenario}: {} writes acknowledged, {} attempts failed, longest write gap {:.2} s",
        w.acked.len(),
        w.failures,
        w.longest_gap.as_secs_f64(),
    );
    assert!(
        missing.is_empty(),
        "{scenario}: {} acknowledged writes lost: {:?}\n{}",
        missing.len(),
        &missing[..missing.len().min(20)],
        c.diagnostics()
    );
    assert_watched(c, &load.mark, scenario);
}

#[test]
fn planned_switchover_moves_the_promoted_role_and_the_old_primary_streams() {
    let c = cluster("switchover");
    let (old, new) = steady_pair(&c);
    let load = start_load(&c);

    let start = Instant::now();
    c.ban_promoted(&old);
    let promoted = wait_one_promoted(&c, &new, Some(&new));
    let moved = start.elapsed();
    eprintln!(
        "measured: switchover {old} -> {new}: promoted with the VIP after {:.2} s",
        moved.as_secs_f64()
    );
    assert_eq!(promoted, new, "{}", c.diagnostics());
    c.wait_settled(&new, SETTLE);
    assert_primary(&c, &new);
    wait_replicating(c.node(&old));
    let streaming = start.elapsed();

    c.clear_bans(&new);
    c.wait_settled(&new, SETTLE);
    assert_eq!(
        wait_one_promoted(&c, &new, Some(&new)),
        new,
        "clearing the ban must not move the role back\n{}",
        c.diagnostics()
    );
    eprintln!(
        "measured: switchover {old} -> {new}: {old} streaming after {:.2} s",
        streaming.as_secs_f64()
    );
    finish_load(&c, load, "switchover");
}

#[test]
fn power_off_of_the_primary_promotes_the_other_and_it_rejoins_as_standby() {
    let c = cluster_with_rewind("power_off");
    let (old, new) = steady_pair(&c);
    wait_synchronous(&c, &old);
    let load = start_load(&c);

    let start = Instant::now();
    c.power_off(&old);
    let promoted = wait_one_promoted(&c, &new, Some(&new));
    let failover = start.elapsed();
    eprintln!(
        "measured: power-off of {old}: {new} promoted with the VIP after {:.2} s",
        failover.as_secs_f64()
    );
    assert_eq!(promoted, new, "{}", c.diagnostics());
    assert_primary(&c, &new);
    let fenced = c
        .fence_events()
        .iter()
        .any(|e| e.node == old && e.at >= start);
    assert!(fenced, "{old} was not fenced\n{}", c.diagnostics());

    let rejoined = boot_and_rejoin(&c, &old, &new);
    eprintln!(
        "measured: {old} booted and streaming from {new} after {:.2} s",
        rejoined.as_secs_f64()
    );
    finish_load(&c, load, "power-off");
}

/// The watcher's self-test: two primaries made by hand, behind the agent's
/// back, must be reported, naming both nodes. With the cluster in
/// maintenance mode Pacemaker runs no monitor, so nothing demotes either
/// server. `RAPIDPRO_TEST_WATCHER=off` makes this test fail (that switch
/// exists only to show it).
#[test]
fn watcher_sees_two_primaries_forced_by_hand() {
    let c = NsCluster::builder("watcher_selftest")
        .nodes(2)
        .agent(bin())
        .build();
    let built = WatchMark::at_build(&c);
    let (primary, standby) = steady_pair(&c);
    // The rule holds until the primaries made by hand below, which break it
    // on purpose: asserted up to here. (With the watcher off, which exists
    // only to show that this test fails, the failure to show is the
    // overlap assertions' below.)
    if c.watching() {
        assert_watched(&c, &built, "watcher self-test, bootstrap to steady pair");
    }
    let out = c.crm(
        &primary,
        &[
            "crm_attribute",
            "--type",
            "crm_config",
            "--name",
            "maintenance-mode",
            "--update",
            "true",
        ],
    );
    assert!(out.success(), "{}", out.failure_message());
    // Pacemaker stands aside once its transition with the new setting is done.
    c.wait_settled(&primary, SETTLE);
    let mark = WatchMark::now(&c);
    let n = c.node(&standby);
    assert_eq!(
        n.psql("select pg_promote()")
            .unwrap_or_else(|e| panic!("{e}")),
        "t"
    );
    let ok = n
        .redis_cli(&["replicaof", "no", "one"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ok, "OK");
    assert_eq!(
        c.node(&primary)
            .psql("select pg_is_in_recovery()")
            .unwrap_or_else(|e| panic!("{e}")),
        "f",
        "{primary} is no longer a primary"
    );
    // Both stay primaries (nobody demotes them): the watcher's report over
    // a few of its periods must show it. Bounded: 10 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    let report = loop {
        let r = c.watch_report(mark.since(), mono_now());
        let enough = Duration::from_millis(500).as_nanos() as u64;
        if (r.pg.known_ns >= enough && r.redis.known_ns >= enough) || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "measured: watcher self-test: two primaries {} ms ({}), two Redis masters {} ms ({}); \
         max gap {} ms; watcher {}",
        report.pg.known_ns / 1_000_000,
        report.describe(&report.pg),
        report.redis.known_ns / 1_000_000,
        report.describe(&report.redis),
        report.max_gap_ms(),
        if c.watching() { "on" } else { "off" }
    );
    let both = |o: &rapidpro_ha_harness::netns::Overlaps| {
        let mut pair = [primary.clone(), standby.clone()];
        pair.sort();
        o.known
            .iter()
            .any(|x| [x.nodes.0.clone(), x.nodes.1.clone()] == pair)
    };
    assert!(
        report.pg.known_ns > 0 && both(&report.pg),
        "the watcher did not report two writable PostgreSQL primaries ({primary} and {standby} \
         were, by hand): {:?}",
        report.pg
    );
    assert!(
        report.redis.known_ns > 0 && both(&report.redis),
        "the watcher did not report two Redis masters ({primary} and {standby} were, by hand): \
         {:?}",
        report.redis
    );
}

/// Celery (worker and beat) ran on exactly one node at a time, and was
/// seen running at all.
#[track_caller]
pub fn assert_celery_once(seen: &CeleryReport, scenario: &str) {
    assert!(
        seen.dual_celery.is_empty(),
        "{scenario}: celery on two nodes at once: {:?}",
        seen.dual_celery
    );
    assert!(
        seen.celery_rounds > 0,
        "{scenario}: the watcher never saw celery and celerybeat running"
    );
}
