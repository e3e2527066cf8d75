//! Taking the local PostgreSQL down within the action's deadline (demote,
//! stop), when it may be frozen or its standbys unreachable.
//!
//! A primary that is cut off from its standbys, or hung, must not keep the
//! virtual IP (which stops only after the demote) and its writes while its
//! shutdown waits: writes stop first, at once, then the shutdown escalates
//! in bounded steps ([`decide::shutdown_plan`]).

use super::local_target;
use crate::postgres::db::{quote_literal, Db};
use crate::postgres::server::{wait_until_every, ProcessState, WRITES_OFF_SETTING};
use crate::postgres::{Lsn, PgError};
use crate::stack::decide::{self, ShutdownFacts, CONFIRM_WINDOW, LOCAL_PROBE};
use crate::stack::{Ctx, Error};

/// What a demote or stop found running locally, once writes are stopped.
pub(super) enum Local {
    /// No postmaster runs (stopped, or crashed: its pid file is stale).
    NotRunning,
    /// A standby: nothing to stop for a demote.
    Standby,
    /// A primary, its writes stopped.
    Primary {
        /// What its shutdown may wait for.
        facts: ShutdownFacts,
        /// The session that stopped them, for what the action still asks
        /// before the shutdown.
        db: Box<Db>,
    },
    /// A server that gives no session within [`LOCAL_PROBE`], or whose
    /// postmaster is stopped by a signal, whatever its role.
    Frozen,
}

/// The local server, by a session bounded by [`LOCAL_PROBE`] (and by the
/// deadline) rather than query_timeout: a server that does not answer
/// that fast is treated as frozen, and the shutdown escalates at once.
pub(super) fn probe_session(ctx: &Ctx<'_>) -> Result<Db, PgError> {
    let bound = LOCAL_PROBE.min(ctx.cfg.query_timeout);
    Db::connect(&local_target(ctx), bound, bound, &ctx.deadline)
}

/// Looks at the local PostgreSQL and, if it is a primary, stops its writes:
/// `default_transaction_read_only` on (ALTER SYSTEM and a reload, so new
/// sessions and the next transaction of every session are read-only), the
/// client sessions terminated, then a marker written to the WAL to see
/// which standbys still confirm ([`decide::unconfirmed_standbys`]). The WAL
/// senders of those that do not confirm within [`CONFIRM_WINDOW`] are
/// terminated too: a fast shutdown waits for every WAL sender to have its
/// shutdown checkpoint confirmed, which for an unreachable standby means
/// until `wal_sender_timeout`; without them it finishes cleanly at once,
/// and the standbys that answer still receive everything.
///
/// The setting is persisted (`postgresql.auto.conf`), so it holds across a
/// reload by anyone; every start removes it
/// ([`crate::postgres::server::Server::configure_standby`]) and promote
/// resets it before promoting.
pub(super) fn stop_writes(ctx: &Ctx<'_>) -> Local {
    let pid = match ctx.pg.process_state() {
        ProcessState::Running(pid) => pid,
        ProcessState::Stopped | ProcessState::Crashed(_) => return Local::NotRunning,
    };
    let was_primary = !ctx.pg.is_standby_configured();
    let frozen = |why: String| {
        log::warn!("PostgreSQL does not answer ({why}): shutting it down without waiting");
        Local::Frozen
    };
    if ctx.pg.is_frozen(pid) {
        return frozen(format!("postmaster {pid} is stopped by a signal"));
    }
    let db = match probe_session(ctx) {
        Ok(db) => db,
        // A standby still starting up refuses sessions: it has no writes
        // to stop, and start takes it from there.
        Err(e) if e.is_cannot_connect_now() && !was_primary => return Local::Standby,
        Err(e) => return frozen(e.to_string()),
    };
    match db.in_recovery() {
        Ok(true) => return Local::Standby,
        Ok(false) => {}
        Err(e) => return frozen(e.to_string()),
    }
    match writes_off(&db).and_then(|()| unconfirmed(ctx, &db)) {
        Ok(names) => {
            if !names.is_empty() {
                log::warn!(
                    "standbys that did not confirm the end of the WAL within {} ms: {}; \
                     ending their WAL senders so the shutdown does not wait for them",
                    CONFIRM_WINDOW.as_millis(),
                    names.join(", ")
                );
                if let Err(e) = end_wal_senders(&db, &names) {
                    log::warn!("cannot end those WAL senders: {e}");
                }
            }
            Local::Primary {
                facts: decide::primary_shutdown_facts(&names),
                db: Box::new(db),
            }
        }
        Err(e) => frozen(e.to_string()),
    }
}

/// Client sessions, not the WAL senders nor the agent's own.
const TERMINATE_CLIENTS_SQL: &str = "SELECT count(pg_terminate_backend(pid)) \
  FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()";

/// Read-only for every transaction from now on, then the sessions ended.
pub(super) fn writes_off(db: &Db) -> Result<(), PgError> {
    db.execute(
        "ALTER SYSTEM",
        &format!("ALTER SYSTEM SET {WRITES_OFF_SETTING} = on"),
    )?;
    db.execute("pg_reload_conf()", "SELECT pg_reload_conf()")?;
    db.execute("terminating the client sessions", TERMINATE_CLIENTS_SQL)?;
    log::info!("PostgreSQL stopped accepting writes (read-only, client sessions ended)");
    Ok(())
}

/// How often the WAL marker's confirmations are read: a streaming standby
/// confirms its flush within milliseconds, and the 50 ms of
/// [`crate::postgres::server::wait_until`] cost every switchover most of
/// that again (the first read, right after the marker, never sees it). A
/// query on the local socket.
const CONFIRM_POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// Writes a marker to the WAL (this session only: not read-only, and not
/// waiting for a synchronous standby that may be gone) and waits up to
/// [`CONFIRM_WINDOW`] for every standby to confirm flushing it; returns the
/// standbys that did not.
fn unconfirmed(ctx: &Ctx<'_>, db: &Db) -> Result<Vec<String>, PgError> {
    db.execute(
        "preparing the WAL marker",
        "SET synchronous_commit = local; SET default_transaction_read_only = off",
    )?;
    let row = db.row(
        "the WAL marker",
        "SELECT pg_logical_emit_message(true, 'rapidpro', 'shutdown')::text",
    )?;
    let written: Lsn = row
        .into_iter()
        .next()
        .flatten()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| PgError::parse("the WAL marker", "no position"))?;
    let window = crate::deadline::Deadline::after(ctx.deadline.cap(CONFIRM_WINDOW));
    let mut names = Vec::new();
    let mut error = None;
    wait_until_every(&window, CONFIRM_POLL, || match db.standbys() {
        Ok(rows) => {
            names = decide::unconfirmed_standbys(&rows, written);
            names.is_empty()
        }
        Err(e) => {
            error = Some(e);
            true
        }
    });
    match error {
        Some(e) => Err(e),
        None => Ok(names),
    }
}

/// Terminates the WAL senders of the standbys named (their
/// application_name).
fn end_wal_senders(db: &Db, names: &[String]) -> Result<(), PgError> {
    let list: Vec<String> = names.iter().map(|n| quote_literal(n)).collect();
    db.execute(
        "ending WAL senders",
        &format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_replication \
             WHERE application_name IN ({})",
            list.join(", ")
        ),
    )
}

/// Shuts the local PostgreSQL down as [`decide::shutdown_plan`] says for
/// `facts`: fast, immediate, then SIGKILL, each bounded.
pub(super) fn shut_down(ctx: &Ctx<'_>, facts: ShutdownFacts) -> Result<(), Error> {
    let plan = decide::shutdown_plan(facts, ctx.deadline.remaining());
    log::info!(
        "shutting PostgreSQL down ({facts:?}): fast for up to {:.1} s, then immediate for up to \
         {:.1} s, then SIGKILL",
        plan.fast.as_secs_f64(),
        plan.immediate.as_secs_f64()
    );
    ctx.pg
        .stop_within(plan.fast, plan.immediate, &ctx.deadline)?;
    Ok(())
}

/// Stops writes and shuts PostgreSQL down, whatever its role (stop).
pub(super) fn stop_postgres(ctx: &Ctx<'_>) -> Result<(), Error> {
    let facts = match stop_writes(ctx) {
        Local::NotRunning | Local::Standby => ShutdownFacts::Clean,
        Local::Primary { facts, db } => {
            drop(db);
            facts
        }
        Local::Frozen => ShutdownFacts::Frozen,
    };
    shut_down(ctx, facts)
}
