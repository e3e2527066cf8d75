//! Integration tests: the agent binary driven with the environment Pacemaker
//! would set, against real PostgreSQL 15 and Redis 7 servers on private
//! ports (see the harness in `tests/harness`). One test binary, as ripgrep.

mod agent_node;
mod alert;
mod app_standin;
mod bad_input;
mod bench_results;
mod by_the_book;
mod child_environment;
mod cluster;
mod cluster_alerts;
mod cluster_app;
mod cluster_cold_start;
mod cluster_cutoff;
mod cluster_faults;
mod cluster_fencing;
mod cluster_hung;
mod cluster_preflight;
mod cluster_rebuild;
mod cluster_secrets;
mod cluster_split;
mod cluster_sync;
mod cluster_tls;
mod ctl;
mod hung_primary;
mod ocf_tools;
mod operator_world;
mod package;
mod pcs_examples;
mod planted_links;
mod postgres_sqlstate;
mod postgres_tls;
mod redis_tls;
mod runbook;
mod soak;

use std::time::Duration;

use rapidpro_ha_harness::{poll, Agent, Node};

/// The freshly built agent.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_rapidpro-agent")
}

/// An agent for `node` following `primary`, as a recurring monitor would
/// be run (interval set).
pub fn agent(node: &Node, primary: &Node) -> Agent {
    node.agent(bin()).primary(primary).meta("interval", "15000")
}

/// Waits until `node` streams from its primary.
pub fn wait_streaming(node: &Node) {
    poll(
        &format!("{} streaming from its primary", node.name),
        Duration::from_secs(60),
        || {
            let s = node
                .try_psql("select status from pg_stat_wal_receiver")
                .ok()?;
            (s == "streaming").then_some(())
        },
    )
}

/// Waits until `node`'s Redis replica link is up.
pub fn wait_redis_link(node: &Node) {
    poll(
        &format!("{}'s Redis link up", node.name),
        Duration::from_secs(60),
        || {
            let s = node.try_redis_cli(&["info", "replication"]).ok()?;
            s.contains("master_link_status:up").then_some(())
        },
    )
}
