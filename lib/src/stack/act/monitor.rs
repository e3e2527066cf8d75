//! `monitor`: 8 promoted, 0 unpromoted, 7 cleanly stopped, 9/1 failed,
//! 191/190 degraded. In steady state: two socket connections, no process.
//!
//! Every answer is a [`Verdict`]; `Outcome::from` gives its exit code.

use super::monitor_primary::{before_observing, monitor_primary, Seen};
use super::{forget_scores, load_state, primary_desc, save_state, stale, unix_now};
use crate::deadline::Deadline;
use crate::ocf::env::OcfEnv;
use crate::ocf::OcfRc;
use crate::postgres::db::LocalStatus;
use crate::postgres::server::ProcessState;
use crate::redis::{self, LinkStatus};
use crate::stack::decide::{self, PrimaryAt, Verdict};
use crate::stack::observe;
use crate::stack::{Ctx, Error, Outcome};

/// `monitor`.
pub fn monitor(env: &OcfEnv, deadline: Deadline) -> Result<Outcome, Error> {
    verdict(env, deadline).map(Outcome::from)
}

fn verdict(env: &OcfEnv, deadline: Deadline) -> Result<Verdict, Error> {
    if env.tester_fail_have_binary() && env.is_probe() {
        return Ok(Verdict::NotRunning);
    }
    let ctx = match Ctx::new(env, deadline) {
        Ok(c) => c,
        // A probe on a node where the service cannot even be configured
        // finds it not running; anything else is a configuration error.
        Err(Error::Config(c)) if env.is_probe() && c.rc() != OcfRc::ErrConfigured => {
            return Ok(Verdict::NotRunning)
        }
        Err(e) => return Err(e),
    };
    if env.is_probe() {
        // Pacemaker may have restarted and lost the node attributes: a probe
        // re-asserts every score.
        forget_scores(&ctx);
    }
    let procs = observe::processes(&ctx);
    let was_primary = procs.was_primary;
    if let Some(v) = decide::monitor_processes(&procs) {
        if v == Verdict::NotRunning
            && (procs.pg != ProcessState::Stopped || procs.redis != redis::ProcessState::NotRunning)
        {
            log::info!("probe: nothing runs (stale pid files from a crash or power loss)");
        }
        return Ok(v);
    }
    let db = match observe::local_session(&ctx) {
        Ok(db) => db,
        Err(why) => return Ok(decide::monitor_no_session(was_primary, &why)),
    };
    let lock = was_primary.then(|| before_observing(&ctx));
    let local = match observe::local_servers(&ctx, &db, was_primary) {
        Ok(l) => l,
        Err(e) => return Ok(Verdict::failed(was_primary, e)),
    };
    if local.status.in_recovery {
        monitor_standby(&ctx, &local.status, &local.redis)
    } else {
        let seen = lock
            .zip(local.standbys)
            .map(|(lock, standbys)| Seen { lock, standbys });
        monitor_primary(&ctx, &db, &local.status, &local.redis, seen)
    }
}

fn monitor_standby(
    ctx: &Ctx<'_>,
    st: &LocalStatus,
    info: &redis::ReplicationInfo,
) -> Result<Verdict, Error> {
    let link_up = info.master_link_status == Some(LinkStatus::Up);
    let steady = match decide::standby_steady(&info.role, st.streaming(), link_up) {
        Err(v) => return Ok(v),
        Ok(steady) => steady,
    };
    if steady {
        let mut state = load_state(ctx);
        if state.candidate_checked || state.broken_since.is_some() {
            state.candidate_checked = false;
            state.broken_since = None;
            save_state(ctx, &state);
        }
        return Ok(Verdict::Unpromoted);
    }
    // Off the steady path: find out whether a primary is there to follow.
    let mut broken = None;
    if !st.streaming() {
        let at = observe::primary_at(ctx)?;
        if at == PrimaryAt::Writable {
            // Data past the fork of the primary's timeline never streams:
            // no grace to wait out.
            let local = observe::running_fork(ctx);
            if let Some(v) = decide::diverged_standby(local, ctx.cfg.rewind) {
                return Ok(v);
            }
        }
        broken = decide::not_streaming_problem(&at, &primary_desc(ctx));
        if broken.is_none() {
            keep_promotable(ctx, &at);
        }
    }
    if broken.is_none() && !link_up {
        broken = decide::replica_link_problem(
            link_up,
            &observe::redis_at_primary_host(ctx),
            &format!("{}:{}", ctx.cfg.primary_host, ctx.cfg.redis_primary_port),
        );
    }
    let mut state = load_state(ctx);
    let Some(reason) = broken else {
        if state.broken_since.take().is_some() {
            save_state(ctx, &state);
        }
        return Ok(Verdict::Unpromoted);
    };
    let now = unix_now();
    let since = *state.broken_since.get_or_insert(now);
    save_state(ctx, &state);
    let (verdict, lasted) = decide::after_grace(
        &reason,
        since,
        now,
        ctx.env.interval(),
        ctx.env.is_probe(),
        false,
    );
    if verdict == Verdict::Unpromoted {
        log::info!("{reason} (for {lasted} s)");
    }
    Ok(verdict)
}

/// A standby with no primary may be the next primary: make sure it has a
/// score unless a primary marked it stale ([`stale::score_self`]) or its
/// own data went past a newer timeline's fork
/// ([`decide::candidate_by_own_data`]), once per episode.
fn keep_promotable(ctx: &Ctx<'_>, at: &PrimaryAt) {
    let mut state = load_state(ctx);
    if state.candidate_checked {
        return;
    }
    // Once per episode: pg_controldata and the history files.
    let local = observe::running_fork(ctx);
    if !decide::candidate_by_own_data(local) {
        log::warn!(
            "no primary answers, and this standby's data goes past the fork of a newer timeline \
             whose history its pg_wal holds: never a promotion candidate"
        );
        state.candidate_checked = true;
        save_state(ctx, &state);
        return;
    }
    state.candidate_checked = stale::score_self(ctx, at);
    if state.candidate_checked {
        save_state(ctx, &state);
    }
}
