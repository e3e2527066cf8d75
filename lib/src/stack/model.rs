//! A model checker over the agent's real promotion rules.
//!
//! The model is a cluster of 2 or 3 nodes, each with PostgreSQL (stopped,
//! standby, primary or crashed; a WAL of commit ids and a timeline), the
//! node's promotion score, and the virtual IP (`primary_host`), under
//! Pacemaker: it starts stopped instances, runs monitors, and promotes the
//! instance with the highest positive score when no instance is Promoted.
//! A client commits through the virtual IP; a commit is acknowledged at
//! once while `synchronous_standby_names` is empty, else once a standby
//! has it. Faults: power-off (the node's transient attributes go with it),
//! a crash of PostgreSQL, and a split of the cluster's ring (the data
//! network stays up) after which the losing node is fenced, or, with a
//! fence device that only says it fenced (a wrong BMC address), keeps
//! running. Powered-off nodes come back.
//!
//! At every step the model asks the agent's real pure functions what to
//! do: [`decide::promote_under`] for a promotion (with the positions the
//! standbys publish in the pre-promote notification and what answers at
//! primary_host), [`decide::standby_scores_under`] and
//! [`decide::sync_standby_names`] for the primary's monitor,
//! [`decide::sync_standby_names_at_promote`] for a promotion, and
//! [`decide::self_score`], [`decide::stale_mark`] and [`decide::async_until`]
//! for a start and the monitors. Only Pacemaker, PostgreSQL and the
//! client are modelled here.
//!
//! Properties, checked in every reachable state:
//! - never two writable primaries that a client can reach (through the
//!   virtual IP);
//! - with `sync_replication=strict`, no acknowledged commit is missing from
//!   the primary clients reach; with `on`, none acknowledged synchronously
//!   (the checker measures how many acknowledged asynchronously can be);
//! - liveness: from any state with a majority up and a standby the agent
//!   considers promotable, Pacemaker's own schedule reaches a primary in a
//!   bounded number of steps.
//!
//! Mutation tests turn one rule off ([`Rules`]) and require the checker to
//! find the counterexample: the proof that the checker can fail.

use std::collections::BTreeSet;

use stateright::{Checker, Model, Property};

use super::decide::{self, PrimaryAt, PromoteFacts, PromoteRefusal, Rules};
use crate::config::SyncMode;
use crate::postgres::db::StandbyRow;
use crate::postgres::queries::{SyncState, WalSenderState};
use crate::postgres::{Lsn, Position};

/// What the fence device does to the node it is asked to fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fencing {
    /// Powers it off.
    Effective,
    /// Reports success and leaves it running (a wrong BMC address): the
    /// misconfiguration the promote refusal "a writable primary answers"
    /// guards against.
    Ineffective,
}

#[derive(Debug, Clone)]
struct Cluster {
    nodes: usize,
    sync: SyncMode,
    fencing: Fencing,
    rules: Rules,
    max_commits: u8,
    max_faults: u8,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
enum Pg {
    Stopped,
    Standby,
    Primary,
    Crashed,
}

/// The instance's role as the acting partition's Pacemaker sees it.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
enum Role {
    Stopped,
    Unpromoted,
    Promoted,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct Node {
    up: bool,
    pg: Pg,
    /// Its timeline history: each timeline and the WAL position where it
    /// begins; the last one is the timeline of its data.
    history: Vec<(u32, usize)>,
    /// Its WAL: the commit ids, in order. Kept on disk across crashes.
    wal: Vec<u8>,
    role: Role,
    /// Its promotion score (a transient node attribute).
    score: Option<i64>,
    /// Holds the virtual IP.
    vip: bool,
    /// Its WAL sender reached the `streaming` state: it caught up with the
    /// primary once since it connected (before that, `catchup`). Only a
    /// streaming standby counts for synchronous replication.
    caught_up: bool,
    /// `synchronous_standby_names` is not empty (on a primary).
    sync_names: bool,
    /// A monitor set `synchronous_standby_names` since the promotion.
    names_by_monitor: bool,
    /// On a primary: the end of its WAL at the last monitor that found
    /// `synchronous_standby_names` empty (the agent's state file).
    async_until: Option<usize>,
    /// On the losing side of a ring split, unfenced: the acting
    /// Pacemaker no longer manages it.
    cut_off: bool,
    /// Marked stale by a primary that went asynchronous without it (a
    /// permanent node attribute: it survives power-offs).
    stale: bool,
    /// The agent's state file (tmpfs: a power-off loses it): whose data
    /// this node holds, for [`decide::self_score`].
    own_data: decide::OwnData,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct State {
    nodes: Vec<Node>,
    /// Acknowledged commits, and how.
    acked: Vec<(u8, Ack)>,
    /// A commit the client waits for.
    pending: Option<u8>,
    next_id: u8,
    faults: u8,
}

/// How a commit was acknowledged.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
enum Ack {
    /// After a streaming standby flushed it.
    Sync,
    /// At once, between a promotion and the new primary's first monitor
    /// (`sync_replication=on` promotes asynchronous): README's window.
    SincePromotion,
    /// At once, because the primary's monitor saw no streaming standby.
    NoStandby,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Action {
    Commit,
    Replicate(usize),
    Monitor(usize),
    Start(usize),
    Promote(usize),
    PowerOn(usize),
    /// The minority side of a ring split stops its resources
    /// (`no-quorum-policy=stop`), whenever it gets to it.
    QuorumStop(usize),
    PowerOff(usize),
    /// An operator's switchover: Pacemaker demotes the primary (the
    /// agent's demote), then promotes by the scores.
    Switchover(usize),
    CrashPostgres(usize),
    RingSplit {
        loser: usize,
    },
}

impl Node {
    fn tl(&self) -> u32 {
        self.history.last().map_or(1, |h| h.0)
    }

    /// Streams from a primary whose history is `history`: it switches to
    /// each of the primary's timelines once its WAL reaches where that
    /// timeline begins (`recovery_target_timeline=latest`).
    fn follow(&mut self, history: &[(u32, usize)]) {
        let at = self.wal.len();
        self.history = history.iter().filter(|h| h.1 <= at).copied().collect();
    }
}

fn position(n: &Node) -> Position {
    Position {
        timeline: n.tl(),
        lsn: Lsn(n.wal.len() as u64),
    }
}

/// WAL records above this are end-of-recovery records (100 + timeline),
/// below it commit ids.
const TIMELINE_RECORD: u8 = 100;

fn is_prefix(a: &[u8], b: &[u8]) -> bool {
    a.len() <= b.len() && b[..a.len()] == *a
}

impl State {
    /// The node serving writes at the virtual IP, as a client sees it.
    fn reachable_primaries(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&i| {
            let n = &self.nodes[i];
            n.up && n.vip && n.pg == Pg::Primary
        })
    }

    fn primary(&self) -> Option<usize> {
        self.reachable_primaries().next()
    }

    /// Whether standby `i` streams from the primary at the virtual IP.
    fn streams(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        match self.primary() {
            Some(p) if p != i => {
                n.up && n.pg == Pg::Standby && is_prefix(&n.wal, &self.nodes[p].wal)
            }
            _ => false,
        }
    }

    /// What answers at primary_host (the virtual IP), over the data
    /// network, which a ring split leaves up.
    fn primary_at(&self) -> PrimaryAt {
        match self.nodes.iter().find(|n| n.vip && n.up) {
            Some(n) if n.pg == Pg::Primary => PrimaryAt::Writable,
            Some(n) if n.pg == Pg::Standby => PrimaryAt::Standby,
            _ => PrimaryAt::NoAnswer("nothing at the virtual IP".into()),
        }
    }

    fn managed(&self, i: usize) -> bool {
        self.nodes[i].up && !self.nodes[i].cut_off
    }

    /// Whether the acting partition has quorum: a majority, or in a
    /// two-node cluster (`two_node`) the survivor of a fence.
    fn quorate(&self) -> bool {
        let up = (0..self.nodes.len()).filter(|&i| self.managed(i)).count();
        if self.nodes.len() == 2 {
            up >= 1
        } else {
            2 * up > self.nodes.len()
        }
    }

    /// Every node up and managed, every instance running in the role
    /// Pacemaker gave it.
    fn healthy(&self) -> bool {
        self.nodes.iter().all(|n| {
            n.up && !n.cut_off
                && matches!(
                    (n.role, n.pg),
                    (Role::Promoted, Pg::Primary) | (Role::Unpromoted, Pg::Standby)
                )
        })
    }

    fn promoted_exists(&self) -> bool {
        (0..self.nodes.len()).any(|i| self.managed(i) && self.nodes[i].role == Role::Promoted)
    }

    /// The instance Pacemaker promotes: the highest positive score among
    /// the Unpromoted instances it manages (ties: any of them).
    fn promotion_candidates(&self) -> Vec<usize> {
        let scored: Vec<(usize, i64)> = (0..self.nodes.len())
            .filter(|&i| self.managed(i) && self.nodes[i].role == Role::Unpromoted)
            .filter_map(|i| self.nodes[i].score.filter(|s| *s > 0).map(|s| (i, s)))
            .collect();
        let best = scored.iter().map(|(_, s)| *s).max();
        scored
            .iter()
            .filter(|(_, s)| Some(*s) == best)
            .map(|(i, _)| *i)
            .collect()
    }

    /// The acknowledged commits of kind `kind` missing from the primary
    /// clients reach.
    fn lost(&self, kind: Ack) -> usize {
        let Some(p) = self.primary() else { return 0 };
        let wal: BTreeSet<u8> = self.nodes[p].wal.iter().copied().collect();
        self.acked
            .iter()
            .filter(|(id, k)| *k == kind && !wal.contains(id))
            .count()
    }

    /// How a commit the primary `p` acknowledges at once is acknowledged.
    fn async_ack(&self, p: usize) -> Ack {
        if self.nodes[p].names_by_monitor {
            Ack::NoStandby
        } else {
            Ack::SincePromotion
        }
    }

    /// A WAL sender reaches `streaming` once its standby has caught up,
    /// and a standby that does not stream from the primary starts over.
    fn settle(&mut self) {
        for j in 0..self.nodes.len() {
            let streams = self.streams(j);
            let level = self
                .primary()
                .is_some_and(|p| self.nodes[p].wal == self.nodes[j].wal);
            let n = &mut self.nodes[j];
            n.caught_up = streams && (n.caught_up || level);
        }
    }

    fn drop_pending_of(&mut self, i: usize) {
        if self.nodes[i].pg == Pg::Primary {
            self.pending = None;
        }
    }
}

impl Cluster {
    fn new(nodes: usize, sync: SyncMode) -> Self {
        Cluster {
            nodes,
            sync,
            fencing: Fencing::Effective,
            rules: Rules::ALL,
            max_commits: 2,
            max_faults: 2,
        }
    }

    fn initial(&self) -> State {
        let mut nodes = Vec::new();
        for i in 0..self.nodes {
            let primary = i == 0;
            nodes.push(Node {
                up: true,
                pg: if primary { Pg::Primary } else { Pg::Standby },
                history: vec![(1, 0)],
                wal: Vec::new(),
                role: if primary {
                    Role::Promoted
                } else {
                    Role::Unpromoted
                },
                score: Some(if primary {
                    decide::PROMOTED_SCORE
                } else {
                    decide::BEST_STANDBY_SCORE - i as i64 + 1
                }),
                vip: primary,
                caught_up: !primary,
                sync_names: primary && self.sync != SyncMode::Off,
                names_by_monitor: true,
                async_until: None,
                cut_off: false,
                stale: false,
                own_data: decide::OwnData::Standby,
            });
        }
        State {
            nodes,
            acked: Vec::new(),
            pending: None,
            next_id: 0,
            faults: 0,
        }
    }

    fn monitor(&self, s: &mut State, i: usize) {
        let n = s.nodes[i].clone();
        if n.role == Role::Stopped {
            return;
        }
        match (n.role, n.pg) {
            (_, Pg::Crashed | Pg::Stopped) | (Role::Unpromoted, Pg::Primary) => {
                // A failed instance: Pacemaker stops it (the agent's stop
                // cleans up after a crash; the VIP follows the Promoted role).
                s.drop_pending_of(i);
                let n = &mut s.nodes[i];
                if n.role == Role::Promoted && n.pg != Pg::Primary {
                    // Its demote found PostgreSQL down.
                    n.own_data = decide::OwnData::FailedPrimary;
                }
                n.role = Role::Stopped;
                n.pg = Pg::Stopped;
                n.vip = false;
                // The agent's stop deletes the node's promotion score.
                n.score = None;
            }
            (Role::Promoted, Pg::Primary) => {
                let own = format!("n{i}");
                let current = Lsn(n.wal.len() as u64);
                let rows: Vec<StandbyRow> = (0..s.nodes.len())
                    .filter(|&j| j != i && s.streams(j))
                    .map(|j| {
                        let at = Some(Lsn(s.nodes[j].wal.len() as u64));
                        StandbyRow {
                            name: format!("n{j}"),
                            client_addr: None,
                            state: if s.nodes[j].caught_up {
                                WalSenderState::Streaming
                            } else {
                                WalSenderState::Catchup
                            },
                            sync_state: SyncState::Quorum,
                            sent_lsn: at,
                            write_lsn: at,
                            flush_lsn: at,
                            replay_lsn: at,
                            current_lsn: current,
                            write_lag_time: None,
                            flush_lag_time: None,
                            replay_lag_time: None,
                        }
                    })
                    .collect();
                let streaming = decide::streaming_standbys(&rows, &own).len();
                let names = decide::sync_standby_names(self.sync, streaming);
                let async_until = decide::async_until(
                    self.sync,
                    !s.nodes[i].sync_names,
                    !s.nodes[i].names_by_monitor,
                    names.is_empty(),
                    current,
                    s.nodes[i].async_until.map(|l| Lsn(l as u64)),
                );
                s.nodes[i].async_until = async_until.map(|l| l.0 as usize);
                let before: Vec<String> = (0..s.nodes.len())
                    .filter(|&j| j != i && s.nodes[j].score.is_some())
                    .map(|j| format!("n{j}"))
                    .collect();
                let scores = decide::standby_scores_under(
                    &rows,
                    0,
                    async_until,
                    before.iter().map(String::as_str),
                    &own,
                    self.rules,
                );
                for (name, score) in scores {
                    let j: usize = name[1..].parse().expect("model node name");
                    if s.nodes[j].up {
                        s.nodes[j].score = Some(score);
                    }
                }
                for j in (0..s.nodes.len()).filter(|&j| j != i) {
                    let row = rows.iter().find(|r| r.name == format!("n{j}"));
                    let complete = decide::has_async_commits(row, async_until);
                    let async_now = !s.nodes[i].sync_names || names.is_empty();
                    if let Some(stale) = decide::stale_mark_under(
                        self.sync,
                        complete,
                        s.nodes[j].stale,
                        async_now,
                        self.rules,
                    ) {
                        s.nodes[j].stale = stale;
                    }
                }
                s.nodes[i].score = Some(decide::PROMOTED_SCORE);
                // A primary has every commit: its own mark goes.
                s.nodes[i].stale = false;
                let kind = s.async_ack(i);
                s.nodes[i].names_by_monitor = true;
                s.nodes[i].sync_names = !names.is_empty();
                if names.is_empty() {
                    // PostgreSQL releases the waiting commit: acknowledged,
                    // asynchronously.
                    if let Some(id) = s.pending.take() {
                        s.acked.push((id, kind));
                    }
                }
            }
            (Role::Unpromoted, Pg::Standby) => {
                // keep_promotable: a standby with no primary and no score
                // makes itself promotable; a score it has stays.
                let at = s.primary_at();
                let n = &mut s.nodes[i];
                if let Some(score) = decide::self_score(&at, n.score, n.stale, n.own_data) {
                    n.score = Some(score);
                }
            }
            (Role::Promoted, Pg::Standby) => {
                let n = &mut s.nodes[i];
                n.role = Role::Stopped;
                n.pg = Pg::Stopped;
                n.vip = false;
            }
            (Role::Stopped, _) => {}
        }
    }

    fn start(&self, s: &mut State, i: usize) {
        let primary = s.primary();
        let at = s.primary_at();
        // A crashed primary's data finishes crash recovery first: its WAL
        // is kept. Then, with a primary to follow, pg_rewind brings a
        // diverged history back to the fork (rewind=true).
        if let Some(p) = primary {
            let (pwal, phistory) = (s.nodes[p].wal.clone(), s.nodes[p].history.clone());
            let n = &mut s.nodes[i];
            if !is_prefix(&n.wal, &pwal) {
                let common = n.wal.iter().zip(&pwal).take_while(|(a, b)| a == b).count();
                n.wal.truncate(common);
            }
            n.follow(&phistory);
            n.caught_up = n.wal == pwal;
        }
        let n = &mut s.nodes[i];
        if primary.is_none() {
            n.caught_up = false;
        }
        if matches!(at, PrimaryAt::Writable) {
            n.own_data = decide::OwnData::Standby;
        }
        n.pg = Pg::Standby;
        n.role = Role::Unpromoted;
        if let Some(score) = decide::self_score(&at, n.score, n.stale, n.own_data) {
            n.score = Some(score);
        }
    }

    fn promote(&self, s: &mut State, i: usize) {
        if s.nodes[i].pg != Pg::Standby {
            // "PostgreSQL is not running: cannot promote": Pacemaker stops it.
            let n = &mut s.nodes[i];
            n.role = Role::Stopped;
            n.pg = Pg::Stopped;
            return;
        }
        let peers: Vec<(String, Position)> = (0..s.nodes.len())
            .filter(|&j| j != i && s.managed(j) && s.nodes[j].role == Role::Unpromoted)
            .filter(|&j| s.nodes[j].pg == Pg::Standby)
            .map(|j| (format!("n{j}"), position(&s.nodes[j])))
            .collect();
        let at = s.primary_at();
        let facts = PromoteFacts {
            primary_at: &at,
            own: Some(position(&s.nodes[i])),
            peers: &peers,
            replay_paused: false,
            sync: self.sync,
        };
        match decide::promote_under(&facts, self.rules) {
            Ok(plan) => {
                let tl = s.nodes.iter().map(Node::tl).max().unwrap_or(1) + 1;
                for (j, n) in s.nodes.iter_mut().enumerate() {
                    if j != i && !n.cut_off {
                        n.vip = false;
                    }
                    // Promote resets its own, the running standbys'
                    // post-promote notification theirs.
                    if j == i || n.role == Role::Unpromoted {
                        n.own_data = decide::OwnData::Standby;
                    }
                    // Standbys reconnect to a new WAL sender.
                    n.caught_up = false;
                }
                let n = &mut s.nodes[i];
                n.pg = Pg::Primary;
                // The end-of-recovery record opens the new timeline: an old
                // primary's WAL past this point diverges from it.
                let start = n.wal.len();
                n.history.push((tl, start));
                n.wal.push(TIMELINE_RECORD + tl as u8);
                n.role = Role::Promoted;
                n.score = Some(decide::PROMOTED_SCORE);
                n.vip = true;
                n.sync_names = !plan.synchronous_standby_names.is_empty();
                n.names_by_monitor = false;
            }
            Err(PromoteRefusal::PeerAhead { peer, .. }) => {
                let j: usize = peer[1..].parse().expect("model node name");
                s.nodes[j].score = Some(decide::AHEAD_SCORE);
                s.nodes[i].score = Some(decide::CANDIDATE_SCORE);
            }
            Err(_) => {}
        }
    }

    /// The agent's demote: the standbys streaming within maxlag are scored
    /// (`decide::standby_scores`, no async horizon: a clean shutdown sends
    /// every streaming standby the WAL up to its end), PostgreSQL stops
    /// cleanly, and starts again as a standby with [`decide::CANDIDATE_SCORE`].
    fn demote(&self, s: &mut State, i: usize) {
        let own = format!("n{i}");
        let rows: Vec<StandbyRow> = (0..s.nodes.len())
            .filter(|&j| j != i && s.streams(j))
            .map(|j| self.row(s, j, i))
            .collect();
        let scores = decide::standby_scores_under(&rows, 0, None, [], &own, self.rules);
        for (name, score) in scores
            .into_iter()
            .filter(|(_, sc)| *sc > decide::CANDIDATE_SCORE)
        {
            let j: usize = name[1..].parse().expect("model node name");
            s.nodes[j].score = Some(score);
        }
        // The shutdown checkpoint reaches every streaming standby.
        let (wal, history) = (s.nodes[i].wal.clone(), s.nodes[i].history.clone());
        let streaming: Vec<usize> = (0..s.nodes.len())
            .filter(|&j| j != i && s.streams(j))
            .collect();
        for j in streaming {
            s.nodes[j].wal = wal.clone();
            s.nodes[j].follow(&history);
        }
        // The commit waiting for a standby fails with the shutdown.
        s.drop_pending_of(i);
        let n = &mut s.nodes[i];
        n.pg = Pg::Standby;
        n.role = Role::Unpromoted;
        n.vip = false;
        n.score = Some(decide::CANDIDATE_SCORE);
        for n in s.nodes.iter_mut() {
            n.caught_up = false;
        }
    }

    /// The `pg_stat_replication` row of standby `j` on primary `p`.
    fn row(&self, s: &State, j: usize, p: usize) -> StandbyRow {
        let at = Some(Lsn(s.nodes[j].wal.len() as u64));
        StandbyRow {
            name: format!("n{j}"),
            client_addr: None,
            state: if s.nodes[j].caught_up {
                WalSenderState::Streaming
            } else {
                WalSenderState::Catchup
            },
            sync_state: SyncState::Quorum,
            sent_lsn: at,
            write_lsn: at,
            flush_lsn: at,
            replay_lsn: at,
            current_lsn: Lsn(s.nodes[p].wal.len() as u64),
            write_lag_time: None,
            flush_lag_time: None,
            replay_lag_time: None,
        }
    }

    fn power_off(s: &mut State, i: usize) {
        s.drop_pending_of(i);
        let n = &mut s.nodes[i];
        n.up = false;
        n.pg = Pg::Crashed;
        n.caught_up = false;
        n.vip = false;
        n.role = Role::Stopped;
        n.score = None;
        n.cut_off = false;
        n.own_data = decide::OwnData::Standby;
    }

    /// Pacemaker's own schedule from `s`: monitors, then starts, then the
    /// promotion it would choose, for at most `steps` rounds. Whether a
    /// client-reachable primary appears.
    fn reaches_primary(&self, s: &State, steps: usize) -> bool {
        let mut s = s.clone();
        for _ in 0..steps {
            if s.primary().is_some() {
                return true;
            }
            for i in 0..s.nodes.len() {
                if s.managed(i) {
                    self.monitor(&mut s, i);
                    s.settle();
                }
            }
            for i in 0..s.nodes.len() {
                if s.managed(i) && s.nodes[i].role == Role::Stopped && s.quorate() {
                    self.start(&mut s, i);
                    s.settle();
                }
            }
            let starting =
                (0..s.nodes.len()).any(|i| s.managed(i) && s.nodes[i].role == Role::Stopped);
            if !s.promoted_exists() && !starting && s.quorate() {
                if let Some(&i) = s.promotion_candidates().first() {
                    self.promote(&mut s, i);
                    s.settle();
                }
            }
        }
        s.primary().is_some()
    }

    fn check(self) -> impl Checker<Self> {
        self.checker().threads(2).spawn_bfs().join()
    }
}

impl Model for Cluster {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![self.initial()]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        if s.pending.is_none() && s.next_id < self.max_commits && s.primary().is_some() {
            actions.push(Action::Commit);
        }
        for i in 0..s.nodes.len() {
            let n = &s.nodes[i];
            if s.streams(i) && n.wal.len() < s.nodes[s.primary().unwrap_or(i)].wal.len() {
                actions.push(Action::Replicate(i));
            }
            if !n.up {
                actions.push(Action::PowerOn(i));
                continue;
            }
            if n.cut_off {
                if self.nodes >= 3 && (n.pg != Pg::Stopped || n.vip) {
                    actions.push(Action::QuorumStop(i));
                }
            } else {
                if n.role != Role::Stopped {
                    actions.push(Action::Monitor(i));
                } else if s.quorate() {
                    actions.push(Action::Start(i));
                }
            }
            // Single faults: the next one comes once the cluster has
            // recovered from the last.
            if s.faults < self.max_faults && s.healthy() {
                actions.push(Action::PowerOff(i));
                if matches!(n.pg, Pg::Primary | Pg::Standby) {
                    actions.push(Action::CrashPostgres(i));
                }
                if !n.cut_off && s.nodes.iter().filter(|m| m.up && !m.cut_off).count() >= 2 {
                    actions.push(Action::RingSplit { loser: i });
                }
                if n.role == Role::Promoted {
                    actions.push(Action::Switchover(i));
                }
            }
        }
        // Pacemaker starts every startable instance before it promotes one
        // (a clone's promote follows its "running" pseudo-action).
        let starting = (0..s.nodes.len()).any(|i| s.managed(i) && s.nodes[i].role == Role::Stopped);
        if !s.promoted_exists() && !starting && s.quorate() {
            for i in s.promotion_candidates() {
                actions.push(Action::Promote(i));
            }
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        match action {
            Action::Commit => {
                let p = s.primary()?;
                let id = s.next_id;
                s.next_id += 1;
                s.nodes[p].wal.push(id);
                if s.nodes[p].sync_names {
                    s.pending = Some(id);
                } else {
                    let kind = s.async_ack(p);
                    s.acked.push((id, kind));
                }
            }
            Action::Replicate(i) => {
                let p = s.primary()?;
                let next = s.nodes[p].wal[s.nodes[i].wal.len()];
                let phistory = s.nodes[p].history.clone();
                s.nodes[i].wal.push(next);
                s.nodes[i].follow(&phistory);
                s.settle();
                // A standby counts for synchronous replication once its WAL
                // sender streams (PostgreSQL's SyncRepGetCandidateStandbys).
                if s.nodes[i].caught_up && s.pending == Some(next) && s.nodes[p].sync_names {
                    s.pending = None;
                    s.acked.push((next, Ack::Sync));
                }
            }
            Action::Monitor(i) => self.monitor(&mut s, i),
            Action::Start(i) => self.start(&mut s, i),
            Action::Promote(i) => self.promote(&mut s, i),
            Action::PowerOn(i) => {
                let n = &mut s.nodes[i];
                n.up = true;
                n.pg = Pg::Crashed;
                n.role = Role::Stopped;
            }
            Action::QuorumStop(i) => {
                s.drop_pending_of(i);
                let n = &mut s.nodes[i];
                n.pg = Pg::Stopped;
                n.vip = false;
            }
            Action::PowerOff(i) => {
                s.faults += 1;
                Self::power_off(&mut s, i);
            }
            Action::Switchover(i) => {
                s.faults += 1;
                self.demote(&mut s, i);
            }
            Action::CrashPostgres(i) => {
                s.faults += 1;
                s.drop_pending_of(i);
                s.nodes[i].pg = Pg::Crashed;
                s.nodes[i].caught_up = false;
            }
            Action::RingSplit { loser } => {
                s.faults += 1;
                match self.fencing {
                    Fencing::Effective => Self::power_off(&mut s, loser),
                    Fencing::Ineffective => {
                        let n = &mut s.nodes[loser];
                        n.cut_off = true;
                        n.role = Role::Stopped;
                        n.score = None;
                    }
                }
            }
        }
        s.settle();
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(TWO_PRIMARIES, |_: &Cluster, s: &State| {
                s.reachable_primaries().count() <= 1
            }),
            Property::always(SYNC_LOST, |_: &Cluster, s: &State| s.lost(Ack::Sync) == 0),
            Property::always(NO_STANDBY_LOST, |_: &Cluster, s: &State| {
                s.lost(Ack::NoStandby) == 0
            }),
            Property::always(STRICT_LOST, |m: &Cluster, s: &State| {
                m.sync != SyncMode::Strict || s.lost(Ack::SincePromotion) == 0
            }),
            Property::always(LIVENESS, |m: &Cluster, s: &State| {
                let up = s.nodes.iter().filter(|n| n.up && !n.cut_off).count();
                let majority = 2 * up > m.nodes || (m.nodes == 2 && up == 1);
                let promotable = s.nodes.iter().any(|n| {
                    n.up && !n.cut_off
                        && n.pg != Pg::Primary
                        && match n.score {
                            Some(sc) => sc > 0,
                            None => !n.stale,
                        }
                });
                let serving = s.nodes.iter().any(|n| n.up && n.pg == Pg::Primary);
                serving || !majority || !promotable || m.reaches_primary(s, LIVENESS_ROUNDS)
            }),
            Property::sometimes(WINDOW_LOST, |_: &Cluster, s: &State| {
                s.lost(Ack::SincePromotion) > 0
            }),
        ]
    }
}

const TWO_PRIMARIES: &str = "never two writable primaries a client can reach";
const SYNC_LOST: &str = "no commit acknowledged by a standby is lost";
const NO_STANDBY_LOST: &str =
    "no commit acknowledged while no standby streamed is lost (the -1000 promise)";
const STRICT_LOST: &str = "under strict, no acknowledged commit is lost";
const LIVENESS: &str = "a promotable standby becomes primary within 8 of Pacemaker's rounds";
const LIVENESS_ROUNDS: usize = 8;
const WINDOW_LOST: &str =
    "a commit acknowledged between a promotion and the new primary's first monitor is lost";

#[cfg(test)]
mod tests {
    use super::*;

    const SAFETY: [&str; 5] = [
        TWO_PRIMARIES,
        SYNC_LOST,
        NO_STANDBY_LOST,
        STRICT_LOST,
        LIVENESS,
    ];

    fn cluster(nodes: usize, sync: SyncMode, fencing: Fencing) -> Cluster {
        Cluster {
            fencing,
            ..Cluster::new(nodes, sync)
        }
    }

    /// Checks `m` exhaustively (within its commits and faults) and fails
    /// with the path of the first broken property.
    fn assert_safe(m: Cluster) -> usize {
        let name = format!("{} nodes, {:?}, {:?} fencing", m.nodes, m.sync, m.fencing);
        let c = m.check();
        eprintln!(
            "model {name}: {} unique states, depth {}",
            c.unique_state_count(),
            c.max_depth()
        );
        for p in SAFETY {
            if let Some(path) = c.discovery(p) {
                panic!("{name}: {p}: broken by {:?}", path.into_actions());
            }
        }
        c.unique_state_count()
    }

    /// The counterexample the checker finds once `rules` lacks one rule.
    fn counterexample(m: Cluster, property: &'static str) -> Vec<Action> {
        let rules = m.rules;
        let c = m.check();
        match c.discovery(property) {
            Some(path) => {
                let path = path.into_actions();
                eprintln!("under {rules:?}: {property}: {path:?}");
                path
            }
            None => panic!(
                "under {rules:?}, the checker found nothing against {property} in {} states",
                c.unique_state_count()
            ),
        }
    }

    #[test]
    fn two_nodes_keep_every_promise_under_strict_and_on_with_either_fence() {
        for sync in [SyncMode::Strict, SyncMode::On] {
            for fencing in [Fencing::Effective, Fencing::Ineffective] {
                assert_safe(cluster(2, sync, fencing));
            }
        }
    }

    #[test]
    fn three_nodes_keep_every_promise_under_strict_and_on() {
        assert_safe(cluster(3, SyncMode::Strict, Fencing::Ineffective));
        assert_safe(cluster(3, SyncMode::On, Fencing::Effective));
    }

    /// README's window for `on`: a promotion starts asynchronous, and a
    /// commit acknowledged before the new primary's first monitor can be
    /// lost if that primary fails before a standby has it. The checker
    /// finds it (so the property can be seen), and only it: every other
    /// loss is ruled out above.
    #[test]
    fn under_on_only_commits_acknowledged_before_a_new_primarys_first_monitor_can_be_lost() {
        let path = counterexample(cluster(2, SyncMode::On, Fencing::Effective), WINDOW_LOST);
        assert!(
            path.iter().any(|a| matches!(a, Action::Promote(_))),
            "{path:?}"
        );
    }

    #[test]
    fn without_the_primary_answers_refusal_a_false_fence_makes_two_primaries() {
        let m = Cluster {
            rules: Rules {
                refuse_when_a_primary_answers: false,
                ..Rules::ALL
            },
            ..cluster(2, SyncMode::On, Fencing::Ineffective)
        };
        let path = counterexample(m, TWO_PRIMARIES);
        assert!(
            path.iter().any(|a| matches!(a, Action::RingSplit { .. })),
            "{path:?}"
        );
    }

    #[test]
    fn without_the_better_peer_refusal_a_commit_a_standby_acknowledged_is_lost() {
        let m = Cluster {
            rules: Rules {
                refuse_when_a_peer_is_ahead: false,
                ..Rules::ALL
            },
            ..cluster(3, SyncMode::Strict, Fencing::Effective)
        };
        counterexample(m, SYNC_LOST);
    }

    /// A standby that streams but has not yet received what the primary
    /// acknowledged asynchronously is scored -1000 too.
    #[test]
    fn without_the_minus_1000_rule_a_standby_lacking_acknowledged_commits_is_promoted() {
        let m = Cluster {
            rules: Rules {
                unpromotable_unless_streaming: false,
                ..Rules::ALL
            },
            ..cluster(2, SyncMode::On, Fencing::Effective)
        };
        counterexample(m, NO_STANDBY_LOST);
    }

    /// The rule the checker found missing (see the closing note of issue
    /// 12): without stale marks, a standby that was restarted, or joined
    /// after the primary went asynchronous, scores itself and is promoted
    /// without the commits acknowledged while no standby streamed.
    #[test]
    fn without_stale_marks_commits_acknowledged_without_a_standby_are_lost() {
        let m = Cluster {
            rules: Rules {
                mark_stale_nodes: false,
                ..Rules::ALL
            },
            ..cluster(2, SyncMode::On, Fencing::Effective)
        };
        counterexample(m, NO_STANDBY_LOST);
    }
}
