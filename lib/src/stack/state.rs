//! The agent's small state file under `state_dir` (a tmpfs such as /run).
//!
//! Calling `crm_attribute` costs a process and a round trip to the cluster,
//! and every change of a node attribute makes Pacemaker recompute the
//! transition. So the monitor remembers the promotion scores it last set and
//! calls `crm_attribute` only when one changes. Probes, role changes and
//! notifications of nodes coming and going forget them, so a score is
//! re-asserted whenever it could have been lost.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
}

impl State {
    /// The state file of a resource.
    pub fn path(state_dir: &Path, resource: &str) -> PathBuf {
        state_dir.join(format!("{resource}.state.json"))
    }

    /// Loads the state; a missing or unreadable file is an empty state (it
    /// only makes the agent set scores again).
    pub fn load(path: &Path) -> State {
        fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Saves the state atomically.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec(self).unwrap_or_default())?;
        drop(f);
        fs::rename(&tmp, path)
    }

    /// Forgets every remembered score.
    pub fn forget(&mut self) {
        self.scores.clear();
        self.candidate_checked = false;
        self.broken_since = None;
        self.unreachable_since = None;
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
