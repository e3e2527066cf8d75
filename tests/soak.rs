//! The fault soak: a 3-node cluster (synchronous replication, the app
//! tier, PostgreSQL on small file systems of their own) under the writer,
//! the incoming-SMS sender and the watcher, through a seeded sequence of
//! random faults: power-off, postgres kill, redis kill, celery kill,
//! corosync kill, partition, planned switchover, disk full on a standby.
//!
//! After each fault the cluster is repaired as an operator would (boot,
//! heal, free the disk, `crm_resource --cleanup`), settles, and every
//! standby must stream again within [`SETTLE`]; the writer, the SMS sender
//! and the watcher run throughout, so at the end no acknowledged write or
//! SMS may be missing and two primaries, two Redis masters or two celery
//! never coexisted.
//!
//! CI runs [`SHORT`] faults with [`CI_SEED`]. A long run is one command away:
//! `scripts/soak 30` (or `RAPIDPRO_SOAK_FAULTS=30 RAPIDPRO_SOAK_SEED=<n>
//! cargo test -p rapidpro-agent --test integration -- soak:: --nocapture`).
//! The seed is printed first, so any failure can be replayed.

use std::fmt;
use std::time::{Duration, Instant};

use rapidpro_ha_harness::{poll, NsCluster};

use super::bin;
use super::cluster::{finish_load, start_load, wait_replicating, SETTLE};
use super::cluster_fencing::{shorten_orphan_retries, wait_port_gone};

/// Faults of the CI run.
const SHORT: usize = 4;
/// The CI run's seed.
const CI_SEED: u64 = 20_261_126;
/// Size of each node's PostgreSQL file system.
const PG_DISK_MB: u32 = 768;

/// The faults the soak draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    PowerOff,
    PostgresKill,
    RedisKill,
    CeleryKill,
    CorosyncKill,
    Partition,
    Switchover,
    DiskFull,
}

const FAULTS: [Fault; 8] = [
    Fault::PowerOff,
    Fault::PostgresKill,
    Fault::RedisKill,
    Fault::CeleryKill,
    Fault::CorosyncKill,
    Fault::Partition,
    Fault::Switchover,
    Fault::DiskFull,
];

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Fault::PowerOff => "power-off",
            Fault::PostgresKill => "postgres kill -9",
            Fault::RedisKill => "redis kill -9",
            Fault::CeleryKill => "celery kill -9",
            Fault::CorosyncKill => "corosync kill -9",
            Fault::Partition => "partition",
            Fault::Switchover => "planned switchover",
            Fault::DiskFull => "disk full on a standby",
        };
        f.write_str(s)
    }
}

/// xorshift64*: a seeded sequence, the same on every machine.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

#[test]
fn the_rng_is_seeded_and_covers_every_fault() {
    let draw = |seed| {
        let mut r = Rng::new(seed);
        (0..200).map(|_| r.below(FAULTS.len())).collect::<Vec<_>>()
    };
    assert_eq!(draw(7), draw(7));
    assert_ne!(draw(7), draw(8));
    for i in 0..FAULTS.len() {
        assert!(draw(CI_SEED).contains(&i), "fault {i} never drawn");
    }
}

fn env_number(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}")),
    )
}

/// The only Promoted node, as any running node sees it, once there is one.
#[track_caller]
fn settled_primary(c: &NsCluster) -> String {
    poll("one Promoted node", SETTLE, || c.promoted_node())
}

/// Repairs what the fault left (boots fenced or powered-off nodes, heals
/// links, frees disks), clears the failures and waits until the cluster
/// settles with every standby streaming. Returns the primary.
#[track_caller]
fn repair(c: &NsCluster, fault_at: Instant) -> String {
    // Until every node is up and an online member: a partitioned node that
    // was not fenced is healed, a fenced or powered-off one boots (a
    // fencing may still be under way when this starts: go round again).
    let until = Instant::now() + 3 * SETTLE;
    loop {
        let primary = settled_primary(c);
        let online = c.status(&primary).map(|st| st.online()).unwrap_or_default();
        let mut whole = true;
        for n in c.nodes() {
            if !n.is_up() {
                wait_port_gone(c, &n.name, fault_at);
                c.boot(&n.name);
                whole = false;
            } else if !online.contains(&n.name) {
                c.heal(&n.name);
                whole = false;
            }
        }
        if whole {
            break;
        }
        assert!(
            Instant::now() < until,
            "the cluster is not whole again after {:?}\n{}",
            3 * SETTLE,
            c.diagnostics()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    for n in c.nodes() {
        let _ = n.sh("rm -f /var/lib/postgresql/fill.*");
    }
    let primary = settled_primary(c);
    let out = c.crm(&primary, &["crm_resource", "--cleanup"]);
    assert!(out.success(), "{}", out.failure_message());
    c.wait_settled(&primary, SETTLE);
    let primary = settled_primary(c);
    for n in c.nodes().iter().filter(|n| n.name != primary) {
        wait_replicating(n);
    }
    primary
}

/// Waits until Pacemaker has recorded a failed operation on `node` (a
/// monitor noticed the kill): repairing before that would find the cluster
/// settled in its old roles.
#[track_caller]
fn wait_failure_seen(c: &NsCluster, node: &str) {
    poll(&format!("a failure recorded on {node}"), SETTLE, || {
        let st = c.status(node).ok()?;
        st.failures
            .iter()
            .any(|f| f.get("node").map(String::as_str) == Some(node))
            .then_some(())
    });
}

/// Carries out `fault` (targets drawn with `rng`); returns what it hit.
fn inject(c: &NsCluster, rng: &mut Rng, fault: Fault, primary: &str) -> String {
    let names: Vec<String> = c.nodes().iter().map(|n| n.name.clone()).collect();
    let standbys: Vec<String> = names.iter().filter(|n| *n != primary).cloned().collect();
    let any = names[rng.below(names.len())].clone();
    let standby = standbys[rng.below(standbys.len())].clone();
    match fault {
        Fault::PowerOff => c.power_off(&any),
        Fault::PostgresKill => {
            c.kill9(&any, "postgres");
            wait_failure_seen(c, &any);
        }
        Fault::RedisKill => {
            c.kill9(&any, "redis");
            wait_failure_seen(c, &any);
        }
        Fault::CeleryKill => {
            c.node(primary)
                .sh("kill -KILL \"$(cat /run/rapidpro-standin/pcmk-celery.pid)\"")
                .unwrap_or_else(|e| panic!("kill celery on {primary}: {e}"));
            wait_failure_seen(c, primary);
            return primary.to_owned();
        }
        Fault::CorosyncKill => {
            shorten_orphan_retries(c, &any);
            c.kill_corosync(&any);
            // The others fence it.
            poll(&format!("{any} fenced"), SETTLE, || {
                (!c.node(&any).is_up()).then_some(())
            });
        }
        Fault::Partition => {
            shorten_orphan_retries(c, &any);
            c.partition(&any);
            let ask = names.iter().find(|n| **n != any).expect("another node");
            poll(&format!("{any} lost, seen from {ask}"), SETTLE, || {
                let st = c.status(ask).ok()?;
                (!st.online().contains(&any)).then_some(())
            });
            // The majority promotes (or keeps) a primary of its own.
            poll("a Promoted node in the majority", SETTLE, || {
                let st = c.status(ask).ok()?;
                let p = st.nodes_with_role(rapidpro_ha_harness::STACK_AGENT, "Promoted");
                (p.len() == 1 && p[0] != any).then_some(())
            });
        }
        Fault::Switchover => {
            c.ban_promoted(primary);
            poll(
                &format!("the Promoted role away from {primary}"),
                SETTLE,
                || c.promoted_node().filter(|p| p != primary),
            );
            c.clear_bans(&standby);
            return format!("{primary} -> away");
        }
        Fault::DiskFull => {
            // Full for 20 s: long enough for the standby's WAL receiver and
            // monitors to hit it (an Unpromoted monitor runs every 16 s);
            // refilled as PostgreSQL frees WAL.
            let until = Instant::now() + Duration::from_secs(20);
            while Instant::now() < until {
                c.fill_disk(&standby);
                std::thread::sleep(Duration::from_secs(2));
            }
            c.free_disk(&standby);
            return standby;
        }
    }
    any
}

/// The soak's cluster: 3 nodes, the app tier, `rewind=true` and
/// `sync_replication=on`, settled with every standby streaming. Returns it
/// and its primary.
#[track_caller]
fn settled_three_nodes(builder: rapidpro_ha_harness::NsClusterBuilder) -> (NsCluster, String) {
    let c = builder
        .nodes(3)
        .agent(bin())
        .app(true)
        .param("rewind", "true")
        .param("sync_replication", "on")
        .build();
    c.wait_settled("node1", SETTLE);
    let primary = settled_primary(&c);
    for n in c.nodes().iter().filter(|n| n.name != primary) {
        wait_replicating(n);
    }
    (c, primary)
}

/// Runs `faults` seeded faults against a fresh cluster and asserts the
/// invariants; prints the seed first and a line per fault.
fn soak(seed: u64, faults: usize) {
    eprintln!("soak: seed {seed}, {faults} faults (replay: RAPIDPRO_SOAK_SEED={seed} RAPIDPRO_SOAK_FAULTS={faults})");
    let mut rng = Rng::new(seed);
    let (c, mut primary) = settled_three_nodes(NsCluster::builder("soak").pg_disk_mb(PG_DISK_MB));
    let load = start_load(&c);
    let started = Instant::now();
    let mut worst = Duration::ZERO;
    for i in 1..=faults {
        let fault = FAULTS[rng.below(FAULTS.len())];
        let at = Instant::now();
        let hit = inject(&c, &mut rng, fault, &primary);
        primary = repair(&c, at);
        let took = at.elapsed();
        worst = worst.max(took);
        eprintln!(
            "soak: fault {i}/{faults}: {fault} on {hit}: settled with every standby streaming \
             after {:.1} s; primary {primary}",
            took.as_secs_f64()
        );
    }
    eprintln!(
        "measured: soak seed {seed}: {faults} faults in {:.0} s, slowest recovery {:.1} s",
        started.elapsed().as_secs_f64(),
        worst.as_secs_f64()
    );
    finish_load(&c, load, &format!("soak seed {seed}"));
}

#[test]
fn soak_with_random_faults_loses_no_acknowledged_write() {
    let seed = env_number("RAPIDPRO_SOAK_SEED").unwrap_or(CI_SEED);
    let faults = env_number("RAPIDPRO_SOAK_FAULTS").map_or(SHORT, |n| n as usize);
    soak(seed, faults);
}

/// The soak's worst case for a power-off, on purpose: the primary of a
/// 3-node cluster with sync replication is powered off and booted again as
/// soon as its fencing is confirmed, so it may rejoin before a standby is
/// promoted, with WAL no standby received (a CI soak run once left it
/// looping on "forked off before current recovery point"). Three rounds.
#[test]
fn primary_powered_off_and_booted_at_once_rejoins_and_nothing_is_lost() {
    let (c, mut primary) = settled_three_nodes(NsCluster::builder("poweroff_reboot"));
    let load = start_load(&c);
    for round in 1..=3 {
        let at = Instant::now();
        let old = primary.clone();
        c.power_off(&old);
        primary = repair(&c, at);
        eprintln!(
            "measured: power-off of primary {old} #{round}, booted at once: settled with every \
             standby streaming after {:.1} s; primary {primary}",
            at.elapsed().as_secs_f64()
        );
    }
    finish_load(&c, load, "primary powered off and booted at once");
    let promotes = assert_promotes_saw_every_standby(&c);
    assert!(
        promotes >= 4,
        "{promotes} promotions logged, expected 4\n{}",
        c.diagnostics()
    );
}

/// Every promote logged by the agent ("this node is at ...; partition:
/// ...; standbys published: ...") saw the position of every other node
/// of its partition: without them it cannot refuse in favour of a node
/// that is ahead. Returns how many promotes were checked.
#[track_caller]
fn assert_promotes_saw_every_standby(c: &NsCluster) -> usize {
    let mut checked = 0;
    for n in c.nodes() {
        let log = std::fs::read_to_string(n.host_path("var-log/pacemaker/pacemaker.log"))
            .unwrap_or_default();
        for line in log.lines().filter(|l| l.contains("; standbys published: ")) {
            let (Some(p), Some(q)) = (
                line.find("partition: "),
                line.find("; standbys published: "),
            ) else {
                continue;
            };
            let published = &line[q..];
            for m in line[p + "partition: ".len()..q]
                .split_whitespace()
                .filter(|m| *m != n.name)
            {
                assert!(
                    published.contains(&format!(" {m} at ")),
                    "the promote on {} did not see {m}'s position: {line}",
                    n.name
                );
            }
            checked += 1;
        }
    }
    checked
}
