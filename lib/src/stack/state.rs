//! The agent's small state file under `state_dir` (a tmpfs such as /run).
//!
//! Calling `crm_attribute` costs a process and a round trip to the cluster,
//! and every change of a node attribute makes Pacemaker recompute the
//! transition. So the monitor remembers the promotion scores it last set and
//! calls `crm_attribute` only when one changes. Probes, role changes and
//! notifications of nodes coming and going forget them, so a score is
//! re-asserted whenever it could have been lost.
//!
//! `state_dir` may be a directory another user can write to: the file is
//! read and written through [`OwnedDir`], never through a link (issue 11).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid};
use serde::{Deserialize, Serialize};

use crate::owned_dir::{self, OwnedDir};
use crate::stack::decide::OwnData;

/// Mode of the state file.
const MODE: u32 = 0o644;

/// What the agent remembers between invocations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct State {
    /// Promotion scores this node set last, by node name.
    pub scores: BTreeMap<String, i64>,
    /// On a standby without a primary: its own score was checked already.
    pub candidate_checked: bool,
    /// On a standby: since when (Unix seconds) replication has been broken
    /// while a primary answers.
    pub broken_since: Option<u64>,
    /// On the primary: since when (Unix seconds) its PostgreSQL or Redis has
    /// not answered at primary_host, where standbys and replicas connect.
    pub unreachable_since: Option<u64>,
    /// On the primary, with `sync_replication=on`: the end of its WAL (an
    /// LSN as a number) up to which commits may have been acknowledged
    /// asynchronously ([`super::decide::async_until`]).
    pub async_until: Option<u64>,
    /// On the primary: the stale marks it knows, by node name (`true`:
    /// marked), so that the steady state asks and writes nothing.
    pub stale: BTreeMap<String, bool>,
    /// On a primary: promoted, and no monitor has run since (the
    /// asynchronous start of a promotion is not an async horizon).
    pub since_promotion: bool,
    /// On a primary about to be demoted: when (Unix seconds) its pre-demote
    /// notification said the same transition promotes another node; the
    /// demote then leaves its own score to that node's promote
    /// ([`crate::stack::decide::demote_own_score`]).
    pub handed_over_at: Option<u64>,
    /// On the node about to be promoted: the nodes its pre-promote
    /// notification said the same transition demotes; promote lowers their
    /// scores beside its own ([`crate::stack::decide::demoted_beside`]).
    pub demoted_beside: Vec<String>,
    /// Whose data this node holds when no primary answers
    /// ([`crate::stack::decide::self_score`]). Not a score: a stop keeps it, as a
    /// recovery in place is a demote, a stop, a start and a promote.
    pub own_data: OwnData,
}

impl State {
    /// The state file of a resource.
    pub fn path(state_dir: &Path, resource: &str) -> PathBuf {
        state_dir.join(format!("{resource}.state.json"))
    }

    /// Loads the state; a missing or unreadable file is an empty state (it
    /// only makes the agent set scores again). A file that is a link, a
    /// FIFO or another user's is not followed, and said so in the log.
    pub fn load(path: &Path) -> State {
        let read =
            split(path).and_then(|(dir, name)| OwnedDir::open(dir, Uid::effective())?.read(name));
        match read {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Ok(None) => State::default(),
            Err(e) => {
                if !e.is_not_found() {
                    log::warn!("{e}; starting from an empty state");
                }
                State::default()
            }
        }
    }

    /// Saves the state atomically, owned by the agent's user, mode 0644.
    pub fn save(&self, path: &Path) -> Result<(), owned_dir::Error> {
        let (dir, name) = split(path)?;
        fs::create_dir_all(dir).map_err(|e| owned_dir::Error {
            path: dir.to_path_buf(),
            reason: owned_dir::Reason::Io(e),
        })?;
        OwnedDir::open(dir, Uid::effective())?.write(
            name,
            &serde_json::to_vec(self).unwrap_or_default(),
            Uid::effective(),
            Gid::effective(),
            MODE,
        )
    }

    /// Forgets every remembered score.
    pub fn forget(&mut self) {
        self.scores.clear();
        self.candidate_checked = false;
        self.broken_since = None;
        self.unreachable_since = None;
        self.async_until = None;
        self.stale.clear();
        // Kept: the post-promote notification forgets the scores right
        // after promote set it, and the asynchronous start of a promotion
        // must not become an async horizon ([`super::decide::async_until`]).
    }
}

/// The directory and the file name of the state file.
fn split(path: &Path) -> Result<(&Path, &str), owned_dir::Error> {
    match (path.parent(), path.file_name().and_then(|n| n.to_str())) {
        (Some(dir), Some(name)) => Ok((dir, name)),
        _ => Err(owned_dir::Error {
            path: path.to_path_buf(),
            reason: owned_dir::Reason::BadName,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_corrupt_file_is_an_empty_state() {
        let dir = std::env::temp_dir().join(format!("rapidpro-state-{}", std::process::id()));
        let p = State::path(&dir, "stack");
        assert_eq!(State::load(&p), State::default());
        fs::create_dir_all(&dir).unwrap();
        fs::write(&p, b"{not json").unwrap();
        assert_eq!(State::load(&p), State::default());
        let mut s = State::default();
        s.scores.insert("node2".into(), 1000);
        s.save(&p).unwrap();
        assert_eq!(State::load(&p), s);
        fs::remove_dir_all(&dir).unwrap();
    }
}
