//! `stop`.

use super::shutdown::stop_postgres;
use super::{best_effort, forget_scores};
use crate::deadline::Deadline;
use crate::ocf::env::OcfEnv;
use crate::ocf::OcfRc;
use crate::redis;
use crate::stack::{Ctx, Error, Outcome};

/// `stop`: Redis, then PostgreSQL (writes stopped first on a primary; fast
/// shutdown, immediate, then SIGKILL, each bounded: see
/// [`super::shutdown`]), and the node's promotion score. Succeeds when nothing runs, also after a
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
    stop_postgres(&ctx)?;
    best_effort(
        "deleting this node's promotion score",
        ctx.cluster
            .delete_promotion_score(ctx.env.instance(), &ctx.node, &ctx.deadline),
    );
    forget_scores(&ctx);
    log::info!("stopped");
    Ok(Outcome::ok())
}
