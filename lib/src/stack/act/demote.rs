//! `demote`.

use super::follow::{start_redis_replica, wait_ready};
use super::start::start_postgres_standby;
use super::{load_state, local_db, primary_desc, save_state, set_score};
use crate::cluster::NodeName;
use crate::deadline::Deadline;
use crate::ocf::env::OcfEnv;
use crate::postgres::db::Db;
use crate::postgres::server::ProcessState;
use crate::stack::decide::{self, OwnData, AHEAD_SCORE, CANDIDATE_SCORE};
use crate::stack::{Ctx, Error, Outcome};

/// `demote`: PostgreSQL stopped cleanly and restarted as a standby of
/// primary_host; Redis made its replica.
pub fn demote(env: &OcfEnv, deadline: Deadline) -> Result<Outcome, Error> {
    let ctx = Ctx::checked(env, deadline)?;
    // Pacemaker demotes the instance it holds Promoted, so no other node was
    // promoted since: a PostgreSQL found down here is the failed primary,
    // whose WAL every standby's is a prefix of.
    let own_data = match ctx.pg.process_state() {
        ProcessState::Running(_) => OwnData::Standby,
        ProcessState::Crashed(_) | ProcessState::Stopped => OwnData::FailedPrimary,
    };
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
    state.own_data = own_data;
    let score = match own_data {
        OwnData::FailedPrimary => {
            log::info!(
                "PostgreSQL was down: this failed primary holds every standby's WAL; scoring it \
                 above them, to recover it in place"
            );
            AHEAD_SCORE
        }
        OwnData::Standby => CANDIDATE_SCORE,
    };
    if set_score(&ctx, &ctx.node, score) {
        state.scores.insert(ctx.node.to_string(), score);
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
