//! `monitor` on the primary: scores for the standbys, synchronous
//! replication, and whether followers can reach it at primary_host.

use super::guard::{ask_quorum, leave_guard};
use super::notify::checkpoint_new_timeline;
use super::{load_state, save_state, set_score, stale, unix_now, watch};
use crate::cluster::NodeName;
use crate::deadline::Deadline;
use crate::postgres::db::{Db, LocalStatus, StandbyRow};
use crate::postgres::server::wait_until_every;
use crate::postgres::{Lsn, PgError};
use crate::redis::{self, Role};
use crate::stack::decide::{self, Verdict, PROMOTED_SCORE};
use crate::stack::observe;
use crate::stack::Ctx;
use crate::stack::Error;

/// What a primary's monitor observed of itself and its standbys, under the
/// sync lock ([`watch::hold_sync`]), after [`await_vip`].
pub(super) struct Seen {
    /// Held until the standbys are synced; None if it could not be had.
    pub lock: Option<SyncLock>,
    /// `pg_stat_replication`, fetched with the status.
    pub standbys: Result<Vec<StandbyRow>, PgError>,
}

/// [`watch::hold_sync`]'s lock.
pub(super) type SyncLock = nix::fcntl::Flock<std::fs::File>;

/// Before a primary's monitor observes: the first since a promotion waits
/// for the VIP ([`await_vip`]), then the sync lock is taken, so that what
/// [`sync_standbys`] writes is what was seen after the wait, and no
/// watcher's sync comes between the two.
pub(super) fn before_observing(ctx: &Ctx<'_>) -> Option<SyncLock> {
    if load_state(ctx).since_promotion {
        await_vip(ctx);
    }
    watch::hold_sync(ctx)
}

/// `seen`: the standbys, if they were fetched with the status `st` after
/// [`before_observing`]; otherwise (the node was not known to be a primary
/// before it was asked) both are fetched again here, after it.
pub(super) fn monitor_primary(
    ctx: &Ctx<'_>,
    db: &Db,
    st: &LocalStatus,
    info: &redis::ReplicationInfo,
    seen: Option<Seen>,
) -> Result<Verdict, Error> {
    if info.role != Role::Master {
        // A process, but only off the steady path.
        let quorum = ask_quorum(ctx.deadline.remaining() / 4);
        let verdict = decide::released_primary(quorum);
        if verdict == Verdict::Promoted {
            log::warn!(
                "Redis is a replica and this partition has no quorum: the quorum guard released \
                 this primary; Pacemaker takes the role away"
            );
        }
        return Ok(verdict);
    }
    leave_guard(ctx);
    let fresh;
    let (st, Seen { lock, standbys }) = match seen {
        Some(seen) => (st, seen),
        None => {
            let lock = before_observing(ctx);
            let (st, standbys) = match db.status_and_standbys() {
                Ok(s) => s,
                Err(e) => return Ok(Verdict::failed(true, e.to_string())),
            };
            fresh = st;
            (&fresh, Seen { lock, standbys })
        }
    };
    let standbys = match standbys {
        Ok(s) => s,
        Err(e) => return Ok(Verdict::failed(true, e.to_string())),
    };
    let streaming = match sync_standbys(ctx, db, st, &standbys) {
        Ok(n) => n,
        Err(e) => return Ok(Verdict::failed(true, e.to_string())),
    };
    drop(lock);
    // Normally done by the post-promote notification; this covers a
    // cluster without notifications. A query, not a process.
    if st.checkpoint_timeline < st.primary_timeline {
        if let Err(e) = checkpoint_new_timeline(ctx) {
            log::warn!("{e}");
        }
    }
    if ctx.cfg.sync_replication == crate::config::SyncMode::Strict && streaming == 0 {
        return Ok(Verdict::DegradedPromoted(
            "sync_replication=strict and no standby streams: commits wait".into(),
        ));
    }
    unreachable_at_primary_host(ctx, streaming, info)
}

/// How often the first monitor since a promotion looks for the VIP: a
/// `getifaddrs`, no process.
const VIP_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// The first monitor since a promotion: waits, at most [`decide::VIP_WAIT`],
/// while [`decide::first_monitor_waits`] says so. primary_host is resolved
/// once, before the wait: a name's lookup may wait out the resolver's own
/// timeouts, which no poll may repeat.
fn await_vip(ctx: &Ctx<'_>) {
    let started = std::time::Instant::now();
    let until = Deadline::after(ctx.deadline.cap(decide::VIP_WAIT));
    let wanted = observe::primary_host_addresses(ctx);
    let here = wait_until_every(&until, VIP_POLL, || {
        let local = wanted.as_deref().and_then(observe::addresses_are_local);
        !decide::first_monitor_waits(true, local)
    });
    let waited = started.elapsed();
    if !here {
        log::info!(
            "primary_host is not here {} ms after this primary's first monitor began; writing its \
             scores all the same",
            waited.as_millis()
        );
    } else if waited >= VIP_POLL {
        log::info!(
            "first monitor since the promotion: waited {} ms for primary_host to be here before \
             writing scores",
            waited.as_millis()
        );
    }
}

/// The primary's one step over its standbys, from `pg_stat_replication`
/// (`standbys`) and its status `st`: promotion scores for the standbys,
/// `synchronous_standby_names`, and the bookkeeping of commits
/// acknowledged asynchronously (`async_until`, the stale marks). Run by
/// every monitor, by the post-start notification as soon as a started
/// standby streams, and by the watcher a promotion leaves behind
/// ([`super::watch`]), so that a standby is promotable, and commits wait
/// for it, without waiting for the next monitor. Spawns nothing unless a
/// score or a mark changes. Returns how many standbys stream.
pub(super) fn sync_standbys(
    ctx: &Ctx<'_>,
    db: &Db,
    st: &LocalStatus,
    standbys: &[StandbyRow],
) -> Result<usize, PgError> {
    let own = ctx.node.as_str();
    // Synchronous replication follows the streaming standbys.
    let streamers: Vec<String> = decide::streaming_standbys(standbys, own)
        .iter()
        .map(|s| format!("{} ({})", s.name, s.sync_state))
        .collect();
    let streaming = streamers.len();
    let names = decide::sync_standby_names(ctx.cfg.sync_replication, streaming);
    let mut state = load_state(ctx);
    // What was acknowledged without waiting for a standby (sync_replication=on).
    let names_were_empty = st.synchronous_standby_names.is_empty();
    let async_until = decide::async_until(
        ctx.cfg.sync_replication,
        names_were_empty,
        state.since_promotion,
        names.is_empty(),
        st.current_lsn.unwrap_or_default(),
        state.async_until.map(Lsn),
    );
    // First, as it is one query where the scores below may take a
    // process each: from here on commits wait for a standby. Its failure
    // is returned once the scores are set.
    let mut altered = Ok(());
    if st.synchronous_standby_names != names {
        log::info!(
            "synchronous_standby_names = '{names}' (streaming: {})",
            streamers.join(", ")
        );
        altered = db.alter_system("synchronous_standby_names", names);
    }
    let mut changed = state.async_until != async_until.map(|l| l.0) || state.since_promotion;
    state.async_until = async_until.map(|l| l.0);
    state.since_promotion = false;
    let async_now = names_were_empty || names.is_empty();
    changed |= stale::mark(ctx, &mut state, standbys, async_until, async_now);
    // Promotion scores, set only when they change. A node marked stale is
    // scored -1000 with the others no longer streaming: a score it kept
    // from before (a demoted primary gives itself 1) would let Pacemaker
    // promote it without what this primary acknowledged alone.
    let marked = state
        .stale
        .iter()
        .filter(|(_, m)| **m)
        .map(|(n, _)| n.as_str());
    let mut want = decide::standby_scores(
        standbys,
        ctx.cfg.maxlag,
        async_until,
        state.scores.keys().map(String::as_str).chain(marked),
        own,
    );
    want.insert(own.to_string(), PROMOTED_SCORE);
    for (node, score) in &want {
        if state.scores.get(node) == Some(score) {
            continue;
        }
        let Ok(n) = NodeName::new(node) else {
            log::warn!("ignoring standby with unusable application_name {node:?}");
            continue;
        };
        if set_score(ctx, &n, *score) {
            state.scores.insert(node.clone(), *score);
            changed = true;
        }
    }
    if changed {
        save_state(ctx, &state);
    }
    altered?;
    Ok(streaming)
}

/// Whether this primary's PostgreSQL and Redis answer at primary_host, where
/// the standbys and replicas connect: a Redis bound to 127.0.0.1 (Debian's
/// default) or a `listen_addresses` without primary_host leaves every
/// follower retrying forever, and a failover then loses what only the
/// primary had (celery's queue of outgoing SMS). Asked only while some
/// member does not follow ([`decide::self_checks_needed`]). A failure that
/// outlasts two monitor intervals (the VIP starts after the promotion, and
/// followers take a moment to connect) makes it degraded, with the fix.
fn unreachable_at_primary_host(
    ctx: &Ctx<'_>,
    streaming: usize,
    info: &redis::ReplicationInfo,
) -> Result<Verdict, Error> {
    let others = ctx
        .env
        .meta(crate::ocf::env::meta::CLONE_MAX)
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(2)
        .saturating_sub(1);
    let (ask_pg, ask_redis) =
        decide::self_checks_needed(others, streaming, info.connected_slaves as usize);
    // The VIP is not (yet) here: right after a promotion it starts only
    // once the promote is done. Connecting would only wait for a connect
    // timeout; followers cannot reach this primary either way. Neither
    // server is asked then: the first monitor after a promotion, asking
    // Redis there, waited out Redis's connect timeout (1.3 s in the cluster
    // test's switchover) while Pacemaker held back the VIP's start behind it.
    let vip_away = (ask_pg || ask_redis) && observe::primary_host_is_local(ctx) == Some(false);
    let seen = decide::AtPrimaryHost {
        vip_away,
        postgres: match ask_pg && !vip_away {
            true => Some(observe::primary_at(ctx)?),
            false => None,
        },
        redis: (ask_redis && !vip_away).then(|| observe::redis_at_primary_host(ctx)),
    };
    let problems = decide::primary_host_problems(
        &seen,
        &decide::Addresses {
            primary_host: &ctx.cfg.primary_host,
            primary_port: ctx.cfg.primary_port,
            redis_port: ctx.cfg.redis_primary_port,
            repl_user: &ctx.cfg.repl_user,
        },
    );
    let now = unix_now();
    // Read and written under the sync lock: a watcher's sync saved between
    // the two would be undone (its async_until, its stale marks).
    let since = match (problems.is_empty(), load_state(ctx).unreachable_since) {
        (true, None) => return Ok(Verdict::Promoted),
        (false, Some(since)) => since,
        (clear, _) => {
            let _lock = watch::hold_sync(ctx);
            let mut state = load_state(ctx);
            if clear {
                state.unreachable_since = None;
                save_state(ctx, &state);
                return Ok(Verdict::Promoted);
            }
            let since = *state.unreachable_since.get_or_insert(now);
            save_state(ctx, &state);
            since
        }
    };
    let reason = problems.join("; ");
    let (verdict, lasted) = decide::after_grace(
        &reason,
        since,
        now,
        ctx.env.interval(),
        ctx.env.is_probe(),
        true,
    );
    if verdict == Verdict::Promoted {
        log::info!("{reason} (for {lasted} s)");
    }
    Ok(verdict)
}
