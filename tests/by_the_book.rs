//! The README's "From two fresh servers", run as written: a 2-node cluster
//! whose nodes start as Debian ships them (no PostgreSQL cluster yet,
//! Debian's unchanged `redis.conf`, `postgresql` and `redis-server` enabled
//! in systemd; `NsClusterBuilder::by_the_book`), with the agent and the
//! tools from the Debian package. The section's shell blocks are read from
//! README.md itself (so the documentation cannot drift from what is tested)
//! and run in order in the node each names (`# on sms1`, `# on sms2`,
//! `# on both`), from root's home, as an administrator's root shell would.
//! Then: `sms1` promoted with the VIP, `sms2` streaming (PostgreSQL and
//! Redis), a writer through the VIP, power-off of the primary, failover,
//! the old primary booted again and rejoining by itself, RUNBOOK's rebuild
//! of that standby (`rapidproctl rebuild`, run on it), and no acknowledged
//! write lost.
//!
//! What the test changes in the README's text, and why (nothing else):
//! - the names: `sms1` and `sms2` become the nodes `node1` and `node2`, the
//!   virtual IP `10.172.20.200` the cluster's, and the network `10.172.20.`
//!   the cluster's (node addresses `.11` and `.12` map to the same host
//!   numbers);
//! - `apt install PACKAGES` becomes `dpkg-query -W PACKAGES` (the nodes share
//!   the host's installed packages), and `apt install ./rapidpro-ha_*.deb`
//!   becomes a check that the package's agent, tools and example script are
//!   at their paths (the harness installed them from the package built by
//!   `scripts/build-deb`, `NsClusterBuilder::from_deb`);
//! - `systemctl disable --now` becomes `systemctl disable`: no systemd runs
//!   in the nodes (tini is their PID 1), so there is nothing to stop (a
//!   fresh node runs neither PostgreSQL nor Redis) and `--now` would fail;
//!   the disabling itself runs, offline, on the node's own copies of
//!   `/etc/systemd/system` and `/etc/rc?.d`;
//! - every block runs with `VARIANT=sandbox` and `APP=no` exported: the
//!   sandbox fence agent instead of IPMI boards, and no app tier (the nodes
//!   have no `rapidpro`, `celery` or `celerybeat` units). The README sets
//!   neither variable, so the script reads them from the environment.
//!
//! What the README leaves to the operator's existing setup is done by the
//! test after the blocks, as a fixture: the Pacemaker membership (the
//! harness forms it, as the README's prose says), and the app's own
//! database access (the writer's role, table and `pg_hba.conf` line).

use std::path::Path;
use std::time::Duration;

use rapidpro_ha_harness::workload::{WRITER_PASSWORD, WRITER_USER};
use rapidpro_ha_harness::NsCluster;

use super::cluster::{
    boot_and_rejoin, finish_load, start_load, wait_one_promoted, wait_replicating, SETTLE,
};
use super::package::deb;

const README: &str = include_str!("../README.md");
/// The `##` section run by this test.
const SECTION: &str = "From two fresh servers";
/// The names the section uses.
const DOC_VIP: &str = "10.172.20.200";
const DOC_NET: &str = "10.172.20.";
const DOC_NODES: [&str; 2] = ["sms1", "sms2"];
/// What the package installs, checked in place of `apt install ./...deb`.
const PACKAGE_FILES: [&str; 4] = [
    "/usr/lib/ocf/resource.d/rapidpro/stack",
    "/usr/sbin/rapidproctl",
    "/usr/sbin/rapidpro-alert",
    "/usr/share/doc/rapidpro-ha/examples/rapidpro-cluster.pcs.sh",
];
/// Every block runs from root's home with these (see the module docs).
const PROLOGUE: &str = "cd /root\nexport VARIANT=sandbox APP=no\n";
/// A block may wait for the cluster (`crm_resource --wait --timeout=300s`).
const BLOCK_TIMEOUT: Duration = Duration::from_secs(420);

/// Where a block runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum On {
    /// `# on sms1` or `# on sms2`: that node (index into [`DOC_NODES`]).
    One(usize),
    /// `# on both`: sms1, then sms2.
    Both,
}

/// One fenced `sh` block of the section.
#[derive(Debug, Clone)]
struct Block {
    /// Line number (in README.md) of its first line, for messages.
    line: usize,
    on: On,
    script: String,
}

/// The `sh` blocks of README.md's section [`SECTION`], in order. Each must
/// start with `# on sms1`, `# on sms2` or `# on both`.
fn section_blocks(md: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut inside = false;
    let mut current: Option<Block> = None;
    for (i, raw) in md.lines().enumerate() {
        if let Some(h) = raw.strip_prefix("## ") {
            inside = h.trim() == SECTION;
            continue;
        }
        if !inside {
            continue;
        }
        if let Some(b) = current.as_mut() {
            if raw.trim() == "```" {
                out.push(current.take().expect("a block"));
            } else {
                b.script.push_str(raw);
                b.script.push('\n');
            }
        } else if raw.trim() == "```sh" {
            let first = md.lines().nth(i + 1).unwrap_or_default().trim();
            let on = match first {
                "# on sms1" => On::One(0),
                "# on sms2" => On::One(1),
                "# on both" => On::Both,
                other => panic!(
                    "README.md line {}: a block of \"{SECTION}\" must start with \
                     `# on sms1`, `# on sms2` or `# on both`, not {other:?}",
                    i + 2
                ),
            };
            current = Some(Block {
                line: i + 2,
                on,
                script: String::new(),
            });
        }
    }
    assert!(current.is_none(), "README.md: an unclosed ```sh block");
    out
}

/// The substitutions of the module docs for one line of a block, other
/// than the names.
fn substitute(line: &str) -> String {
    if let Some(rest) = line.trim().strip_prefix("apt install ") {
        let words: Vec<&str> = rest.split_whitespace().collect();
        if words.iter().any(|w| w.ends_with(".deb")) {
            assert_eq!(
                words,
                ["./rapidpro-ha_*.deb"],
                "README.md installs our package otherwise than the test knows: {line}"
            );
            return PACKAGE_FILES
                .iter()
                .map(|f| format!("test -e {f}"))
                .collect::<Vec<_>>()
                .join(" && ");
        }
        return format!("dpkg-query -W {rest}");
    }
    line.replace("systemctl disable --now ", "systemctl disable ")
}

/// The cluster's names for the section's.
fn map_names(script: &str, c: &NsCluster) -> String {
    let net = {
        let a = &c.nodes()[0].addr;
        format!("{}.", a.rsplit_once('.').expect("an IPv4 address").0)
    };
    let mut s = script.replace(DOC_VIP, c.vip()).replace(DOC_NET, &net);
    for (doc, node) in DOC_NODES.iter().zip(c.nodes()) {
        s = s.replace(doc, &node.name);
    }
    s
}

/// The value following `key` in the section's blocks (`requirepass`).
fn setting<'a>(blocks: &'a [Block], key: &str) -> &'a str {
    blocks
        .iter()
        .flat_map(|b| b.script.lines())
        .find_map(|l| l.trim().strip_prefix(key))
        .map(str::trim)
        .unwrap_or_else(|| panic!("README.md's \"{SECTION}\" sets no {key}"))
}

/// What of the host the section's commands could touch, to compare before
/// and after: the systemd and SysV links, PostgreSQL's and Redis's
/// configuration and data directories (two levels), and what systemd says.
fn host_fingerprint() -> String {
    let mut find = std::process::Command::new("find");
    find.args([
        "/etc/systemd/system",
        "/etc/rc0.d",
        "/etc/rc1.d",
        "/etc/rc2.d",
        "/etc/rc3.d",
        "/etc/rc4.d",
        "/etc/rc5.d",
        "/etc/rc6.d",
        "/etc/rcS.d",
        "/etc/postgresql",
        "/etc/redis",
        "/var/lib/postgresql",
        "/var/lib/redis",
        "-maxdepth",
        "3",
        "-printf",
        "%p %y %m %u %g %s %T@ %l\\n",
    ]);
    let found = rapidpro_ha_harness::run_command(find, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut lines: Vec<&str> = found.stdout.lines().collect();
    lines.sort_unstable();
    let mut enabled = std::process::Command::new("systemctl");
    enabled.args(["is-enabled", "postgresql", "redis-server"]);
    let enabled =
        rapidpro_ha_harness::run_command(enabled, Duration::from_secs(30)).map(|o| o.stdout);
    format!("{}\nsystemctl is-enabled: {enabled:?}", lines.join("\n"))
}

#[test]
fn by_the_book_section_has_its_blocks_in_order() {
    let blocks = section_blocks(README);
    let text: String = blocks.iter().map(|b| b.script.as_str()).collect();
    // The steps the issue asks for, in this order.
    let steps = [
        "apt install ./rapidpro-ha_*.deb",
        "systemctl disable --now postgresql redis-server",
        "pg_createcluster 15 main",
        "/etc/postgresql/15/main/conf.d/rapidpro-ha.conf",
        "wal_log_hints = on",
        "host    replication     replicator",
        "host    postgres        replicator",
        "requirepass ",
        "CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD",
        "GRANT pg_monitor TO replicator",
        "pg_read_binary_file(text, bigint, bigint, boolean)",
        "pg_basebackup -h 10.172.20.11 -U replicator",
        "pg_ctlcluster 15 main stop",
        "/usr/share/doc/rapidpro-ha/examples/rapidpro-cluster.pcs.sh",
        "pcs cluster cib-push rapidpro.xml --config",
    ];
    let mut from = 0;
    for step in steps {
        let at = text[from..]
            .find(step)
            .unwrap_or_else(|| panic!("\"{SECTION}\" has no `{step}` after the previous step"));
        from += at + step.len();
    }
    for b in &blocks {
        for line in b.script.lines() {
            let l = line.trim();
            assert!(
                !l.starts_with("apt ") || l.starts_with("apt install "),
                "README.md line {}: the test maps only `apt install`: {l}",
                b.line
            );
            assert!(
                !l.starts_with("systemctl ") || l.starts_with("systemctl disable "),
                "README.md line {}: no systemd runs in the test's nodes: {l}",
                b.line
            );
        }
    }
}

#[test]
fn by_the_book_two_fresh_servers_fail_over_and_rejoin() {
    let blocks = section_blocks(README);
    let redis_password = setting(&blocks, "requirepass ").to_owned();
    let host_before = host_fingerprint();
    let c = NsCluster::builder("by_the_book")
        .nodes(2)
        .from_deb(deb())
        .by_the_book(true)
        .configure(false)
        .redis_password(&redis_password)
        .build();
    let names: Vec<String> = c.nodes().iter().map(|n| n.name.clone()).collect();
    let (sms1, sms2) = (&names[0], &names[1]);

    for b in &blocks {
        let script: String = b
            .script
            .lines()
            .map(|l| substitute(l) + "\n")
            .collect::<String>();
        let script = format!("{PROLOGUE}{}", map_names(&script, &c));
        let on: Vec<&String> = match b.on {
            On::One(i) => vec![&names[i]],
            On::Both => names.iter().collect(),
        };
        for node in on {
            let out = c
                .node(node)
                .exec(&["/bin/sh", "-exc", &script], BLOCK_TIMEOUT)
                .unwrap_or_else(|e| panic!("README.md line {}: {e}", b.line));
            eprintln!(
                "by the book: README.md line {} on {node}:\n{}{}",
                b.line, out.stdout, out.stderr
            );
            assert!(
                out.success(),
                "README.md line {} failed on {node}: {}\n{}",
                b.line,
                out.failure_message(),
                c.diagnostics()
            );
        }
    }

    // The nodes are Debian's: the cluster pg_createcluster made (with its
    // `ssl = on`), and the units disabled in the node, not on the host.
    for n in c.nodes() {
        let conf = n
            .run(&["cat", "/etc/postgresql/15/main/postgresql.conf"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            conf.lines().any(|l| l.trim() == "ssl = on"),
            "{}: pg_createcluster's postgresql.conf has no `ssl = on`",
            n.name
        );
        let enabled = n
            .exec(
                &["systemctl", "is-enabled", "postgresql", "redis-server"],
                Duration::from_secs(20),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            enabled.stdout.split_whitespace().collect::<Vec<_>>(),
            ["disabled", "disabled"],
            "{}: {}",
            n.name,
            enabled.failure_message()
        );
    }

    // sms1 promoted with the VIP, sms2 streaming PostgreSQL and Redis.
    c.wait_settled(sms1, SETTLE);
    assert_eq!(
        wait_one_promoted(&c, sms1, Some(sms1)),
        *sms1,
        "{}",
        c.diagnostics()
    );
    app_access(&c, sms1);
    wait_replicating(c.node(sms2));
    let role = c
        .node(sms2)
        .redis_cli(&["role"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(role.starts_with("slave"), "{sms2}'s Redis role: {role}");

    // A writer through the VIP; power-off of the primary: failover.
    let load = start_load(&c);
    c.power_off(sms1);
    assert_eq!(
        wait_one_promoted(&c, sms2, Some(sms2)),
        *sms2,
        "{}",
        c.diagnostics()
    );
    // The old primary boots and rejoins as a streaming standby by itself.
    let rejoined = boot_and_rejoin(&c, sms1, sms2);
    eprintln!(
        "measured: by the book: {sms1} booted and streaming again in {:.1} s",
        rejoined.as_secs_f64()
    );

    // RUNBOOK's rebuild of a node, on the node itself, the writer still
    // running: the standby (the old primary) is re-cloned from the primary
    // and streams again, its old data directory kept beside the new one.
    let out = c
        .node(sms1)
        .exec(&["rapidproctl", "rebuild", sms1], BLOCK_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "by the book: rapidproctl rebuild {sms1}:\n{}{}",
        out.stdout, out.stderr
    );
    assert!(
        out.success(),
        "rapidproctl rebuild {sms1}: {}\n{}",
        out.failure_message(),
        c.diagnostics()
    );
    let kept = c
        .node(sms1)
        .sh("ls -d /var/lib/postgresql/15/main.rebuild-*")
        .unwrap_or_else(|e| panic!("{sms1}: the old data directory is not kept: {e}"));
    assert_eq!(kept.lines().count(), 1, "{kept}");
    assert_eq!(
        wait_one_promoted(&c, sms2, Some(sms2)),
        *sms2,
        "{}",
        c.diagnostics()
    );
    wait_replicating(c.node(sms1));
    finish_load(&c, load, "by the book: power-off, rejoin and rebuild");

    assert_eq!(
        host_fingerprint(),
        host_before,
        "the README's commands changed the host"
    );
    for f in ["/root/rapidpro.xml", "/rapidpro.xml"] {
        assert!(
            !Path::new(f).exists() || host_before.contains(f),
            "{f} appeared on the host"
        );
    }
}

/// The app's own database access, which the README leaves to the
/// operator's existing setup: the writer's role and table on the primary,
/// and a `pg_hba.conf` line for it from the cluster's network on every node.
fn app_access(c: &NsCluster, primary: &str) {
    let line = format!(
        "host    postgres        {WRITER_USER}          {}          scram-sha-256",
        c.subnet()
    );
    for n in c.nodes() {
        n.sh(&format!(
            "echo '{line}' >> /etc/postgresql/15/main/pg_hba.conf"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        n.psql("select pg_reload_conf()")
            .unwrap_or_else(|e| panic!("{e}"));
    }
    c.node(primary)
        .psql(&format!(
            "CREATE ROLE {WRITER_USER} LOGIN PASSWORD '{WRITER_PASSWORD}';
CREATE TABLE public.sms (id bigserial primary key, body text);
GRANT SELECT, INSERT ON public.sms TO {WRITER_USER};
GRANT USAGE ON SEQUENCE public.sms_id_seq TO {WRITER_USER};"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
}
