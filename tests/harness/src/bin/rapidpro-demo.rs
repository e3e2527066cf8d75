//! The one-command demo (run by `./demo`): a 2-node sandbox cluster of real
//! Pacemaker and Corosync in Linux namespaces, running `ocf:rapidpro:stack`
//! over PostgreSQL and Redis, a writer committing rows through the virtual
//! IP, a power-off of the primary, the failover, the rejoin, and teardown.
//!
//! Usage: rapidpro-demo <path of the rapidpro-agent binary>

use std::time::{Duration, Instant};

use rapidpro_ha_harness::workload::{missing_rows, Writer};
use rapidpro_ha_harness::{poll, NsCluster, STACK_AGENT, VIP_AGENT};

const SETTLE: Duration = Duration::from_secs(120);

fn banner(s: &str) {
    println!("\n==== {s}");
}

/// The promoted node, once exactly one is Promoted with the VIP and every
/// other online node is Unpromoted.
fn one_promoted(c: &NsCluster, ask: &str) -> Option<String> {
    let st = c.status(ask).ok()?;
    let promoted = st.nodes_with_role(STACK_AGENT, "Promoted");
    let unpromoted = st.nodes_with_role(STACK_AGENT, "Unpromoted");
    let vip = st.nodes_with_role(VIP_AGENT, "Started");
    (promoted.len() == 1 && unpromoted.len() + 1 == st.online().len() && vip == promoted)
        .then(|| promoted[0].clone())
}

fn streaming(c: &NsCluster, node: &str) -> bool {
    let n = c.node(node);
    n.psql("select status from pg_stat_wal_receiver")
        .map(|s| s == "streaming")
        .unwrap_or(false)
        && n.redis_cli(&["info", "replication"])
            .map(|s| s.contains("master_link_status:up"))
            .unwrap_or(false)
}

fn main() {
    let agent = std::env::args()
        .nth(1)
        .expect("usage: rapidpro-demo <path of rapidpro-agent>");
    let t0 = Instant::now();

    banner("Starting 2 nodes (corosync + pacemaker, PostgreSQL 15, Redis 7 each) in namespaces");
    let c = NsCluster::builder("demo")
        .nodes(2)
        .agent(&agent)
        .param("rewind", "true")
        .build();
    let primary = poll("one node promoted with the VIP", SETTLE, || {
        one_promoted(&c, "node1")
    });
    let standby = if primary == "node1" { "node2" } else { "node1" };
    poll(&format!("{standby} streaming"), SETTLE, || {
        streaming(&c, standby).then_some(())
    });
    c.wait_settled("node1", SETTLE);
    println!(
        "cluster up in {:.1} s: {primary} is primary and holds the VIP {}, {standby} streams from it",
        c.pacemaker_started().elapsed().as_secs_f64(),
        c.vip()
    );
    println!("{}", c.crm_mon_text(&primary));

    banner("A client writes rows through the VIP");
    let writer = Writer::start(c.client_netns_pid(), c.vip(), 5432);
    writer.wait_for_acks(50, SETTLE);
    println!(
        "{} writes acknowledged so far",
        writer.snapshot().acked.len()
    );

    c.wait_synchronous(&primary, SETTLE);
    banner(&format!("Power-off of the primary, {primary}"));
    let cut = Instant::now();
    c.power_off(&primary);
    let new = poll(&format!("{standby} promoted"), SETTLE, || {
        one_promoted(&c, standby).filter(|p| p == standby)
    });
    let failover = cut.elapsed();
    writer.wait_for_acks(20, SETTLE);
    let w = writer.snapshot();
    println!(
        "{new} promoted and holding the VIP {:.2} s after the power-off ({} fenced: {})",
        failover.as_secs_f64(),
        primary,
        c.fence_events().iter().any(|e| e.node == primary)
    );
    println!(
        "writes: {} acknowledged, longest gap {:.2} s",
        w.acked.len(),
        w.longest_gap.as_secs_f64()
    );
    println!("{}", c.crm_mon_text(&new));

    banner(&format!("{primary} boots again and rejoins"));
    let boot = Instant::now();
    c.boot(&primary);
    poll(
        &format!("{primary} Unpromoted and streaming"),
        SETTLE,
        || {
            let st = c.status(&new).ok()?;
            (st.nodes_with_role(STACK_AGENT, "Unpromoted")
                .contains(&primary)
                && streaming(&c, &primary))
            .then_some(())
        },
    );
    println!(
        "{primary} back as a streaming standby of {new} {:.1} s after booting",
        boot.elapsed().as_secs_f64()
    );
    println!("{}", c.crm_mon_text(&new));

    let w = writer.stop();
    let missing = missing_rows(c.client_netns_pid(), c.vip(), 5432, &w.acked);
    println!(
        "\n{} acknowledged writes, {} missing on the new primary",
        w.acked.len(),
        missing.len()
    );
    banner("Tearing down");
    drop(c);
    println!("demo done in {:.0} s", t0.elapsed().as_secs_f64());
    if !missing.is_empty() {
        std::process::exit(1);
    }
}
