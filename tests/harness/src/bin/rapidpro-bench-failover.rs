//! `bench/failover`: planned switchover and power-off failover of a 2-node
//! namespaced cluster running `ocf:rapidpro:stack`, interleaved in the same
//! run with the same cluster running `ocf:pacemaker:Stateful` (the floor:
//! Pacemaker and Corosync alone), then a power-off of the primary as soon
//! as the other node rejoined; the same switchover and power-off with 3
//! nodes; in clusters with a quorum device, the primary's link cut; and,
//! for the stack alone (Stateful has no server to freeze), a primary whose
//! PostgreSQL is frozen (SIGSTOP of all its processes), and a primary cut
//! off from a 3-node cluster without fencing (its quorum guard).
//! `sync_replication` is the default, `on`.
//! Prints medians, spreads and the differences; asserts nothing about time.
//!
//! Usage: rapidpro-bench-failover <path of rapidpro-agent> [runs (default 5)]

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use rapidpro_ha_harness::bench::{self, Recorder};
use rapidpro_ha_harness::workload::Writer;
use rapidpro_ha_harness::{poll, NsCluster, STACK_AGENT, VIP_AGENT};
use serde_json::json;

const SETTLE: Duration = Duration::from_secs(120);
const STATEFUL: &str = "ocf:pacemaker:Stateful";

/// `writeln!` into the report, which is printed and stored.
macro_rules! out {
    ($o:expr, $($t:tt)*) => {
        let _ = writeln!($o, $($t)*);
    };
}

#[derive(Default)]
struct Figures {
    switchover: Vec<f64>,
    switchover_write_gap: Vec<f64>,
    failover: Vec<f64>,
    failover_write_gap: Vec<f64>,
    rejoin_failover: Vec<f64>,
    rejoin_failover_write_gap: Vec<f64>,
    switchover3: Vec<f64>,
    switchover3_write_gap: Vec<f64>,
    failover3: Vec<f64>,
    failover3_write_gap: Vec<f64>,
    link_cut: Vec<f64>,
    link_cut_write_gap: Vec<f64>,
    frozen: Vec<f64>,
    frozen_write_gap: Vec<f64>,
    quorum_loss_released: Vec<f64>,
}

fn one_promoted(c: &NsCluster, agent: &str, ask: &str) -> Option<String> {
    let st = c.status(ask).ok()?;
    let promoted = st.nodes_with_role(agent, "Promoted");
    let unpromoted = st.nodes_with_role(agent, "Unpromoted");
    let vip = st.nodes_with_role(VIP_AGENT, "Started");
    (promoted.len() == 1 && unpromoted.len() + 1 == st.online().len() && vip == promoted)
        .then(|| promoted[0].clone())
}

fn streaming(c: &NsCluster, node: &str) -> bool {
    c.node(node)
        .psql("select status from pg_stat_wal_receiver")
        .map(|s| s == "streaming")
        .unwrap_or(false)
}

/// The first node in `c` other than `not`.
fn other(c: &NsCluster, not: &str) -> String {
    c.nodes()
        .iter()
        .map(|n| n.name.clone())
        .find(|n| n != not)
        .expect("a second node")
}

/// Whether `node` is back as a follower: streaming (the stack), or
/// Unpromoted (Stateful, which has nothing to stream).
fn rejoined(c: &NsCluster, agent: &str, node: &str) -> bool {
    if agent == STACK_AGENT {
        return streaming(c, node);
    }
    unpromoted(c, agent, node)
}

/// Whether the rejoined `node` may be promoted: for the stack, streaming,
/// scored above 0 by the primary and not marked stale. A primary that dies
/// before it confirmed that (a few hundred milliseconds after the standby
/// streams) may have acknowledged commits the standby lacks
/// (`sync_replication=on`), and the agent rightly waits for an operator
/// then: that window is not a failover to time. Stateful: Unpromoted.
fn promotable(c: &NsCluster, agent: &str, node: &str) -> bool {
    if agent != STACK_AGENT {
        return unpromoted(c, agent, node);
    }
    let Some(id) = c
        .status(node)
        .ok()
        .and_then(|st| st.of_agent(agent).map(|r| r.id.clone()).next())
    else {
        return false;
    };
    let query = |name: &str, lifetime: &str| {
        c.node(node)
            .run(&[
                "crm_attribute",
                "--query",
                "--quiet",
                "--lifetime",
                lifetime,
                "--node",
                node,
                "--name",
                name,
            ])
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty() && v != "(null)")
    };
    let scored = query(&format!("master-{id}"), "reboot")
        .and_then(|v| v.parse::<i64>().ok())
        .is_some_and(|s| s > 0);
    streaming(c, node) && scored && query(&format!("rapidpro-stale-{id}"), "forever").is_none()
}

fn unpromoted(c: &NsCluster, agent: &str, node: &str) -> bool {
    c.status(node)
        .map(|st| {
            st.nodes_with_role(agent, "Unpromoted")
                .iter()
                .any(|n| n == node)
        })
        .unwrap_or(false)
}

/// A writer through the VIP, once it has 20 acknowledged writes (the
/// stack only: Stateful serves nothing).
fn writer(c: &NsCluster, stack: bool) -> Option<Writer> {
    stack.then(|| {
        let w = Writer::start(c.client_netns_pid(), c.vip(), 5432);
        w.wait_for_acks(20, SETTLE);
        w
    })
}

/// Stops `w`, once it had 20 more acknowledged writes, and keeps its
/// longest gap between two acknowledged writes.
fn gap(w: Option<Writer>, into: &mut Vec<f64>) {
    if let Some(w) = w {
        w.wait_for_acks(20, SETTLE);
        into.push(w.stop().longest_gap.as_secs_f64());
    }
}

/// Waits until one node other than `old` is promoted with the VIP, seen
/// from `ask`; returns it.
fn promoted_elsewhere(c: &NsCluster, agent: &str, ask: &str, old: &str) -> String {
    poll("another node promoted", SETTLE, || {
        one_promoted(c, agent, ask).filter(|p| p != old)
    })
}

/// The DC, seen from `ask`.
fn dc(c: &NsCluster, ask: &str) -> Option<String> {
    let st = c.status(ask).ok()?;
    st.nodes.iter().find(|n| n.is_dc).map(|n| n.name.clone())
}

/// The DC, once it holds the promoted role: `primary` when it is the DC;
/// otherwise untimed switchovers (a ban on each primary in turn, at most
/// one per other node) move the role until it lands on the DC, then the
/// bans are cleared. Returns it settled, with every other node following
/// again.
fn onto_dc(
    c: &NsCluster,
    agent: &str,
    primary: String,
    followers: &dyn Fn(&NsCluster, &str),
) -> String {
    let dc_node = poll("the DC known", SETTLE, || dc(c, &other(c, &primary)));
    if dc_node == primary {
        return primary;
    }
    let mut now = primary;
    while now != dc_node {
        let ask = dc_node.clone();
        c.ban_promoted(&now);
        now = promoted_elsewhere(c, agent, &ask, &now);
        c.wait_settled(&now, SETTLE);
    }
    c.clear_bans(&now);
    followers(c, &now);
    c.wait_settled(&now, SETTLE);
    now
}

/// One run with `nodes` nodes: bootstrap, switchover, clear, power-off of
/// the new primary; with 2 nodes, then the powered-off node booted and the
/// primary powered off as soon as it rejoined.
fn run(agent_bin: &str, agent: &str, nodes: usize, f: &mut Figures) {
    let stack = agent == STACK_AGENT;
    let mut b = NsCluster::builder(match (stack, nodes) {
        (true, 2) => "bench-stack",
        (false, 2) => "bench-stateful",
        (true, _) => "bench3-stack",
        (false, _) => "bench3-stateful",
    })
    .nodes(nodes)
    .agent(agent_bin)
    .stack_agent(agent);
    if stack {
        b = b.param("rewind", "true");
    }
    let c = b.build();
    let first = poll("one node promoted", SETTLE, || {
        one_promoted(&c, agent, "node1")
    });
    let followers = |c: &NsCluster, primary: &str| {
        for n in c.nodes().iter().filter(|n| n.name != primary) {
            poll("every other node following", SETTLE, || {
                rejoined(c, agent, &n.name).then_some(())
            });
        }
    };
    followers(&c, &first);
    c.wait_settled("node1", SETTLE);
    if stack {
        c.wait_synchronous(&first, SETTLE);
    }

    // Planned switchover.
    let w = writer(&c, stack);
    let ask = other(&c, &first);
    let t = Instant::now();
    c.ban_promoted(&first);
    let second = promoted_elsewhere(&c, agent, &ask, &first);
    let (switchover, switchover_gap) = if nodes == 2 {
        (&mut f.switchover, &mut f.switchover_write_gap)
    } else {
        (&mut f.switchover3, &mut f.switchover3_write_gap)
    };
    switchover.push(t.elapsed().as_secs_f64());
    gap(w, switchover_gap);
    c.wait_settled(&second, SETTLE);
    c.clear_bans(&second);
    followers(&c, &second);
    c.wait_settled(&second, SETTLE);

    // Power-off of the (new) primary, which is always the DC, so that both
    // agents are timed in the same one of Pacemaker's failovers. Losing a
    // member that is not the DC differs: when that member was also the
    // attribute writer (pacemaker-attrd's elected node), the surviving DC
    // computed its transition 1.0 s after the loss, with nothing logged in
    // between (its scheduler ran 12-64 ms after every other loss in the same
    // runs); losing the DC starts an election at once. Which case a run met
    // depended on which nodes the bootstrap made DC, attribute writer and
    // primary, so the agents could be measured in different ones (README,
    // "Performance", says which runs showed it).
    let second = onto_dc(&c, agent, second, &followers);
    let w = writer(&c, stack);
    if stack {
        c.wait_synchronous(&second, SETTLE);
    }
    let ask = other(&c, &second);
    let t = Instant::now();
    c.power_off(&second);
    let third = promoted_elsewhere(&c, agent, &ask, &second);
    let (failover, failover_gap) = if nodes == 2 {
        (&mut f.failover, &mut f.failover_write_gap)
    } else {
        (&mut f.failover3, &mut f.failover3_write_gap)
    };
    failover.push(t.elapsed().as_secs_f64());
    gap(w, failover_gap);
    if nodes != 2 {
        return;
    }

    // The powered-off node boots and rejoins; the primary is powered off
    // as soon as it is promotable, before any monitor of the primary ran
    // since ([`promotable`]).
    c.wait_settled(&third, SETTLE);
    let w = writer(&c, stack);
    c.boot(&second);
    poll("the booted node promotable", SETTLE, || {
        promotable(&c, agent, &second).then_some(())
    });
    let t = Instant::now();
    c.power_off(&third);
    promoted_elsewhere(&c, agent, &second, &third);
    f.rejoin_failover.push(t.elapsed().as_secs_f64());
    gap(w, &mut f.rejoin_failover_write_gap);
}

/// One run of a frozen primary (the stack only): every PostgreSQL process
/// SIGSTOPped, as a dead disk freezes them; until Pacemaker recovered it (in
/// place or on the standby) with the VIP, and the longest gap between
/// acknowledged writes.
fn run_frozen(agent_bin: &str, f: &mut Figures) {
    let c = NsCluster::builder("bench-frozen")
        .nodes(2)
        .agent(agent_bin)
        .param("rewind", "true")
        .build();
    let primary = poll("one node promoted", SETTLE, || {
        one_promoted(&c, STACK_AGENT, "node1")
    });
    let standby = other(&c, &primary);
    poll("the standby streaming", SETTLE, || {
        streaming(&c, &standby).then_some(())
    });
    c.wait_settled("node1", SETTLE);
    c.wait_synchronous(&primary, SETTLE);
    let w = writer(&c, true);
    let t = Instant::now();
    // Every PostgreSQL process of the node (its own PID namespace), not
    // only the postmaster: a dead disk stops the backends too, and the
    // writer's open session must not go on committing.
    c.node(&primary)
        .sh("pkill -STOP -x postgres")
        .unwrap_or_else(|e| panic!("SIGSTOP of {primary}'s PostgreSQL: {e}"));
    // The frozen primary still shows Promoted for a while: wait for the
    // recovery to begin, then for one promoted node again.
    poll("the frozen primary no longer Promoted", SETTLE, || {
        one_promoted(&c, STACK_AGENT, &standby)
            .is_none()
            .then_some(())
    });
    poll("one node promoted again", SETTLE, || {
        one_promoted(&c, STACK_AGENT, &standby)
    });
    f.frozen.push(t.elapsed().as_secs_f64());
    gap(w, &mut f.frozen_write_gap);
}

/// One run of the "two servers and a network split", case 1: a
/// 2-node cluster with a quorum device (qnetd on its own host, `ffsplit`,
/// heuristics pinging the gateway), the primary's link cut.
fn run_link_cut(agent_bin: &str, agent: &str, f: &mut Figures) {
    let stack = agent == STACK_AGENT;
    let mut b = NsCluster::builder(if stack {
        "bench-cut-stack"
    } else {
        "bench-cut-stateful"
    })
    .nodes(2)
    .agent(agent_bin)
    .stack_agent(agent)
    .qdevice(true);
    if stack {
        b = b.param("rewind", "true");
    }
    let c = b.build();
    let primary = poll("one node promoted", SETTLE, || {
        one_promoted(&c, agent, "node1")
    });
    let standby = other(&c, &primary);
    let standby = standby.as_str();
    if stack {
        poll("the standby streaming", SETTLE, || {
            streaming(&c, standby).then_some(())
        });
    }
    c.wait_settled("node1", SETTLE);
    let w = writer(&c, stack);
    if stack {
        c.wait_synchronous(&primary, SETTLE);
    }
    let t = Instant::now();
    c.partition(&primary);
    poll("the standby promoted", SETTLE, || {
        one_promoted(&c, agent, standby).filter(|p| p == standby)
    });
    f.link_cut.push(t.elapsed().as_secs_f64());
    gap(w, &mut f.link_cut_write_gap);
}

/// One run of a primary cut off from a 3-node cluster without fencing,
/// with the app group (the stack only; issue 15): from the moment its
/// corosync says the partition lost quorum until Redis is no master,
/// PostgreSQL read-only and the VIP gone there
/// ([`NsCluster::quorum_lost_then_released`]).
fn run_quorum_loss(agent_bin: &str, f: &mut Figures) {
    let c = NsCluster::builder("bench-cutoff3")
        .nodes(3)
        .agent(agent_bin)
        .app(true)
        .param("rewind", "true")
        .build();
    let primary = poll("one node promoted", SETTLE, || {
        one_promoted(&c, STACK_AGENT, "node1")
    });
    for n in c.nodes().iter().filter(|n| n.name != primary) {
        poll("every standby streaming", SETTLE, || {
            streaming(&c, &n.name).then_some(())
        });
    }
    c.disable_fencing(&primary);
    c.wait_settled(&primary, SETTLE);
    c.wait_synchronous(&primary, SETTLE);
    c.partition(&primary);
    let (lost, released) = c.quorum_lost_then_released(&primary, SETTLE);
    f.quorum_loss_released
        .push(released.saturating_duration_since(lost).as_secs_f64());
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn spread(v: &[f64]) -> String {
    let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if v.is_empty() {
        "-".into()
    } else {
        format!("{min:.2}..{max:.2}")
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let agent_bin = args
        .next()
        .expect("usage: rapidpro-bench-failover <rapidpro-agent> [runs]");
    let runs: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(5);
    // Before anything runs: the load average is the machine's.
    let argv: Vec<String> = std::env::args().collect();
    let recorder = Recorder::start(bench::Kind::Failover, &argv);
    let (mut ours, mut floor) = (Figures::default(), Figures::default());
    for i in 1..=runs {
        eprintln!("run {i}/{runs}: ocf:rapidpro:stack");
        run(&agent_bin, STACK_AGENT, 2, &mut ours);
        eprintln!("run {i}/{runs}: {STATEFUL}");
        run(&agent_bin, STATEFUL, 2, &mut floor);
        eprintln!("run {i}/{runs}: 3 nodes: ocf:rapidpro:stack");
        run(&agent_bin, STACK_AGENT, 3, &mut ours);
        eprintln!("run {i}/{runs}: 3 nodes: {STATEFUL}");
        run(&agent_bin, STATEFUL, 3, &mut floor);
        eprintln!("run {i}/{runs}: a frozen primary: ocf:rapidpro:stack");
        run_frozen(&agent_bin, &mut ours);
        eprintln!(
            "run {i}/{runs}: the primary's link cut, with a quorum device: ocf:rapidpro:stack"
        );
        run_link_cut(&agent_bin, STACK_AGENT, &mut ours);
        eprintln!("run {i}/{runs}: the primary's link cut, with a quorum device: {STATEFUL}");
        run_link_cut(&agent_bin, STATEFUL, &mut floor);
        eprintln!(
            "run {i}/{runs}: 3 nodes, the primary cut off without fencing: ocf:rapidpro:stack"
        );
        run_quorum_loss(&agent_bin, &mut ours);
    }
    let mut o = String::new();
    out!(o, "#### bench/failover: {runs} runs each");
    out!(o, "{}", recorder.describe());
    out!(o, "\nNamespaced clusters (2 nodes unless said), corosync token 1000 ms, priority-fencing-delay 3 s, sync_replication=on, monitors 15/16 s, {runs} runs each, interleaved");
    out!(o,
        "| case | {STATEFUL} median (spread) s | ocf:rapidpro:stack median (spread) s | difference s | ratio |"
    );
    out!(o, "|---|---|---|---|---|");
    for (name, a, b) in [
        (
            "planned switchover (ban --promoted) to promoted + VIP",
            &floor.switchover,
            &ours.switchover,
        ),
        (
            "power-off of the primary (the DC) to promoted + VIP",
            &floor.failover,
            &ours.failover,
        ),
        (
            "power-off of the primary as soon as the other node rejoined (streams, promotable), to promoted + VIP",
            &floor.rejoin_failover,
            &ours.rejoin_failover,
        ),
        (
            "3 nodes: planned switchover to promoted + VIP",
            &floor.switchover3,
            &ours.switchover3,
        ),
        (
            "3 nodes: power-off of the primary (the DC) to promoted + VIP",
            &floor.failover3,
            &ours.failover3,
        ),
        (
            "the primary's link cut, quorum device (qnetd, ffsplit, heuristics; priority-fencing-delay 0), to promoted + VIP",
            &floor.link_cut,
            &ours.link_cut,
        ),
    ] {
        let (ma, mb) = (median(a), median(b));
        out!(
            o,
            "| {name} | {ma:.2} ({}) | {mb:.2} ({}) | {:+.2} | {:.2} |",
            spread(a),
            spread(b),
            mb - ma,
            mb / ma
        );
    }
    out!(
        o,
        "| write unavailability during the switchover (stack) | - | {:.2} ({}) | | |",
        median(&ours.switchover_write_gap),
        spread(&ours.switchover_write_gap)
    );
    out!(
        o,
        "| write unavailability after the power-off (stack) | - | {:.2} ({}) | | |",
        median(&ours.failover_write_gap),
        spread(&ours.failover_write_gap)
    );
    for (name, v) in [
        (
            "write unavailability after the power-off that follows a rejoin (stack)",
            &ours.rejoin_failover_write_gap,
        ),
        (
            "3 nodes: write unavailability during the switchover (stack)",
            &ours.switchover3_write_gap,
        ),
        (
            "3 nodes: write unavailability after the power-off (stack)",
            &ours.failover3_write_gap,
        ),
        (
            "write unavailability after the primary's link cut, quorum device (stack)",
            &ours.link_cut_write_gap,
        ),
        (
            "a frozen primary (SIGSTOP of every PostgreSQL process) to one node promoted + VIP again (stack)",
            &ours.frozen,
        ),
        (
            "write unavailability with a frozen primary (stack; goal: monitor interval 15 + timeout 20 + 3 s)",
            &ours.frozen_write_gap,
        ),
        (
            "3 nodes, the primary cut off without fencing: from its quorum loss (corosync) to Redis no master, PostgreSQL read-only and the VIP released there (stack; goal: 2 s)",
            &ours.quorum_loss_released,
        ),
    ] {
        out!(o, "| {name} | - | {:.2} ({}) | | |", median(v), spread(v));
    }
    println!();
    print!("{o}");
    let figures = |f: &Figures| {
        json!({
            "switchover_s": f.switchover,
            "switchover_write_gap_s": f.switchover_write_gap,
            "failover_s": f.failover,
            "failover_write_gap_s": f.failover_write_gap,
            "rejoin_failover_s": f.rejoin_failover,
            "rejoin_failover_write_gap_s": f.rejoin_failover_write_gap,
            "switchover3_s": f.switchover3,
            "switchover3_write_gap_s": f.switchover3_write_gap,
            "failover3_s": f.failover3,
            "failover3_write_gap_s": f.failover3_write_gap,
            "link_cut_s": f.link_cut,
            "link_cut_write_gap_s": f.link_cut_write_gap,
            "frozen_s": f.frozen,
            "frozen_write_gap_s": f.frozen_write_gap,
            "quorum_loss_released_s": f.quorum_loss_released,
        })
    };
    let raw = json!({
        "runs": runs,
        "order": "each run: 2 nodes (switchover, power-off of the primary once it is the DC (untimed switchovers first when it was not), rejoin then power-off), ocf:rapidpro:stack then ocf:pacemaker:Stateful; the same with 3 nodes (switchover, power-off); a frozen primary (stack only); then the link cut with a quorum device, stack then Stateful; then a 3-node primary cut off without fencing (stack only)",
        "settle_timeout_s": SETTLE.as_secs(),
        STACK_AGENT: figures(&ours),
        STATEFUL: figures(&floor),
    });
    match recorder.finish(raw, &o) {
        Ok(Some((json, md))) => {
            eprintln!("bench: stored {} and {}", json.display(), md.display())
        }
        Ok(None) => eprintln!("bench: not stored ({} unset)", bench::RESULTS_ENV),
        Err(e) => eprintln!("bench: could not store the run: {e}"),
    }
}
