//! The OCF actions of `ocf:rapidpro:stack`.
//!
//! Invariants kept by every action:
//! - PostgreSQL is only ever started with `standby.signal`: a primary exists
//!   only through `promote` (PAF's pre-demote notify once restarted a crashed
//!   primary as a primary, and a write was committed there);
//! - Redis is only ever started with `replicaof` in its configuration;
//! - an old primary whose history diverged is never started as a standby on
//!   top of that history: it is rewound (`rewind=true`) or refused;
//! - the recurring monitor spawns no process unless something changed.

use std::time::Duration;

use super::decide::{
    self, PrimaryAt, PromoteFacts, PromoteRefusal, RedisAtPrimary, CANDIDATE_SCORE, PROMOTED_SCORE,
};
use super::state::State;
use super::{Ctx, Error, Outcome};
use crate::cluster::{ClusterError, NodeName};
use crate::config::Config;
use crate::deadline::Deadline;
use crate::ocf::env::OcfEnv;
use crate::ocf::notify::{NotifyKind, NotifyOp};
use crate::ocf::OcfRc;
use crate::postgres::db::{Db, Host, LocalStatus, Reach, StandbyRow, Target};
use crate::postgres::history::{self, Follow};
use crate::postgres::server::{
    conninfo_value, wait_until, ControlData, ControlState, DataOrigin, ProcessState,
};
use crate::postgres::tls::PgTls;
use crate::postgres::wire;
use crate::postgres::{PgError, Position};
use crate::redis::{self, LinkStatus, Role};

/// Private attribute carrying a standby's position from pre-promote to
/// promote.
pub fn position_attribute(resource: &str) -> String {
    format!("rapidpro-position-{resource}")
}

// ---------------------------------------------------------------- validate

/// `validate-all`: form of every parameter (6), then this host (5, 2, 4).
///
/// Then, as warnings only (Pacemaker must not fail a start for them), what
/// would start PostgreSQL or Redis at boot behind Pacemaker's back: enabled
/// systemd units, Debian's `start.conf` saying `auto` ([`crate::systemd`]).
/// Only local files are read: validate-all stays cheap and uses no network.
pub fn validate_all(env: &OcfEnv) -> Result<Outcome, Error> {
    let cfg = Config::from_env(env)?;
    cfg.check_host()?;
    for w in crate::systemd::verdict(&crate::systemd::observe(
        &crate::systemd::default_roots(),
        &cfg.datadir,
    )) {
        log::warn!("validate-all: {w}");
    }
    Ok(Outcome::ok())
}

// ---------------------------------------------------------------- helpers

fn local_target<'c>(ctx: &'c Ctx<'_>) -> Target<'c> {
    Target {
        host: Host::Socket(&ctx.cfg.pghost),
        port: ctx.cfg.pgport,
        user: &ctx.cfg.system_user,
        password: None,
        dbname: "postgres",
        peer_uid: Some(ctx.pg.uid),
        tls: &PgTls::DISABLED,
    }
}

/// The local server over its unix socket. The handshake gets the query
/// timeout, not the short TCP connect timeout: a busy local server that
/// forks a backend slowly is not a failed one.
fn local_db(ctx: &Ctx<'_>) -> Result<Db, Error> {
    let handshake = ctx.cfg.query_timeout.max(ctx.cfg.connect_timeout);
    Ok(Db::connect(
        &local_target(ctx),
        handshake,
        ctx.cfg.query_timeout,
        &ctx.deadline,
    )?)
}

fn primary_at(ctx: &Ctx<'_>) -> Result<PrimaryAt, Error> {
    // First a bare TCP connect, bounded by connect_timeout: nothing there
    // (the virtual IP down during a failover) is known quickly. Whatever
    // accepts it gets the whole query_timeout for the PostgreSQL handshake,
    // and is a possible primary until it says otherwise.
    let addr = format!("{}:{}", ctx.cfg.primary_host, ctx.cfg.primary_port);
    let sockaddrs: Vec<std::net::SocketAddr> = match std::net::ToSocketAddrs::to_socket_addrs(&addr)
    {
        Ok(a) => a.collect(),
        Err(e) => return Ok(PrimaryAt::NoAnswer(format!("cannot resolve {addr}: {e}"))),
    };
    let timeout = ctx
        .deadline
        .cap(ctx.cfg.connect_timeout)
        .max(Duration::from_millis(1));
    let tcp = sockaddrs
        .iter()
        .find_map(|sa| std::net::TcpStream::connect_timeout(sa, timeout).ok());
    if tcp.is_none() {
        return Ok(PrimaryAt::NoAnswer(format!(
            "no TCP connection within {:.1} s",
            timeout.as_secs_f64()
        )));
    }
    drop(tcp);
    let t = primary_target(ctx);
    let q = ctx.cfg.query_timeout;
    Ok(match Db::reach(&t, q, q, &ctx.deadline)? {
        Reach::Connected(db) => match db.in_recovery() {
            Ok(true) => PrimaryAt::Standby,
            Ok(false) => PrimaryAt::Writable,
            Err(e) => PrimaryAt::Unknown(e.to_string()),
        },
        // It accepted TCP a moment ago: gone since, or hung.
        Reach::NoAnswer(r) => PrimaryAt::Unknown(r),
        Reach::Refused(e) if e.is_cannot_connect_now() => PrimaryAt::Standby,
        Reach::Refused(e) => PrimaryAt::Unknown(e.to_string()),
        Reach::Tls(e) => PrimaryAt::Untrusted(e),
    })
}

/// What answers at primary_host, unless it failed TLS: a start does not
/// go on to follow (or to wait for) a server it cannot trust, and says
/// why in its exit reason.
fn trusted_primary_at(ctx: &Ctx<'_>) -> Result<PrimaryAt, Error> {
    match primary_at(ctx)? {
        PrimaryAt::Untrusted(e) => {
            log::error!("{e}");
            Err(Error::Failed(e.to_string()))
        }
        other => Ok(other),
    }
}

/// The primary at primary_host, as the replication user sees it.
fn primary_target<'c>(ctx: &'c Ctx<'_>) -> Target<'c> {
    Target {
        host: Host::Tcp(&ctx.cfg.primary_host),
        port: ctx.cfg.primary_port,
        user: &ctx.cfg.repl_user,
        password: ctx.primary_password(),
        dbname: "postgres",
        peer_uid: None,
        tls: &ctx.cfg.pg_tls,
    }
}

fn primary_desc(ctx: &Ctx<'_>) -> String {
    format!("{}:{}", ctx.cfg.primary_host, ctx.cfg.primary_port)
}

/// `primary_conninfo` for this node: application_name is the node name, so
/// the primary's `pg_stat_replication` says which node each standby is;
/// the WAL receiver (libpq) gets the agent's `sslmode` and `sslrootcert`.
fn primary_conninfo(ctx: &Ctx<'_>) -> String {
    let mut s = format!(
        "host={} port={} user={} application_name={}{}",
        conninfo_value(&ctx.cfg.primary_host),
        ctx.cfg.primary_port,
        conninfo_value(&ctx.cfg.repl_user),
        conninfo_value(ctx.node.as_str()),
        ctx.cfg.pg_tls.conninfo(),
    );
    if let Some(p) = &ctx.cfg.repl_password {
        s.push_str(&format!(" password={}", conninfo_value(p)));
    }
    s
}

/// pg_rewind's `--source-server`, with the agent's `sslmode` and
/// `sslrootcert` (no password: it goes through the environment).
fn source_conninfo(ctx: &Ctx<'_>) -> String {
    format!(
        "host={} port={} user={} dbname=postgres connect_timeout={}{}",
        conninfo_value(&ctx.cfg.primary_host),
        ctx.cfg.primary_port,
        conninfo_value(&ctx.cfg.repl_user),
        ctx.cfg.connect_timeout.as_secs().max(1),
        ctx.cfg.pg_tls.conninfo(),
    )
}

fn redis_local(ctx: &Ctx<'_>) -> Result<redis::Conn, Error> {
    Ok(redis::connect(
        &ctx.redis.endpoint(),
        ctx.cfg.redis_password.as_deref(),
        ctx.deadline.cap(ctx.cfg.query_timeout),
    )?)
}

/// Runs a cluster call whose failure must not fail the action (no cluster
/// under ocf-tester): logs it and says whether it worked.
fn best_effort(what: &str, r: Result<(), ClusterError>) -> bool {
    match r {
        Ok(()) => true,
        Err(ClusterError::NoCluster { .. }) => {
            log::debug!("{what}: no cluster answers");
            false
        }
        Err(e) => {
            log::warn!("{what}: {e}");
            false
        }
    }
}

fn set_score(ctx: &Ctx<'_>, node: &NodeName, score: i64) -> bool {
    best_effort(
        &format!("setting the promotion score of {node} to {score}"),
        ctx.cluster
            .set_promotion_score(ctx.env.instance(), node, score, &ctx.deadline),
    )
}

fn load_state(ctx: &Ctx<'_>) -> State {
    State::load(&ctx.state_path)
}

fn save_state(ctx: &Ctx<'_>, s: &State) {
    if let Err(e) = s.save(&ctx.state_path) {
        log::warn!("cannot save the agent's state: {e}");
    }
}

fn forget_scores(ctx: &Ctx<'_>) {
    let mut s = load_state(ctx);
    if s != State::default() {
        s.forget();
        save_state(ctx, &s);
    }
}

// ---------------------------------------------------------------- start

/// `start`: PostgreSQL as a standby of primary_host and Redis as its
/// replica; returns when both answer. Never starts a primary.
pub fn start(env: &OcfEnv, deadline: Deadline) -> Result<Outcome, Error> {
    let cfg = Config::from_env(env)?;
    cfg.check_host()?;
    let ctx = Ctx::new(env, deadline)?;
    forget_scores(&ctx);
    let primary = start_postgres_standby(&ctx)?;
    start_redis_replica(&ctx)?;
    if !matches!(primary, PrimaryAt::Writable) {
        // No primary to follow: this node may have to become it. Give it a
        // score now, not after its first monitor, so Pacemaker can promote
        // at once; promote still checks that no standby is ahead.
        set_score(&ctx, &ctx.node, CANDIDATE_SCORE);
    }
    wait_ready(&ctx)?;
    log::info!("started unpromoted, following {}", primary_desc(&ctx));
    Ok(Outcome::ok())
}

/// Brings PostgreSQL up as a standby (or checks it already is one), after
/// making sure its history can follow the primary's. Returns what answers
/// at primary_host.
fn start_postgres_standby(ctx: &Ctx<'_>) -> Result<PrimaryAt, Error> {
    match ctx.pg.process_state() {
        ProcessState::Running(_) => {
            let db = local_db(ctx)?;
            if !db.in_recovery()? {
                return Err(Error::Failed(
                    "PostgreSQL already runs as a primary here; an instance starts unpromoted: demote or stop it first"
                        .into(),
                ));
            }
            follow_primary(ctx, &db)?;
            return trusted_primary_at(ctx);
        }
        ProcessState::Crashed(pid) => {
            log::warn!("postmaster {pid} is gone; cleaning up before starting as a standby");
            ctx.pg.clean_after_crash(&ctx.deadline)?;
        }
        ProcessState::Stopped => {}
    }
    let primary = trusted_primary_at(ctx)?;
    let mut control = ctx.pg.controldata(&ctx.deadline)?;
    let origin = DataOrigin::of(
        &control,
        ctx.pg.has_backup_label(),
        ctx.pg.is_standby_configured(),
    );
    if origin == DataOrigin::CrashedPrimary {
        // A crashed primary, whoever answers at primary_host: started as a
        // standby it would replay WAL no other node may have, and its
        // control file would go on naming an older checkpoint, hiding that
        // WAL from the history check of a later start (pg_rewind reads the
        // end of a standby's WAL from the control file). Crash recovery in
        // single-user mode, which never accepts a connection, ends with a
        // checkpoint after the last record.
        log::info!("finishing the crash recovery of this old primary in single-user mode");
        ctx.pg.crash_recover(&ctx.deadline)?;
        control = ctx.pg.controldata(&ctx.deadline)?;
    }
    match &primary {
        PrimaryAt::Writable if origin == DataOrigin::BaseBackup => log::info!(
            "a base backup (backup_label present): starting it as a standby of {}, \
             PostgreSQL recovers it from its backup_label",
            primary_desc(ctx)
        ),
        PrimaryAt::Writable
            if matches!(origin, DataOrigin::Primary | DataOrigin::CrashedPrimary) =>
        {
            check_history(ctx, "this old primary", &control)?
        }
        PrimaryAt::Writable => {
            // A standby whose last timeline is older than the primary's
            // (a failover happened while it was down, or it was a primary
            // demoted while no primary answered) may hold WAL past the fork.
            let primary_tl = primary_timeline(ctx);
            let local_tl = control.newest_timeline();
            if primary_tl.is_none_or(|p| p != local_tl) {
                let primary_tl =
                    primary_tl.map_or_else(|| "an unknown one".to_string(), |t| t.to_string());
                if control.state == ControlState::ShutDownInRecovery {
                    log::info!(
                        "this standby's data is on timeline {local_tl}, the primary's on \
                         {primary_tl}: checking that its history can follow"
                    );
                    check_history(ctx, "this standby", &control)?
                } else {
                    // pg_rewind reads only cleanly stopped data, and crash
                    // recovery outside standby mode would add WAL past the
                    // fork. PostgreSQL refuses to follow a timeline that
                    // forked before its WAL ends; the monitor then reports
                    // it not streaming, and it is never promoted.
                    log::warn!(
                        "this standby's data is on timeline {local_tl}, the primary's on \
                         {primary_tl}, and it was not stopped cleanly ({}): its history cannot \
                         be checked before it starts",
                        control.state
                    );
                }
            }
        }
        PrimaryAt::Standby => log::info!(
            "no primary at {} yet (a standby answers); starting as a standby",
            primary_desc(ctx)
        ),
        PrimaryAt::NoAnswer(r) => log::info!(
            "no primary answers at {} ({r}); starting as a standby",
            primary_desc(ctx)
        ),
        PrimaryAt::Unknown(r) => log::warn!(
            "cannot tell what answers at {} ({r}); starting as a standby",
            primary_desc(ctx)
        ),
        // Returned as an error by trusted_primary_at.
        PrimaryAt::Untrusted(e) => return Err(Error::Failed(e.to_string())),
    }
    ctx.pg.configure_standby(&primary_conninfo(ctx))?;
    ctx.pg.start(&ctx.deadline)?;
    Ok(primary)
}

/// The timeline the primary at primary_host writes, from the name of its
/// current WAL file; `None` when it cannot be read.
fn primary_timeline(ctx: &Ctx<'_>) -> Option<u32> {
    let t = primary_target(ctx);
    let q = ctx.cfg.query_timeout;
    let db = match Db::reach(&t, ctx.cfg.connect_timeout, q, &ctx.deadline) {
        Ok(Reach::Connected(db)) => db,
        Ok(_) | Err(_) => return None,
    };
    let row = db
        .row(
            "the primary's timeline",
            "select pg_walfile_name(pg_current_wal_lsn())",
        )
        .ok()?;
    let name = row.into_iter().next().flatten()?;
    u32::from_str_radix(name.get(..8)?, 16).ok()
}

/// An old primary can follow the current one only if its WAL does not go
/// past the point where the primary's timeline forked. pg_rewind decides
/// (dry run); rewinds if allowed; otherwise refuses, data untouched.
/// `who` names this node in the exit reason.
///
/// With `rewind=false` the check needs no pg_rewind (and none of the grants
/// pg_rewind needs): the primary's timeline history comes over a replication
/// connection and is compared with this node's control file
/// ([`crate::postgres::history`]).
fn check_history(ctx: &Ctx<'_>, who: &str, control: &ControlData) -> Result<(), Error> {
    if !ctx.cfg.rewind {
        return check_history_without_rewind(ctx, who, control);
    }
    let password = ctx.cfg.repl_password.as_deref();
    let report = ctx
        .pg
        .rewind(&source_conninfo(ctx), password, true, &ctx.deadline)
        .map_err(|e| {
            Error::Failed(format!(
                "cannot check {who}'s history against {}: {e}",
                primary_desc(ctx)
            ))
        })?;
    log::info!(
        "pg_rewind --dry-run against {}: {}",
        primary_desc(ctx),
        report.summary
    );
    if !report.needed {
        return Ok(());
    }
    let at = report
        .divergence
        .clone()
        .unwrap_or_else(|| "an unknown point".into());
    if !ctx.cfg.rewind {
        return Err(Error::Diverged(format!(
            "data diverged from primary at {at}: rebuild this node or set rewind=true (data left untouched)"
        )));
    }
    log::warn!("{who} diverged at {at}; rewinding it with pg_rewind");
    ctx.pg
        .rewind(&source_conninfo(ctx), password, false, &ctx.deadline)
        .map_err(|e| match e {
            // A planted configuration file: its own reason and exit code.
            PgError::Files(f) if f.is_refusal() => Error::Postgres(PgError::Files(f)),
            e => Error::Failed(format!("pg_rewind failed: {e}")),
        })?;
    log::info!("pg_rewind done");
    Ok(())
}

/// The history check of `rewind=false`: refuses (data untouched) a node
/// whose WAL goes past the fork of the primary's timeline.
fn check_history_without_rewind(
    ctx: &Ctx<'_>,
    who: &str,
    control: &ControlData,
) -> Result<(), Error> {
    let cannot = |why: String| {
        Error::Failed(format!(
            "cannot check {who}'s history against {}: {why}",
            primary_desc(ctx)
        ))
    };
    let primary_tl = primary_timeline(ctx)
        .ok_or_else(|| cannot("the primary's timeline could not be read".into()))?;
    let local = control.local_end();
    let entries = if primary_tl <= 1 || primary_tl == local.timeline {
        Vec::new()
    } else {
        let password =
            ctx.cfg
                .repl_password_for(&ctx.cfg.primary_host, ctx.cfg.primary_port, "replication");
        let target = wire::ReplTarget {
            host: &ctx.cfg.primary_host,
            port: ctx.cfg.primary_port,
            user: &ctx.cfg.repl_user,
            password: password.as_deref(),
            tls: &ctx.cfg.pg_tls,
        };
        let text = wire::timeline_history(
            &target,
            ctx.node.as_str(),
            primary_tl,
            ctx.deadline
                .cap(ctx.cfg.query_timeout.max(ctx.cfg.connect_timeout) * 2),
        )
        .map_err(|e| match target.tls_error(&e) {
            // The TLS message first: it names the parameters and the fix.
            Some(tls) => Error::Failed(tls.to_string()),
            None => cannot(format!("TIMELINE_HISTORY {primary_tl}: {e}")),
        })?;
        history::parse(&text).ok_or_else(|| {
            cannot(format!(
                "the history file of timeline {primary_tl} is not of the expected form"
            ))
        })?
    };
    let verdict = history::follows(&local, primary_tl, &entries);
    log::info!(
        "history check of {who} (timeline {}, checkpoint {}, min recovery {}) against {} \
         (timeline {primary_tl}): {verdict:?}",
        local.timeline,
        local.checkpoint,
        local.min_recovery,
        primary_desc(ctx)
    );
    match verdict {
        Follow::SameTimeline | Follow::Follows { .. } => {
            log::info!("{who} can follow the primary's timeline: no rewind required");
            Ok(())
        }
        Follow::Diverged { timeline, fork } => Err(Error::Diverged(format!(
            "data diverged from primary at WAL location {fork} on timeline {timeline}: \
             rebuild this node (rapidproctl rebuild) or set rewind=true (data left untouched)"
        ))),
        Follow::NotInHistory => Err(Error::Diverged(format!(
            "data diverged from primary: this node's timeline {} is not in the history of \
             the primary's timeline {primary_tl}: rebuild this node (rapidproctl rebuild) or \
             set rewind=true (data left untouched)",
            local.timeline
        ))),
    }
}

/// Makes a running standby follow primary_host (conninfo reloaded when it
/// changed: PostgreSQL 13+ restarts the WAL receiver on reload).
fn follow_primary(ctx: &Ctx<'_>, db: &Db) -> Result<(), Error> {
    let st = db.status()?;
    let want = primary_conninfo(ctx);
    if st.in_recovery && st.primary_conninfo != want {
        log::info!("pointing the standby at {}", primary_desc(ctx));
        db.alter_system("primary_conninfo", &want)?;
    }
    Ok(())
}

fn start_redis_replica(ctx: &Ctx<'_>) -> Result<(), Error> {
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
fn follow_redis_primary(ctx: &Ctx<'_>) -> Result<(), Error> {
    let mut c = redis_local(ctx)?;
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
fn unpromoted_ready(ctx: &Ctx<'_>) -> Result<(), String> {
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
fn exited_while_starting(ctx: &Ctx<'_>) -> Option<Error> {
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
fn wait_ready(ctx: &Ctx<'_>) -> Result<(), Error> {
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

// ---------------------------------------------------------------- stop

/// `stop`: Redis, then PostgreSQL (fast shutdown, immediate if it hangs),
/// and the node's promotion score. Succeeds when nothing runs, also after a
/// crash: a failed stop ends in fencing.
pub fn stop(env: &OcfEnv, deadline: Deadline) -> Result<Outcome, Error> {
    let ctx = match Ctx::new(env, deadline) {
        Ok(c) => c,
        // No such system user on this host: nothing of ours can run here.
        Err(Error::Config(c)) if c.rc() != OcfRc::ErrConfigured => {
            log::warn!("{c}: nothing to stop");
            return Ok(Outcome::ok());
        }
        Err(e) => return Err(e),
    };
    if ctx.cfg.pg_absent() && redis::process_state(&ctx.redis) == redis::ProcessState::NotRunning {
        return Ok(Outcome::ok());
    }
    redis::stop(&ctx.redis, &ctx.deadline)?;
    ctx.pg.stop(&ctx.deadline)?;
    best_effort(
        "deleting this node's promotion score",
        ctx.cluster
            .delete_promotion_score(ctx.env.instance(), &ctx.node, &ctx.deadline),
    );
    forget_scores(&ctx);
    log::info!("stopped");
    Ok(Outcome::ok())
}

// ---------------------------------------------------------------- promote

/// `promote`: refuses when another primary answers at primary_host or a
/// standby is ahead of this one; otherwise promotes PostgreSQL, then Redis,
/// and returns once both accept writes.
pub fn promote(env: &OcfEnv, deadline: Deadline) -> Result<Outcome, Error> {
    let cfg = Config::from_env(env)?;
    cfg.check_host()?;
    let ctx = Ctx::new(env, deadline)?;
    if !matches!(ctx.pg.process_state(), ProcessState::Running(_)) {
        return Err(Error::Failed(
            "PostgreSQL is not running: cannot promote".into(),
        ));
    }
    let db = local_db(&ctx)?;
    let st = db.status()?;
    if st.in_recovery {
        let names = promote_standby_safely(&ctx, &db, &st)?;
        if st.synchronous_standby_names != names {
            db.alter_system("synchronous_standby_names", names)?;
        }
        let wait = ctx
            .deadline
            .remaining()
            .saturating_sub(Duration::from_secs(2));
        if !db.promote(wait)? {
            return Err(Error::Failed(format!(
                "pg_promote() did not finish within {} s",
                wait.as_secs()
            )));
        }
        let writable = wait_until(&ctx.deadline, || matches!(db.in_recovery(), Ok(false)));
        if !writable {
            return Err(Error::Failed(
                "PostgreSQL still in recovery after pg_promote()".into(),
            ));
        }
        log::info!("PostgreSQL promoted");
    }
    promote_redis(&ctx)?;
    best_effort(
        "clearing this node's published position",
        ctx.cluster.delete_private(
            &position_attribute(env.resource()),
            &ctx.node,
            &ctx.deadline,
        ),
    );
    let mut state = load_state(&ctx);
    state.forget();
    if set_score(&ctx, &ctx.node, PROMOTED_SCORE) {
        state.scores.insert(ctx.node.to_string(), PROMOTED_SCORE);
    }
    save_state(&ctx, &state);
    Ok(Outcome::ok())
}

/// Observes what a promotion depends on, asks [`decide::promote`], and
/// acts on a refusal (hands the promotion to a peer ahead) or on the plan
/// (resumes paused replay). Returns the `synchronous_standby_names` to
/// promote with.
fn promote_standby_safely(ctx: &Ctx<'_>, db: &Db, st: &LocalStatus) -> Result<&'static str, Error> {
    // Observe.
    let primary_at = primary_at(ctx)?;
    let nodes = ctx.cluster.partition(&ctx.deadline).unwrap_or_else(|e| {
        log::warn!("cannot list the partition's nodes: {e}");
        Vec::new()
    });
    let peers = published_positions(ctx, &nodes);
    let own = st.position();
    if let Some(own) = own {
        let members: Vec<&str> = nodes.iter().map(|n| n.as_str()).collect();
        let seen: Vec<String> = peers.iter().map(|(n, p)| format!("{n} at {p}")).collect();
        log::info!(
            "this node is at {own}; partition: {}; standbys published: {}",
            members.join(" "),
            if seen.is_empty() {
                "none".to_string()
            } else {
                seen.join(", ")
            }
        );
    }
    // Decide.
    let facts = PromoteFacts {
        primary_at: &primary_at,
        own,
        peers: &peers,
        replay_paused: st.replay_paused,
        sync: ctx.cfg.sync_replication,
    };
    // Act.
    let plan = match decide::promote(&facts) {
        Ok(plan) => plan,
        Err(refusal) => return Err(refuse_promotion(ctx, refusal)),
    };
    if plan.resume_replay_first {
        log::warn!("WAL replay is paused; resuming it before promotion");
        db.execute("pg_wal_replay_resume()", "SELECT pg_wal_replay_resume()")?;
        let target = st.receive_lsn.unwrap_or_default();
        let caught_up = wait_until(&ctx.deadline, || {
            db.status()
                .map(|s| s.replay_lsn.unwrap_or_default() >= target)
                .unwrap_or(false)
        });
        if !caught_up {
            return Err(Error::Failed(format!(
                "replay did not reach the received WAL ({target}) before the timeout"
            )));
        }
    }
    Ok(plan.synchronous_standby_names)
}

/// The positions the other standbys of this partition published before the
/// promotion. Standbys outside the partition are ignored, as Pacemaker
/// ignores their scores.
fn published_positions(ctx: &Ctx<'_>, nodes: &[NodeName]) -> Vec<(String, Position)> {
    let attr = position_attribute(ctx.env.resource());
    let published = match ctx.cluster.read_private(&attr, nodes, &ctx.deadline) {
        Ok(v) => v,
        Err(e) => {
            log::warn!(
                "cannot read the standbys' positions ({e}); promoting on this node's data alone"
            );
            Vec::new()
        }
    };
    published
        .into_iter()
        .filter(|(n, _)| *n != ctx.node)
        .filter_map(|(n, v)| match v.parse::<Position>() {
            Ok(p) => Some((n.to_string(), p)),
            Err(e) => {
                log::warn!("ignoring the position published by {n}: {e}");
                None
            }
        })
        .collect()
}

/// The error a refused promotion exits with; a peer ahead gets the
/// promotion handed over first: the next transition promotes it, as PAF
/// does, but with the ranking the right way round.
fn refuse_promotion(ctx: &Ctx<'_>, refusal: PromoteRefusal) -> Error {
    let why = match refusal {
        PromoteRefusal::PrimaryAnswers => {
            format!(
                "a writable primary already answers at {}",
                primary_desc(ctx)
            )
        }
        PromoteRefusal::CannotTell(r) => {
            format!(
                "cannot tell whether {} is a primary: {r}",
                primary_desc(ctx)
            )
        }
        PromoteRefusal::Untrusted(e) => {
            format!("cannot tell whether primary_host is a primary: {e}")
        }
        PromoteRefusal::NoPosition => {
            return Error::Failed("cannot read this standby's WAL position".into())
        }
        PromoteRefusal::PeerAhead { peer, peer_at, own } => {
            if let Ok(n) = NodeName::new(&peer) {
                set_score(ctx, &n, decide::AHEAD_SCORE);
            }
            set_score(ctx, &ctx.node, CANDIDATE_SCORE);
            format!("{peer} is ahead ({peer_at}) of this node ({own})")
        }
    };
    Error::PromotionRefused(why)
}

fn promote_redis(ctx: &Ctx<'_>) -> Result<(), Error> {
    if !matches!(
        redis::process_state(&ctx.redis),
        redis::ProcessState::Running(_)
    ) {
        start_redis_replica(ctx)?;
    }
    let mut c = redis_local(ctx)?;
    if c.info_replication()?.role != Role::Master {
        c.replicaof(None)?;
        log::info!("Redis promoted");
    }
    let ok = wait_until(
        &ctx.deadline,
        || matches!(c.info_replication(), Ok(i) if i.role == Role::Master),
    );
    if ok {
        Ok(())
    } else {
        Err(Error::Failed("Redis did not become master".into()))
    }
}

// ---------------------------------------------------------------- demote

/// `demote`: PostgreSQL stopped cleanly and restarted as a standby of
/// primary_host; Redis made its replica.
pub fn demote(env: &OcfEnv, deadline: Deadline) -> Result<Outcome, Error> {
    let cfg = Config::from_env(env)?;
    cfg.check_host()?;
    let ctx = Ctx::new(env, deadline)?;
    if let ProcessState::Running(_) = ctx.pg.process_state() {
        let db = local_db(&ctx)?;
        if !db.in_recovery()? {
            // A standby that started streaming since this primary's last
            // monitor has no promotion score yet (its stop deleted it): score
            // every streaming standby now, or a switchover right after a
            // rejoin leaves no node to promote (seen in the cluster tests).
            score_streaming_standbys(&ctx, &db);
            drop(db);
            log::info!("stopping the primary to restart it as a standby");
            ctx.pg.stop(&ctx.deadline)?;
        }
    }
    start_postgres_standby(&ctx)?;
    start_redis_replica(&ctx)?;
    wait_ready(&ctx)?;
    let mut state = load_state(&ctx);
    state.forget();
    if set_score(&ctx, &ctx.node, CANDIDATE_SCORE) {
        state.scores.insert(ctx.node.to_string(), CANDIDATE_SCORE);
    }
    save_state(&ctx, &state);
    log::info!("demoted, following {}", primary_desc(&ctx));
    Ok(Outcome::ok())
}

/// Sets the promotion score of every standby streaming from this primary
/// within maxlag (as the primary's monitor does), best effort.
fn score_streaming_standbys(ctx: &Ctx<'_>, db: &Db) {
    let rows = match db.standbys() {
        Ok(r) => r,
        Err(e) => {
            log::warn!("cannot read pg_stat_replication before the demote: {e}");
            return;
        }
    };
    let none: [&str; 0] = [];
    let want = decide::standby_scores(&rows, ctx.cfg.maxlag, None, none, ctx.node.as_str());
    for (node, score) in want.iter().filter(|(_, s)| **s > CANDIDATE_SCORE) {
        if let Ok(n) = NodeName::new(node) {
            set_score(ctx, &n, *score);
        }
    }
}

// ---------------------------------------------------------------- monitor

/// `monitor`: 8 promoted, 0 unpromoted, 7 cleanly stopped, 9/1 failed,
/// 191/190 degraded. In steady state: two socket connections, no process.
pub fn monitor(env: &OcfEnv, deadline: Deadline) -> Result<Outcome, Error> {
    if env.tester_fail_have_binary() && env.is_probe() {
        return Ok(Outcome::code(OcfRc::NotRunning));
    }
    let ctx = match Ctx::new(env, deadline) {
        Ok(c) => c,
        // A probe on a node where the service cannot even be configured
        // finds it not running; anything else is a configuration error.
        Err(Error::Config(c)) if env.is_probe() && c.rc() != OcfRc::ErrConfigured => {
            return Ok(Outcome::code(OcfRc::NotRunning))
        }
        Err(e) => return Err(e),
    };
    if env.is_probe() {
        // Pacemaker may have restarted and lost the node attributes: a probe
        // re-asserts every score.
        forget_scores(&ctx);
    }
    let pg = ctx.pg.process_state();
    let rd = redis::process_state(&ctx.redis);
    let was_primary = !ctx.pg.is_standby_configured();
    let failed = |reason: String| {
        let rc = if was_primary {
            OcfRc::FailedPromoted
        } else {
            OcfRc::ErrGeneric
        };
        Ok(Outcome::because(rc, reason))
    };
    if env.is_probe()
        && !matches!(pg, ProcessState::Running(_))
        && !matches!(rd, redis::ProcessState::Running(_))
    {
        // After a power loss the pid files are stale but nothing runs.
        // Reporting a failure would count against migration-threshold at
        // every reboot; start cleans up and recovers as a standby.
        if pg != ProcessState::Stopped || rd != redis::ProcessState::NotRunning {
            log::info!("probe: nothing runs (stale pid files from a crash or power loss)");
        }
        return Ok(Outcome::code(OcfRc::NotRunning));
    }
    match (pg, &rd) {
        (ProcessState::Stopped, redis::ProcessState::NotRunning) => {
            return Ok(Outcome::code(OcfRc::NotRunning))
        }
        (ProcessState::Crashed(pid), _) => {
            return failed(format!(
                "PostgreSQL postmaster {pid} died (stale postmaster.pid)"
            ))
        }
        (ProcessState::Stopped, _) => return failed("PostgreSQL is stopped but Redis runs".into()),
        (ProcessState::Running(_), redis::ProcessState::Crashed(pid)) => {
            return failed(format!("Redis {pid} died (stale pidfile)"))
        }
        (ProcessState::Running(_), redis::ProcessState::NotRunning) => {
            return failed("Redis is not running".into())
        }
        (ProcessState::Running(_), redis::ProcessState::Running(_)) => {}
    }
    let db = match local_db(&ctx) {
        Ok(db) => db,
        Err(Error::Postgres(e)) if !was_primary && e.is_cannot_connect_now() => {
            return Ok(Outcome::because(
                OcfRc::Degraded,
                "standby still recovering: not accepting connections yet",
            ))
        }
        Err(e) => return failed(e.to_string()),
    };
    // Redis is asked on a helper thread while PostgreSQL answers the status
    // query: the monitor waits for the slower of the two, not for both in
    // turn. The answers are looked at in the same order as ever.
    let redis_info = local_redis_info_soon(&ctx);
    // On a primary, its view of the standbys comes in the same round trip.
    let status = if was_primary {
        db.status_and_standbys().map(|(st, sb)| (st, Some(sb)))
    } else {
        db.status().map(|st| (st, None))
    };
    let (st, standbys) = match status {
        Ok(s) => s,
        Err(e) => return failed(e.to_string()),
    };
    let info = match redis_info() {
        Ok(i) => i,
        Err(e) => return failed(e.to_string()),
    };
    if st.in_recovery {
        monitor_standby(&ctx, &st, &info)
    } else {
        monitor_primary(&ctx, &db, &st, &info, standbys)
    }
}

/// Starts `INFO replication` of the local Redis on a helper thread, so that
/// it overlaps with PostgreSQL's queries, and returns what waits for the
/// answer (asking there and then if no thread could be started). Bounded
/// like [`redis_local`].
///
/// Call it only once connected to PostgreSQL: that connection switches the
/// effective uid of the whole process for peer authentication, and glibc
/// does so in every thread by a signal, which would open Redis's socket as
/// `system_user` and interrupt its reads (EINTR on a socket with a timeout).
fn local_redis_info_soon<'c>(
    ctx: &'c Ctx<'_>,
) -> impl FnOnce() -> Result<redis::ReplicationInfo, Error> + 'c {
    let endpoint = ctx.redis.endpoint();
    let password = ctx.cfg.redis_password.clone();
    let timeout = ctx.deadline.cap(ctx.cfg.query_timeout);
    let thread = std::thread::Builder::new()
        .name("redis-info".into())
        .spawn(move || {
            redis::connect(&endpoint, password.as_deref(), timeout)
                .and_then(|mut c| c.info_replication())
        })
        .ok();
    move || match thread {
        Some(t) => match t.join() {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(Error::Failed("the Redis query thread panicked".into())),
        },
        None => Ok(redis_local(ctx)?.info_replication()?),
    }
}

/// `standbys`: `pg_stat_replication` if it was fetched with the status.
fn monitor_primary(
    ctx: &Ctx<'_>,
    db: &Db,
    st: &LocalStatus,
    info: &redis::ReplicationInfo,
    standbys: Option<Result<Vec<StandbyRow>, PgError>>,
) -> Result<Outcome, Error> {
    if info.role != Role::Master {
        return Ok(Outcome::because(
            OcfRc::FailedPromoted,
            "PostgreSQL is primary but Redis is a replica",
        ));
    }
    let standbys = match standbys.unwrap_or_else(|| db.standbys()) {
        Ok(s) => s,
        Err(e) => return Ok(Outcome::because(OcfRc::FailedPromoted, e.to_string())),
    };
    // Promotion scores, set only when they change.
    let mut state = load_state(ctx);
    let own = ctx.node.as_str();
    let mut want = decide::standby_scores(
        &standbys,
        ctx.cfg.maxlag,
        None,
        state.scores.keys().map(String::as_str),
        own,
    );
    want.insert(own.to_string(), PROMOTED_SCORE);
    let mut changed = false;
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
    // Normally done by the post-promote notification; this covers a
    // cluster without notifications. A query, not a process.
    if st.checkpoint_timeline < st.primary_timeline {
        if let Err(e) = checkpoint_new_timeline(ctx) {
            log::warn!("{e}");
        }
    }
    // Synchronous replication follows the streaming standbys.
    let streamers: Vec<String> = decide::streaming_standbys(&standbys, own)
        .iter()
        .map(|s| format!("{} ({})", s.name, s.sync_state))
        .collect();
    let streaming = streamers.len();
    let names = decide::sync_standby_names(ctx.cfg.sync_replication, streaming);
    if st.synchronous_standby_names != names {
        log::info!(
            "synchronous_standby_names = '{names}' (streaming: {})",
            streamers.join(", ")
        );
        if let Err(e) = db.alter_system("synchronous_standby_names", names) {
            return Ok(Outcome::because(OcfRc::FailedPromoted, e.to_string()));
        }
    }
    if ctx.cfg.sync_replication == crate::config::SyncMode::Strict && streaming == 0 {
        return Ok(Outcome::because(
            OcfRc::DegradedPromoted,
            "sync_replication=strict and no standby streams: commits wait",
        ));
    }
    if let Some(reason) = unreachable_at_primary_host(ctx, streaming, info)? {
        return Ok(Outcome::because(OcfRc::DegradedPromoted, reason));
    }
    Ok(Outcome::code(OcfRc::RunningPromoted))
}

/// Whether this primary's PostgreSQL and Redis answer at primary_host, where
/// the standbys and replicas connect: a Redis bound to 127.0.0.1 (Debian's
/// default) or a `listen_addresses` without primary_host leaves every
/// follower retrying forever, and a failover then loses what only the
/// primary had (celery's queue of outgoing SMS). Asked only while some
/// member does not follow ([`decide::self_checks_needed`]). A failure that
/// outlasts two monitor intervals (the VIP starts after the promotion, and
/// followers take a moment to connect) is the degraded reason, with the fix.
fn unreachable_at_primary_host(
    ctx: &Ctx<'_>,
    streaming: usize,
    info: &redis::ReplicationInfo,
) -> Result<Option<String>, Error> {
    let others = ctx
        .env
        .meta(crate::ocf::env::meta::CLONE_MAX)
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(2)
        .saturating_sub(1);
    let (ask_pg, ask_redis) =
        decide::self_checks_needed(others, streaming, info.connected_slaves as usize);
    let mut problems = Vec::new();
    if (ask_pg || ask_redis) && primary_host_is_local(ctx) == Some(false) {
        // The VIP is not (yet) here: right after a promotion it starts only
        // once the promote is done. Connecting would only wait for a
        // connect timeout; followers cannot reach this primary either way.
        problems.push(format!(
            "primary_host {} is not an address of this node: standbys and replicas connecting \
             there cannot reach this primary; primary_host must be the virtual IP colocated with \
             the Promoted role",
            ctx.cfg.primary_host
        ));
    } else if ask_pg {
        let what = match primary_at(ctx)? {
            PrimaryAt::Writable => None,
            PrimaryAt::Standby => Some("a standby answers there, not this primary".to_string()),
            PrimaryAt::NoAnswer(r) | PrimaryAt::Unknown(r) => Some(r),
            PrimaryAt::Untrusted(e) => {
                // Its own fix (the certificate), not listen_addresses.
                problems.push(format!("standbys cannot connect: {e}"));
                None
            }
        };
        if let Some(r) = what {
            problems.push(format!(
                "PostgreSQL does not answer at primary_host {} as {} ({r}): standbys cannot \
                 connect; put primary_host in listen_addresses (or '*') and admit {} from the \
                 peers in pg_hba.conf",
                primary_desc(ctx),
                ctx.cfg.repl_user,
                ctx.cfg.repl_user
            ));
        }
    }
    if ask_redis {
        if let Err(r) = redis_master_at_primary_host(ctx) {
            problems.push(format!(
                "Redis does not answer as master at primary_host {}:{} ({r}): replicas cannot \
                 follow and its data would be lost at a failover; bind Redis to primary_host \
                 too (e.g. bind * -::*) with requirepass set to redis_password",
                ctx.cfg.primary_host, ctx.cfg.redis_primary_port
            ));
        }
    }
    let mut state = load_state(ctx);
    if problems.is_empty() {
        if state.unreachable_since.take().is_some() {
            save_state(ctx, &state);
        }
        return Ok(None);
    }
    let reason = problems.join("; ");
    let now = unix_now();
    let since = *state.unreachable_since.get_or_insert(now);
    save_state(ctx, &state);
    let lasted = now.saturating_sub(since);
    let grace = 2 * ctx.env.interval().as_secs();
    if ctx.env.is_probe() || lasted < grace {
        log::info!("{reason} (for {lasted} s)");
        return Ok(None);
    }
    Ok(Some(format!("{reason} (for {lasted} s)")))
}

/// Whether primary_host resolves to an address of this node's interfaces
/// (`getifaddrs`, no process); `None` when either cannot be read.
fn primary_host_is_local(ctx: &Ctx<'_>) -> Option<bool> {
    let wanted: Vec<std::net::IpAddr> =
        std::net::ToSocketAddrs::to_socket_addrs(&(ctx.cfg.primary_host.as_str(), 0))
            .ok()?
            .map(|sa| sa.ip())
            .collect();
    let local: Vec<std::net::IpAddr> = nix::ifaddrs::getifaddrs()
        .ok()?
        .filter_map(|ifa| {
            let a = ifa.address?;
            a.as_sockaddr_in()
                .map(|v4| std::net::IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| std::net::IpAddr::V6(v6.ip())))
        })
        .collect();
    Some(decide::is_local(&wanted, &local))
}

/// Asks primary_host's Redis whether it is a master; the reason if not.
fn redis_master_at_primary_host(ctx: &Ctx<'_>) -> Result<(), String> {
    match redis_at_primary_host(ctx) {
        RedisAtPrimary::Master => Ok(()),
        RedisAtPrimary::Replica => Err("a replica answers there, not this master".into()),
        RedisAtPrimary::TlsRefused(r) | RedisAtPrimary::NoAnswer(r) => Err(r),
    }
}

/// What answers as Redis at primary_host (over TLS with redis_tls).
fn redis_at_primary_host(ctx: &Ctx<'_>) -> RedisAtPrimary {
    let ep = ctx
        .cfg
        .redis_endpoint(&ctx.cfg.primary_host, ctx.cfg.redis_primary_port);
    let info = redis::connect(
        &ep,
        ctx.cfg.redis_password.as_deref(),
        ctx.deadline.cap(ctx.cfg.connect_timeout),
    )
    .and_then(|mut c| c.info_replication());
    match info {
        Ok(i) if i.role == Role::Master => RedisAtPrimary::Master,
        Ok(_) => RedisAtPrimary::Replica,
        Err(e) if e.is_tls() => RedisAtPrimary::TlsRefused(e.to_string()),
        Err(e) => RedisAtPrimary::NoAnswer(e.to_string()),
    }
}

fn monitor_standby(
    ctx: &Ctx<'_>,
    st: &LocalStatus,
    info: &redis::ReplicationInfo,
) -> Result<Outcome, Error> {
    if info.role == Role::Master {
        return Ok(Outcome::because(
            OcfRc::ErrGeneric,
            "Redis is a master on an unpromoted node",
        ));
    }
    let link_up = info.master_link_status == Some(LinkStatus::Up);
    if st.streaming() && link_up {
        let mut state = load_state(ctx);
        if state.candidate_checked || state.broken_since.is_some() {
            state.candidate_checked = false;
            state.broken_since = None;
            save_state(ctx, &state);
        }
        return Ok(Outcome::ok());
    }
    // Off the steady path: find out whether a primary is there to follow.
    let mut broken = None;
    if !st.streaming() {
        match primary_at(ctx)? {
            PrimaryAt::Writable => {
                broken = Some(format!(
                    "standby not streaming from the primary at {}",
                    primary_desc(ctx)
                ))
            }
            PrimaryAt::Untrusted(e) => broken = Some(format!("standby not streaming: {e}")),
            _ => keep_promotable(ctx),
        }
    }
    if broken.is_none() && !link_up {
        broken = decide::replica_link_problem(
            link_up,
            &redis_at_primary_host(ctx),
            &format!("{}:{}", ctx.cfg.primary_host, ctx.cfg.redis_primary_port),
        );
    }
    let mut state = load_state(ctx);
    let Some(reason) = broken else {
        if state.broken_since.take().is_some() {
            save_state(ctx, &state);
        }
        return Ok(Outcome::ok());
    };
    // Replication (re)connects within seconds after a start or a promotion
    // elsewhere: only a break that outlasts two monitor intervals is
    // degraded (Pacemaker 2.1.5 also lists a degraded monitor among the
    // failed actions). Probes have no history: never degraded.
    let now = unix_now();
    let since = *state.broken_since.get_or_insert(now);
    save_state(ctx, &state);
    let lasted = now.saturating_sub(since);
    let grace = 2 * ctx.env.interval().as_secs();
    if ctx.env.is_probe() || lasted < grace {
        log::info!("{reason} (for {lasted} s)");
        return Ok(Outcome::ok());
    }
    Ok(Outcome::because(
        OcfRc::Degraded,
        format!("{reason} for {lasted} s"),
    ))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A standby with no primary may be the next primary: make sure it has a
/// score, once per episode (one crm_attribute query).
fn keep_promotable(ctx: &Ctx<'_>) {
    let mut state = load_state(ctx);
    if state.candidate_checked {
        return;
    }
    match ctx
        .cluster
        .get_promotion_score(ctx.env.instance(), &ctx.node, &ctx.deadline)
    {
        Ok(Some(s)) => {
            log::debug!("no primary; this standby keeps its score {s}");
            state.candidate_checked = true;
        }
        Ok(None) => {
            log::info!("no primary answers; making this standby promotable");
            state.candidate_checked = set_score(ctx, &ctx.node, CANDIDATE_SCORE);
        }
        Err(e) => log::debug!("cannot read this node's promotion score: {e}"),
    }
    if state.candidate_checked {
        save_state(ctx, &state);
    }
}

// ---------------------------------------------------------------- notify

/// `notify`: never fails (a failed notify would stop the clone). Publishes
/// this standby's position before a promotion, re-points followers after
/// one, and makes the primary re-assert scores when nodes come and go.
pub fn notify(env: &OcfEnv, deadline: Deadline) -> Outcome {
    let Some(n) = env.notification() else {
        return Outcome::ok();
    };
    let ctx = match Ctx::new(env, deadline) {
        Ok(c) => c,
        Err(e) => {
            log::warn!("notify: {e}");
            return Outcome::ok();
        }
    };
    let me = ctx.node.as_str();
    let result = match (n.kind, n.operation) {
        (NotifyKind::Pre, NotifyOp::Promote) => publish_position(&ctx),
        (NotifyKind::Post, NotifyOp::Promote) => {
            best_effort(
                "clearing this node's published position",
                ctx.cluster.delete_private(
                    &position_attribute(env.resource()),
                    &ctx.node,
                    &ctx.deadline,
                ),
            );
            forget_scores(&ctx);
            if n.promote.iter().any(|p| p == me) {
                checkpoint_new_timeline(&ctx)
            } else {
                refollow(&ctx)
            }
        }
        (NotifyKind::Post, NotifyOp::Start | NotifyOp::Stop) => {
            forget_scores(&ctx);
            Ok(())
        }
        _ => Ok(()),
    };
    if let Err(e) = result {
        log::warn!("notify {:?}-{:?}: {e}", n.kind, n.operation);
    }
    Outcome::ok()
}

/// Pre-promote, on every standby: force a restartpoint so the control file's
/// timeline is current, then publish `timeline#lsn` as a private attribute.
fn publish_position(ctx: &Ctx<'_>) -> Result<(), Error> {
    if !matches!(ctx.pg.process_state(), ProcessState::Running(_)) {
        return Ok(());
    }
    let db = local_db(ctx)?;
    let st = db.status()?;
    if !st.in_recovery {
        return Ok(());
    }
    if let Err(e) = db.execute("CHECKPOINT", "CHECKPOINT") {
        log::warn!("restartpoint before publishing the position: {e}");
    }
    let st = db.status()?;
    let Some(pos) = st.position() else {
        return Ok(());
    };
    log::info!("publishing position {pos} for the promotion");
    ctx.cluster.publish_private(
        &position_attribute(ctx.env.resource()),
        &ctx.node,
        &pos.to_string(),
        &ctx.deadline,
    )?;
    Ok(())
}

/// Right after a promotion the control file still names the old timeline
/// until the end-of-recovery checkpoint completes, and pg_rewind compares
/// control files: an old primary checked against it in that window would be
/// told "same timeline, no rewind required" and start on a diverged
/// history. An immediate checkpoint closes the window.
fn checkpoint_new_timeline(ctx: &Ctx<'_>) -> Result<(), Error> {
    let db = local_db(ctx)?;
    let st = db.status()?;
    if !st.in_recovery && st.checkpoint_timeline < st.primary_timeline {
        log::info!("checkpointing so the control file names the new timeline");
        db.execute("CHECKPOINT", "CHECKPOINT")?;
    }
    Ok(())
}

/// Post-promote, on the others: follow primary_host again. A node whose
/// PostgreSQL is a primary is not an "other", whatever the notification's
/// lists say (an empty or garbled promote list): its Redis stays the master.
/// Re-pointing it at primary_host, which is itself, made it a replica of
/// itself, and the next monitor failed the primary.
fn refollow(ctx: &Ctx<'_>) -> Result<(), Error> {
    if matches!(ctx.pg.process_state(), ProcessState::Running(_)) {
        let db = local_db(ctx)?;
        if !db.in_recovery()? {
            log::warn!(
                "post-promote notification that does not name this node, which runs the primary: \
                 nothing re-pointed"
            );
            return Ok(());
        }
        follow_primary(ctx, &db)?;
    }
    if matches!(
        redis::process_state(&ctx.redis),
        redis::ProcessState::Running(_)
    ) {
        follow_redis_primary(ctx)?;
    }
    Ok(())
}
