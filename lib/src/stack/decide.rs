//! Pure decisions: promotion scores, synchronous standbys, which node should
//! be promoted. Actions observe, call these, then act; the unit tests of the
//! agent's judgement live here.

use std::collections::BTreeMap;

use crate::config::SyncMode;
use crate::postgres::db::StandbyRow;
use crate::postgres::queries::WalSenderState;
use crate::postgres::{Lsn, Position};

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
pub fn self_score(primary_at: &PrimaryAt, current: Option<i64>, stale: bool) -> Option<i64> {
    match (primary_at, current) {
        (PrimaryAt::Writable, _) | (_, Some(_)) => None,
        (_, None) if stale => None,
        (_, None) => Some(CANDIDATE_SCORE),
    }
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
                self_score(&at, current, stale),
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
}
