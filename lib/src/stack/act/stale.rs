//! Stale marks ([`decide::stale_mark`]): the primary marks the nodes that
//! may lack what it acknowledged asynchronously; a standby reads its own
//! mark before it scores itself ([`decide::self_score`]).

use std::collections::BTreeSet;

use super::{load_state, set_score};
use crate::cluster::NodeName;
use crate::postgres::db::StandbyRow;
use crate::postgres::Lsn;
use crate::stack::decide::{self, OwnData, PrimaryAt};
use crate::stack::state::State;
use crate::stack::Ctx;

/// The primary's monitor: sets and clears the marks [`decide::stale_mark`]
/// asks for. The cluster's node list is read only while commits are (or
/// were since the last monitor) asynchronous; otherwise only the nodes in
/// `state` or connected are looked at, each asked once, so the steady
/// state runs nothing. Returns whether `state` changed.
pub(super) fn mark(
    ctx: &Ctx<'_>,
    state: &mut State,
    standbys: &[StandbyRow],
    async_until: Option<Lsn>,
    async_now: bool,
) -> bool {
    let own = ctx.node.as_str();
    let mut nodes: BTreeSet<String> = state.stale.keys().cloned().collect();
    nodes.insert(own.to_string());
    let listed = (async_now && ctx.cfg.sync_replication == crate::config::SyncMode::On)
        .then(|| match ctx.cluster.nodes(&ctx.deadline) {
            Ok(all) => Some(
                all.into_iter()
                    .map(|n| n.to_string())
                    .collect::<BTreeSet<_>>(),
            ),
            Err(e) => {
                log::warn!("cannot list the cluster's nodes to mark them stale: {e}");
                None
            }
        })
        .flatten();
    match listed {
        // A WAL sender that is not a node (pg_basebackup's) is no one to mark.
        Some(all) => nodes.extend(all),
        None => nodes.extend(standbys.iter().map(|r| r.name.clone())),
    }
    let resource = ctx.env.resource();
    let mut changed = false;
    for name in nodes {
        let Ok(node) = NodeName::new(&name) else {
            continue;
        };
        let marked = match state.stale.get(&name) {
            Some(m) => *m,
            None => match ctx.cluster.stale_mark(resource, &node, &ctx.deadline) {
                Ok(v) => {
                    state.stale.insert(name.clone(), v.is_some());
                    changed = true;
                    v.is_some()
                }
                Err(e) => {
                    log::warn!("cannot read the stale mark of {name}: {e}");
                    continue;
                }
            },
        };
        // The primary itself has every commit.
        let complete = name == own
            || decide::has_async_commits(standbys.iter().find(|r| r.name == name), async_until);
        let Some(want) = decide::stale_mark(ctx.cfg.sync_replication, complete, marked, async_now)
        else {
            continue;
        };
        let value = want.then(|| format!("{own}@{}", async_until.unwrap_or_default()));
        match ctx
            .cluster
            .set_stale(resource, &node, value.as_deref(), &ctx.deadline)
        {
            Ok(()) => {
                if want {
                    log::warn!(
                        "{name} marked stale: it may lack commits acknowledged without a standby \
                         (up to {}); it is not promoted until it streams past them or an operator \
                         accepts the loss",
                        async_until.unwrap_or_default()
                    );
                } else {
                    log::info!("{name}'s stale mark cleared");
                }
                state.stale.insert(name, want);
                changed = true;
            }
            Err(e) => log::warn!("cannot set the stale mark of {name}: {e}"),
        }
    }
    changed
}

/// A standby with no primary: gives itself a score if
/// [`decide::self_score`] says so, reading its score and its stale mark.
/// Returns whether the question is settled (asked, and a score set if one
/// was due).
pub(super) fn score_self(ctx: &Ctx<'_>, primary_at: &PrimaryAt) -> bool {
    if matches!(primary_at, PrimaryAt::Writable) {
        return true;
    }
    let current =
        match ctx
            .cluster
            .get_promotion_score(ctx.env.instance(), &ctx.node, &ctx.deadline)
        {
            Ok(s) => s,
            Err(e) => {
                log::debug!("cannot read this node's promotion score: {e}");
                return false;
            }
        };
    let stale = match ctx
        .cluster
        .stale_mark(ctx.env.resource(), &ctx.node, &ctx.deadline)
    {
        Ok(Some(v)) => {
            log::warn!(
                "no primary, and this node is marked stale ({v}): the last primary acknowledged \
                 commits it may lack; it is not made promotable. To accept that loss: \
                 crm_attribute --node {} --name master-{} --lifetime reboot --update=1",
                ctx.node,
                ctx.env.resource()
            );
            true
        }
        Ok(None) => false,
        // "I cannot tell" is not "not stale".
        Err(e) => {
            log::warn!("cannot read this node's stale mark ({e}): not scoring itself");
            return false;
        }
    };
    let own = load_state(ctx).own_data;
    match decide::self_score(primary_at, current, stale, own) {
        Some(score) => {
            if own == OwnData::FailedPrimary {
                log::info!(
                    "no primary answers, and this node holds the failed primary's WAL: \
                     scoring it above its standbys, to recover the primary in place"
                );
            } else {
                log::info!("no primary answers; making this standby promotable");
            }
            set_score(ctx, &ctx.node, score)
        }
        None => true,
    }
}
