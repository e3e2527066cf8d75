//! Issue 15, no asynchronous window: a standby that streams is promotable,
//! and with `sync_replication=on` (the default) commits wait for it, within
//! about a second, after a rejoin and after a promotion, not at the
//! primary's next monitor (15 s). Two nodes, the writer and the in-node
//! watcher across each fault; no acknowledged write may be lost.

use std::time::{Duration, Instant};

use rapidpro_ha_harness::NsCluster;

use super::bin;
use super::cluster::{
    finish_load, other, start_load, steady_pair, wait_one_promoted, wait_replicating, SETTLE,
};
use super::cluster_faults::{promotion_score, stack_id, stale_mark};

fn two_nodes(name: &str) -> NsCluster {
    NsCluster::builder(name)
        .nodes(2)
        .agent(bin())
        .param("rewind", "true")
        .build()
}

/// Polls `f` every 20 ms for at most `within`; returns when it first held.
#[track_caller]
fn first_time(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> Instant {
    let start = Instant::now();
    loop {
        if f() {
            return Instant::now();
        }
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `primary` sees `standby` streaming (`pg_stat_replication`).
fn streams_to(c: &NsCluster, primary: &str, standby: &str) -> bool {
    c.node(primary)
        .psql(&format!(
            "select count(*) from pg_stat_replication \
             where application_name = '{standby}' and state = 'streaming'"
        ))
        .is_ok_and(|n| n == "1")
}

/// Whether `primary` waits for a standby before acknowledging a commit.
fn synchronous(c: &NsCluster, primary: &str) -> bool {
    c.node(primary)
        .psql("show synchronous_standby_names")
        .is_ok_and(|n| n == "ANY 1 (*)")
}

#[test]
fn a_rejoined_standby_is_promotable_as_soon_as_it_streams_and_takes_over_at_once() {
    let c = two_nodes("sync_rejoin");
    let (primary, standby) = steady_pair(&c);
    let load = start_load(&c);

    c.power_off(&standby);
    // The primary's monitor finds no standby: commits go asynchronous and
    // the standby is marked stale (it lacks what is acknowledged now).
    first_time("commits asynchronous", SETTLE, || {
        !synchronous(&c, &primary)
    });
    load.wait_for_acks(20);
    c.boot(&standby);
    let streamed = first_time(
        &format!("{standby} streaming from {primary}"),
        SETTLE,
        || streams_to(&c, &primary, &standby),
    );
    let promotable = first_time(
        &format!("{standby} promotable, commits synchronous"),
        SETTLE,
        || {
            promotion_score(&c, &primary, &standby).is_some_and(|s| s > 0)
                && stale_mark(&c, &primary, &standby).is_none()
                && synchronous(&c, &primary)
        },
    );
    let after = promotable - streamed;
    eprintln!(
        "measured: rejoin of {standby}: promotable and synchronous {:.2} s after it streamed",
        after.as_secs_f64()
    );
    // Not the primary's next monitor (15 s): its post-start notification.
    assert!(
        after < Duration::from_secs(5),
        "{standby} promotable only {after:?} after it streamed\n{}",
        c.diagnostics()
    );

    let start = Instant::now();
    c.power_off(&primary);
    let promoted = wait_one_promoted(&c, &standby, Some(&standby));
    eprintln!(
        "measured: power-off of {primary} right after {standby} rejoined: {promoted} promoted \
         with the VIP after {:.2} s",
        start.elapsed().as_secs_f64()
    );
    finish_load(&c, load, "rejoin, then power-off of the primary");
}

/// The new primary powered off 2 s after its promotion, or 1 s after the
/// old primary streams from it if that comes later. Measured in this
/// test's runs: before the fixes, the demoted old primary streamed from
/// itself (the VIP stops after the demote) until about 10 s after the
/// promotion, the new primary marked it stale, yet it kept the 1 it gave
/// itself and was promoted without 23 acknowledged writes; with stale nodes
/// scored -1000 nothing was lost but nothing was promoted; now the
/// post-promote notification ends that self-connection, and the standby's
/// status message every second (wal_receiver_status_interval) ends it if
/// the VIP had not left yet; the old primary streams 0.6–1.7 s after the
/// promotion, commits wait for it at once, and it takes over with every
/// acknowledged write.
#[test]
fn the_new_primary_powered_off_right_after_a_switchover_loses_no_acknowledged_write() {
    let c = two_nodes("sync_promoted_off");
    let (old, new) = steady_pair(&c);
    let load = start_load(&c);

    c.ban_promoted(&old);
    let promoted = first_time(&format!("{new} writable"), SETTLE, || {
        c.node(&new)
            .psql("select pg_is_in_recovery()")
            .is_ok_and(|r| r == "f")
    });
    // The old primary may take over again.
    c.clear_bans(&new);
    let (mut vip, mut streamed, mut synced) = (None, None, None);
    loop {
        let now = promoted.elapsed();
        if vip.is_none() && c.node(&new).has_address(c.vip()) {
            vip = Some(now);
        }
        if streamed.is_none() && streams_to(&c, &new, &old) {
            streamed = Some(now);
        }
        if synced.is_none() && synchronous(&c, &new) {
            synced = Some(now);
        }
        let due = streamed
            .map_or(Duration::MAX, |s| s + Duration::from_secs(1))
            .max(Duration::from_secs(2));
        if now >= due {
            break;
        }
        assert!(
            now < SETTLE,
            "{old} not streaming from {new}\n{}",
            c.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "measured: switchover {old} -> {new}, after the promotion: VIP on {new} {vip:?}, {old} \
         streaming {streamed:?}, commits synchronous {synced:?}; {new} powered off after {:?}",
        promoted.elapsed()
    );
    c.power_off(&new);
    let start = Instant::now();
    let promoted = wait_one_promoted(&c, &old, Some(&old));
    eprintln!(
        "measured: {new} powered off right after its promotion: {promoted} promoted with the VIP \
         after {:.2} s",
        start.elapsed().as_secs_f64()
    );
    finish_load(
        &c,
        load,
        "the new primary powered off right after its promotion",
    );
}

/// A survivor with no promotion score when the primary is lost (it
/// rejoined, and the primary died before scoring it) scores itself in the
/// post-stop notification of the primary's instance, so the transition
/// that follows can promote it, not at its next monitor (up to 16 s
/// later). The score the primary gave it is deleted to stand for "died
/// before scoring it": the primary's own record says it is set, so nothing
/// restores it until the next start or stop. `sync_replication=off`: with
/// `on` the primary would have marked the rejoining node stale, which
/// rightly keeps it from scoring itself.
#[test]
fn a_survivor_without_a_score_scores_itself_when_the_primary_is_lost() {
    let c = NsCluster::builder("sync_survivor")
        .nodes(2)
        .agent(bin())
        .param("rewind", "true")
        .param("sync_replication", "off")
        .build();
    let primary = wait_one_promoted(&c, "node1", None);
    c.wait_settled(&primary, SETTLE);
    let standby = other(&c, &primary);
    wait_replicating(c.node(&standby));
    // Scored by the primary first: a score it set after the deletion would
    // leave the survivor nothing to do.
    first_time(&format!("{standby} scored by {primary}"), SETTLE, || {
        promotion_score(&c, &primary, &standby).is_some_and(|s| s > 0)
    });
    let score = format!("master-{}", stack_id(&c, &primary));
    let out = c.crm(
        &primary,
        &[
            "crm_attribute",
            "--node",
            &standby,
            "--name",
            &score,
            "--lifetime",
            "reboot",
            "--delete",
        ],
    );
    assert!(out.success(), "{out:?}");
    first_time(&format!("{standby} without a score"), SETTLE, || {
        promotion_score(&c, &primary, &standby).is_none()
    });
    // No writer: `off` may lose what was acknowledged last, by design.
    let start = Instant::now();
    c.power_off(&primary);
    let promoted = wait_one_promoted(&c, &standby, Some(&standby));
    eprintln!(
        "measured: primary {primary} lost while {standby} had no score: {promoted} promoted \
         with the VIP after {:.2} s",
        start.elapsed().as_secs_f64()
    );
    let log = std::fs::read_to_string(
        c.node(&standby)
            .host_path("var-log/pacemaker/pacemaker.log"),
    )
    .unwrap_or_default();
    assert!(
        log.lines().any(|l| l.contains("stack_notify")
            && l.contains("no primary answers; making this standby promotable")),
        "{standby} did not score itself in a notification\n{}",
        c.diagnostics()
    );
}
