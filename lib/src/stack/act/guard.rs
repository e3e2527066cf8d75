//! The quorum guard: a primary whose partition loses quorum gives up its
//! role within a poll ([`decide::GUARD_POLL`]), by itself, rather than when
//! Pacemaker gets to it (issue 15).
//!
//! Pacemaker (`no-quorum-policy=stop`) starts a cut-off primary's demote
//! 5–6 s after quorum loss, behind the stops of what is ordered after the
//! clone (the app group), and stops the virtual IP only after the demote;
//! a stop of the VIP held up behind an unrunnable clone was seen to wait
//! over 90 s. Meanwhile the other partition promotes, and clients that
//! still reach this node through the VIP write to a primary that is no
//! longer the cluster's, and Redis masters answer on both sides.
//! Fencing hides this by powering the node off, but a fence can be slow,
//! delayed (`priority-fencing-delay`) or failing.
//!
//! So the primary leaves a guard behind ([`leave_guard`]; started by the
//! post-promote notification and by the primary's monitor when none runs):
//! the agent run again with [`GUARD_ARG`] ([`super::detached`]). It asks
//! `corosync-quorumtool -s` every [`decide::GUARD_POLL`] and, once the
//! partition is not quorate and `no-quorum-policy` is one that takes the
//! role away ([`decide::guard_step`]), it does what the demote will do
//! first, in this order, each step bounded:
//! 1. the VIP's address (primary_host, when it is an address held here) is
//!    deleted from its interface: clients are cut off at once;
//! 2. Redis is made a replica of primary_host;
//! 3. PostgreSQL stops accepting writes (read-only, client sessions ended),
//!    as the demote's first step does.
//!
//! Then it exits. While quorum stays lost, the primary's monitor reports
//! the instance running promoted until Pacemaker takes the role away
//! ([`decide::released_primary`]): no fail-count. What it did is not undone
//! if quorum comes back first: the primary's monitor then fails (Redis is a
//! replica) and Pacemaker recovers the instance in place (a failed action
//! for a quorum flap; README). It
//! exits without acting as soon as this node no longer runs a primary, or
//! at its start when no cluster answers (ocf-tester, a run by hand). Under
//! `freeze` or `ignore` it stays, watching only the role, so that the
//! primary's monitor, which starts a guard when none holds the lock, spawns
//! nothing in the steady state.
//!
//! The guard needs Redis' password: it is in its order, on its standard
//! input, as the parameter Pacemaker passed (never in argv nor its
//! environment); [`Order`] has no `Debug`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::detached;
use super::follow::follow_redis_primary_within;
use super::shutdown::{probe_session, writes_off};
use crate::cluster::{NoQuorumPolicy, CALL_TIMEOUT};
use crate::cmd::{self, Spec};
use crate::config::names;
use crate::deadline::Deadline;
use crate::ocf::env::OcfEnv;
use crate::postgres::server::ProcessState;
use crate::stack::decide::{self, GuardStep, GuardedRole, Quorum};
use crate::stack::{Ctx, Error};

/// The first argument that makes the agent's binary the quorum guard. Not
/// an OCF action: not in `usage` nor in the meta-data.
pub const GUARD_ARG: &str = "--quorum-guard";

/// The guard's lock: `<resource>.guard.lock` in the state directory.
const LOCK: &str = "guard";

/// The longest one `corosync-quorumtool -s` may take; it answers from
/// corosync's memory over a local socket in about a millisecond.
const QUORUM_ASK: Duration = Duration::from_secs(1);

/// The bound of all three steps of a release: each is a local call.
const RELEASE_BOUND: Duration = Duration::from_secs(5);

/// How long a guard's context lives: the guard runs as long as the primary
/// does; each of its calls has its own bound.
const LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);

/// What the primary tells the guard, on its standard input. No `Debug`: it
/// carries the Redis password.
#[derive(Serialize, Deserialize)]
struct Order {
    /// The agent's environment: the OCF variables and, of the secrets, only
    /// redis_password ([`detached::helper_vars`]).
    vars: BTreeMap<String, String>,
}

/// Leaves a quorum guard behind on this primary, unless one runs already
/// (its lock is held: then nothing is spawned, so a monitor spawns nothing
/// while one runs) or there is no live cluster to lose quorum (`CIB_file`).
/// Logs and goes on if it cannot be started: the next monitor tries again.
pub(super) fn leave_guard(ctx: &Ctx<'_>) {
    if ctx.cluster.cib_file().is_some() {
        return;
    }
    match detached::lock(ctx, LOCK) {
        Ok(Some(free)) => drop(free),
        Ok(None) => return,
        Err(e) => {
            log::warn!("cannot start the quorum guard: {e}");
            return;
        }
    }
    let order = Order {
        vars: detached::helper_vars(std::env::vars_os(), &[names::REDIS_PASSWORD]),
    };
    if let Some(pid) = detached::spawn_self(GUARD_ARG, &order, "quorum guard") {
        log::info!(
            "quorum guard {pid} releases this primary (VIP, Redis, writes) if its partition \
             loses quorum"
        );
    }
}

/// The guard's `main` ([`GUARD_ARG`]). Returns the exit code: 0, or 1 when
/// it could not run.
pub fn guard_main() -> i32 {
    let Some(order) = detached::read_order::<Order>() else {
        return 1;
    };
    let env = OcfEnv::from_vars(order.vars);
    crate::ocf::log::AgentLogger::new(env.instance(), env.debug()).install();
    match guard(&env) {
        Ok(()) => 0,
        Err(e) => {
            log::warn!("quorum guard: {e}");
            1
        }
    }
}

fn guard(env: &OcfEnv) -> Result<(), Error> {
    let ctx = Ctx::new(env, Deadline::after(LIFETIME))?;
    let Some(_lock) = detached::lock(&ctx, LOCK)? else {
        log::debug!("quorum guard: another one runs already");
        return Ok(());
    };
    let vip = vip_address(&ctx.cfg.primary_host);
    if vip.is_none() {
        log::warn!(
            "quorum guard: primary_host {:?} is not an IP address: on quorum loss the guard \
             cannot remove it, and it stays until Pacemaker stops the VIP",
            ctx.cfg.primary_host
        );
    }
    // Read once it is known: Pacemaker applies it when quorum is lost, from
    // a CIB this partition can no longer change.
    let mut policy = None;
    let mut policy_read: Option<Instant> = None;
    loop {
        if policy.is_none() && policy_read.is_none_or(|t| t.elapsed() >= decide::GUARD_POLICY_RETRY)
        {
            policy = match read_policy(&ctx) {
                Some(p) => p,
                // ocf-tester, or the agent run by hand: no quorum to lose.
                None => return Ok(()),
            };
            policy_read = Some(Instant::now());
        }
        let role = match (ctx.pg.process_state(), ctx.pg.is_standby_configured()) {
            (ProcessState::Running(_), false) => GuardedRole::Primary,
            _ => GuardedRole::NotPrimary,
        };
        let quorum = decide::guard_watches(policy).then(|| ask_quorum(QUORUM_ASK));
        match decide::guard_step(role, quorum) {
            GuardStep::Watch => std::thread::sleep(decide::GUARD_POLL),
            GuardStep::Exit => {
                log::debug!("quorum guard: no primary to guard here, exiting");
                return Ok(());
            }
            GuardStep::Release => {
                release(env, vip);
                return Ok(());
            }
        }
    }
}

/// The cluster's `no-quorum-policy`, logged with what the guard makes of
/// it: `Some(None)` when crm_mon cannot tell, `None` when no cluster
/// answers at all (the guard then exits).
fn read_policy(ctx: &Ctx<'_>) -> Option<Option<NoQuorumPolicy>> {
    let policy = match ctx.cluster.status(&Deadline::after(CALL_TIMEOUT)) {
        Ok(st) => st.no_quorum_policy,
        Err(e) if e.is_no_cluster() => {
            log::info!("quorum guard: no cluster answers ({e}): nothing to guard");
            return None;
        }
        Err(e) => {
            log::warn!(
                "quorum guard: cannot read the cluster's no-quorum-policy ({e}): not watching \
                 the quorum yet; trying again in {} s",
                decide::GUARD_POLICY_RETRY.as_secs()
            );
            return Some(None);
        }
    };
    match policy {
        Some(p) if decide::guard_watches(policy) => log::info!(
            "quorum guard: watching this partition's quorum every {} ms (no-quorum-policy={})",
            decide::GUARD_POLL.as_millis(),
            policy_name(p)
        ),
        Some(p) => log::info!(
            "quorum guard: no-quorum-policy={}: Pacemaker keeps the primary without quorum, \
             and so does the guard",
            policy_name(p)
        ),
        None => log::warn!(
            "quorum guard: crm_mon shows no no-quorum-policy this agent knows: not watching \
             the quorum; trying again in {} s",
            decide::GUARD_POLICY_RETRY.as_secs()
        ),
    }
    Some(policy)
}

fn policy_name(p: NoQuorumPolicy) -> &'static str {
    match p {
        NoQuorumPolicy::Stop => "stop",
        NoQuorumPolicy::Demote => "demote",
        NoQuorumPolicy::Freeze => "freeze",
        NoQuorumPolicy::Ignore => "ignore",
        NoQuorumPolicy::Suicide => "suicide",
    }
}

/// `corosync-quorumtool -s`, by its exit code, within `bound` (at most
/// [`QUORUM_ASK`]). Also asked by the primary's monitor when its Redis is a
/// replica ([`decide::released_primary`]).
pub(super) fn ask_quorum(bound: Duration) -> Quorum {
    let spec = Spec::new("corosync-quorumtool")
        .arg("-s")
        .timeout(bound.min(QUORUM_ASK));
    decide::quorum_from_exit(cmd::run_unchecked(&spec).ok().and_then(|o| o.code()))
}

/// primary_host as an address, when it is one.
fn vip_address(primary_host: &str) -> Option<IpAddr> {
    primary_host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// The three steps, each bounded and logged; a step that fails does not
/// keep the next from running.
fn release(env: &OcfEnv, vip: Option<IpAddr>) {
    log::warn!(
        "quorum guard: this partition lost quorum: giving up the primary's role now (the \
         VIP's address, then Redis, then PostgreSQL's writes), before Pacemaker demotes it"
    );
    let ctx = match Ctx::new(env, Deadline::after(RELEASE_BOUND)) {
        Ok(c) => c,
        Err(e) => {
            log::error!("quorum guard: cannot release the primary: {e}");
            return;
        }
    };
    if let Some(vip) = vip {
        release_address(&ctx, vip);
    }
    match follow_redis_primary_within(&ctx, decide::LOCAL_PROBE) {
        Ok(()) => log::info!("quorum guard: Redis is a replica"),
        Err(e) => log::error!("quorum guard: cannot make Redis a replica: {e}"),
    }
    match probe_session(&ctx).and_then(|db| writes_off(&db)) {
        Ok(()) => log::info!("quorum guard: PostgreSQL accepts no more writes"),
        Err(e) => log::error!("quorum guard: cannot stop PostgreSQL's writes: {e}"),
    }
}

/// Deletes `vip` from the interface that holds it, if one does.
fn release_address(ctx: &Ctx<'_>, vip: IpAddr) {
    let bound = ctx.deadline.cap(CALL_TIMEOUT);
    let shown = cmd::run(&Spec::new("ip").args(["-j", "addr", "show"]).timeout(bound));
    let held = match shown {
        Ok(o) => held_on(&o.stdout, vip),
        Err(e) => {
            log::error!("quorum guard: cannot list the addresses (ip addr show): {e}");
            return;
        }
    };
    let Some(held) = held else {
        log::info!("quorum guard: {vip} is not held here");
        return;
    };
    let spec = Spec::new("ip")
        .args(["addr", "del"])
        .arg(format!("{vip}/{}", held.prefix))
        .args(["dev", held.interface.as_str()])
        .timeout(ctx.deadline.cap(CALL_TIMEOUT));
    match cmd::run(&spec) {
        Ok(_) => log::info!(
            "quorum guard: removed the virtual IP {vip}/{} from {}",
            held.prefix,
            held.interface
        ),
        Err(e) => log::error!("quorum guard: cannot remove the virtual IP {vip}: {e}"),
    }
}

/// Where an address is held: its interface and prefix length.
#[derive(Debug, PartialEq, Eq)]
struct Held {
    interface: String,
    prefix: u8,
}

/// Where `ip -j addr show`'s output `json` holds `addr`, if anywhere (pure).
fn held_on(json: &str, addr: IpAddr) -> Option<Held> {
    #[derive(Deserialize)]
    struct Link {
        ifname: String,
        #[serde(default)]
        addr_info: Vec<Info>,
    }
    #[derive(Deserialize)]
    struct Info {
        local: Option<String>,
        prefixlen: Option<u8>,
    }
    let links: Vec<Link> = serde_json::from_str(json).ok()?;
    links.into_iter().find_map(|l| {
        l.addr_info.iter().find_map(|i| {
            let local: IpAddr = i.local.as_deref()?.parse().ok()?;
            (local == addr).then(|| Held {
                interface: l.ifname.clone(),
                prefix: i.prefixlen.unwrap_or(if addr.is_ipv4() { 32 } else { 128 }),
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ip -j addr show` (iproute2 6.1) in a namespaced node holding the
    /// VIP 10.77.0.100/24 beside its own address, and a v6 address.
    const SHOWN: &str = r#"[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,"operstate":"UNKNOWN","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host","label":"lo"}]},{"ifindex":2,"link_index":3,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,"operstate":"UP","addr_info":[{"family":"inet","local":"10.77.0.11","prefixlen":24,"broadcast":"10.77.0.255","scope":"global","label":"eth0"},{"family":"inet","local":"10.77.0.100","prefixlen":24,"broadcast":"10.77.0.255","scope":"global","secondary":true,"label":"eth0"},{"family":"inet6","local":"fd00::64","prefixlen":64,"scope":"global"}]},{"ifindex":4,"ifname":"eth1","flags":["NO-CARRIER"],"addr_info":[]}]"#;

    #[test]
    fn the_vip_is_found_on_its_interface_with_its_prefix() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            held_on(SHOWN, ip("10.77.0.100")),
            Some(Held {
                interface: "eth0".into(),
                prefix: 24
            })
        );
        assert_eq!(
            held_on(SHOWN, ip("fd00:0::64")),
            Some(Held {
                interface: "eth0".into(),
                prefix: 64
            })
        );
        assert_eq!(held_on(SHOWN, ip("10.77.0.101")), None);
        assert_eq!(held_on("not json", ip("10.77.0.100")), None);
    }

    #[test]
    fn only_an_address_can_be_released_not_a_name() {
        assert_eq!(vip_address("10.0.0.5"), "10.0.0.5".parse().ok());
        assert_eq!(vip_address("[fd00::5]"), "fd00::5".parse().ok());
        assert_eq!(vip_address("db.example.org"), None);
    }
}
