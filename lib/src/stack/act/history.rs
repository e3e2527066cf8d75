//! Whether local data can follow the primary's history: pg_rewind's dry
//! run (and the rewind), or with `rewind=false` the timeline history over
//! a replication connection.

use super::{primary_desc, source_conninfo};
use crate::postgres::history::{self, Follow};
use crate::postgres::server::ControlData;
use crate::postgres::wire;
use crate::postgres::PgError;
use crate::stack::observe::primary_timeline;
use crate::stack::{Ctx, Error};

/// An old primary can follow the current one only if its WAL does not go
/// past the point where the primary's timeline forked. pg_rewind decides
/// (dry run); rewinds if allowed; otherwise refuses, data untouched.
/// `who` names this node in the exit reason.
///
/// With `rewind=false` the check needs no pg_rewind (and none of the grants
/// pg_rewind needs): the primary's timeline history comes over a replication
/// connection and is compared with this node's control file
/// ([`crate::postgres::history`]).
pub(super) fn check_history(ctx: &Ctx<'_>, who: &str, control: &ControlData) -> Result<(), Error> {
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
pub(super) fn check_history_without_rewind(
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
