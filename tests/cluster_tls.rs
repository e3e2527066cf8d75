//! Verified TLS in a real cluster: PostgreSQL with `sslmode=verify-full`
//! against a `pg_hba.conf` of `hostssl` lines only, and Redis with TLS on
//! its port and for replication (`NsClusterBuilder::tls`: a CA made by the
//! test, each node's certificate names its address and the VIP). The
//! agent's own connections to `primary_host` (the VIP) and the replicas'
//! streams must all verify; a plain connection is refused by the servers.

use rapidpro_ha_harness::NsCluster;

use super::bin;
use super::cluster::{steady_pair, wait_one_promoted, wait_replicating, SETTLE};

#[test]
fn a_cluster_with_verify_full_and_redis_tls_replicates_and_switches_over() {
    let c = NsCluster::builder("tls")
        .nodes(2)
        .agent(bin())
        .tls(true)
        .build();
    let (old, new) = steady_pair(&c);
    assert_replication_over_tls(&c, &old, &new);

    c.ban_promoted(&old);
    assert_eq!(
        wait_one_promoted(&c, &new, Some(&new)),
        new,
        "{}",
        c.diagnostics()
    );
    c.wait_settled(&new, SETTLE);
    wait_replicating(c.node(&old));
    assert_replication_over_tls(&c, &new, &old);
}

/// `standby` streams from `primary` over TLS, for PostgreSQL and Redis, and
/// a plain connection to the VIP is refused (so the servers really demand
/// TLS: the test cannot pass on a plain setup).
#[track_caller]
fn assert_replication_over_tls(c: &NsCluster, primary: &str, standby: &str) {
    let p = c.node(primary);
    let ssl = p
        .psql(
            "select coalesce(string_agg(s.ssl::text, ','), 'none') from pg_stat_replication r \
             join pg_stat_ssl s using (pid)",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ssl,
        "true",
        "{standby}'s WAL stream to {primary} is not TLS\n{}",
        c.diagnostics()
    );

    let plain = p.sh(&format!(
        "PGCONNECT_TIMEOUT=5 psql 'host={} sslmode=disable user=replicator dbname=postgres' \
         -XAtc 'select 1' 2>&1 || true",
        c.vip()
    ));
    let plain = plain.unwrap_or_else(|e| e);
    assert!(
        plain.contains("no encryption"),
        "a plain connection to the VIP: {plain}"
    );

    for n in [primary, standby] {
        let node = c.node(n);
        let port = node
            .redis_cli(&["config", "get", "port"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            port.ends_with("\n0"),
            "{n}'s Redis still has a plain TCP port: {port:?}"
        );
        let repl = node
            .redis_cli(&["config", "get", "tls-replication"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            repl.ends_with("\nyes"),
            "{n}'s Redis replicates in plain text: {repl:?}"
        );
    }
    let info = c
        .node(standby)
        .redis_cli(&["info", "replication"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        info.contains("master_link_status:up"),
        "{standby}'s Redis link: {info}"
    );
}
