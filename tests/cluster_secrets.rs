//! The passwords kept out of the CIB, in a real cluster configured by
//! `pcs-examples/rapidpro-cluster.pcs.sh` as an operator would: every node
//! stores `repl_password` and `redis_password` with
//! `pcs-examples/rapidpro-secret.sh` (cibsecret's layout under
//! `/var/lib/pacemaker/lrm/secrets/stack/`), the script writes them as
//! `lrm://` (`STACK_SECRETS`), and pacemaker-execd substitutes them for the
//! promotable clone's instances. Proved by what needs them: the standby
//! streams from the primary, whose `pg_hba.conf` asks `scram-sha-256` of the
//! cluster network (no `.pgpass` in these nodes), and the Redis replica
//! links to a master with `requirepass`. Meanwhile `cibadmin --query`,
//! `pcs resource config` and `crm configure show` hold neither password.

use std::time::Duration;

use rapidpro_ha_harness::netns::PGDATA;
use rapidpro_ha_harness::{NsCluster, REPL_PASSWORD};

use super::bin;
use super::cluster::{assert_watched, WatchMark};
use super::cluster::{other, wait_one_promoted, wait_replicating, SETTLE};

/// The nodes' Redis `requirepass`, found nowhere else in the cluster's text.
const REDIS_PASSWORD: &str = "redis-pw-Qx7vT2";

#[test]
fn cluster_secrets_reach_the_agent_from_lrm_files_and_no_cib_view_shows_them() {
    let c = NsCluster::builder("secrets")
        .nodes(2)
        .agent(bin())
        .redis_password(REDIS_PASSWORD)
        .build();
    // Every moment of the cluster's life: never two primaries, every
    // node sampled every 250 ms.
    let watch_mark = WatchMark::at_build(&c);
    let primary = wait_one_promoted(&c, "node1", None);
    c.wait_settled("node1", SETTLE);
    let standby = other(&c, &primary);
    // PostgreSQL streams (scram-sha-256 over the cluster network) and the
    // Redis replica link is up (requirepass): both passwords reached the
    // agent on the standby, through lrm://.
    wait_replicating(c.node(&standby));
    let auto_conf = c
        .node(&standby)
        .run(&["cat", &format!("{PGDATA}/postgresql.auto.conf")])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        auto_conf.contains(&format!("password={REPL_PASSWORD}"))
            || auto_conf.contains(&format!("password=''{REPL_PASSWORD}''")),
        "the standby's primary_conninfo carries the substituted repl_password \
         (not lrm://): {}",
        auto_conf.replace(REPL_PASSWORD, "<repl_password>")
    );
    assert!(!auto_conf.contains("lrm://"), "no mark reached PostgreSQL");

    for n in c.nodes() {
        // cibsecret's layout, root only.
        let listing = n
            .run(&[
                "stat",
                "-c",
                "%n %a %U",
                "/var/lib/pacemaker/lrm/secrets/stack",
                "/var/lib/pacemaker/lrm/secrets/stack/repl_password",
                "/var/lib/pacemaker/lrm/secrets/stack/repl_password.sign",
                "/var/lib/pacemaker/lrm/secrets/stack/redis_password",
                "/var/lib/pacemaker/lrm/secrets/stack/redis_password.sign",
            ])
            .unwrap_or_else(|e| panic!("{e}"));
        let modes: Vec<&str> = listing
            .lines()
            .map(|l| l.split_whitespace().nth(1).unwrap_or_default())
            .collect();
        assert_eq!(modes, ["700", "600", "600", "600", "600"], "{listing}");
        assert!(listing.lines().all(|l| l.ends_with(" root")), "{listing}");
    }

    // What every view of the CIB holds: the marks, never the values.
    let views = [
        ("cibadmin --query", vec!["cibadmin", "--query"]),
        ("pcs resource config", vec!["pcs", "resource", "config"]),
        ("crm configure show", vec!["crm", "configure", "show"]),
    ];
    for (what, args) in views {
        let out = c
            .node(&primary)
            .exec(&args, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(out.success(), "{what}: {}", out.failure_message());
        let text = format!("{}{}", out.stdout, out.stderr);
        eprintln!("secrets: {what} shows the stack's passwords as:");
        for line in text.lines().filter(|l| l.contains("_password")) {
            eprintln!("  {}", line.trim());
        }
        for secret in [REPL_PASSWORD, REDIS_PASSWORD] {
            assert!(
                !text.contains(secret),
                "{what} shows a password:\n{}",
                text.replace(secret, "<HERE>")
            );
        }
        for param in ["repl_password", "redis_password"] {
            assert!(
                text.lines()
                    .any(|l| l.contains(param) && l.contains("lrm://")),
                "{what} shows {param} as lrm://:\n{text}"
            );
        }
    }
    assert_watched(
        &c,
        &watch_mark,
        "cluster secrets reach the agent from lrm files and no cib view shows them",
    );
}
