//! Cluster scenarios 7 and 8: corosync killed and network partitions, with fencing.
//!
//! Every scenario runs the writer (rows through the VIP, from the clients'
//! namespace on the bridge) and the watcher (never two writable primaries
//! nor two Redis masters) across the fault, and prints what it measured.
//! After [`NsCluster::partition`] the clients only reach the side still
//! attached to the bridge: that is what the writer observes. The in-node
//! watcher samples every node from inside it, the cut-off one included:
//! the partition tests assert that no moment had two writable primaries,
//! before the isolated node was fenced or demoted itself too.

use std::process::Command;
use std::time::{Duration, Instant};

use rapidpro_ha_harness::netns::{mono_now, mono_of, Service, MAX_GAP};
use rapidpro_ha_harness::workload::{WRITER_PASSWORD, WRITER_USER};
use rapidpro_ha_harness::{poll, FenceEvent, NsCluster, STACK_AGENT};

use super::bin;
use super::cluster::{
    assert_primary, boot_and_rejoin, cluster_with_rewind, finish_load, settled_with_standbys,
    start_load, steady_pair, wait_one_promoted, wait_replicating, SETTLE,
};

/// A 3-node cluster whose old primaries rejoin with `pg_rewind`.
fn three_nodes_with_rewind(name: &str) -> NsCluster {
    NsCluster::builder(name)
        .nodes(3)
        .agent(bin())
        .app(true)
        .param("rewind", "true")
        .build()
}

/// The fencings carried out since `since`.
pub fn fenced_since(c: &NsCluster, since: Instant) -> Vec<FenceEvent> {
    c.fence_events()
        .into_iter()
        .filter(|e| e.at >= since)
        .collect()
}

/// Asserts what the in-node watcher saw of a partition of `isolated` that
/// began at `start` (`CLOCK_MONOTONIC` ns), until now: no moment with two
/// writable PostgreSQL primaries nor two Redis masters, the isolated node's
/// own moments before it was fenced or demoted itself included; and the
/// isolated node sampled after the partition began, every 250 ms at least
/// until it was fenced (`fenced_at`), if it was: the partition did not
/// hide it from the watcher.
#[track_caller]
pub fn assert_partition_watched(
    c: &NsCluster,
    isolated: &str,
    start: u64,
    fenced_at: Option<Instant>,
    scenario: &str,
) {
    let until = mono_now();
    let r = c.watch_report(start, until);
    let seen_until = fenced_at.map_or(until, mono_of).min(until);
    let before_fence = c.watch_report(start, seen_until);
    let needed = ((seen_until.saturating_sub(start)) / MAX_GAP.as_nanos() as u64) as usize;
    let (pg, redis) = (
        before_fence.samples(isolated, Service::Pg),
        before_fence.samples(isolated, Service::Redis),
    );
    eprintln!(
        "measured: {scenario}: two writable primaries {} ms (upper bound from sampling {} ms), \
         two Redis masters {} ms (upper bound {} ms); isolated {isolated} sampled {pg} \
         (PostgreSQL) and {redis} (Redis) times in the {:.2} s from the partition to {}",
        r.pg.known_ns / 1_000_000,
        r.pg.upper_ns / 1_000_000,
        r.redis.known_ns / 1_000_000,
        r.redis.upper_ns / 1_000_000,
        (seen_until - start) as f64 / 1e9,
        if fenced_at.is_some() {
            "its fencing"
        } else {
            "now"
        }
    );
    assert!(
        pg >= needed.max(1) && redis >= needed.max(1),
        "{scenario}: the watcher sampled the isolated {isolated} {pg} (PostgreSQL) and {redis} \
         (Redis) times between the partition and {}, fewer than once per {} ms ({needed}): the \
         partition hid it",
        if fenced_at.is_some() {
            "its fencing"
        } else {
            "now"
        },
        MAX_GAP.as_millis()
    );
    assert!(
        r.pg.known.is_empty(),
        "{scenario}: two writable PostgreSQL primaries for {} ms during the partition: {}\n{}",
        r.pg.known_ns / 1_000_000,
        r.describe(&r.pg),
        c.diagnostics()
    );
    assert!(
        r.redis.known.is_empty(),
        "{scenario}: two Redis masters for {} ms during the partition: {}\n{}",
        r.redis.known_ns / 1_000_000,
        r.describe(&r.redis),
        c.diagnostics()
    );
}

/// Waits until some node was fenced since `since`; returns the first
/// such fencing.
#[track_caller]
fn wait_any_fenced(c: &NsCluster, since: Instant) -> FenceEvent {
    poll("a node fenced", SETTLE, || {
        fenced_since(c, since).into_iter().next()
    })
}

/// Asks, from the clients' namespace (the bridge), the PostgreSQL server
/// behind the VIP who it is and whether it is in recovery: `(address, "f"|"t")`.
fn ask_through_vip(c: &NsCluster) -> Result<(String, String), String> {
    let pid = c.client_netns_pid().to_string();
    let out = Command::new("timeout")
        .args([
            // --foreground: see run() in pcs_examples.rs (the reaper).
            "--foreground",
            "10",
            "nsenter",
            "-t",
            &pid,
            "-n",
            "psql",
            "-X",
            "-At",
            "-F",
            " ",
        ])
        .args([
            "-h",
            c.vip(),
            "-p",
            "5432",
            "-U",
            WRITER_USER,
            "-d",
            "postgres",
        ])
        .args(["-c", "select host(inet_server_addr()), pg_is_in_recovery()"])
        .env("PGPASSWORD", WRITER_PASSWORD)
        .env("PGCONNECT_TIMEOUT", "3")
        .output()
        .map_err(|e| format!("psql through the VIP: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "psql through the VIP: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let s = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let mut it = s.split_whitespace();
    match (it.next(), it.next()) {
        (Some(a), Some(r)) => Ok((a.to_owned(), r.to_owned())),
        _ => Err(format!("psql through the VIP: unexpected output {s:?}")),
    }
}

/// Waits until the clients reach, through the VIP, a writable PostgreSQL
/// (which node holds the VIP is checked by `assert_primary`).
#[track_caller]
pub fn wait_vip_writable(c: &NsCluster) {
    poll(
        &format!(
            "a writable PostgreSQL through the VIP {} from the clients",
            c.vip()
        ),
        SETTLE,
        || match ask_through_vip(c) {
            Ok((a, r)) if a == c.vip() && r == "f" => Some(()),
            _ => None,
        },
    );
}

/// Makes the orphaned TCP connections of node `name` give up after one
/// retransmission (`net.ipv4.tcp_orphan_retries`, per network namespace).
///
/// A node fenced while its link is down leaves orphaned connections (its
/// PostgreSQL clients, the walsenders) retransmitting their FIN into the
/// void; each holds the dead node's network namespace, and with it its veth
/// pair, for minutes (default: 8 retries). `NsCluster::boot` gives the veth
/// 20 s to vanish.
#[track_caller]
pub fn shorten_orphan_retries(c: &NsCluster, name: &str) {
    c.node(name)
        .sh("sysctl -qw net.ipv4.tcp_orphan_retries=1")
        .unwrap_or_else(|e| panic!("tcp_orphan_retries on {name}: {e}"));
}

/// Waits (longer than `NsCluster::boot`'s own 20 s) until the bridge port
/// of fenced node `name` is gone: the kernel removes the veth pair only
/// once the dead node's network namespace is cleaned up, which took more
/// than 20 s here with other namespaced clusters running. Returns how long
/// it took since `since`.
#[track_caller]
pub fn wait_port_gone(c: &NsCluster, name: &str, since: Instant) -> Duration {
    let pid = c.client_netns_pid().to_string();
    let port = format!("v{}", c.node(name).id);
    poll(&format!("{name}'s bridge port {port} gone"), SETTLE, || {
        let out = Command::new("timeout")
            .args([
                "--foreground",
                "5",
                "nsenter",
                "-t",
                &pid,
                "-n",
                "ip",
                "link",
                "show",
                &port,
            ])
            .output()
            .ok()?;
        // ip fails once the device is gone; timeout gives 124.
        (out.status.code() == Some(1)).then_some(())
    });
    since.elapsed()
}

/// Waits until node `name` shows as Unpromoted from node `ask`.
#[track_caller]
fn wait_unpromoted(c: &NsCluster, ask: &str, name: &str) {
    poll(&format!("{name} back as Unpromoted"), SETTLE, || {
        let st = c.status(ask).ok()?;
        st.nodes_with_role(STACK_AGENT, "Unpromoted")
            .iter()
            .any(|n| n == name)
            .then_some(())
    });
}

#[test]
fn corosync_killed_on_the_primary_fences_it_and_promotes_the_other() {
    let c = cluster_with_rewind("corosync_kill");
    let (old, new) = steady_pair(&c);
    let load = start_load(&c);

    let start = Instant::now();
    c.kill_corosync(&old);
    let fence = wait_any_fenced(&c, start);
    eprintln!(
        "measured: corosync killed on {old}: {} fenced after {:.2} s (was up: {})",
        fence.node,
        (fence.at - start).as_secs_f64(),
        fence.was_up
    );
    assert_eq!(
        fence.node,
        old,
        "the node whose corosync died must be the one fenced\n{}",
        c.diagnostics()
    );
    let promoted = wait_one_promoted(&c, &new, Some(&new));
    let failover = start.elapsed();
    eprintln!(
        "measured: corosync killed on {old}: {new} promoted with the VIP after {:.2} s",
        failover.as_secs_f64()
    );
    assert_eq!(promoted, new, "{}", c.diagnostics());
    assert!(!c.node(&old).is_up(), "{old} still up after its fencing");
    assert_primary(&c, &new);
    wait_vip_writable(&c);
    let fenced: Vec<String> = fenced_since(&c, start)
        .into_iter()
        .map(|e| e.node)
        .collect();
    assert!(
        fenced.iter().all(|n| *n == old),
        "only {old} may be fenced, fenced: {fenced:?}\n{}",
        c.diagnostics()
    );

    let gone = wait_port_gone(&c, &old, fence.at);
    eprintln!(
        "measured: fenced {old}'s veth seen gone {:.2} s after its fencing (an upper bound)",
        gone.as_secs_f64()
    );
    let rejoined = boot_and_rejoin(&c, &old, &new);
    eprintln!(
        "measured: fenced {old} booted and streaming from {new} after {:.2} s",
        rejoined.as_secs_f64()
    );
    finish_load(&c, load, "corosync killed on the primary");
}

#[test]
fn partition_of_the_primary_in_two_nodes_fences_the_unpromoted_side() {
    let c = cluster_with_rewind("partition2");
    let (primary, standby) = steady_pair(&c);
    let load = start_load(&c);

    // Whichever side loses, its veth must vanish before it boots again.
    for n in c.nodes() {
        shorten_orphan_retries(&c, &n.name);
    }
    let start = Instant::now();
    let start_mono = mono_now();
    c.partition(&primary);
    let fence = wait_any_fenced(&c, start);
    eprintln!(
        "measured: 2-node partition of {primary}: {} fenced after {:.2} s (was up: {})",
        fence.node,
        (fence.at - start).as_secs_f64(),
        fence.was_up
    );
    // priority-fencing-delay and the clone's priority: the side running the
    // Promoted instance fences the other one first.
    assert_eq!(
        fence.node,
        standby,
        "with priority-fencing-delay the promoted side ({primary}) should win the split\n{}",
        c.diagnostics()
    );
    // The primary's side keeps the role and the VIP (unreachable from the
    // clients while its link is down).
    let kept = wait_one_promoted(&c, &primary, Some(&primary));
    let settled = start.elapsed();
    assert_eq!(kept, primary, "{}", c.diagnostics());
    assert_primary(&c, &primary);
    eprintln!(
        "measured: 2-node partition of {primary}: {primary} alone, Promoted with the VIP, \
         after {:.2} s",
        settled.as_secs_f64()
    );
    // Give the loser's delayed fencing (3 s) time to show up, had it fired.
    std::thread::sleep(Duration::from_secs(5));
    let fenced: Vec<String> = fenced_since(&c, start)
        .into_iter()
        .map(|e| e.node)
        .collect();
    assert!(
        fenced.iter().all(|n| *n == standby),
        "only {standby} may be fenced, fenced: {fenced:?}\n{}",
        c.diagnostics()
    );
    assert!(c.node(&primary).is_up(), "{primary} is down");
    // Each side was alone: the cut-off primary (not fenced) and the
    // standby until its fencing were both sampled; never both writable.
    assert_partition_watched(
        &c,
        &primary,
        start_mono,
        None,
        "2-node partition of the primary",
    );
    assert_partition_watched(
        &c,
        &standby,
        start_mono,
        Some(fence.at),
        "2-node partition of the primary, its standby's side",
    );
    // What the clients see meanwhile: the winner is the side they cannot
    // reach, and nothing else holds the VIP. No service until the heal.
    let probe = ask_through_vip(&c);
    eprintln!(
        "measured: 2-node partition of {primary}: through the VIP from the clients during \
         the partition: {probe:?}"
    );
    assert!(
        probe.is_err(),
        "a server answered through the VIP while {primary} (the VIP holder) is cut off: \
         {probe:?}\n{}",
        c.diagnostics()
    );

    let heal = Instant::now();
    c.heal(&primary);
    wait_vip_writable(&c);
    eprintln!(
        "measured: healed {primary}: the clients reach it through the VIP after {:.2} s",
        heal.elapsed().as_secs_f64()
    );
    let gone = wait_port_gone(&c, &standby, fence.at);
    eprintln!(
        "measured: fenced {standby}'s veth seen gone {:.2} s after its fencing (an upper bound)",
        gone.as_secs_f64()
    );
    let rejoined = boot_and_rejoin(&c, &standby, &primary);
    eprintln!(
        "measured: fenced {standby} booted and streaming from {primary} after {:.2} s",
        rejoined.as_secs_f64()
    );
    finish_load(&c, load, "2-node partition of the primary");
}

#[test]
fn partition_of_the_primary_in_three_nodes_the_majority_promotes_a_standby() {
    let c = three_nodes_with_rewind("partition3");
    let (old, standbys) = settled_with_standbys(&c);
    let load = start_load(&c);

    shorten_orphan_retries(&c, &old);
    let start = Instant::now();
    let start_mono = mono_now();
    c.partition(&old);
    let ask = &standbys[0];
    // crm_mon shows the old view until the majority's membership changes.
    poll(&format!("{old} lost, seen from {ask}"), SETTLE, || {
        let st = c.status(ask).ok()?;
        (!st.online().contains(&old)).then_some(())
    });
    let lost = start.elapsed();
    eprintln!(
        "measured: 3-node partition of {old}: lost by the majority after {:.2} s",
        lost.as_secs_f64()
    );
    let new = wait_one_promoted(&c, ask, None);
    let failover = start.elapsed();
    eprintln!(
        "measured: 3-node partition of {old}: {new} promoted with the VIP by the majority \
         after {:.2} s",
        failover.as_secs_f64()
    );
    assert!(
        standbys.contains(&new),
        "the majority must promote one of its standbys {standbys:?}, not {new}\n{}",
        c.diagnostics()
    );
    wait_vip_writable(&c);
    eprintln!(
        "measured: 3-node partition of {old}: the clients reach {new} through the VIP after {:.2} s",
        start.elapsed().as_secs_f64()
    );
    let fenced = fenced_since(&c, start);
    for e in &fenced {
        eprintln!(
            "measured: 3-node partition of {old}: {} fenced after {:.2} s",
            e.node,
            (e.at - start).as_secs_f64()
        );
    }
    assert!(
        fenced.iter().all(|e| e.node == old),
        "only the isolated {old} may be fenced: {:?}\n{}",
        fenced.iter().map(|e| &e.node).collect::<Vec<_>>(),
        c.diagnostics()
    );
    // The isolated node is fenced, or (not fenced) has stopped its
    // resources under no-quorum-policy=stop: either way it is no primary
    // and holds no VIP (assert_primary checks every running node).
    let isolated_down = !c.node(&old).is_up();
    let fence_at = fenced.first().map_or(start, |e| e.at);
    if !isolated_down {
        poll(
            &format!("isolated {old} without a writable PostgreSQL"),
            SETTLE,
            || {
                let r = c.node(&old).psql("select pg_is_in_recovery()");
                (r.as_deref() != Ok("f")).then_some(())
            },
        );
        eprintln!(
            "measured: 3-node partition of {old}: not fenced, its PostgreSQL no longer a \
             primary after {:.2} s",
            start.elapsed().as_secs_f64()
        );
    }
    assert_primary(&c, &new);
    // No moment with two writable primaries, also before the isolated old
    // primary was fenced or demoted itself: the watcher saw it from inside.
    assert_partition_watched(
        &c,
        &old,
        start_mono,
        fenced.first().map(|e| e.at),
        "3-node partition of the primary",
    );

    let back = Instant::now();
    if isolated_down {
        let gone = wait_port_gone(&c, &old, fence_at);
        eprintln!(
            "measured: fenced {old}'s veth seen gone {:.2} s after its fencing (an upper bound)",
            gone.as_secs_f64()
        );
        c.boot(&old);
    } else {
        c.heal(&old);
    }
    wait_unpromoted(&c, &new, &old);
    c.wait_settled(&new, SETTLE);
    assert_eq!(
        wait_one_promoted(&c, &new, Some(&new)),
        new,
        "{}",
        c.diagnostics()
    );
    for n in c.nodes().iter().filter(|n| n.name != new) {
        wait_replicating(n);
    }
    assert_primary(&c, &new);
    eprintln!(
        "measured: {old} {} and every standby streaming from {new} after {:.2} s",
        if isolated_down { "booted" } else { "healed" },
        back.elapsed().as_secs_f64()
    );
    finish_load(&c, load, "3-node partition of the primary");
}
