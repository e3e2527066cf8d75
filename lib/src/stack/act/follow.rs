//! Following primary_host: the standby's conninfo, the Redis replica, and
//! waiting until both answer as followers (start, demote, notify).

use super::{local_db, primary_conninfo, primary_desc, redis_local};
use crate::postgres::db::Db;
use crate::postgres::server::{wait_until, ProcessState};
use crate::postgres::PgError;
use crate::redis::{self, Role};
use crate::stack::{Ctx, Error};

/// Makes a running standby follow primary_host (conninfo reloaded when it
/// changed: PostgreSQL 13+ restarts the WAL receiver on reload).
pub(super) fn follow_primary(ctx: &Ctx<'_>, db: &Db) -> Result<(), Error> {
    let st = db.status()?;
    let want = primary_conninfo(ctx);
    if st.in_recovery && st.primary_conninfo != want {
        log::info!("pointing the standby at {}", primary_desc(ctx));
        db.alter_system("primary_conninfo", &want)?;
    }
    Ok(())
}

pub(super) fn start_redis_replica(ctx: &Ctx<'_>) -> Result<(), Error> {
    match redis::process_state(&ctx.redis) {
        redis::ProcessState::Running(_) => follow_redis_primary(ctx),
        redis::ProcessState::Crashed(_) | redis::ProcessState::NotRunning => {
            redis::stop(&ctx.redis, &ctx.deadline)?;
            redis::start(&ctx.redis, &ctx.deadline)?;
            Ok(())
        }
    }
}

/// Makes the local Redis a replica of primary_host.
pub(super) fn follow_redis_primary(ctx: &Ctx<'_>) -> Result<(), Error> {
    follow_redis_primary_with(ctx, redis_local(ctx)?)
}

/// [`follow_redis_primary`], each call bounded by `bound` rather than
/// query_timeout: a demote does this before anything else, and a Redis
/// that does not answer within it must not delay stopping PostgreSQL's
/// writes.
pub(super) fn follow_redis_primary_within(
    ctx: &Ctx<'_>,
    bound: std::time::Duration,
) -> Result<(), Error> {
    let c = redis::connect(
        &ctx.redis.endpoint(),
        ctx.cfg.redis_password.as_deref(),
        ctx.deadline.cap(bound),
    )?;
    follow_redis_primary_with(ctx, c)
}

fn follow_redis_primary_with(ctx: &Ctx<'_>, mut c: redis::Conn) -> Result<(), Error> {
    let info = c.info_replication()?;
    let host = ctx.cfg.primary_host.as_str();
    let port = ctx.cfg.redis_primary_port;
    let follows = info.role == Role::Replica
        && info.master_host.as_deref() == Some(host)
        && info.master_port == Some(port);
    if !follows {
        log::info!("making Redis a replica of {host}:{port}");
        c.replicaof(Some((host, port)))?;
    }
    Ok(())
}

/// Whether the monitor would say "running unpromoted", and if not, why.
pub(super) fn unpromoted_ready(ctx: &Ctx<'_>) -> Result<(), String> {
    let db = local_db(ctx).map_err(|e| e.to_string())?;
    if !db.in_recovery().map_err(|e| e.to_string())? {
        return Err("PostgreSQL is not in recovery".into());
    }
    let info = redis_local(ctx)
        .and_then(|mut c| Ok(c.info_replication()?))
        .map_err(|e| e.to_string())?;
    if info.role != Role::Replica {
        return Err("Redis is not a replica".into());
    }
    Ok(())
}

/// A server that exited since it was started: waiting for it is pointless.
pub(super) fn exited_while_starting(ctx: &Ctx<'_>) -> Option<Error> {
    if !matches!(ctx.pg.process_state(), ProcessState::Running(_)) {
        // pg_ctl -w returns once the postmaster accepts connections; a
        // standby's startup process can still fail right after (a full
        // disk during WAL redo), and the postmaster then shuts down.
        return Some(Error::Postgres(PgError::StartFailed {
            detail: "the postmaster exited after it had started".into(),
            log: ctx.pg.logfile.clone(),
        }));
    }
    if !matches!(
        redis::process_state(&ctx.redis),
        redis::ProcessState::Running(_)
    ) {
        return Some(Error::Failed(
            "redis-server exited after it had started (see its log)".into(),
        ));
    }
    None
}

/// Waits until the monitor would say "running unpromoted"; fails at once
/// if a server exited meanwhile.
pub(super) fn wait_ready(ctx: &Ctx<'_>) -> Result<(), Error> {
    let mut last = String::new();
    let mut exited = None;
    let ok = wait_until(&ctx.deadline, || match unpromoted_ready(ctx) {
        Ok(()) => true,
        Err(e) => {
            last = e;
            exited = exited_while_starting(ctx);
            exited.is_some()
        }
    });
    if let Some(e) = exited {
        return Err(e);
    }
    if ok {
        Ok(())
    } else {
        Err(Error::Failed(format!(
            "not ready before the timeout: {last}"
        )))
    }
}
