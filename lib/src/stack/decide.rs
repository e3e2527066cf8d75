//! Pure decisions: promotion scores, synchronous standbys, which node should
//! be promoted. Actions observe, call these, then act; the unit tests of the
//! agent's judgement live here.

use std::collections::BTreeMap;

use crate::config::SyncMode;
use crate::postgres::db::StandbyRow;
use crate::postgres::history::Follow;
use crate::postgres::queries::WalSenderState;
use crate::postgres::server::{DataOrigin, TargetTimeline};
use crate::postgres::{Lsn, Position};

use super::observe::{LastStop, NoSession, Probe, Processes};

/// The promoted instance's own score.
pub const PROMOTED_SCORE: i64 = 1001;
/// The best standby's score; the next ones get one less each.
pub const BEST_STANDBY_SCORE: i64 = 1000;
/// Score a standby gives itself when no primary exists and it has none: it
/// may be promoted; promote then checks no other standby is ahead.
pub const CANDIDATE_SCORE: i64 = 1;
/// Score of a standby that must not be promoted (not streaming, or beyond
/// maxlag). Negative means "never promote here" to Pacemaker.
pub const NOT_PROMOTABLE: i64 = -1000;
/// Score given to a standby found ahead of the node Pacemaker chose, so that
/// the next transition promotes it.
pub const AHEAD_SCORE: i64 = 1005;
// A failed primary recovered in place ([`self_score`]) must outrank the
// standbys its last monitor scored.
const _: () = assert!(AHEAD_SCORE > BEST_STANDBY_SCORE);

/// `synchronous_standby_names` for "any one standby".
pub const ANY_ONE_STANDBY: &str = "ANY 1 (*)";

/// The scores the primary gives the standbys it sees, and the ones it scored
/// before that no longer stream.
///
/// A standby is promotable when it streams, has replayed to within
/// `maxlag` bytes (0: no limit), and has flushed every commit this primary
/// acknowledged asynchronously (up to `async_until`, see
/// [`async_until`]): a standby that lacks one must not be promoted. Promotable standbys are ranked by replayed
/// position, most advanced first (PAF 2.3.0 had this backwards), ties broken
/// by name so equal standbys do not swap scores on every monitor.
pub fn standby_scores<'a>(
    rows: &[StandbyRow],
    maxlag: u64,
    async_until: Option<Lsn>,
    scored_before: impl IntoIterator<Item = &'a str>,
    own_name: &str,
) -> BTreeMap<String, i64> {
    standby_scores_under(
        rows,
        maxlag,
        async_until,
        scored_before,
        own_name,
        Rules::ALL,
    )
}

/// [`standby_scores`] under `rules`.
pub fn standby_scores_under<'a>(
    rows: &[StandbyRow],
    maxlag: u64,
    async_until: Option<Lsn>,
    scored_before: impl IntoIterator<Item = &'a str>,
    own_name: &str,
    rules: Rules,
) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    let mut eligible: Vec<&StandbyRow> = Vec::new();
    for r in rows
        .iter()
        .filter(|r| !r.name.is_empty() && r.name != own_name)
    {
        let in_time = maxlag == 0 || r.replay_lag() <= maxlag;
        let complete = has_async_commits(Some(r), async_until);
        if (r.state == WalSenderState::Streaming && in_time && complete)
            || !rules.unpromotable_unless_streaming
        {
            eligible.push(r);
        } else {
            out.insert(r.name.clone(), NOT_PROMOTABLE);
        }
    }
    eligible.sort_by(|a, b| b.replay_lsn.cmp(&a.replay_lsn).then(a.name.cmp(&b.name)));
    for (i, r) in eligible.iter().enumerate() {
        let score = (BEST_STANDBY_SCORE - i as i64).max(CANDIDATE_SCORE + 1);
        out.entry(r.name.clone()).or_insert(score);
    }
    for name in scored_before
        .into_iter()
        .filter(|_| rules.unpromotable_unless_streaming)
    {
        if name != own_name && !out.contains_key(name) {
            out.insert(name.to_string(), NOT_PROMOTABLE);
        }
    }
    out
}

/// The standbys that stream from this primary and count for synchronous
/// replication: not this node itself. During a promotion its WAL receiver,
/// pointed at the virtual IP, can reach the VIP just brought up on this
/// node and stream from itself for a moment (seen in the namespaced
/// cluster); counting it made commits wait for a standby that did not exist.
pub fn streaming_standbys<'a>(rows: &'a [StandbyRow], own_name: &str) -> Vec<&'a StandbyRow> {
    rows.iter()
        .filter(|r| r.state == WalSenderState::Streaming && r.name != own_name)
        .collect()
}

/// Whether this standby streams from itself: a WAL sender of its own
/// serves a receiver named after this node. A demoted primary restarts as a
/// standby while the VIP is still its own (the VIP stops after the demote,
/// see pcs-examples), so its WAL receiver, pointed at the VIP, connects to
/// itself; that connection outlived the VIP's move by about 10 s in the
/// cluster tests, all that time the new primary had no standby, and with
/// `sync_replication=on` acknowledged commits alone.
pub fn streams_from_itself(own_senders: &[StandbyRow], own_name: &str) -> bool {
    own_senders.iter().any(|r| r.name == own_name)
}

/// Which of the primary's servers must be asked at primary_host, where the
/// standbys and replicas connect: `(postgres, redis)`. Only one with fewer
/// followers than the clone's other instances: a follower connected through
/// primary_host already proves the address works, so the steady state costs
/// nothing. `other_members` is `clone-max` - 1.
pub fn self_checks_needed(
    other_members: usize,
    pg_streaming: usize,
    redis_replicas: usize,
) -> (bool, bool) {
    (pg_streaming < other_members, redis_replicas < other_members)
}

/// Whether any address primary_host resolves to is one of this node's
/// (pure). Nothing resolved is not local.
pub fn is_local(primary_host: &[std::net::IpAddr], own: &[std::net::IpAddr]) -> bool {
    primary_host.iter().any(|a| own.contains(a))
}

/// How long the first monitor since a promotion waits for primary_host (the
/// virtual IP) to be an address of this node before it writes scores and
/// stale marks ([`first_monitor_waits`]).
pub const VIP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether the primary's monitor waits, before its writes, for primary_host
/// to be here: only the first monitor since a promotion (`since_promotion`),
/// while primary_host is known not to be local (`local`; `None`, cannot
/// tell: no wait). Pacemaker starts that monitor beside the virtual IP,
/// once the promotion's notifications are done. Its writes are CIB updates
/// (scores, and the stale marks of the standbys that do not stream yet): one
/// that lands before the VIP's start is initiated aborts the transition
/// before it, and on a busy node their work slows the VIP's start. Client
/// commits come through the VIP, so nothing is acknowledged before it is
/// here, and the marks written after the wait cover what was.
pub fn first_monitor_waits(since_promotion: bool, local: Option<bool>) -> bool {
    since_promotion && local == Some(false)
}

/// The `synchronous_standby_names` the primary should run with, given the
/// mode and how many standbys stream.
pub fn sync_standby_names(mode: SyncMode, streaming: usize) -> &'static str {
    match mode {
        SyncMode::Off => "",
        SyncMode::On if streaming == 0 => "",
        SyncMode::On | SyncMode::Strict => ANY_ONE_STANDBY,
    }
}

/// The `synchronous_standby_names` a node sets right before promotion: no
/// standby follows it yet, so "on" starts asynchronous (writes must not wait
/// for a standby that may be gone) and "strict" waits from the first commit.
pub fn sync_standby_names_at_promote(mode: SyncMode) -> &'static str {
    match mode {
        SyncMode::Strict => ANY_ONE_STANDBY,
        SyncMode::Off | SyncMode::On => "",
    }
}

/// The peer most ahead of `own`, if any is strictly ahead: then this node
/// must not be promoted.
pub fn better_peer(own: Position, peers: &[(String, Position)]) -> Option<&(String, Position)> {
    peers
        .iter()
        .filter(|(_, p)| *p > own)
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
}

/// The rules a decision applies. Production always uses [`Rules::ALL`];
/// the model checker (`stack/model.rs`) turns one off at a time and must
/// then find a run that breaks a property: the proof that each rule is
/// needed, and that the checker can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Promote refuses while a writable primary answers at primary_host.
    pub refuse_when_a_primary_answers: bool,
    /// Promote refuses while a peer published a position ahead of this one.
    pub refuse_when_a_peer_is_ahead: bool,
    /// A standby that does not stream (or lags beyond maxlag), or stopped
    /// streaming since it was scored, is scored [`NOT_PROMOTABLE`].
    pub unpromotable_unless_streaming: bool,
    /// A primary that acknowledges commits asynchronously marks every node
    /// that may lack them stale ([`stale_mark`]).
    pub mark_stale_nodes: bool,
}

impl Rules {
    /// Every rule: what the agent runs.
    pub const ALL: Rules = Rules {
        refuse_when_a_primary_answers: true,
        refuse_when_a_peer_is_ahead: true,
        unpromotable_unless_streaming: true,
        mark_stale_nodes: true,
    };
}

/// How long promote's check of primary_host waits for a TCP answer, from
/// the lists Pacemaker gives the promote action itself (`t`; `None` without
/// `notify=true`).
///
/// [`Probe::Released`] when every instance that was promoted when the
/// transition was computed is demoted or stopped in it (a lost node's stop
/// is implied by its fencing), so the virtual IP colocated with the role
/// has no holder Pacemaker knows of: the promote runs only once those
/// actions succeeded, and a successful demote or stop has left no writable
/// PostgreSQL there. The probe then only looks for a holder Pacemaker does
/// not know of (an address added by hand, a node cut off without fencing
/// whose client network still works): a live host, whose kernel answers a
/// SYN within a millisecond. Otherwise (no list, nothing was promoted, or a
/// promoted instance keeps its role) [`Probe::Lan`]'s whole window.
pub fn promote_probe(t: Option<&crate::ocf::notify::TransitionLists>) -> Probe {
    match t {
        Some(t)
            if !t.promoted.is_empty()
                && t.promoted
                    .iter()
                    .all(|p| t.demote.contains(p) || t.stop.contains(p)) =>
        {
            Probe::Released
        }
        _ => Probe::Lan,
    }
}

/// What answers at primary_host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrimaryAt {
    /// A writable PostgreSQL.
    Writable,
    /// A standby (or one still starting up or shutting down).
    Standby,
    /// Nothing: the reason (no TCP connection, cannot resolve).
    NoAnswer(String),
    /// Something that would not say what it is.
    Unknown(String),
    /// A server that failed TLS (`sslmode`, `sslrootcert`): its certificate
    /// was not verified, or it offers no SSL where TLS is required. It got
    /// no password.
    Untrusted(crate::postgres::tls::TlsError),
}

/// What a promotion looks at on a node that is still a standby.
#[derive(Debug, Clone)]
pub struct PromoteFacts<'a> {
    /// What answers at primary_host.
    pub primary_at: &'a PrimaryAt,
    /// This standby's position (timeline and last received or replayed
    /// LSN); `None` when it cannot be read.
    pub own: Option<Position>,
    /// The positions the other standbys of this partition published in the
    /// pre-promote notification.
    pub peers: &'a [(String, Position)],
    /// WAL replay is paused (`pg_wal_replay_pause()`).
    pub replay_paused: bool,
    /// `sync_replication`.
    pub sync: SyncMode,
}

/// How a standby is promoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotePlan {
    /// Resume WAL replay and wait until it reaches the received WAL first:
    /// promoting a paused standby ends recovery where replay stopped and
    /// drops the WAL received after it.
    pub resume_replay_first: bool,
    /// `synchronous_standby_names` to set before `pg_promote()`.
    pub synchronous_standby_names: &'static str,
}

/// Why a standby must not be promoted now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromoteRefusal {
    /// A writable primary answers at primary_host: two primaries.
    PrimaryAnswers,
    /// Something answers at primary_host and would not say what it is.
    CannotTell(String),
    /// The server at primary_host failed TLS: it cannot be asked.
    Untrusted(crate::postgres::tls::TlsError),
    /// This standby's position cannot be read.
    NoPosition,
    /// `peer` published a position ahead of this node's: promoting here
    /// would lose what only `peer` has. The promotion is handed to it
    /// ([`AHEAD_SCORE`] for `peer`, [`CANDIDATE_SCORE`] here).
    PeerAhead {
        peer: String,
        peer_at: Position,
        own: Position,
    },
}

/// Whether this standby may be promoted, and how (every rule).
pub fn promote(f: &PromoteFacts<'_>) -> Result<PromotePlan, PromoteRefusal> {
    promote_under(f, Rules::ALL)
}

/// [`promote`] under `rules`.
pub fn promote_under(f: &PromoteFacts<'_>, rules: Rules) -> Result<PromotePlan, PromoteRefusal> {
    match f.primary_at {
        PrimaryAt::Writable if rules.refuse_when_a_primary_answers => {
            return Err(PromoteRefusal::PrimaryAnswers)
        }
        PrimaryAt::Unknown(r) => return Err(PromoteRefusal::CannotTell(r.clone())),
        PrimaryAt::Untrusted(e) => return Err(PromoteRefusal::Untrusted(e.clone())),
        PrimaryAt::Writable | PrimaryAt::Standby | PrimaryAt::NoAnswer(_) => {}
    }
    let own = f.own.ok_or(PromoteRefusal::NoPosition)?;
    if rules.refuse_when_a_peer_is_ahead {
        if let Some((peer, peer_at)) = better_peer(own, f.peers) {
            return Err(PromoteRefusal::PeerAhead {
                peer: peer.clone(),
                peer_at: *peer_at,
                own,
            });
        }
    }
    Ok(PromotePlan {
        resume_replay_first: f.replay_paused,
        synchronous_standby_names: sync_standby_names_at_promote(f.sync),
    })
}

/// The promotion score a standby gives itself (at start, and in its
/// monitor while no primary answers), if it should set one.
///
/// With no primary to follow, this node may have to become it: a score
/// now lets Pacemaker promote at once (promote still checks that no
/// standby is ahead). Not when it has a score already (the primary's, or
/// -1000), and never when a primary marked it stale: that primary then
/// acknowledged commits asynchronously that this node may lack, and only
/// an operator may accept losing them.
///
/// A failed primary that Pacemaker recovers in place (its demote found
/// PostgreSQL down, [`OwnData::FailedPrimary`]) holds every WAL record its
/// standbys have, and more: it scores itself [`AHEAD_SCORE`], above the
/// standbys its last monitor scored. Otherwise the stop and start of its
/// recovery leave it the lowest score, Pacemaker picks a standby, and the
/// standby's promote is refused ("… is ahead"): a failed action on a healthy
/// node, and a failover where RUNBOOK promises a restart in place.
pub fn self_score(
    primary_at: &PrimaryAt,
    current: Option<i64>,
    stale: bool,
    own: OwnData,
) -> Option<i64> {
    match (primary_at, current) {
        (PrimaryAt::Writable, _) | (_, Some(_)) => None,
        (_, None) if stale => None,
        (_, None) if own == OwnData::FailedPrimary => Some(AHEAD_SCORE),
        (_, None) => Some(CANDIDATE_SCORE),
    }
}

/// Whose data a standby without a primary holds, for [`self_score`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum OwnData {
    /// A standby's (or nothing known): a prefix of some primary's WAL.
    #[default]
    Standby,
    /// This node's own, as the primary Pacemaker was recovering when its
    /// demote found PostgreSQL down, and no other primary answered since:
    /// every standby's WAL is a prefix of it.
    FailedPrimary,
}

/// The primary's monitor: the stale mark a node should carry, if it must
/// change. With `sync_replication=on` a primary without a streaming standby
/// acknowledges commits at once; every node that has not received them may
/// lack them, including nodes that are down or were never scored, and is
/// marked (a permanent node attribute, so a stop, a restart or a reboot
/// does not forget it). A marked node is scored [`NOT_PROMOTABLE`] and
/// never scores itself ([`self_score`]). It is cleared once it streams and
/// has flushed past the last WAL written while commits were asynchronous
/// ([`has_async_commits`]). `off` promised no durability and `strict` never
/// acknowledges asynchronously: no marks.
///
/// `async_now`: commits were asynchronous since the last monitor or are
/// from now on (`synchronous_standby_names` was or becomes empty). Only
/// then are nodes marked, so the primary lists the cluster's nodes only
/// then, never in the steady state.
pub fn stale_mark(
    sync: SyncMode,
    has_async_commits: bool,
    marked: bool,
    async_now: bool,
) -> Option<bool> {
    stale_mark_under(sync, has_async_commits, marked, async_now, Rules::ALL)
}

/// [`stale_mark`] under `rules`.
pub fn stale_mark_under(
    sync: SyncMode,
    has_async_commits: bool,
    marked: bool,
    async_now: bool,
    rules: Rules,
) -> Option<bool> {
    let want = if !rules.mark_stale_nodes || sync != SyncMode::On || has_async_commits {
        false
    } else {
        async_now || marked
    };
    (want != marked).then_some(want)
}

/// The primary's monitor: the end of the WAL up to which commits may have
/// been acknowledged asynchronously, kept in the state file. Moved to the
/// current end of the WAL by every monitor that finds or leaves
/// `synchronous_standby_names` empty because no standby streams: commits
/// acknowledged since the last monitor, and the ones released now, were
/// not waited for. Not for the asynchronous start of a promotion (the first
/// monitor since): that is README's documented window of `on`, and marking
/// every standby after each failover would leave none promotable for a
/// monitor interval. Only `sync_replication=on` keeps one: `strict` never
/// acknowledges asynchronously, and `off` promised nothing.
pub fn async_until(
    sync: SyncMode,
    names_were_empty: bool,
    first_monitor_since_promotion: bool,
    names_now_empty: bool,
    current: Lsn,
    before: Option<Lsn>,
) -> Option<Lsn> {
    let were = names_were_empty && !first_monitor_since_promotion;
    match sync {
        SyncMode::On if were || names_now_empty => Some(current),
        SyncMode::On => before,
        SyncMode::Off | SyncMode::Strict => None,
    }
}

/// Whether the standby whose `pg_stat_replication` row is `row` (none: it
/// is not connected) streams and has flushed every commit acknowledged
/// asynchronously, that is, the WAL up to `async_until` (the end of the
/// WAL at the last monitor that found `synchronous_standby_names` empty;
/// none: never since this primary was promoted).
pub fn has_async_commits(row: Option<&StandbyRow>, async_until: Option<Lsn>) -> bool {
    let Some(until) = async_until else {
        return true;
    };
    row.is_some_and(|r| {
        r.state == WalSenderState::Streaming && r.flush_lsn.unwrap_or_default() >= until
    })
}

/// What answers as Redis at primary_host, seen from a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisAtPrimary {
    /// A master.
    Master,
    /// A replica (no master there yet).
    Replica,
    /// Something answers but the TLS handshake failed: the reason, which
    /// names the parameter to fix. A replica with the same redis_tls_ca
    /// fails the same way, so its link cannot come up by itself.
    TlsRefused(String),
    /// Nothing answers (no master during a failover), or an error.
    NoAnswer(String),
}

/// Why a replica's link being down is a problem worth reporting, or `None`
/// when no master is there to follow (the link comes up once one is).
pub fn replica_link_problem(
    link_up: bool,
    at_primary: &RedisAtPrimary,
    primary: &str,
) -> Option<String> {
    match (link_up, at_primary) {
        (true, _) => None,
        (false, RedisAtPrimary::Master) => Some(format!(
            "Redis replica link down while its master answers at {primary}"
        )),
        (false, RedisAtPrimary::TlsRefused(reason)) => Some(format!("Redis link down: {reason}")),
        (false, RedisAtPrimary::Replica | RedisAtPrimary::NoAnswer(_)) => None,
    }
}

// ---------------------------------------------------------------- monitor

/// What a monitor concludes. [`super::Outcome`]'s `From<Verdict>` is the one
/// place a verdict becomes an exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing runs, cleanly (7).
    NotRunning,
    /// A healthy standby (0).
    Unpromoted,
    /// A healthy primary (8).
    Promoted,
    /// A standby that runs but does not do its job (190).
    Degraded(String),
    /// A primary that runs but does not do its job (191).
    DegradedPromoted(String),
    /// A failure. `promoted`: this instance was the primary, so Pacemaker
    /// must hear "failed promoted" (9) to demote and recover it; otherwise
    /// a generic error (1).
    Failed { promoted: bool, reason: String },
}

impl Verdict {
    /// A failure of an instance that was (`promoted`) or was not the primary.
    pub fn failed(promoted: bool, reason: impl Into<String>) -> Verdict {
        Verdict::Failed {
            promoted,
            reason: reason.into(),
        }
    }
}

/// The verdict on the processes alone, before any connection; `None` when
/// both PostgreSQL and Redis run and the monitor goes on to ask them.
///
/// A probe that finds neither running reports "not running", also with pid
/// files left by a crash or a power loss: a failure would count against
/// migration-threshold at every reboot, and start cleans up and recovers as
/// a standby.
pub fn monitor_processes(p: &Processes) -> Option<Verdict> {
    use crate::postgres::server::ProcessState as Pg;
    use crate::redis::ProcessState as Rd;
    let fail = |reason: String| Some(Verdict::failed(p.was_primary, reason));
    if p.probe && !matches!(p.pg, Pg::Running(_)) && !matches!(p.redis, Rd::Running(_)) {
        return Some(Verdict::NotRunning);
    }
    match (p.pg, &p.redis) {
        // A stopped postmaster (SIGSTOP, a debugger) accepts connections
        // into its backlog and never answers them: waiting out query_timeout
        // to find that out would only delay the recovery.
        (Pg::Running(pid), _) if p.pg_frozen => fail(format!(
            "PostgreSQL postmaster {pid} is stopped (SIGSTOP or a debugger): it answers no connection"
        )),
        (Pg::Stopped, Rd::NotRunning) => Some(Verdict::NotRunning),
        (Pg::Crashed(pid), _) => fail(format!(
            "PostgreSQL postmaster {pid} died (stale postmaster.pid)"
        )),
        (Pg::Stopped, _) => fail("PostgreSQL is stopped but Redis runs".into()),
        (Pg::Running(_), Rd::Crashed(pid)) => fail(format!("Redis {pid} died (stale pidfile)")),
        (Pg::Running(_), Rd::NotRunning) => fail("Redis is not running".into()),
        (Pg::Running(_), Rd::Running(_)) => None,
    }
}

/// The verdict when the local PostgreSQL runs but gives no session: a
/// standby still replaying WAL up to consistency is degraded, not failed.
pub fn monitor_no_session(was_primary: bool, why: &NoSession) -> Verdict {
    match why {
        NoSession::StartingUp(_) if !was_primary => {
            Verdict::Degraded("standby still recovering: not accepting connections yet".into())
        }
        NoSession::StartingUp(e) | NoSession::Failed(e) => Verdict::failed(was_primary, e.clone()),
    }
}

/// Why a standby that does not stream is a problem, given what answers at
/// primary_host (`at`, shown as `primary`): `None` when no primary is there
/// to stream from (it may have to become the primary itself).
pub fn not_streaming_problem(at: &PrimaryAt, primary: &str) -> Option<String> {
    match at {
        PrimaryAt::Writable => Some(format!(
            "standby not streaming from the primary at {primary}"
        )),
        PrimaryAt::Untrusted(e) => Some(format!("standby not streaming: {e}")),
        PrimaryAt::Standby | PrimaryAt::NoAnswer(_) | PrimaryAt::Unknown(_) => None,
    }
}

/// A standby's first look at its replication: a Redis master on an
/// unpromoted node has failed (two masters); `Ok(true)` when PostgreSQL
/// streams and Redis's link is up (the steady state, nothing more to ask),
/// `Ok(false)` when the monitor must find out whether a primary is there.
pub fn standby_steady(
    redis_role: &crate::redis::Role,
    streaming: bool,
    link_up: bool,
) -> Result<bool, Verdict> {
    if *redis_role == crate::redis::Role::Master {
        return Err(Verdict::failed(
            false,
            "Redis is a master on an unpromoted node",
        ));
    }
    Ok(streaming && link_up)
}

/// A problem seen since `since`, now `now` (Unix seconds), by a monitor
/// recurring every `interval`: replication (re)connects within seconds
/// after a start or a promotion elsewhere, and a virtual IP starts after
/// the promotion, so only a problem that outlasts two intervals makes the
/// instance degraded (Pacemaker 2.1.5 also lists a degraded monitor among
/// the failed actions). A probe has no history: never degraded. Returns the
/// verdict and how long the problem has lasted.
pub fn after_grace(
    problem: &str,
    since: u64,
    now: u64,
    interval: std::time::Duration,
    probe: bool,
    promoted: bool,
) -> (Verdict, u64) {
    let lasted = now.saturating_sub(since);
    let within = probe || lasted < 2 * interval.as_secs();
    let verdict = match (within, promoted) {
        (true, false) => Verdict::Unpromoted,
        (true, true) => Verdict::Promoted,
        (false, false) => Verdict::Degraded(format!("{problem} for {lasted} s")),
        (false, true) => Verdict::DegradedPromoted(format!("{problem} (for {lasted} s)")),
    };
    (verdict, lasted)
}

/// What the primary's monitor found at primary_host, where its followers
/// connect. `None`: not asked (every member follows, or the VIP is away).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtPrimaryHost {
    /// Some member does not follow and primary_host is not an address of
    /// this node (the virtual IP is elsewhere, or not up yet).
    pub vip_away: bool,
    /// What answers as PostgreSQL there.
    pub postgres: Option<PrimaryAt>,
    /// What answers as Redis there.
    pub redis: Option<RedisAtPrimary>,
}

/// The addresses and names the primary's problems name in their fix.
#[derive(Debug, Clone, Copy)]
pub struct Addresses<'a> {
    /// primary_host.
    pub primary_host: &'a str,
    /// primary_port.
    pub primary_port: u16,
    /// redis_primary_port.
    pub redis_port: u16,
    /// repl_user.
    pub repl_user: &'a str,
}

/// Why followers cannot reach this primary at primary_host, each with its
/// fix; empty when nothing is wrong. A Redis bound to 127.0.0.1 (Debian's
/// default) or a `listen_addresses` without primary_host leaves every
/// follower retrying forever, and a failover then loses what only the
/// primary had (celery's queue of outgoing SMS).
pub fn primary_host_problems(seen: &AtPrimaryHost, a: &Addresses<'_>) -> Vec<String> {
    let mut problems = Vec::new();
    if seen.vip_away {
        problems.push(format!(
            "primary_host {} is not an address of this node: standbys and replicas connecting \
             there cannot reach this primary; primary_host must be the virtual IP colocated with \
             the Promoted role",
            a.primary_host
        ));
    }
    let what = match &seen.postgres {
        None | Some(PrimaryAt::Writable) => None,
        Some(PrimaryAt::Standby) => Some("a standby answers there, not this primary".to_string()),
        Some(PrimaryAt::NoAnswer(r) | PrimaryAt::Unknown(r)) => Some(r.clone()),
        Some(PrimaryAt::Untrusted(e)) => {
            // Its own fix (the certificate), not listen_addresses.
            problems.push(format!("standbys cannot connect: {e}"));
            None
        }
    };
    if let Some(r) = what {
        problems.push(format!(
            "PostgreSQL does not answer at primary_host {}:{} as {} ({r}): standbys cannot \
             connect; put primary_host in listen_addresses (or '*') and admit {} from the \
             peers in pg_hba.conf",
            a.primary_host, a.primary_port, a.repl_user, a.repl_user
        ));
    }
    let redis = match &seen.redis {
        None | Some(RedisAtPrimary::Master) => None,
        Some(RedisAtPrimary::Replica) => Some("a replica answers there, not this master".into()),
        Some(RedisAtPrimary::TlsRefused(r) | RedisAtPrimary::NoAnswer(r)) => Some(r.clone()),
    };
    if let Some(r) = redis {
        problems.push(format!(
            "Redis does not answer as master at primary_host {}:{} ({r}): replicas cannot \
             follow and its data would be lost at a failover; bind Redis to primary_host \
             too (e.g. bind * -::*) with requirepass set to redis_password",
            a.primary_host, a.redis_port
        ));
    }
    problems
}

// ---------------------------------------------------------------- start

/// Why a start must not go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartRefusal {
    /// The local PostgreSQL already runs as a primary: an instance starts
    /// unpromoted, and only promote makes a primary.
    AlreadyPrimary,
    /// The server at primary_host failed TLS: a start does not follow (or
    /// wait for) a server it cannot trust.
    Untrusted(crate::postgres::tls::TlsError),
}

impl std::fmt::Display for StartRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartRefusal::AlreadyPrimary => f.write_str(
                "PostgreSQL already runs as a primary here; an instance starts unpromoted: demote or stop it first",
            ),
            StartRefusal::Untrusted(e) => write!(f, "{e}"),
        }
    }
}

/// A start on a running PostgreSQL: only a standby is followed on.
pub fn start_running(in_recovery: bool) -> Result<(), StartRefusal> {
    if in_recovery {
        Ok(())
    } else {
        Err(StartRefusal::AlreadyPrimary)
    }
}

/// What a start of stopped data looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartFacts {
    /// Where the data comes from (backup_label, control-file state,
    /// standby.signal).
    pub origin: DataOrigin,
    /// What answers at primary_host (never `Untrusted`: a start stops
    /// before, see `observe::trusted_primary_at`).
    pub primary_at: PrimaryAt,
    /// The newest timeline of the local data.
    pub local_timeline: u32,
    /// The timeline the primary writes, when read
    /// ([`needs_primary_timeline`]) and readable.
    pub primary_timeline: Option<u32>,
    /// How the data was last stopped.
    pub last_stop: LastStop,
}

/// Who is checked against the primary's history (named in the exit reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// Data last used by a primary.
    OldPrimary,
    /// A standby on another timeline than the primary's.
    Standby { local: u32, primary: Option<u32> },
}

impl Who {
    /// The words of the log lines and exit reasons.
    pub fn name(&self) -> &'static str {
        match self {
            Who::OldPrimary => "this old primary",
            Who::Standby { .. } => "this standby",
        }
    }
}

/// Whether a start checks the local history against the primary's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum History {
    /// A base backup: PostgreSQL recovers it from its backup_label.
    BaseBackup,
    /// Same timeline as the primary's: nothing to check.
    SameTimeline,
    /// No primary to check against: a standby answers at primary_host.
    StandbyAnswers,
    /// No primary to check against: nothing answers (the reason).
    NoAnswer(String),
    /// No primary to check against: cannot tell what answers (the reason).
    CannotTell(String),
    /// Check (pg_rewind dry run, or the timeline history), rewind or refuse.
    Check(Who),
    /// A standby on another timeline that was not stopped cleanly: pg_rewind
    /// reads only cleanly stopped data, and crash recovery outside standby
    /// mode would add WAL past the fork. So it is first started as a standby
    /// with no source of WAL, replays its own `pg_wal` to its end, and is
    /// stopped cleanly ("shut down in recovery", its minimum recovery point
    /// at the end of that WAL); then it is checked like
    /// [`History::Check`]. Started unchecked, a node holding WAL past the
    /// fork never streams: an old primary that demoted while cut off, then
    /// was fenced (a CI run saw it), never rejoined.
    ReplayAloneFirst {
        local: u32,
        primary: Option<u32>,
        state: String,
    },
}

impl History {
    /// No primary was there to check the data against: nothing answers,
    /// a standby answers, or what answers cannot be told.
    pub fn checked_nothing(&self) -> bool {
        matches!(
            self,
            History::NoAnswer(_) | History::StandbyAnswers | History::CannotTell(_)
        )
    }
}

/// How stopped data is started as a standby.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartPlan {
    /// A crashed primary: finish its crash recovery in single-user mode
    /// first, whoever answers at primary_host. Started as a standby it would
    /// replay WAL no other node may have, and its control file would go on
    /// naming an older checkpoint, hiding that WAL from the history check of
    /// a later start.
    pub crash_recover_first: bool,
    /// The history check.
    pub history: History,
}

/// Whether a start needs the primary's timeline (a connection and a query):
/// only a standby's data following a writable primary is compared by
/// timeline.
pub fn needs_primary_timeline(origin: DataOrigin, at: &PrimaryAt) -> bool {
    origin == DataOrigin::Standby && *at == PrimaryAt::Writable
}

/// How stopped data is started as a standby (pure).
pub fn start(f: &StartFacts) -> Result<StartPlan, StartRefusal> {
    let history = match (&f.primary_at, f.origin) {
        (PrimaryAt::Writable, DataOrigin::BaseBackup) => History::BaseBackup,
        (PrimaryAt::Writable, DataOrigin::Primary | DataOrigin::CrashedPrimary) => {
            History::Check(Who::OldPrimary)
        }
        // A standby whose last timeline is older than the primary's (a
        // failover happened while it was down, or it was a primary demoted
        // while no primary answered) may hold WAL past the fork.
        (PrimaryAt::Writable, DataOrigin::Standby) => {
            let (local, primary) = (f.local_timeline, f.primary_timeline);
            match &f.last_stop {
                _ if primary == Some(local) => History::SameTimeline,
                LastStop::CleanInRecovery => History::Check(Who::Standby { local, primary }),
                LastStop::Other(state) => History::ReplayAloneFirst {
                    local,
                    primary,
                    state: state.clone(),
                },
            }
        }
        (PrimaryAt::Standby, _) => History::StandbyAnswers,
        (PrimaryAt::NoAnswer(r), _) => History::NoAnswer(r.clone()),
        (PrimaryAt::Unknown(r), _) => History::CannotTell(r.clone()),
        (PrimaryAt::Untrusted(e), _) => return Err(StartRefusal::Untrusted(e.clone())),
    };
    Ok(StartPlan {
        crash_recover_first: f.origin == DataOrigin::CrashedPrimary,
        history,
    })
}

/// Which timeline a standby started by a plan with `history` recovers to,
/// given what its own `pg_wal` says (`local`: its data against the newest
/// timeline history it holds, `None` if it holds none past its own
/// timeline or it could not be read).
///
/// Only a start that checked nothing against a primary (none answered)
/// looks at it. A node cut off from the cluster can have fetched the
/// history of the new primary's timeline before its own demote wrote WAL
/// past that fork: with `latest`, PostgreSQL then refuses to start at all
/// ("requested timeline N is not a child of this server's history"), a
/// failed start that bans the node (a CI run saw it, after the heal of a
/// cut-off primary whose VIP Pacemaker was recovering). On its own timeline
/// it starts, is never made a candidate ([`start_makes_candidate`]), and
/// its monitor has it rewound once the primary answers
/// ([`diverged_standby`]).
pub fn start_target(history: &History, local: Option<Follow>) -> TargetTimeline {
    if history.checked_nothing() && !candidate_by_own_data(local) {
        TargetTimeline::Current
    } else {
        TargetTimeline::Latest
    }
}

/// Whether this node's own data lets it be a promotion candidate while no
/// primary answers (`local`, as for [`start_target`]): not when it goes
/// past the fork of a newer timeline whose history its `pg_wal` holds,
/// whose primary acknowledged writes this node never had. The monitor of
/// a standby without a primary asks this before it scores itself, once
/// per episode, as the start does ([`start_makes_candidate`]).
pub fn candidate_by_own_data(local: Option<Follow>) -> bool {
    !matches!(local, Some(Follow::Diverged { .. } | Follow::NotInHistory))
}

/// Whether a start may make this node a promotion candidate when no
/// primary answers: not when its data went past a newer timeline's fork
/// ([`start_target`] pinned it): that timeline's primary acknowledged
/// writes this node never had.
pub fn start_makes_candidate(target: TargetTimeline) -> bool {
    target == TargetTimeline::Latest
}

/// A standby that does not stream while a writable primary answers, judged
/// by its own data against the newest timeline history in its `pg_wal`
/// (`local`; its WAL receiver fetches the primary's on connecting). Data
/// past the fork never streams again, whatever the wait: with `rewind` its
/// monitor fails, so that Pacemaker restarts it in place and its start
/// rewinds it (an old primary rejoins by itself); without, it is degraded
/// with the fix. `None`: nothing shows a divergence; the usual grace
/// applies.
pub fn diverged_standby(local: Option<Follow>, rewind: bool) -> Option<Verdict> {
    // The fix first: the exit reason keeps 128 characters.
    let what = match local? {
        Follow::Diverged { timeline, fork } => {
            format!("standby diverged at {fork} on timeline {timeline}, cannot stream")
        }
        Follow::NotInHistory => {
            "standby diverged (its timeline is not in the primary's history), cannot stream"
                .to_string()
        }
        Follow::SameTimeline | Follow::Follows { .. } => return None,
    };
    Some(if rewind {
        Verdict::failed(
            false,
            format!("{what}: restart it, its start rewinds it (rewind=true)"),
        )
    } else {
        Verdict::Degraded(format!(
            "{what}: rebuild it (rapidproctl rebuild) or set rewind=true"
        ))
    })
}

// ---------------------------------------------------------------- shutdown

/// What a demote or stop found on the local PostgreSQL before shutting it
/// down: what its fast shutdown may be left waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownFacts {
    /// A standby, or a primary whose attached standbys all confirmed the WAL
    /// written once writes had stopped (or none is attached): the fast
    /// shutdown waits only for its own checkpoint and for standbys that
    /// answer.
    Clean,
    /// A primary with a standby that did not confirm within
    /// [`CONFIRM_WINDOW`] (unreachable, stopped, or far behind): its WAL
    /// sender could hold the fast shutdown until `wal_sender_timeout`.
    StandbysUnconfirmed,
    /// The server gave no session within [`LOCAL_PROBE`], or its postmaster
    /// is stopped by a signal: only SIGKILL is sure to end it.
    Frozen,
}

/// How long a demote or stop waits for a session on the local server
/// before it takes it for frozen: a live local server forks a backend in
/// milliseconds, and a demote that waits out query_timeout (10 s) keeps the
/// virtual IP on a dead primary that long.
pub const LOCAL_PROBE: std::time::Duration = std::time::Duration::from_secs(1);

/// How long the standbys get to confirm the WAL written once writes stopped.
/// A standby on the same LAN confirms a flush in milliseconds.
pub const CONFIRM_WINDOW: std::time::Duration = std::time::Duration::from_millis(300);

/// The fast shutdown's bound when a standby did not confirm.
pub const UNCLEAN_FAST: std::time::Duration = std::time::Duration::from_secs(1);

/// Each signal's bound when the server is frozen: it handles neither.
pub const FROZEN_STEP: std::time::Duration = std::time::Duration::from_millis(500);

/// The immediate shutdown's bound otherwise: it only signals the children
/// and waits for them to exit, which takes milliseconds.
pub const IMMEDIATE_BOUND: std::time::Duration = std::time::Duration::from_secs(2);

/// Bounds of the first two steps of a shutdown; SIGKILL of the postmaster
/// and of every process in its data directory gets the rest of the
/// deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownPlan {
    /// Fast shutdown (SIGINT): a clean shutdown checkpoint.
    pub fast: std::time::Duration,
    /// Immediate shutdown (SIGQUIT): crash recovery at the next start.
    pub immediate: std::time::Duration,
}

/// The shutdown's bounds from what was found and the time left (pure).
///
/// A clean server gets half the time left for its checkpoint, as it always
/// did. Otherwise the fast shutdown gets a short bound: committed data is
/// safe either way (immediate and SIGKILL leave crash recovery to the next
/// start, which replays the WAL), and every second spent waiting keeps the
/// virtual IP on this node. Whatever the facts, a quarter of the time left
/// stays for SIGKILL and the wait for the processes to be gone.
pub fn shutdown_plan(facts: ShutdownFacts, remaining: std::time::Duration) -> ShutdownPlan {
    let quarter = remaining / 4;
    let (fast, immediate) = match facts {
        ShutdownFacts::Clean => (remaining / 2, IMMEDIATE_BOUND.min(quarter)),
        ShutdownFacts::StandbysUnconfirmed => {
            (UNCLEAN_FAST.min(quarter), IMMEDIATE_BOUND.min(quarter))
        }
        ShutdownFacts::Frozen => (FROZEN_STEP.min(quarter), FROZEN_STEP.min(quarter)),
    };
    ShutdownPlan { fast, immediate }
}

/// The standbys (by application_name) that have not confirmed flushing
/// `written`, the end of the WAL once writes had stopped (pure). A
/// standby with no flush position yet has confirmed nothing.
pub fn unconfirmed_standbys(rows: &[StandbyRow], written: Lsn) -> Vec<String> {
    rows.iter()
        .filter(|r| r.flush_lsn.is_none_or(|f| f < written))
        .map(|r| r.name.clone())
        .collect()
}

/// The facts of a primary's shutdown from its unconfirmed standbys (pure).
pub fn primary_shutdown_facts(unconfirmed: &[String]) -> ShutdownFacts {
    if unconfirmed.is_empty() {
        ShutdownFacts::Clean
    } else {
        ShutdownFacts::StandbysUnconfirmed
    }
}

// ---------------------------------------------------------------- notify

/// What a notification makes this node do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyPlan {
    /// Pre-promote: publish this standby's position.
    PublishPosition,
    /// Pre-promote on the node about to be promoted: publish, then hear the
    /// other standbys' positions ([`pre_promote`]) and hand the promotion
    /// to one that is ahead before Pacemaker runs this node's promote.
    PublishAndHearPeers,
    /// Post-promote on the promoted node: clear its published position,
    /// forget scores, checkpoint so the control file names the new timeline,
    /// leave a watcher for its standbys ([`standbys_to_await`]).
    Promoted,
    /// Post-promote elsewhere: clear, forget, follow primary_host again.
    Refollow,
    /// Nodes came or went: forget scores, so they are re-asserted; on the
    /// primary, after a start, wait for the started standbys to stream
    /// ([`standbys_to_await`], [`wait_step`]).
    ForgetScores,
    /// Pre-demote on the primary, when the same transition promotes another
    /// node: remember it, so that the demote leaves its own score to that
    /// node's promote ([`demote_own_score`]).
    HandOver,
    /// Nothing to do.
    Nothing,
}

/// The plan for a notification `kind`-`op`, `promoted` and `demoted` naming
/// the nodes promoted and demoted by the transition, and `me` this node.
pub fn notify(
    kind: crate::ocf::notify::NotifyKind,
    op: crate::ocf::notify::NotifyOp,
    promoted: &[String],
    demoted: &[String],
    me: &str,
) -> NotifyPlan {
    use crate::ocf::notify::{NotifyKind as K, NotifyOp as O};
    match (kind, op) {
        (K::Pre, O::Demote)
            if demoted.iter().any(|d| d == me) && promoted.iter().any(|p| p != me) =>
        {
            NotifyPlan::HandOver
        }
        (K::Pre, O::Promote) if promoted.iter().any(|p| p == me) => NotifyPlan::PublishAndHearPeers,
        (K::Pre, O::Promote) => NotifyPlan::PublishPosition,
        (K::Post, O::Promote) if promoted.iter().any(|p| p == me) => NotifyPlan::Promoted,
        (K::Post, O::Promote) => NotifyPlan::Refollow,
        (K::Post, O::Start | O::Stop) => NotifyPlan::ForgetScores,
        _ => NotifyPlan::Nothing,
    }
}

/// Whether notification `n` tells of the primary being lost: after a stop
/// that takes every promoted instance (a failed primary's recovery, or a
/// node fenced or gone). A standby without a score then scores itself at
/// once ([`self_score`]) rather than at its next monitor: a standby that
/// rejoined a moment before the primary died was not yet scored by it.
pub fn primary_lost(n: &crate::ocf::notify::Notify) -> bool {
    use crate::ocf::notify::{NotifyKind as K, NotifyOp as O};
    n.kind == K::Post
        && n.operation == O::Stop
        && !n.promoted.is_empty()
        && n.promoted.iter().all(|p| n.stop.contains(p))
}

/// How long a hand-over recorded by the pre-demote notification holds for
/// the demote: the demote follows the notification at once, within one
/// transition; an older record is from a transition that never demoted.
pub const HANDOVER_FRESH: u64 = 120;

/// The score a demote writes for its own node, or None to leave it alone.
/// Writing it changes a node attribute, which makes Pacemaker abort the
/// running transition: in a switchover the VIP then stopped only after a
/// new transition was computed, after the promotion, serially (a 3-node
/// diag: 0.2 to 0.3 s of every switchover's write outage). So when the
/// pre-demote notification said the same transition promotes another node
/// (`handed_over_at`, Unix seconds, fresh within [`HANDOVER_FRESH`] of
/// `now`), the promote there lowers this node's score beside its own, as
/// one abort after the VIP's stop began. A failed primary still scores
/// itself ahead, at once: that abort is wanted, to recover it in place.
pub fn demote_own_score(own: OwnData, handed_over_at: Option<u64>, now: u64) -> Option<i64> {
    match own {
        OwnData::FailedPrimary => Some(AHEAD_SCORE),
        OwnData::Standby if handover_is_current(handed_over_at, now) => None,
        OwnData::Standby => Some(CANDIDATE_SCORE),
    }
}

/// Whether a hand-over recorded at `at` still holds at `now`.
pub fn handover_is_current(at: Option<u64>, now: u64) -> bool {
    at.is_some_and(|at| at <= now && now - at <= HANDOVER_FRESH)
}

/// The nodes whose scores the promote of `me` lowers to a candidate's beside
/// its own: those its pre-promote notification said the same transition
/// demotes (their demotes left their scores, [`demote_own_score`]).
pub fn demoted_beside(demoted: &[String], me: &str) -> Vec<String> {
    demoted.iter().filter(|d| *d != me).cloned().collect()
}

// ------------------------------------------- pre-promote, on the chosen node

/// How long the node Pacemaker is about to promote waits, in its
/// pre-promote notification, for the other standbys to publish their
/// positions. They publish in the same notification, run at the same
/// moment on every node (a restartpoint, then `attrd_updater`), so they
/// usually take a few hundred milliseconds; a standby that does not
/// publish in time is left to promote's own check.
pub const PEERS_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The standbys whose positions the node `me`, about to be promoted,
/// waits for in its pre-promote notification `n`: every instance that is
/// unpromoted, starting or being demoted (a demoted primary is a standby
/// by then, and publishes too), except the ones stopping and itself.
pub fn peers_to_hear(n: &crate::ocf::notify::Notify, me: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in [&n.unpromoted, &n.start, &n.demote].into_iter().flatten() {
        if name != me && !n.stop.contains(name) && !n.promote.contains(name) && !out.contains(name)
        {
            out.push(name.clone());
        }
    }
    out
}

/// What the node about to be promoted does after one look at the
/// positions published so far ([`pre_promote`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrePromote {
    /// A standby it waits for has not published yet: look again.
    Wait,
    /// No standby is ahead (or this node's position is unknown, which
    /// promote refuses on its own): let Pacemaker promote it.
    Proceed,
    /// `peer` is ahead: score it [`AHEAD_SCORE`] and this node
    /// [`CANDIDATE_SCORE`] now. The change aborts the transition before
    /// Pacemaker runs this node's promote (it waits for every pre-promote
    /// notification), and the next one promotes `peer`. A refusal in
    /// promote would do the same, at the price of a failed action and a
    /// fail-count on a healthy standby, after every cold start that picks
    /// the node behind.
    HandOver {
        /// The standby ahead.
        peer: String,
        /// Its position.
        peer_at: Position,
        /// This node's.
        own: Position,
    },
}

/// The pre-promote decision of the node about to be promoted: `own` its
/// position, `expected` the standbys it waits for ([`peers_to_hear`]),
/// `published` what they published so far, `out_of_time` whether
/// [`PEERS_WAIT`] (or the notification's deadline) has passed. Hands over
/// to the most advanced standby once every expected one has published, or
/// at the end of the wait with what was published by then; the same rule
/// as promote's ([`better_peer`]), so promote would not refuse the peer.
pub fn pre_promote(
    own: Option<Position>,
    expected: &[String],
    published: &[(String, Position)],
    out_of_time: bool,
) -> PrePromote {
    let Some(own) = own else {
        return PrePromote::Proceed;
    };
    let heard = expected
        .iter()
        .all(|e| published.iter().any(|(n, _)| n == e));
    if !heard && !out_of_time {
        return PrePromote::Wait;
    }
    match better_peer(own, published) {
        Some((peer, peer_at)) => PrePromote::HandOver {
            peer: peer.clone(),
            peer_at: *peer_at,
            own,
        },
        None => PrePromote::Proceed,
    }
}

// ------------------------------------------------ waiting for standbys

/// How long the primary's post-start notification waits for the started
/// standbys to stream: `start` returns once PostgreSQL accepts connections
/// as a standby ([`super::act`]'s `wait_ready`), and its WAL receiver
/// connects a moment later, so a few seconds are plenty; a standby that
/// needs longer (a long catch-up) is scored by the next monitor. Capped to
/// half the notification's own deadline.
pub const START_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// How long the watcher a promotion leaves behind looks for standbys: one
/// monitor interval as recommended (15 s), after which the promoted monitor
/// does the same work. The notification's environment does not carry the
/// monitor's interval, so it is a constant.
pub const WATCH_FOR: std::time::Duration = std::time::Duration::from_secs(15);

/// How often a wait for standbys looks at `pg_stat_replication`.
pub const WAIT_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// How often the node about to be promoted reads the positions its peers
/// publish in the same pre-promote notification. They publish within tens
/// of milliseconds (a restartpoint and an attrd write), so a first read
/// usually misses them, and every promotion waited out a whole
/// [`WAIT_POLL`] there (the pre-promote notification took 130 ms in a
/// switchover). A read is one `attrd_updater --query`: at most
/// [`PEERS_WAIT`] / this many of them, once per promotion.
pub const PEERS_POLL: std::time::Duration = std::time::Duration::from_millis(15);

/// The standbys the primary should wait for after notification `n`, this
/// node being `me`: after a start, the nodes that started (the primary
/// itself excluded: a cold start's post-start notification on a node that
/// is about to be promoted waits for nobody); after the promotion of this
/// node, every other node running an instance (unpromoted, started, or
/// demoted in the same transition: the lists are of the transition's start,
/// so in a switchover the old primary is in none but `demote`; left out,
/// the new primary's first monitor marked it stale before it streamed and
/// nothing cleared the mark until the next monitor, 15 s later: a power-off
/// of the new primary then found no promotable node, `cluster_sync`).
/// Nobody otherwise. The caller also checks that this
/// node runs the writable primary ([`wait_step`]).
pub fn standbys_to_await(n: &crate::ocf::notify::Notify, me: &str) -> Vec<String> {
    use crate::ocf::notify::{NotifyKind as K, NotifyOp as O};
    let lists: Vec<&Vec<String>> = match (n.kind, n.operation) {
        (K::Post, O::Start) => vec![&n.start],
        (K::Post, O::Promote) if n.promote.iter().any(|p| p == me) => {
            vec![&n.unpromoted, &n.start, &n.demote]
        }
        _ => vec![],
    };
    let mut out: Vec<String> = Vec::new();
    for name in lists.into_iter().flatten() {
        if name != me && !n.stop.contains(name) && !out.contains(name) {
            out.push(name.clone());
        }
    }
    out
}

/// One look of a bounded wait for standbys ([`wait_step`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStep {
    /// Set the scores and `synchronous_standby_names` now (the primary's
    /// shared step, as its monitor does), then look again.
    Sync,
    /// Look again after [`PEERS_POLL`].
    Wait,
    /// Stop waiting.
    Done,
}

/// What the primary does after one look at `pg_stat_replication` while it
/// waits for the standbys `awaited`: `streaming` are the nodes that stream,
/// `ready` those of them scored promotable already, `names_ok` whether
/// `synchronous_standby_names` is what [`sync_standby_names`] asks for.
///
/// As soon as one awaited standby streams and is not yet scored, or the
/// synchronous setting lags behind, it syncs: a primary lost a moment later
/// then leaves a promotable standby, and with `sync_replication=on` no
/// commit is acknowledged without it past that point. It stops once every
/// awaited standby is ready, when the time is up, or when this node no
/// longer runs a writable primary (demoted meanwhile: nothing to score).
pub fn wait_step(
    writable_primary: bool,
    awaited: &[String],
    streaming: &[&str],
    ready: &[&str],
    names_ok: bool,
    timed_out: bool,
) -> WaitStep {
    if !writable_primary || awaited.is_empty() {
        return WaitStep::Done;
    }
    let streams = |a: &String| streaming.contains(&a.as_str());
    let is_ready = |a: &String| ready.contains(&a.as_str());
    let behind = awaited
        .iter()
        .any(|a| streams(a) && (!is_ready(a) || !names_ok));
    match (behind, awaited.iter().all(is_ready) && names_ok, timed_out) {
        (_, true, _) | (_, _, true) => WaitStep::Done,
        (true, false, false) => WaitStep::Sync,
        (false, false, false) => WaitStep::Wait,
    }
}

/// How often the quorum guard ([`guard_step`]) asks corosync whether this
/// node's partition is quorate: with corosync's token at 1 s, quorum is
/// lost about 2.2 s after a cut (token, then consensus), and the guard acts
/// within this much of it. A poll is one `corosync-quorumtool -s`, a local
/// IPC call of about a millisecond.
pub const GUARD_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// What `corosync-quorumtool -s` says of this node's partition, by its
/// exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quorum {
    /// Exit code 0.
    Quorate,
    /// Exit code 2 (`EXIT_NOT_QUORATE`).
    NotQuorate,
    /// Anything else: corosync does not answer, the tool is missing or
    /// timed out.
    Unknown,
}

/// `corosync-quorumtool -s`'s exit code for "not quorate"
/// (`EXIT_NOT_QUORATE` in corosync's `tools/corosync-quorumtool.c`): the
/// status was printed.
pub const QUORUMTOOL_NOT_QUORATE: i32 = 2;

/// What `corosync-quorumtool -s`'s exit code says (`None`: it did not
/// exit, or did not run).
pub fn quorum_from_exit(code: Option<i32>) -> Quorum {
    match code {
        Some(0) => Quorum::Quorate,
        Some(QUORUMTOOL_NOT_QUORATE) => Quorum::NotQuorate,
        _ => Quorum::Unknown,
    }
}

/// The primary's monitor finds its Redis a replica. While this partition
/// has no quorum (`quorum`), that is the quorum guard's release, and
/// Pacemaker (no-quorum-policy) takes the role away: a failure would only
/// add a fail-count, and with the recommended `migration-threshold=2` a
/// second failure after the heal (an old primary whose data must be
/// rewound) banned the node from rejoining (a `cluster_cutoff` run). The
/// instance keeps its role until then: running promoted. Quorate or
/// unknown (a flap healed before Pacemaker acted, or no cluster to ask):
/// a failed primary, recovered in place.
pub fn released_primary(quorum: Quorum) -> Verdict {
    match quorum {
        Quorum::NotQuorate => Verdict::Promoted,
        Quorum::Quorate | Quorum::Unknown => {
            Verdict::failed(true, "PostgreSQL is primary but Redis is a replica")
        }
    }
}

/// The local PostgreSQL as the guard sees it, without a session: a
/// running postmaster without `standby.signal` is the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardedRole {
    /// A primary runs here.
    Primary,
    /// A standby, or nothing, runs here.
    NotPrimary,
}

/// One look of the quorum guard ([`guard_step`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardStep {
    /// Look again after [`GUARD_POLL`].
    Watch,
    /// Give up the primary's role now: the virtual IP's address removed,
    /// Redis a replica, PostgreSQL's writes stopped; then exit.
    Release,
    /// Nothing to guard: exit.
    Exit,
}

/// How often the quorum guard reads `no-quorum-policy` again while it
/// could not read it (`crm_mon` failed).
pub const GUARD_POLICY_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether the quorum guard watches the quorum under the cluster's
/// `no-quorum-policy` (`None` when it could not be read).
///
/// Only where Pacemaker itself takes the role away without quorum (`stop`,
/// `demote`, `suicide`): the guard does at once what Pacemaker does 5 s or
/// more later, behind the stops of what is ordered after the clone (the
/// app group), its demote, and the VIP's stop, while the other partition
/// may already have promoted. With `freeze` or `ignore` the administrator
/// asked for the primary to stay; with an unknown policy the guard cannot
/// tell, and does not act (logged).
pub fn guard_watches(policy: Option<crate::cluster::NoQuorumPolicy>) -> bool {
    policy.is_some_and(|p| p.ends_the_promoted_role())
}

/// What the quorum guard does after one look: `quorum` is `None` when it
/// does not watch it ([`guard_watches`]).
///
/// It lives as long as a primary runs here, watching or not, so that the
/// primary's monitor, which starts it when none runs, spawns nothing in
/// the steady state. "Cannot tell" whether the partition is quorate is not
/// a loss: a guard that released a primary because corosync was slow to
/// answer would cause the outage it is meant to shorten.
pub fn guard_step(role: GuardedRole, quorum: Option<Quorum>) -> GuardStep {
    match (role, quorum) {
        (GuardedRole::NotPrimary, _) => GuardStep::Exit,
        (GuardedRole::Primary, Some(Quorum::NotQuorate)) => GuardStep::Release,
        (GuardedRole::Primary, Some(Quorum::Quorate | Quorum::Unknown) | None) => GuardStep::Watch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_down_replica_link_is_reported_when_a_master_answers_or_tls_is_refused() {
        let p = "10.0.0.10:6379";
        let tls = RedisAtPrimary::TlsRefused("not signed by redis_tls_ca".into());
        assert_eq!(replica_link_problem(true, &RedisAtPrimary::Master, p), None);
        assert_eq!(replica_link_problem(true, &tls, p), None);
        let down = replica_link_problem(false, &RedisAtPrimary::Master, p).unwrap();
        assert!(down.contains("master answers at 10.0.0.10:6379"), "{down}");
        let refused = replica_link_problem(false, &tls, p).unwrap();
        assert!(refused.contains("redis_tls_ca"), "{refused}");
        assert_eq!(
            replica_link_problem(false, &RedisAtPrimary::Replica, p),
            None
        );
        let none = RedisAtPrimary::NoAnswer("refused".into());
        assert_eq!(replica_link_problem(false, &none, p), None);
    }
    use crate::postgres::Lsn;

    fn row(name: &str, state: &str, replay: u64, current: u64) -> StandbyRow {
        StandbyRow {
            name: name.into(),
            client_addr: None,
            state: state.into(),
            sync_state: "async".into(),
            sent_lsn: Some(Lsn(current)),
            write_lsn: Some(Lsn(current)),
            flush_lsn: Some(Lsn(current)),
            replay_lsn: Some(Lsn(replay)),
            current_lsn: Lsn(current),
            write_lag_time: None,
            flush_lag_time: None,
            replay_lag_time: None,
        }
    }

    #[test]
    fn the_most_advanced_standby_gets_the_best_score() {
        let rows = [
            row("node2", "streaming", 900, 1000),
            row("node3", "streaming", 1000, 1000),
        ];
        let s = standby_scores(&rows, 0, None, [], "node1");
        assert_eq!(s["node3"], BEST_STANDBY_SCORE);
        assert!(s["node2"] < s["node3"] && s["node2"] > 0);
    }

    #[test]
    fn a_standby_beyond_maxlag_is_not_promotable() {
        let rows = [row("node2", "streaming", 0, 20_000_000)];
        assert_eq!(
            standby_scores(&rows, 16 << 20, None, [], "node1")["node2"],
            NOT_PROMOTABLE
        );
        assert_eq!(
            standby_scores(&rows, 0, None, [], "node1")["node2"],
            BEST_STANDBY_SCORE
        );
    }

    #[test]
    fn a_catching_up_standby_is_not_promotable() {
        let rows = [row("node2", "catchup", 1000, 1000)];
        assert_eq!(
            standby_scores(&rows, 0, None, [], "node1")["node2"],
            NOT_PROMOTABLE
        );
    }

    #[test]
    fn a_standby_that_stopped_streaming_loses_its_score() {
        let s = standby_scores(&[], 0, None, ["node2", "node1"], "node1");
        assert_eq!(s.get("node2"), Some(&NOT_PROMOTABLE));
        assert_eq!(s.get("node1"), None);
    }

    #[test]
    fn equal_standbys_keep_stable_scores() {
        let rows = [
            row("node3", "streaming", 1000, 1000),
            row("node2", "streaming", 1000, 1000),
        ];
        let a = standby_scores(&rows, 0, None, [], "node1");
        let b = standby_scores(&[rows[1].clone(), rows[0].clone()], 0, None, [], "node1");
        assert_eq!(a, b);
        assert_eq!(a["node2"], BEST_STANDBY_SCORE);
    }

    #[test]
    fn a_primary_streaming_to_itself_has_no_standby() {
        let rows = [
            row("node1", "streaming", 1000, 1000),
            row("node2", "catchup", 900, 1000),
        ];
        assert!(streaming_standbys(&rows, "node1").is_empty());
        let rows = [row("node2", "streaming", 1000, 1000)];
        assert_eq!(streaming_standbys(&rows, "node1").len(), 1);
    }

    #[test]
    fn sync_on_waits_only_while_a_standby_streams() {
        assert_eq!(sync_standby_names(SyncMode::On, 0), "");
        assert_eq!(sync_standby_names(SyncMode::On, 1), ANY_ONE_STANDBY);
        assert_eq!(sync_standby_names(SyncMode::Strict, 0), ANY_ONE_STANDBY);
        assert_eq!(sync_standby_names(SyncMode::Off, 2), "");
        assert_eq!(sync_standby_names_at_promote(SyncMode::On), "");
        assert_eq!(
            sync_standby_names_at_promote(SyncMode::Strict),
            ANY_ONE_STANDBY
        );
    }

    fn pos(timeline: u32, lsn: u64) -> Position {
        Position {
            timeline,
            lsn: crate::postgres::Lsn(lsn),
        }
    }

    fn facts<'a>(
        at: &'a PrimaryAt,
        own: Option<Position>,
        peers: &'a [(String, Position)],
    ) -> PromoteFacts<'a> {
        PromoteFacts {
            primary_at: at,
            own,
            peers,
            replay_paused: false,
            sync: SyncMode::On,
        }
    }

    /// The promotion table: what answers at primary_host, this node's
    /// position and the peers' published ones.
    #[test]
    fn promotion_is_refused_while_a_primary_answers_or_a_peer_is_ahead() {
        let ahead = [("node2".to_string(), pos(1, 200))];
        let level = [("node2".to_string(), pos(1, 100))];
        let newer_timeline = [("node3".to_string(), pos(2, 50))];
        type Case<'a> = (
            PrimaryAt,
            Option<Position>,
            &'a [(String, Position)],
            Result<(), PromoteRefusal>,
        );
        let cases: Vec<Case> = vec![
            (
                PrimaryAt::Writable,
                Some(pos(1, 100)),
                &[],
                Err(PromoteRefusal::PrimaryAnswers),
            ),
            (
                PrimaryAt::Unknown("hung".into()),
                Some(pos(1, 100)),
                &[],
                Err(PromoteRefusal::CannotTell("hung".into())),
            ),
            (
                PrimaryAt::NoAnswer("no route".into()),
                Some(pos(1, 100)),
                &[],
                Ok(()),
            ),
            (PrimaryAt::Standby, Some(pos(1, 100)), &level, Ok(())),
            (
                PrimaryAt::NoAnswer("down".into()),
                None,
                &[],
                Err(PromoteRefusal::NoPosition),
            ),
            (
                PrimaryAt::NoAnswer("down".into()),
                Some(pos(1, 100)),
                &ahead,
                Err(PromoteRefusal::PeerAhead {
                    peer: "node2".into(),
                    peer_at: pos(1, 200),
                    own: pos(1, 100),
                }),
            ),
            (
                PrimaryAt::Standby,
                Some(pos(1, 900)),
                &newer_timeline,
                Err(PromoteRefusal::PeerAhead {
                    peer: "node3".into(),
                    peer_at: pos(2, 50),
                    own: pos(1, 900),
                }),
            ),
            // A primary answering wins over everything else.
            (
                PrimaryAt::Writable,
                None,
                &ahead,
                Err(PromoteRefusal::PrimaryAnswers),
            ),
        ];
        for (at, own, peers, want) in cases {
            let got = promote(&facts(&at, own, peers)).map(|_| ());
            assert_eq!(got, want, "primary_at {at:?}, own {own:?}, peers {peers:?}");
        }
    }

    /// The self-score table: a standby scores itself only with no primary,
    /// no score, and no stale mark.
    #[test]
    fn a_standby_scores_itself_only_without_a_primary_a_score_or_a_stale_mark() {
        let none = PrimaryAt::NoAnswer("down".into());
        let cases = [
            (PrimaryAt::Writable, None, false, None),
            (none.clone(), None, false, Some(CANDIDATE_SCORE)),
            (PrimaryAt::Standby, None, false, Some(CANDIDATE_SCORE)),
            (none.clone(), Some(NOT_PROMOTABLE), false, None),
            (none.clone(), Some(BEST_STANDBY_SCORE), false, None),
            // Restarted or rebooted after the primary marked it: its score
            // is gone, the mark is not.
            (none.clone(), None, true, None),
            (PrimaryAt::Writable, None, true, None),
        ];
        for (at, current, stale, want) in cases {
            assert_eq!(
                self_score(&at, current, stale, OwnData::Standby),
                want,
                "{at:?} {current:?} stale={stale}"
            );
        }
    }

    /// A failed primary recovered in place outranks the standbys its last
    /// monitor scored, but never a primary, a score it has, or a stale mark.
    #[test]
    fn a_failed_primary_recovered_in_place_outranks_its_standbys() {
        let none = PrimaryAt::NoAnswer("down".into());
        let failed = OwnData::FailedPrimary;
        let cases = [
            (none.clone(), None, false, Some(AHEAD_SCORE)),
            (PrimaryAt::Standby, None, false, Some(AHEAD_SCORE)),
            (PrimaryAt::Writable, None, false, None),
            (none.clone(), Some(CANDIDATE_SCORE), false, None),
            (none.clone(), None, true, None),
        ];
        for (at, current, stale, want) in cases {
            assert_eq!(
                self_score(&at, current, stale, failed),
                want,
                "{at:?} {current:?} stale={stale}"
            );
        }
    }

    #[test]
    fn only_sync_on_marks_a_node_that_lacks_asynchronous_commits() {
        // (sync, has the async commits, marked, async now) -> change
        let cases = [
            (SyncMode::On, false, false, true, Some(true)),
            (SyncMode::On, false, false, false, None),
            (SyncMode::On, false, true, false, None),
            (SyncMode::On, false, true, true, None),
            (SyncMode::On, true, true, false, Some(false)),
            (SyncMode::On, true, true, true, Some(false)),
            (SyncMode::On, true, false, true, None),
            (SyncMode::Strict, false, false, true, None),
            (SyncMode::Off, false, false, true, None),
            (SyncMode::Off, false, true, false, Some(false)),
        ];
        for (sync, complete, marked, now, want) in cases {
            assert_eq!(
                stale_mark(sync, complete, marked, now),
                want,
                "{sync:?} complete={complete} marked={marked} async_now={now}"
            );
        }
    }

    #[test]
    fn a_standby_has_the_asynchronous_commits_once_it_streams_past_the_last_async_wal() {
        let mut r = row("node2", "streaming", 100, 200);
        r.flush_lsn = Some(Lsn(150));
        assert!(
            has_async_commits(Some(&r), None),
            "no asynchronous commit at all"
        );
        assert!(has_async_commits(Some(&r), Some(Lsn(150))));
        assert!(!has_async_commits(Some(&r), Some(Lsn(151))));
        assert!(!has_async_commits(None, Some(Lsn(1))), "not connected");
        let mut c = row("node2", "catchup", 100, 200);
        c.flush_lsn = Some(Lsn(200));
        assert!(!has_async_commits(Some(&c), Some(Lsn(1))), "catching up");
    }

    #[test]
    fn the_async_horizon_moves_with_every_monitor_that_finds_or_leaves_commits_asynchronous() {
        let on = SyncMode::On;
        let b = Some(Lsn(10));
        let now = Lsn(50);
        // (names were empty, first monitor since promotion, now empty) -> horizon
        let cases = [
            (true, false, true, Some(now)),
            (false, false, true, Some(now)),
            (true, false, false, Some(now)),
            (false, false, false, b),
            // The promotion's own asynchronous start is the documented window.
            (true, true, false, b),
            (true, true, true, Some(now)),
        ];
        for (were, first, empty, want) in cases {
            assert_eq!(
                async_until(on, were, first, empty, now, b),
                want,
                "{were} {first} {empty}"
            );
        }
        assert_eq!(async_until(on, false, false, false, now, None), None);
        assert_eq!(async_until(SyncMode::Off, true, false, true, now, b), None);
        assert_eq!(
            async_until(SyncMode::Strict, false, false, false, now, b),
            None
        );
    }

    #[test]
    fn a_standby_behind_the_async_horizon_is_not_promotable() {
        let mut r = row("node2", "streaming", 100, 200);
        r.flush_lsn = Some(Lsn(100));
        let s = standby_scores(std::slice::from_ref(&r), 0, Some(Lsn(150)), [], "node1");
        assert_eq!(s["node2"], NOT_PROMOTABLE);
        let s = standby_scores(&[r], 0, Some(Lsn(100)), [], "node1");
        assert_eq!(s["node2"], BEST_STANDBY_SCORE);
    }

    #[test]
    fn a_paused_standby_resumes_replay_before_it_is_promoted() {
        let at = PrimaryAt::NoAnswer("down".into());
        let mut f = facts(&at, Some(pos(1, 100)), &[]);
        assert!(!promote(&f).unwrap().resume_replay_first);
        f.replay_paused = true;
        assert!(promote(&f).unwrap().resume_replay_first);
    }

    #[test]
    fn a_promotion_starts_asynchronous_under_sync_on_and_synchronous_under_strict() {
        let at = PrimaryAt::NoAnswer("down".into());
        let mut f = facts(&at, Some(pos(1, 100)), &[]);
        assert_eq!(promote(&f).unwrap().synchronous_standby_names, "");
        f.sync = SyncMode::Strict;
        assert_eq!(
            promote(&f).unwrap().synchronous_standby_names,
            ANY_ONE_STANDBY
        );
    }

    #[test]
    fn a_node_behind_a_peer_must_not_be_promoted() {
        let own: Position = "1#0/5000000".parse().unwrap();
        let peers = vec![
            ("node2".to_string(), "1#0/4000000".parse().unwrap()),
            ("node3".to_string(), "1#0/9000000".parse().unwrap()),
        ];
        assert_eq!(better_peer(own, &peers).unwrap().0, "node3");
    }

    #[test]
    fn a_node_level_with_its_peers_may_be_promoted() {
        let own: Position = "2#0/5000000".parse().unwrap();
        let peers = vec![
            ("node2".to_string(), "2#0/5000000".parse().unwrap()),
            ("node3".to_string(), "1#0/9000000".parse().unwrap()),
        ];
        assert!(better_peer(own, &peers).is_none());
    }

    /// The primary asks itself at primary_host only for a server some
    /// member does not follow.
    #[test]
    fn the_primary_asks_itself_at_primary_host_only_when_a_follower_is_missing() {
        let table = [
            // other members, streaming standbys, Redis replicas -> (pg, redis)
            (1, 1, 1, (false, false)),
            (1, 0, 1, (true, false)),
            (1, 1, 0, (false, true)),
            (1, 0, 0, (true, true)),
            (2, 1, 2, (true, false)),
            (2, 2, 2, (false, false)),
            (0, 0, 0, (false, false)),
        ];
        for (others, pg, redis, want) in table {
            assert_eq!(
                self_checks_needed(others, pg, redis),
                want,
                "{others} others, {pg} streaming, {redis} replicas"
            );
        }
    }

    #[test]
    fn primary_host_is_local_only_when_one_of_its_addresses_is_ours() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let own = [ip("127.0.0.1"), ip("10.0.0.11"), ip("::1")];
        assert!(is_local(&[ip("10.0.0.11")], &own));
        assert!(is_local(&[ip("10.0.0.100"), ip("::1")], &own));
        assert!(!is_local(&[ip("10.0.0.100")], &own));
        assert!(!is_local(&[], &own));
    }

    // ------------------------------------------------------------ shutdown

    /// Each fact's bounds, for a demote with plenty of time (108 s left of
    /// its 120 s) and one nearly out of time (2 s left): SIGKILL always keeps
    /// a quarter of what is left.
    #[test]
    fn a_shutdown_waits_long_only_for_a_clean_server() {
        use std::time::Duration as D;
        use ShutdownFacts::*;
        let ms = D::from_millis;
        #[rustfmt::skip]
        let table = [
            // facts, time left, fast, immediate
            (Clean, ms(108_000), ms(54_000), ms(2_000)),
            (StandbysUnconfirmed, ms(108_000), ms(1_000), ms(2_000)),
            (Frozen, ms(108_000), ms(500), ms(500)),
            (Clean, ms(2_000), ms(1_000), ms(500)),
            (StandbysUnconfirmed, ms(2_000), ms(500), ms(500)),
            (Frozen, ms(1_000), ms(250), ms(250)),
            (Frozen, D::ZERO, D::ZERO, D::ZERO),
        ];
        for (facts, left, fast, immediate) in table {
            let plan = shutdown_plan(facts, left);
            assert_eq!(
                plan,
                ShutdownPlan { fast, immediate },
                "{facts:?}, {left:?} left"
            );
            assert!(
                plan.fast + plan.immediate <= left - left / 4,
                "{facts:?}, {left:?}"
            );
        }
    }

    /// A standby that has not flushed the WAL written once writes stopped
    /// (or says nothing of its flush) holds the fast shutdown; one that has
    /// does not.
    #[test]
    fn standbys_that_did_not_confirm_the_last_wal_make_the_shutdown_unclean() {
        let written = Lsn(500);
        let mut behind = row("n2", "streaming", 400, 500);
        behind.flush_lsn = Some(Lsn(499));
        let mut silent = row("n3", "startup", 0, 500);
        silent.flush_lsn = None;
        let caught_up = row("n4", "streaming", 500, 500);
        let mut ahead = row("n5", "streaming", 600, 600);
        ahead.flush_lsn = Some(Lsn(600));
        let rows = [behind, silent, caught_up, ahead];
        let names = unconfirmed_standbys(&rows, written);
        assert_eq!(names, ["n2", "n3"]);
        assert_eq!(
            primary_shutdown_facts(&names),
            ShutdownFacts::StandbysUnconfirmed
        );
        assert!(unconfirmed_standbys(&rows[2..], written).is_empty());
        assert_eq!(primary_shutdown_facts(&[]), ShutdownFacts::Clean);
    }

    // ------------------------------------------------------------ monitor

    use crate::postgres::server::ProcessState as Pg;
    use crate::redis::ProcessState as Rd;

    fn procs(pg: Pg, redis: Rd, was_primary: bool, probe: bool) -> Processes {
        Processes {
            pg,
            pg_frozen: false,
            redis,
            was_primary,
            probe,
        }
    }

    #[test]
    fn a_stopped_postmaster_fails_the_monitor_before_any_connection() {
        let frozen = |was_primary, probe| Processes {
            pg_frozen: true,
            ..procs(Pg::Running(10), Rd::Running(11), was_primary, probe)
        };
        let reason =
            "PostgreSQL postmaster 10 is stopped (SIGSTOP or a debugger): it answers no connection";
        for (was_primary, probe) in [(true, false), (false, false), (true, true)] {
            assert_eq!(
                monitor_processes(&frozen(was_primary, probe)),
                Some(Verdict::failed(was_primary, reason)),
                "was_primary {was_primary}, probe {probe}"
            );
        }
        // Not frozen: the monitor goes on and connects.
        assert_eq!(
            monitor_processes(&procs(Pg::Running(10), Rd::Running(11), true, false)),
            None
        );
    }

    /// The monitor's verdict on the processes alone: PostgreSQL × Redis ×
    /// was the primary × probe.
    #[test]
    fn the_monitor_judges_the_processes_before_connecting() {
        let failed = |promoted: bool, r: &str| Some(Verdict::failed(promoted, r));
        #[rustfmt::skip]
        let table: Vec<(Pg, Rd, bool, bool, Option<Verdict>)> = vec![
            // Both run: go on and ask them.
            (Pg::Running(10), Rd::Running(11), false, false, None),
            (Pg::Running(10), Rd::Running(11), true, true, None),
            // Cleanly stopped.
            (Pg::Stopped, Rd::NotRunning, false, false, Some(Verdict::NotRunning)),
            (Pg::Stopped, Rd::NotRunning, true, true, Some(Verdict::NotRunning)),
            // After a power loss: stale pid files, nothing runs. A probe says
            // "not running" (start recovers); a recurring monitor, a failure.
            (Pg::Crashed(10), Rd::Crashed(11), true, true, Some(Verdict::NotRunning)),
            (Pg::Crashed(10), Rd::NotRunning, false, true, Some(Verdict::NotRunning)),
            (Pg::Crashed(10), Rd::Crashed(11), true, false,
             failed(true, "PostgreSQL postmaster 10 died (stale postmaster.pid)")),
            // Crashed primary, seen by the recurring monitor: failed promoted.
            (Pg::Crashed(10), Rd::Running(11), true, false,
             failed(true, "PostgreSQL postmaster 10 died (stale postmaster.pid)")),
            // Crashed standby: a generic error.
            (Pg::Crashed(10), Rd::Running(11), false, false,
             failed(false, "PostgreSQL postmaster 10 died (stale postmaster.pid)")),
            // A probe finding one of the two running: failed too.
            (Pg::Crashed(10), Rd::Running(11), false, true,
             failed(false, "PostgreSQL postmaster 10 died (stale postmaster.pid)")),
            (Pg::Stopped, Rd::Running(11), false, false,
             failed(false, "PostgreSQL is stopped but Redis runs")),
            (Pg::Running(10), Rd::Crashed(11), true, false,
             failed(true, "Redis 11 died (stale pidfile)")),
            (Pg::Running(10), Rd::NotRunning, false, true,
             failed(false, "Redis is not running")),
        ];
        for (pg, redis, was_primary, probe, want) in table {
            let p = procs(pg, redis.clone(), was_primary, probe);
            assert_eq!(monitor_processes(&p), want, "{p:?}");
        }
    }

    #[test]
    fn a_standby_still_starting_up_is_degraded_and_a_primary_that_refuses_has_failed() {
        let up = NoSession::StartingUp("the database system is starting up".into());
        let other = NoSession::Failed("connection refused".into());
        assert_eq!(
            monitor_no_session(false, &up),
            Verdict::Degraded("standby still recovering: not accepting connections yet".into())
        );
        assert_eq!(
            monitor_no_session(true, &up),
            Verdict::failed(true, "the database system is starting up")
        );
        assert_eq!(
            monitor_no_session(false, &other),
            Verdict::failed(false, "connection refused")
        );
        assert_eq!(
            monitor_no_session(true, &other),
            Verdict::failed(true, "connection refused")
        );
    }

    #[test]
    fn a_standby_is_steady_when_both_replicate_and_failed_when_its_redis_is_a_master() {
        use crate::redis::Role;
        let two_masters = Err(Verdict::failed(
            false,
            "Redis is a master on an unpromoted node",
        ));
        #[rustfmt::skip]
        let table = [
            // Redis role, streaming, link up -> steady?
            (Role::Replica, true, true, Ok(true)),
            (Role::Replica, false, true, Ok(false)),
            (Role::Replica, true, false, Ok(false)),
            (Role::Replica, false, false, Ok(false)),
            (Role::Master, true, true, two_masters.clone()),
            (Role::Master, false, false, two_masters),
        ];
        for (role, streaming, link, want) in table {
            assert_eq!(
                standby_steady(&role, streaming, link),
                want,
                "{role:?} {streaming} {link}"
            );
        }
    }

    #[test]
    fn a_standby_not_streaming_is_a_problem_only_while_a_primary_answers() {
        let p = "10.0.0.10:5432";
        assert_eq!(
            not_streaming_problem(&PrimaryAt::Writable, p).as_deref(),
            Some("standby not streaming from the primary at 10.0.0.10:5432")
        );
        let tls = untrusted_tls();
        let untrusted = not_streaming_problem(&PrimaryAt::Untrusted(tls), p).unwrap();
        assert!(
            untrusted.starts_with("standby not streaming: "),
            "{untrusted}"
        );
        for at in [
            PrimaryAt::Standby,
            PrimaryAt::NoAnswer("no route".into()),
            PrimaryAt::Unknown("hung".into()),
        ] {
            assert_eq!(not_streaming_problem(&at, p), None, "{at:?}");
        }
    }

    /// The grace period: a problem since `since`, now `now`, monitor
    /// interval, probe, on the primary or a standby.
    #[test]
    fn only_a_problem_that_outlasts_two_monitor_intervals_is_degraded() {
        let s = std::time::Duration::from_secs;
        let p = "link down";
        #[rustfmt::skip]
        let table = [
            // since, now, interval, probe, promoted -> verdict, lasted
            (100, 100, s(10), false, false, Verdict::Unpromoted, 0),
            (100, 119, s(10), false, false, Verdict::Unpromoted, 19),
            (100, 120, s(10), false, false, Verdict::Degraded("link down for 20 s".into()), 20),
            (100, 500, s(10), true, false, Verdict::Unpromoted, 400),
            (100, 119, s(10), false, true, Verdict::Promoted, 19),
            (100, 130, s(10), false, true,
             Verdict::DegradedPromoted("link down (for 30 s)".into()), 30),
            (100, 500, s(10), true, true, Verdict::Promoted, 400),
            // A clock that went back: lasted 0, not a wrap-around.
            (100, 50, s(10), false, false, Verdict::Unpromoted, 0),
        ];
        for (since, now, interval, probe, promoted, want, lasted) in table {
            assert_eq!(
                after_grace(p, since, now, interval, probe, promoted),
                (want, lasted),
                "since {since}, now {now}, probe {probe}, promoted {promoted}"
            );
        }
    }

    fn untrusted_tls() -> crate::postgres::tls::TlsError {
        crate::postgres::tls::TlsError {
            target: "10.0.0.10:5432".into(),
            tls: crate::postgres::tls::PgTls::DISABLED,
            failure: crate::postgres::tls::TlsFailure::Untrusted("self-signed".into()),
        }
    }

    fn addresses() -> Addresses<'static> {
        Addresses {
            primary_host: "10.0.0.10",
            primary_port: 5432,
            redis_port: 6379,
            repl_user: "replicator",
        }
    }

    #[test]
    fn the_vip_unowned_is_a_problem_of_the_primary_with_its_fix() {
        let seen = AtPrimaryHost {
            vip_away: true,
            postgres: None,
            redis: None,
        };
        let p = primary_host_problems(&seen, &addresses());
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("primary_host 10.0.0.10 is not an address of this node")
                && p[0].contains("virtual IP colocated with the Promoted role"),
            "{p:?}"
        );
    }

    /// What answers at primary_host, asked by the primary itself.
    #[test]
    fn the_primary_reports_each_server_that_followers_cannot_reach() {
        let t = |pg: Option<PrimaryAt>, redis: Option<RedisAtPrimary>| {
            primary_host_problems(
                &AtPrimaryHost {
                    vip_away: false,
                    postgres: pg,
                    redis,
                },
                &addresses(),
            )
        };
        assert!(t(None, None).is_empty());
        assert!(t(Some(PrimaryAt::Writable), Some(RedisAtPrimary::Master)).is_empty());
        let pg = t(Some(PrimaryAt::Standby), None);
        assert_eq!(pg.len(), 1);
        assert!(
            pg[0].starts_with("PostgreSQL does not answer at primary_host 10.0.0.10:5432 as replicator (a standby answers there, not this primary)")
                && pg[0].contains("listen_addresses"),
            "{pg:?}"
        );
        let rd = t(
            None,
            Some(RedisAtPrimary::NoAnswer("connection refused".into())),
        );
        assert_eq!(rd.len(), 1);
        assert!(
            rd[0].starts_with("Redis does not answer as master at primary_host 10.0.0.10:6379 (connection refused)")
                && rd[0].contains("bind"),
            "{rd:?}"
        );
        let both = t(
            Some(PrimaryAt::NoAnswer("no TCP connection within 1.0 s".into())),
            Some(RedisAtPrimary::Replica),
        );
        assert_eq!(both.len(), 2, "{both:?}");
        assert!(both[1].contains("a replica answers there, not this master"));
    }

    // ------------------------------------------------------------ start

    fn control(state: &str, timeline: u32) -> crate::postgres::server::ControlData {
        crate::postgres::server::ControlData {
            state: state.into(),
            timeline,
            checkpoint: crate::postgres::Lsn(0x3000028),
            min_recovery_timeline: 0,
            min_recovery: crate::postgres::Lsn(0),
            system_identifier: "7300000000000000001".into(),
        }
    }

    /// Facts as `observe::start_facts` builds them from the control file,
    /// backup_label and standby.signal.
    fn start_facts(
        control: &crate::postgres::server::ControlData,
        backup_label: bool,
        standby_signal: bool,
        at: PrimaryAt,
        primary_timeline: Option<u32>,
    ) -> StartFacts {
        StartFacts {
            origin: DataOrigin::of(control, backup_label, standby_signal),
            primary_at: at,
            local_timeline: control.newest_timeline(),
            primary_timeline,
            last_stop: LastStop::of(control),
        }
    }

    /// Start's decision table, with the cases the cluster tests recorded:
    /// the data's origin × what answers at primary_host × timelines × how
    /// the data was stopped.
    #[test]
    fn a_start_checks_history_exactly_where_the_data_may_have_diverged() {
        let w = PrimaryAt::Writable;
        let none = PrimaryAt::NoAnswer("no TCP connection within 2.0 s".into());
        let plan = |crash: bool, history: History| {
            Ok(StartPlan {
                crash_recover_first: crash,
                history,
            })
        };
        let standby = |local, primary| History::Check(Who::Standby { local, primary });
        #[rustfmt::skip]
        let table: Vec<(&str, StartFacts, Result<StartPlan, StartRefusal>)> = vec![
            // A base backup's control file says "in production" (the
            // primary's state when the copy began): no crash recovery, no
            // rewind; PostgreSQL recovers it from its backup_label.
            ("base backup",
             start_facts(&control("in production", 2), true, true, w.clone(), None),
             plan(false, History::BaseBackup)),
            // A crashed primary: crash recovery first, then its history.
            ("crashed primary",
             start_facts(&control("in production", 1), false, false, w.clone(), None),
             plan(true, History::Check(Who::OldPrimary))),
            ("crashed primary, no primary answers",
             start_facts(&control("in production", 1), false, false, none.clone(), None),
             plan(true, History::NoAnswer("no TCP connection within 2.0 s".into()))),
            // An old primary stopped cleanly, possibly diverged: checked.
            ("diverged old primary",
             start_facts(&control("shut down", 1), false, false, w.clone(), None),
             plan(false, History::Check(Who::OldPrimary))),
            ("old primary, a standby answers",
             start_facts(&control("shut down", 1), false, false, PrimaryAt::Standby, None),
             plan(false, History::StandbyAnswers)),
            // A standby on an older timeline, stopped cleanly: checked.
            ("standby on an older timeline, stopped cleanly",
             start_facts(&control("shut down in recovery", 1), false, true, w.clone(), Some(2)),
             plan(false, standby(1, Some(2)))),
            ("standby, the primary's timeline unreadable, stopped cleanly",
             start_facts(&control("shut down in recovery", 2), false, true, w.clone(), None),
             plan(false, standby(2, None))),
            // ... and crashed: pg_rewind cannot read it; it replays alone
            // and stops cleanly first.
            ("standby on an older timeline, crashed",
             start_facts(&control("in archive recovery", 1), false, true, w.clone(), Some(2)),
             plan(false, History::ReplayAloneFirst {
                 local: 1, primary: Some(2), state: "in archive recovery".into(),
             })),
            ("standby on the primary's timeline, crashed",
             start_facts(&control("in archive recovery", 2), false, true, w.clone(), Some(2)),
             plan(false, History::SameTimeline)),
            ("standby on the primary's timeline",
             start_facts(&control("shut down in recovery", 2), false, true, w.clone(), Some(2)),
             plan(false, History::SameTimeline)),
            ("standby, nothing answers",
             start_facts(&control("shut down in recovery", 1), false, true, none.clone(), None),
             plan(false, History::NoAnswer("no TCP connection within 2.0 s".into()))),
            ("standby, cannot tell",
             start_facts(&control("shut down in recovery", 1), false, true,
                         PrimaryAt::Unknown("timeout".into()), None),
             plan(false, History::CannotTell("timeout".into()))),
            // Data with no standby.signal is a primary's.
            ("no standby.signal",
             start_facts(&control("shut down in recovery", 1), false, false, w.clone(), None),
             plan(false, History::Check(Who::OldPrimary))),
        ];
        for (case, facts, want) in table {
            assert_eq!(start(&facts), want, "{case}: {facts:?}");
        }
        let tls = untrusted_tls();
        let untrusted = start_facts(
            &control("shut down in recovery", 1),
            false,
            true,
            PrimaryAt::Untrusted(tls.clone()),
            None,
        );
        assert_eq!(start(&untrusted), Err(StartRefusal::Untrusted(tls)));
    }

    #[test]
    fn a_primary_whose_redis_is_a_replica_fails_unless_its_partition_lost_quorum() {
        assert_eq!(released_primary(Quorum::NotQuorate), Verdict::Promoted);
        for q in [Quorum::Quorate, Quorum::Unknown] {
            assert_eq!(
                released_primary(q),
                Verdict::failed(true, "PostgreSQL is primary but Redis is a replica"),
                "{q:?}"
            );
        }
    }

    /// Which timeline a start recovers to: its own only when no primary
    /// was checked and its own `pg_wal` shows data past a newer fork; and
    /// such a node is never made a candidate.
    #[test]
    fn a_start_pins_its_own_timeline_only_for_unchecked_data_past_a_newer_fork() {
        let fork: Lsn = "0/17AE2E8".parse().unwrap();
        let diverged = Some(Follow::Diverged { timeline: 2, fork });
        let follows = Some(Follow::Follows { fork });
        let none = History::NoAnswer("no TCP connection within 1.0 s".into());
        let cannot = History::CannotTell("timeout".into());
        use TargetTimeline::{Current, Latest};
        #[rustfmt::skip]
        let table: Vec<(&str, History, Option<Follow>, TargetTimeline)> = vec![
            ("nothing answers, data past the fork", none.clone(), diverged, Current),
            ("nothing answers, timeline not in the history", none.clone(),
             Some(Follow::NotInHistory), Current),
            ("a standby answers, data past the fork", History::StandbyAnswers, diverged, Current),
            ("cannot tell, data past the fork", cannot.clone(), diverged, Current),
            ("nothing answers, data before the fork", none.clone(), follows, Latest),
            ("nothing answers, no newer history", none.clone(), None, Latest),
            ("nothing answers, same timeline", none, Some(Follow::SameTimeline), Latest),
            // Checked against a primary (and rewound if needed): latest.
            ("checked, data past the fork", History::Check(Who::OldPrimary), diverged, Latest),
            ("same timeline", History::SameTimeline, diverged, Latest),
            ("base backup", History::BaseBackup, diverged, Latest),
        ];
        for (case, history, local, want) in table {
            assert_eq!(start_target(&history, local), want, "{case}");
        }
        assert!(start_makes_candidate(Latest));
        assert!(!start_makes_candidate(Current));
        assert!(!candidate_by_own_data(diverged));
        assert!(!candidate_by_own_data(Some(Follow::NotInHistory)));
        for local in [None, follows, Some(Follow::SameTimeline)] {
            assert!(candidate_by_own_data(local), "{local:?}");
        }
    }

    /// A standby that does not stream while a primary answers: only data
    /// shown past the fork by its own history files fails (rewind) or is
    /// degraded at once (no rewind); anything else waits out the grace.
    #[test]
    fn a_standby_past_the_fork_fails_for_a_rewind_or_is_degraded_without_one() {
        let fork: Lsn = "0/17AE2E8".parse().unwrap();
        let diverged = Some(Follow::Diverged { timeline: 2, fork });
        match diverged_standby(diverged, true) {
            Some(Verdict::Failed {
                promoted: false,
                reason,
            }) => {
                assert!(
                    reason.contains("0/17AE2E8") && reason.contains("timeline 2"),
                    "{reason}"
                );
                assert!(reason.contains("rewind"), "{reason}");
            }
            v => panic!("data past the fork with rewind: {v:?}"),
        }
        match diverged_standby(Some(Follow::NotInHistory), false) {
            Some(Verdict::Degraded(reason)) => {
                assert!(reason.contains("rapidproctl rebuild"), "{reason}");
                assert!(reason.contains("rewind=true"), "{reason}");
            }
            v => panic!("not in the history, no rewind: {v:?}"),
        }
        for (case, local) in [
            ("no newer history", None),
            ("same timeline", Some(Follow::SameTimeline)),
            ("before the fork", Some(Follow::Follows { fork })),
        ] {
            assert_eq!(diverged_standby(local, true), None, "{case}");
            assert_eq!(diverged_standby(local, false), None, "{case}");
        }
    }

    #[test]
    fn a_start_reads_the_primary_timeline_only_for_standby_data_and_a_writable_primary() {
        use DataOrigin::*;
        for origin in [BaseBackup, CrashedPrimary, Primary, Standby] {
            for at in [
                PrimaryAt::Writable,
                PrimaryAt::Standby,
                PrimaryAt::NoAnswer("x".into()),
                PrimaryAt::Unknown("x".into()),
            ] {
                let want = origin == Standby && at == PrimaryAt::Writable;
                assert_eq!(
                    needs_primary_timeline(origin, &at),
                    want,
                    "{origin:?} {at:?}"
                );
            }
        }
    }

    #[test]
    fn a_start_refuses_a_postgres_already_running_as_a_primary() {
        assert_eq!(start_running(true), Ok(()));
        assert_eq!(start_running(false), Err(StartRefusal::AlreadyPrimary));
        assert!(StartRefusal::AlreadyPrimary
            .to_string()
            .contains("demote or stop it first"));
    }

    // ------------------------------------------------------------ notify

    #[test]
    fn notifications_publish_before_a_promotion_and_refollow_after_it() {
        use crate::ocf::notify::{NotifyKind as K, NotifyOp as O};
        let me = "node2";
        let here = ["node2".to_string()];
        let there = ["node1".to_string()];
        type Row<'a> = (K, O, &'a [String], &'a [String], NotifyPlan);
        #[rustfmt::skip]
        let table: [Row; 14] = [
            (K::Pre, O::Promote, &there, &[], NotifyPlan::PublishPosition),
            (K::Pre, O::Promote, &here, &[], NotifyPlan::PublishAndHearPeers),
            (K::Pre, O::Promote, &here, &there, NotifyPlan::PublishAndHearPeers),
            (K::Post, O::Promote, &here, &[], NotifyPlan::Promoted),
            (K::Post, O::Promote, &there, &[], NotifyPlan::Refollow),
            // An empty or garbled promote list: refollow, which does nothing
            // on a node that runs the primary.
            (K::Post, O::Promote, &[], &[], NotifyPlan::Refollow),
            (K::Post, O::Start, &[], &[], NotifyPlan::ForgetScores),
            (K::Post, O::Stop, &[], &[], NotifyPlan::ForgetScores),
            (K::Pre, O::Stop, &[], &[], NotifyPlan::Nothing),
            (K::Post, O::Demote, &[], &here, NotifyPlan::Nothing),
            // A switchover: this primary is demoted, another promoted.
            (K::Pre, O::Demote, &there, &here, NotifyPlan::HandOver),
            // Demoted with no promotion (quorum lost), or only its own
            // (recovered in place): it scores itself.
            (K::Pre, O::Demote, &[], &here, NotifyPlan::Nothing),
            (K::Pre, O::Demote, &here, &here, NotifyPlan::Nothing),
            // Another node's demote.
            (K::Pre, O::Demote, &here, &there, NotifyPlan::Nothing),
        ];
        for (kind, op, promoted, demoted, want) in table {
            assert_eq!(
                notify(kind, op, promoted, demoted, me),
                want,
                "{kind:?}-{op:?} promote {promoted:?} demote {demoted:?}"
            );
        }
    }

    #[test]
    fn a_demote_leaves_its_score_to_the_promote_of_the_same_transition_only_when_clean_and_fresh() {
        use OwnData::{FailedPrimary, Standby};
        let now = 10_000;
        #[rustfmt::skip]
        let table: [(OwnData, Option<u64>, Option<i64>); 7] = [
            (Standby, None, Some(CANDIDATE_SCORE)),
            (Standby, Some(now), None),
            (Standby, Some(now - HANDOVER_FRESH), None),
            // From a transition that never demoted.
            (Standby, Some(now - HANDOVER_FRESH - 1), Some(CANDIDATE_SCORE)),
            // A clock that went back: not trusted.
            (Standby, Some(now + 5), Some(CANDIDATE_SCORE)),
            // A failed primary is recovered in place: scored ahead at once.
            (FailedPrimary, None, Some(AHEAD_SCORE)),
            (FailedPrimary, Some(now), Some(AHEAD_SCORE)),
        ];
        for (own, at, want) in table {
            assert_eq!(demote_own_score(own, at, now), want, "{own:?} {at:?}");
        }
    }

    #[test]
    fn a_promote_lowers_the_scores_of_the_nodes_its_transition_demotes_but_never_its_own() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(demoted_beside(&list(&["node1"]), "node2"), list(&["node1"]));
        assert_eq!(demoted_beside(&list(&["node2"]), "node2"), list(&[]));
        assert_eq!(demoted_beside(&[], "node2"), list(&[]));
    }

    // ------------------------------------------------ waiting for standbys

    fn notification(
        kind: crate::ocf::notify::NotifyKind,
        op: crate::ocf::notify::NotifyOp,
        lists: &[(&str, &str)],
    ) -> crate::ocf::notify::Notify {
        let get = |k: &str| lists.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        crate::ocf::notify::Notify {
            kind,
            operation: op,
            start: get("start")
                .map(crate::ocf::notify::split_list)
                .unwrap_or_default(),
            stop: get("stop")
                .map(crate::ocf::notify::split_list)
                .unwrap_or_default(),
            active: vec![],
            promote: get("promote")
                .map(crate::ocf::notify::split_list)
                .unwrap_or_default(),
            demote: get("demote")
                .map(crate::ocf::notify::split_list)
                .unwrap_or_default(),
            promoted: vec![],
            unpromoted: get("unpromoted")
                .map(crate::ocf::notify::split_list)
                .unwrap_or_default(),
            all: vec![],
            available: vec![],
        }
    }

    // ------------------------------------------- pre-promote, on the chosen node

    #[test]
    fn a_stop_of_every_promoted_instance_is_a_lost_primary() {
        use crate::ocf::notify::{NotifyKind as K, NotifyOp as O};
        let with = |kind, op, promoted: &str, stop: &str| {
            let mut n = notification(kind, op, &[("stop", stop)]);
            n.promoted = crate::ocf::notify::split_list(promoted);
            n
        };
        #[rustfmt::skip]
        let table = [
            (with(K::Post, O::Stop, "node1", "node1"), true),
            (with(K::Post, O::Stop, "node1", "node1 node3"), true),
            // A standby stopping, the primary running.
            (with(K::Post, O::Stop, "node1", "node3"), false),
            // No primary at all: nothing lost now (a cold start scores at start).
            (with(K::Post, O::Stop, "", "node1"), false),
            // Before the stop, or another operation.
            (with(K::Pre, O::Stop, "node1", "node1"), false),
            (with(K::Post, O::Demote, "node1", "node1"), false),
            (with(K::Post, O::Start, "node1", "node1"), false),
        ];
        for (n, want) in table {
            assert_eq!(primary_lost(&n), want, "{n:?}");
        }
    }

    #[test]
    fn only_the_first_monitor_since_a_promotion_waits_for_a_vip_known_to_be_elsewhere() {
        #[rustfmt::skip]
        let table = [
            (true, Some(false), true),
            // Here already, or cannot tell (primary_host does not resolve).
            (true, Some(true), false),
            (true, None, false),
            // Every later monitor.
            (false, Some(false), false),
            (false, Some(true), false),
            (false, None, false),
        ];
        for (since, local, want) in table {
            assert_eq!(first_monitor_waits(since, local), want, "{since} {local:?}");
        }
    }

    #[test]
    fn promote_probes_briefly_only_when_the_promoted_role_leaves_every_holder_in_its_transition() {
        use crate::ocf::notify::{split_list as l, TransitionLists};
        let t = |promoted: &str, demote: &str, stop: &str| TransitionLists {
            promoted: l(promoted),
            demote: l(demote),
            stop: l(stop),
        };
        #[rustfmt::skip]
        let table = [
            // A switchover in one transition: the primary demoted first.
            (Some(t("node1", "node1", "")), Probe::Released),
            // A power-off: the lost primary fenced, its demote and stop implied.
            (Some(t("node1", "node1", "node1")), Probe::Released),
            (Some(t("node1", "", "node1")), Probe::Released),
            // A standby stops or is demoted elsewhere; the primary keeps its role.
            (Some(t("node1", "", "node3")), Probe::Lan),
            (Some(t("node1", "node2", "")), Probe::Lan),
            // One of two promoted instances keeps its role.
            (Some(t("node1 node2", "node1", "")), Probe::Lan),
            // Nothing was promoted when the transition was computed (the
            // old primary demoted in an earlier, aborted one, or stopped
            // long ago): who holds the address is not Pacemaker's to say.
            (Some(t("", "", "")), Probe::Lan),
            (Some(t("", "node1", "node1")), Probe::Lan),
            // No lists at all (notify=false).
            (None, Probe::Lan),
        ];
        for (lists, want) in table {
            assert_eq!(promote_probe(lists.as_ref()), want, "{lists:?}");
        }
    }

    #[test]
    fn the_node_being_promoted_hears_every_other_standby_but_not_stopping_ones() {
        use crate::ocf::notify::{NotifyKind as K, NotifyOp as O};
        let n = notification(
            K::Pre,
            O::Promote,
            &[
                ("promote", "node2"),
                ("unpromoted", "node2 node3 node4"),
                ("start", "node5"),
                ("demote", "node1"),
                ("stop", "node4"),
            ],
        );
        assert_eq!(peers_to_hear(&n, "node2"), ["node3", "node5", "node1"]);
        let alone = notification(
            K::Pre,
            O::Promote,
            &[("promote", "node2"), ("unpromoted", "node2")],
        );
        assert!(peers_to_hear(&alone, "node2").is_empty());
    }

    #[test]
    fn the_node_being_promoted_hands_over_to_a_standby_ahead_once_it_heard_them_all() {
        let at = |timeline: u32, lsn: u64| Position {
            timeline,
            lsn: Lsn(lsn),
        };
        let pos = |n: &str, p: Position| (n.to_string(), p);
        let hand = |peer: &str, peer_at: Position, own: Position| PrePromote::HandOver {
            peer: peer.into(),
            peer_at,
            own,
        };
        let own = at(3, 100);
        let one = ["node1".to_string()];
        let two = ["node1".to_string(), "node3".to_string()];
        type Row<'a> = (
            Option<Position>,
            &'a [String],
            Vec<(String, Position)>,
            bool,
            PrePromote,
        );
        #[rustfmt::skip]
        let table: Vec<Row> = vec![
            // Its own position unknown: promote refuses by itself.
            (None, &one, vec![pos("node1", at(3, 200))], false, PrePromote::Proceed),
            // Nobody else runs: nothing to hear.
            (Some(own), &[], vec![], false, PrePromote::Proceed),
            // Not heard yet: wait, until the time is out.
            (Some(own), &one, vec![], false, PrePromote::Wait),
            (Some(own), &one, vec![], true, PrePromote::Proceed),
            // Behind or equal: this node is the right one.
            (Some(own), &one, vec![pos("node1", at(3, 50))], false, PrePromote::Proceed),
            (Some(own), &one, vec![pos("node1", own)], false, PrePromote::Proceed),
            // Ahead, by WAL or by a later timeline.
            (Some(own), &one, vec![pos("node1", at(3, 200))], false, hand("node1", at(3, 200), own)),
            (Some(own), &one, vec![pos("node1", at(4, 10))], false, hand("node1", at(4, 10), own)),
            // One of two heard, and ahead: wait for the other, which may
            // be further ahead still; at the end of the wait, hand over to
            // the best heard.
            (Some(own), &two, vec![pos("node1", at(3, 200))], false, PrePromote::Wait),
            (Some(own), &two, vec![pos("node1", at(3, 200))], true, hand("node1", at(3, 200), own)),
            (Some(own), &two, vec![pos("node1", at(3, 200)), pos("node3", at(3, 300))], false,
                hand("node3", at(3, 300), own)),
        ];
        for (own, expected, published, out, want) in table {
            assert_eq!(
                pre_promote(own, expected, &published, out),
                want,
                "own {own:?}, expecting {expected:?}, published {published:?}, out of time {out}"
            );
        }
    }

    #[test]
    fn the_primary_waits_for_started_nodes_and_after_its_promotion_for_every_other_instance() {
        use crate::ocf::notify::{NotifyKind as K, NotifyOp as O};
        let me = "node1";
        #[rustfmt::skip]
        type Row<'a> = (K, O, &'a [(&'a str, &'a str)], &'a [&'a str]);
        let table: [Row; 10] = [
            // A standby rejoined.
            (K::Post, O::Start, &[("start", "node2 ")], &["node2"]),
            (
                K::Post,
                O::Start,
                &[("start", "node2 node3")],
                &["node2", "node3"],
            ),
            // A cold start: this node started too, and waits for nobody but the others.
            (K::Post, O::Start, &[("start", "node1 node2")], &["node2"]),
            // Started and stopped in the same transition (a restart elsewhere
            // that failed): not waited for.
            (
                K::Post,
                O::Start,
                &[("start", "node2 node3"), ("stop", "node3")],
                &["node2"],
            ),
            (K::Pre, O::Start, &[("start", "node2")], &[]),
            // This node promoted: its standbys, and nodes started meanwhile.
            (
                K::Post,
                O::Promote,
                &[
                    ("promote", "node1"),
                    ("unpromoted", "node1 node2"),
                    ("start", "node3"),
                ],
                &["node2", "node3"],
            ),
            // A switchover: the old primary, demoted, is in no other list.
            (
                K::Post,
                O::Promote,
                &[
                    ("promote", "node1"),
                    ("demote", "node2"),
                    ("unpromoted", "node1"),
                    ("promoted", "node2"),
                ],
                &["node2"],
            ),
            // Another node promoted: not this node's standbys.
            (
                K::Post,
                O::Promote,
                &[("promote", "node2"), ("unpromoted", "node1 node3")],
                &[],
            ),
            (
                K::Pre,
                O::Promote,
                &[("promote", "node1"), ("unpromoted", "node1 node2")],
                &[],
            ),
            (K::Post, O::Stop, &[("stop", "node2")], &[]),
        ];
        for (kind, op, lists, want) in table {
            let n = notification(kind, op, lists);
            assert_eq!(standbys_to_await(&n, me), want, "{kind:?}-{op:?} {lists:?}");
        }
    }

    #[test]
    fn a_wait_for_standbys_syncs_as_soon_as_one_streams_and_stops_once_all_are_scored() {
        let both = ["node2".to_string(), "node3".to_string()];
        let one = ["node2".to_string()];
        use WaitStep::*;
        #[rustfmt::skip]
        type Row<'a> = (bool, &'a [String], &'a [&'a str], &'a [&'a str], bool, bool, WaitStep);
        let table: [Row; 12] = [
            // (writable primary, awaited, streaming, ready, names ok, timed out)
            (true, &one, &[], &[], true, false, Wait),
            (true, &one, &["node2"], &[], true, false, Sync),
            // Scored, but commits are not synchronous yet.
            (true, &one, &["node2"], &["node2"], false, false, Sync),
            (true, &one, &["node2"], &["node2"], true, false, Done),
            // The first of two streams: sync now, do not wait for the second.
            (true, &both, &["node2"], &[], true, false, Sync),
            (true, &both, &["node2"], &["node2"], true, false, Wait),
            (
                true,
                &both,
                &["node2", "node3"],
                &["node2", "node3"],
                true,
                false,
                Done,
            ),
            // Another standby streaming is not one of those awaited.
            (true, &one, &["node3"], &[], false, false, Wait),
            // Time is up, whatever is left.
            (true, &one, &["node2"], &[], true, true, Done),
            (true, &one, &[], &[], true, true, Done),
            // Demoted meanwhile, or nobody to wait for.
            (false, &one, &["node2"], &[], true, false, Done),
            (true, &[], &["node2"], &[], false, false, Done),
        ];
        for (primary, awaited, streaming, ready, names_ok, timed_out, want) in table {
            assert_eq!(
                wait_step(primary, awaited, streaming, ready, names_ok, timed_out),
                want,
                "{primary} {awaited:?} {streaming:?} {ready:?} {names_ok} {timed_out}"
            );
        }
    }

    #[test]
    fn a_standby_streams_from_itself_when_one_of_its_own_senders_serves_its_name() {
        let row = |name: &str| row(name, "streaming", 100, 100);
        assert!(streams_from_itself(&[row("node1")], "node1"));
        assert!(streams_from_itself(&[row("node3"), row("node1")], "node1"));
        // A cascading standby of its own is not itself.
        assert!(!streams_from_itself(&[row("node3")], "node1"));
        assert!(!streams_from_itself(&[], "node1"));
    }

    #[test]
    fn corosync_quorumtool_says_quorate_or_not_by_its_exit_code_and_anything_else_is_unknown() {
        assert_eq!(quorum_from_exit(Some(0)), Quorum::Quorate);
        assert_eq!(quorum_from_exit(Some(2)), Quorum::NotQuorate);
        for code in [Some(1), Some(127), None] {
            assert_eq!(quorum_from_exit(code), Quorum::Unknown, "{code:?}");
        }
    }

    #[test]
    fn the_quorum_guard_watches_only_under_a_policy_that_ends_the_promoted_role() {
        use crate::cluster::NoQuorumPolicy as P;
        let watched: Vec<bool> = [
            Some(P::Stop),
            Some(P::Demote),
            Some(P::Suicide),
            Some(P::Freeze),
            Some(P::Ignore),
            None,
        ]
        .map(guard_watches)
        .to_vec();
        assert_eq!(watched, [true, true, true, false, false, false]);
    }

    #[test]
    fn the_quorum_guard_releases_a_primary_only_on_a_known_loss_and_exits_with_it() {
        use GuardStep::{Exit, Release, Watch};
        use GuardedRole::{NotPrimary, Primary};
        use Quorum::{NotQuorate, Quorate, Unknown};
        let table = [
            (Primary, Some(Quorate), Watch),
            (Primary, Some(Unknown), Watch),
            (Primary, None, Watch),
            (Primary, Some(NotQuorate), Release),
            (NotPrimary, Some(NotQuorate), Exit),
            (NotPrimary, Some(Quorate), Exit),
            (NotPrimary, None, Exit),
        ];
        for (role, quorum, want) in table {
            assert_eq!(guard_step(role, quorum), want, "{role:?} {quorum:?}");
        }
    }
}
