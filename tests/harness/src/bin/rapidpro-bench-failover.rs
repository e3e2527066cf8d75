//! `bench/failover`: planned switchover and power-off failover of a 2-node
//! namespaced cluster running `ocf:rapidpro:stack`, interleaved in the same
//! run with the same cluster running `ocf:pacemaker:Stateful` (the floor:
//! Pacemaker and Corosync alone); then, in clusters with a quorum device,
//! the primary's link cut. Prints medians, spreads and the
//! differences; asserts nothing about time.
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
    link_cut: Vec<f64>,
    link_cut_write_gap: Vec<f64>,
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

fn other(p: &str) -> &'static str {
    if p == "node1" {
        "node2"
    } else {
        "node1"
    }
}

/// One run: bootstrap, switchover, clear, power-off of the new primary.
fn run(agent_bin: &str, agent: &str, f: &mut Figures) {
    let stack = agent == STACK_AGENT;
    let mut b = NsCluster::builder(if stack {
        "bench-stack"
    } else {
        "bench-stateful"
    })
    .nodes(2)
    .agent(agent_bin)
    .stack_agent(agent);
    if stack {
        b = b.param("rewind", "true");
    }
    let c = b.build();
    let first = poll("one node promoted", SETTLE, || {
        one_promoted(&c, agent, "node1")
    });
    let second = other(&first);
    if stack {
        poll("the standby streaming", SETTLE, || {
            streaming(&c, second).then_some(())
        });
    }
    c.wait_settled("node1", SETTLE);
    let pid = c.client_netns_pid();

    // Planned switchover.
    let writer = stack.then(|| {
        let w = Writer::start(pid, c.vip(), 5432);
        w.wait_for_acks(20, SETTLE);
        w
    });
    let t = Instant::now();
    c.ban_promoted(&first);
    poll("the other node promoted", SETTLE, || {
        one_promoted(&c, agent, second).filter(|p| p == second)
    });
    f.switchover.push(t.elapsed().as_secs_f64());
    if let Some(w) = writer {
        w.wait_for_acks(20, SETTLE);
        f.switchover_write_gap
            .push(w.stop().longest_gap.as_secs_f64());
    }
    c.wait_settled(second, SETTLE);
    c.clear_bans(second);
    if stack {
        poll("the old primary streaming", SETTLE, || {
            streaming(&c, &first).then_some(())
        });
    }
    c.wait_settled(second, SETTLE);

    // Power-off of the (new) primary.
    let writer = stack.then(|| {
        let w = Writer::start(pid, c.vip(), 5432);
        w.wait_for_acks(20, SETTLE);
        w
    });
    if stack {
        c.wait_synchronous(second, SETTLE);
    }
    let t = Instant::now();
    c.power_off(second);
    poll("the survivor promoted", SETTLE, || {
        one_promoted(&c, agent, &first).filter(|p| *p == first)
    });
    f.failover.push(t.elapsed().as_secs_f64());
    if let Some(w) = writer {
        w.wait_for_acks(20, SETTLE);
        f.failover_write_gap
            .push(w.stop().longest_gap.as_secs_f64());
    }
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
    let standby = other(&primary);
    if stack {
        poll("the standby streaming", SETTLE, || {
            streaming(&c, standby).then_some(())
        });
    }
    c.wait_settled("node1", SETTLE);
    let writer = stack.then(|| {
        let w = Writer::start(c.client_netns_pid(), c.vip(), 5432);
        w.wait_for_acks(20, SETTLE);
        w
    });
    if stack {
        c.wait_synchronous(&primary, SETTLE);
    }
    let t = Instant::now();
    c.partition(&primary);
    poll("the standby promoted", SETTLE, || {
        one_promoted(&c, agent, standby).filter(|p| p == standby)
    });
    f.link_cut.push(t.elapsed().as_secs_f64());
    if let Some(w) = writer {
        w.wait_for_acks(20, SETTLE);
        f.link_cut_write_gap
            .push(w.stop().longest_gap.as_secs_f64());
    }
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
        run(&agent_bin, STACK_AGENT, &mut ours);
        eprintln!("run {i}/{runs}: {STATEFUL}");
        run(&agent_bin, STATEFUL, &mut floor);
        eprintln!(
            "run {i}/{runs}: the primary's link cut, with a quorum device: ocf:rapidpro:stack"
        );
        run_link_cut(&agent_bin, STACK_AGENT, &mut ours);
        eprintln!("run {i}/{runs}: the primary's link cut, with a quorum device: {STATEFUL}");
        run_link_cut(&agent_bin, STATEFUL, &mut floor);
    }
    let mut o = String::new();
    out!(o, "#### bench/failover: {runs} runs each");
    out!(o, "{}", recorder.describe());
    out!(o, "\n2-node namespaced cluster, corosync token 1000 ms, priority-fencing-delay 3 s, {runs} runs each, interleaved");
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
            "power-off of the primary to promoted + VIP",
            &floor.failover,
            &ours.failover,
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
    out!(
        o,
        "| write unavailability after the primary's link cut, quorum device (stack) | - | {:.2} ({}) | | |",
        median(&ours.link_cut_write_gap),
        spread(&ours.link_cut_write_gap)
    );
    println!();
    print!("{o}");
    let figures = |f: &Figures| {
        json!({
            "switchover_s": f.switchover,
            "switchover_write_gap_s": f.switchover_write_gap,
            "failover_s": f.failover,
            "failover_write_gap_s": f.failover_write_gap,
            "link_cut_s": f.link_cut,
            "link_cut_write_gap_s": f.link_cut_write_gap,
        })
    };
    let raw = json!({
        "runs": runs,
        "order": "each run: ocf:rapidpro:stack, then ocf:pacemaker:Stateful; then the link cut with a quorum device, in the same order",
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
