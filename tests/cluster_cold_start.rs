//! Issue 15, cold start: after every node was down, every standby scores
//! itself alike, and Pacemaker may pick one that is behind. Its promote
//! used to refuse ("… is ahead"), which records a failed action and a
//! fail-count on a healthy standby; with `migration-threshold=2` one more
//! failure there within 90 s banned it. Now the node about to be promoted
//! hears the others' positions in its pre-promote notification and hands
//! the promotion over before Pacemaker runs its promote.

use std::time::Duration;

use rapidpro_ha_harness::{poll, NsCluster};

use super::bin;
use super::cluster::{fail_count, settled_with_standbys, wait_one_promoted, SETTLE};
use super::cluster_faults::stack_id;

/// The rows written while only the primary ran.
const ROWS: u32 = 50;

#[test]
fn a_cold_start_that_picks_the_standby_behind_promotes_the_one_ahead_with_no_failed_action() {
    cold_start(2);
}

#[test]
fn a_cold_start_of_three_nodes_that_picks_the_one_behind_promotes_another_with_no_failed_action() {
    cold_start(3);
}

/// `nodes` nodes: one standby goes down while the primary (and, with 3,
/// the other standby, which streams) commits rows; then every node is
/// powered off and booted, with a constraint making the node behind
/// Pacemaker's first choice.
fn cold_start(nodes: usize) {
    // `off`: with `on` the primary would mark the standby stale while it
    // is down, and a stale node never scores itself: no choice to get wrong.
    let c = NsCluster::builder(&format!("cold_start{nodes}"))
        .nodes(nodes)
        .agent(bin())
        .param("rewind", "true")
        .param("sync_replication", "off")
        .build();
    // Not `steady_pair`: with `off` commits never become synchronous.
    let (ahead, standbys) = settled_with_standbys(&c);
    let behind = standbys[0].clone();
    // Up to date too, with 3 nodes: it streams the rows.
    let others: Vec<String> = standbys[1..].to_vec();

    // The standby goes down; the primary commits what it will lack.
    c.power_off(&behind);
    poll(&format!("{behind} fenced"), SETTLE, || {
        c.fence_events()
            .into_iter()
            .any(|e| e.node == behind)
            .then_some(())
    });
    c.node(&ahead)
        .psql(&format!(
            "create table cold_start (n int); \
             insert into cold_start select generate_series(1, {ROWS})"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    // Make Pacemaker's first choice the node behind: with equal scores
    // (both give themselves 1) this preference decides.
    let prefer = format!(
        "<rsc_location id=\"cold-start-prefer-{behind}\" rsc=\"{}\" role=\"Promoted\" \
         node=\"{behind}\" score=\"100\"/>",
        c.stack_clone_id()
    );
    let out = c.crm(
        &ahead,
        &[
            "cibadmin",
            "--create",
            "--scope",
            "constraints",
            "--xml-text",
            &prefer,
        ],
    );
    assert!(out.success(), "cibadmin: {out:?}");
    // The CIB reaches the disk a moment after cibadmin returns; a power-off
    // before would lose the constraint.
    let on_disk = c.node(&ahead).host_path("var-lib-pacemaker/cib/cib.xml");
    poll("the constraint written to the CIB on disk", SETTLE, || {
        std::fs::read_to_string(&on_disk)
            .ok()?
            .contains(&format!("cold-start-prefer-{behind}"))
            .then_some(())
    });

    // Every node down, then every node up: a cold start.
    if let Some(o) = others.first() {
        poll(&format!("{o} has the rows"), SETTLE, || {
            let n = c.node(o).psql("select count(*) from cold_start").ok()?;
            (n == ROWS.to_string()).then_some(())
        });
    }
    for o in &others {
        c.power_off(o);
    }
    c.power_off(&ahead);
    let order: Vec<&str> = std::iter::once(ahead.as_str())
        .chain(others.iter().map(String::as_str))
        .chain([behind.as_str()])
        .collect();
    c.boot_all(&order);

    // The path under test: the node behind is Pacemaker's choice and gives
    // the promotion away in its pre-promote notification (without that
    // line this test would prove nothing about the hand-over).
    let log_of = |node: &str| {
        std::fs::read_to_string(c.node(node).host_path("var-log/pacemaker/pacemaker.log"))
            .unwrap_or_default()
    };
    let handed = poll(
        &format!("{behind}, Pacemaker's choice, handing the promotion over"),
        SETTLE,
        || {
            log_of(&behind)
                .lines()
                .find(|l| l.contains("handing the promotion to"))
                .map(str::to_owned)
        },
    );
    // The preference has served: once the node ahead is promoted and
    // its standby scored, it would move the Promoted role back.
    let out = c.crm(
        &ahead,
        &[
            "cibadmin",
            "--delete",
            "--xml-text",
            &format!("<rsc_location id=\"cold-start-prefer-{behind}\"/>"),
        ],
    );
    assert!(out.success(), "cibadmin: {out:?}");
    let promoted = wait_one_promoted(&c, &ahead, None);
    c.wait_settled(&ahead, SETTLE);
    eprintln!(
        "measured: cold start of {nodes} nodes with {behind} behind and preferred: {promoted} \
         promoted"
    );
    eprintln!("  {behind}: {handed}");
    // With 3 nodes, either node that has the rows.
    assert!(
        promoted == ahead || others.contains(&promoted),
        "the node behind ({promoted}) was promoted\n{}",
        c.diagnostics()
    );
    // Its promote never ran (it would have refused, or promoted the node
    // behind): nothing after the hand-over says so.
    let log = log_of(&behind);
    let after = &log[log.find(&handed).unwrap_or(0)..];
    let promote_here = format!("Result of promote operation for stack on {behind}");
    assert!(
        !after.lines().any(|l| l.contains(&promote_here)),
        "{behind} ran a promote after handing it over\n{}",
        c.diagnostics()
    );
    let st = c.status(&ahead).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        st.failures.is_empty(),
        "failed actions after a cold start: {:?}\n{}",
        st.failures,
        c.diagnostics()
    );
    let rsc = stack_id(&c, &ahead);
    for node in std::iter::once(&ahead).chain(&others).chain([&behind]) {
        assert_eq!(
            fail_count(&c, &ahead, &rsc, node).unwrap_or(0),
            0,
            "fail-count of {rsc} on {node}\n{}",
            c.diagnostics()
        );
    }
    // Nothing the primary committed alone is lost, and the node behind
    // follows it.
    poll(
        &format!("{behind} replaying the rows written while it was down"),
        Duration::from_secs(30),
        || {
            let n = c
                .node(&behind)
                .psql("select count(*) from cold_start")
                .ok()?;
            (n == ROWS.to_string()).then_some(())
        },
    );
}
