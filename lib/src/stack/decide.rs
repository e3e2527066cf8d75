//! Pure decisions: promotion scores, synchronous standbys, which node should
//! be promoted. Actions observe, call these, then act; the unit tests of the
//! agent's judgement live here.

use std::collections::BTreeMap;

use crate::config::SyncMode;
use crate::postgres::db::StandbyRow;
use crate::postgres::server::DataOrigin;
use crate::postgres::Position;

use super::observe::{LastStop, NoSession, Processes};

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

/// `synchronous_standby_names` for "any one standby".
pub const ANY_ONE_STANDBY: &str = "ANY 1 (*)";

/// The scores the primary gives the standbys it sees, and the ones it scored
/// before that no longer stream.
///
/// A standby is promotable when it streams and has replayed to within
/// `maxlag` bytes (0: no limit). Promotable standbys are ranked by replayed
/// position, most advanced first (PAF 2.3.0 had this backwards), ties broken
/// by name so equal standbys do not swap scores on every monitor.
pub fn standby_scores<'a>(
    rows: &[StandbyRow],
    maxlag: u64,
    scored_before: impl IntoIterator<Item = &'a str>,
    own_name: &str,
) -> BTreeMap<String, i64> {
    standby_scores_under(rows, maxlag, scored_before, own_name, Rules::ALL)
}

/// [`standby_scores`] under `rules`.
pub fn standby_scores_under<'a>(
    rows: &[StandbyRow],
    maxlag: u64,
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
        if (r.state == "streaming" && in_time) || !rules.unpromotable_unless_streaming {
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
    for name in scored_before {
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
        .filter(|r| r.state == "streaming" && r.name != own_name)
        .collect()
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
    /// A standby that does not stream (or lags beyond maxlag) is scored
    /// [`NOT_PROMOTABLE`].
    pub unpromotable_unless_streaming: bool,
}

impl Rules {
    /// Every rule: what the agent runs.
    pub const ALL: Rules = Rules {
        refuse_when_a_primary_answers: true,
        refuse_when_a_peer_is_ahead: true,
        unpromotable_unless_streaming: true,
    };
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
    /// mode would add WAL past the fork. Started anyway: PostgreSQL refuses
    /// to follow a timeline that forked before its WAL ends, the monitor then
    /// reports it not streaming, and it is never promoted.
    Unverifiable {
        local: u32,
        primary: Option<u32>,
        state: String,
    },
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
                LastStop::Other(state) => History::Unverifiable {
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

/// Whether a started standby scores itself [`CANDIDATE_SCORE`] at once: no
/// primary to follow, so it may have to become it, and Pacemaker can promote
/// it without waiting for its first monitor (promote still checks that no
/// standby is ahead).
pub fn candidate_after_start(at: &PrimaryAt) -> bool {
    *at != PrimaryAt::Writable
}

// ---------------------------------------------------------------- notify

/// What a notification makes this node do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyPlan {
    /// Pre-promote: publish this standby's position.
    PublishPosition,
    /// Post-promote on the promoted node: clear its published position,
    /// forget scores, checkpoint so the control file names the new timeline.
    Promoted,
    /// Post-promote elsewhere: clear, forget, follow primary_host again.
    Refollow,
    /// Nodes came or went: forget scores, so they are re-asserted.
    ForgetScores,
    /// Nothing to do.
    Nothing,
}

/// The plan for a notification `kind`-`op`, `promoted` naming the nodes
/// being promoted and `me` this node.
pub fn notify(
    kind: crate::ocf::notify::NotifyKind,
    op: crate::ocf::notify::NotifyOp,
    promoted: &[String],
    me: &str,
) -> NotifyPlan {
    use crate::ocf::notify::{NotifyKind as K, NotifyOp as O};
    match (kind, op) {
        (K::Pre, O::Promote) => NotifyPlan::PublishPosition,
        (K::Post, O::Promote) if promoted.iter().any(|p| p == me) => NotifyPlan::Promoted,
        (K::Post, O::Promote) => NotifyPlan::Refollow,
        (K::Post, O::Start | O::Stop) => NotifyPlan::ForgetScores,
        _ => NotifyPlan::Nothing,
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
            state: state.into(),
            sync_state: "async".into(),
            flush_lsn: Some(Lsn(current)),
            replay_lsn: Some(Lsn(replay)),
            current_lsn: Lsn(current),
        }
    }

    #[test]
    fn the_most_advanced_standby_gets_the_best_score() {
        let rows = [
            row("node2", "streaming", 900, 1000),
            row("node3", "streaming", 1000, 1000),
        ];
        let s = standby_scores(&rows, 0, [], "node1");
        assert_eq!(s["node3"], BEST_STANDBY_SCORE);
        assert!(s["node2"] < s["node3"] && s["node2"] > 0);
    }

    #[test]
    fn a_standby_beyond_maxlag_is_not_promotable() {
        let rows = [row("node2", "streaming", 0, 20_000_000)];
        assert_eq!(
            standby_scores(&rows, 16 << 20, [], "node1")["node2"],
            NOT_PROMOTABLE
        );
        assert_eq!(
            standby_scores(&rows, 0, [], "node1")["node2"],
            BEST_STANDBY_SCORE
        );
    }

    #[test]
    fn a_catching_up_standby_is_not_promotable() {
        let rows = [row("node2", "catchup", 1000, 1000)];
        assert_eq!(
            standby_scores(&rows, 0, [], "node1")["node2"],
            NOT_PROMOTABLE
        );
    }

    #[test]
    fn a_standby_that_stopped_streaming_loses_its_score() {
        let s = standby_scores(&[], 0, ["node2", "node1"], "node1");
        assert_eq!(s.get("node2"), Some(&NOT_PROMOTABLE));
        assert_eq!(s.get("node1"), None);
    }

    #[test]
    fn equal_standbys_keep_stable_scores() {
        let rows = [
            row("node3", "streaming", 1000, 1000),
            row("node2", "streaming", 1000, 1000),
        ];
        let a = standby_scores(&rows, 0, [], "node1");
        let b = standby_scores(&[rows[1].clone(), rows[0].clone()], 0, [], "node1");
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
}
