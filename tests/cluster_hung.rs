//! A hung primary in a cluster (issue 15): its postmaster SIGSTOPped, as a
//! dead disk freezes it. The monitor reports it failed at once; the demote
//! and stop kill it (fast, immediate, then SIGKILL, each bounded) instead
//! of waiting out their timeouts, and the clients write through the VIP
//! again. No acknowledged write is lost.

use std::time::Instant;

use rapidpro_ha_harness::netns::PGDATA;

use super::cluster::{
    assert_primary, cluster_with_rewind, finish_load, start_load, wait_one_promoted,
    wait_replicating, SETTLE,
};
use super::cluster_fencing::wait_vip_writable;

#[test]
fn a_sigstopped_postmaster_on_the_primary_is_killed_and_the_clients_write_again() {
    let c = cluster_with_rewind("pg_sigstop");
    let first = wait_one_promoted(&c, "node1", None);
    c.wait_settled(&first, SETTLE);
    for n in c.nodes().iter().filter(|n| n.name != first) {
        wait_replicating(n);
    }
    let load = start_load(&c);

    let frozen = Instant::now();
    let pid = c
        .node(&first)
        .sh(&format!(
            "pid=$(head -n1 {PGDATA}/postmaster.pid) && kill -STOP \"$pid\" && echo \"$pid\""
        ))
        .unwrap_or_else(|e| panic!("SIGSTOP of {first}'s postmaster: {e}"));
    let pid = pid.trim().to_owned();
    // A frozen primary is not writable through the VIP: this returns once
    // Pacemaker recovered (in place or on the standby). Each attempt waits
    // up to 10 s: finish_load's longest write gap is the measurement.
    wait_vip_writable(&c);
    let back = frozen.elapsed();
    let ask = c
        .nodes()
        .iter()
        .map(|n| n.name.clone())
        .find(|n| *n != first)
        .expect("a second node");
    c.wait_settled(&ask, SETTLE);
    let new = wait_one_promoted(&c, &ask, None);
    eprintln!(
        "measured: SIGSTOP of {first}'s postmaster: {new} Promoted and writable through the VIP \
         after at most {:.2} s ({})",
        back.as_secs_f64(),
        if new == first {
            "recovered in place"
        } else {
            "promotion moved"
        }
    );
    assert_primary(&c, &new);
    for n in c.nodes().iter().filter(|n| n.name != new) {
        wait_replicating(n);
    }
    // The frozen postmaster was killed, not waited for.
    let alive = c
        .node(&first)
        .sh(&format!("kill -0 {pid} 2>/dev/null && echo alive || true"));
    assert_ne!(
        alive.as_deref().map(str::trim),
        Ok("alive"),
        "the frozen postmaster {pid} still runs on {first}"
    );
    finish_load(&c, load, "SIGSTOP of the primary's postmaster");
}
