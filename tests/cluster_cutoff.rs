//! The primary cut off from a 3-node cluster without fencing (issue 15).
//!
//! Fencing hides how long a cut-off primary takes to give up its role by
//! powering it off; an agent must not rely on it (a fence can be slow,
//! delayed or failing). Without it, the isolated node loses quorum and
//! Pacemaker (no-quorum-policy=stop) demotes and stops its instance: Redis
//! must be a replica and the VIP released within 2 s of losing quorum,
//! although its standbys are unreachable and PostgreSQL's fast shutdown
//! would wait for their WAL senders. The in-node watcher then sees no
//! second writable primary nor Redis master at any moment, through the
//! failover and after the heal.

use std::time::{Duration, Instant};

use rapidpro_ha_harness::netns::{mono_now, mono_of};
use rapidpro_ha_harness::{poll, NsCluster, STACK_AGENT};

use super::bin;
use super::cluster::{
    assert_primary, finish_load_checking, settled_with_standbys, start_load, wait_one_promoted,
    wait_replicating, Celery, SETTLE,
};
use super::cluster_fencing::wait_vip_writable;

/// The goal: Redis a replica and the VIP released this long after the
/// isolated primary lost quorum.
const RELEASED_WITHIN: Duration = Duration::from_secs(2);

/// Without the agent's quorum guard this failed (4 runs on h-B; figures
/// from the last, in the isolated node's pacemaker.log): quorum lost at
/// 14.26, the scheduler's transition at 15.39, then the app group stopped
/// member after member (nginx 16.50 ... uwsgi 20.59: the symmetrical order
/// `promote stack-clone then start app` of pcs-examples), and only then the
/// demote, 20.59 to 21.17. The VIP's stop ended at 28.34; in another run it
/// stayed blocked ("Stop vip due to unrunnable stack-clone notified
/// (blocked)") for over 90 s. Now the guard the primary leaves behind sees
/// the loss within its poll and removes the VIP's address, makes Redis a
/// replica and stops PostgreSQL's writes by itself. PostgreSQL counts as
/// writable while `transaction_read_only` is off, libpq's own test for
/// `target_session_attrs=read-write`, here and in the in-node watcher.
#[test]
fn a_primary_cut_off_without_fencing_releases_redis_and_the_vip_within_2s_of_losing_quorum() {
    let c = NsCluster::builder("cutoff3")
        .nodes(3)
        .agent(bin())
        .app(true)
        .param("rewind", "true")
        .build();
    let (old, standbys) = settled_with_standbys(&c);
    // Without fencing, nothing powers the isolated node off: what it does
    // by itself is all there is.
    c.disable_fencing(&old);
    c.wait_settled(&old, SETTLE);
    let load = start_load(&c);

    let start = Instant::now();
    c.partition(&old);
    // Lost: as this node's corosync says, the moment Pacemaker and the
    // guard learn it. Released: Redis no master, PostgreSQL read-only, the
    // VIP gone.
    let (lost, released) = c.quorum_lost_then_released(&old, SETTLE);
    eprintln!(
        "measured: 3-node cut of the primary {old} without fencing: quorum lost (corosync) \
         after {:.2} s; Redis no master, PostgreSQL read-only and the VIP released \
         {:.2} s after that",
        (lost - start).as_secs_f64(),
        released.saturating_duration_since(lost).as_secs_f64(),
    );
    // Where the isolated node's time went: quorum, its demote, its stop.
    let log = std::fs::read_to_string(c.node(&old).host_path("var-log/pacemaker/pacemaker.log"))
        .unwrap_or_default();
    for line in log.lines().filter(|l| {
        l.contains("quorum") && l.contains("pacemaker-controld")
            || l.contains("quorum guard")
            || l.contains("stack_demote_0")
            || l.contains("stack_stop_0")
            || l.contains("Actions:")
    }) {
        eprintln!("  {old}: {line}");
    }
    let new = wait_one_promoted(&c, &standbys[0], None);
    assert!(
        standbys.contains(&new),
        "the majority must promote one of its standbys {standbys:?}, not {new}\n{}",
        c.diagnostics()
    );
    wait_vip_writable(&c);
    eprintln!(
        "measured: 3-node cut of the primary {old} without fencing: {new} promoted and \
         writable through the VIP after {:.2} s",
        start.elapsed().as_secs_f64()
    );
    // The heal, 5 s after the failover.
    std::thread::sleep(Duration::from_secs(5));
    c.heal(&old);
    poll(&format!("{old} back as Unpromoted"), SETTLE, || {
        let st = c.status(&new).ok()?;
        st.nodes_with_role(STACK_AGENT, "Unpromoted")
            .contains(&old)
            .then_some(())
    });
    wait_replicating(c.node(&old));
    assert_primary(&c, &new);

    // What the isolated node's demote and stop said, with their times.
    let log = std::fs::read_to_string(c.node(&old).host_path("var-log/pacemaker/pacemaker.log"))
        .unwrap_or_default();
    for line in log.lines().filter(|l| {
        (l.contains("stack_demote_0") || l.contains("stack_stop_0")) && l.contains("stack(stack)")
            || l.contains("Result of demote")
            || l.contains("Result of stop")
    }) {
        eprintln!("  {old}: {line}");
    }
    // From quorum loss + 2 s on, through the failover and the heal: never
    // a second writable primary nor a second Redis master.
    let from = mono_of(lost + RELEASED_WITHIN);
    let r = c.watch_report(from, mono_now());
    assert_eq!(
        (r.pg.known_ns, r.redis.known_ns),
        (0, 0),
        "two writable primaries: {}; two Redis masters: {}\n{}",
        r.describe(&r.pg),
        r.describe(&r.redis),
        c.diagnostics()
    );
    assert!(
        released.saturating_duration_since(lost) <= RELEASED_WITHIN,
        "{old} released Redis and the VIP {:?} after losing quorum\n{}",
        released.saturating_duration_since(lost),
        c.diagnostics()
    );
    finish_load_checking(
        &c,
        load,
        "3-node cut of the primary without fencing",
        Celery::MayOverlapWithoutFencing,
    );
}
