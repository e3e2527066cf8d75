//! Whether a stopped node's WAL can follow the primary's timeline, decided
//! from the primary's timeline history and this node's control file: the
//! comparison pg_rewind makes, without pg_rewind.
//!
//! `pg_rewind --dry-run` reads the primary's files through SQL functions
//! (`pg_read_binary_file`, ...) that the replication role may only call
//! with extra grants. With `rewind=false` nothing is rewound, and those
//! grants are not needed for anything else: the history file comes over a
//! replication connection (`TIMELINE_HISTORY`, which needs only the
//! REPLICATION attribute that streaming needs anyway).

use super::Lsn;

/// One line of a timeline history file: `tli` ended at `switchpoint`, where
/// the next timeline began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// A parent timeline.
    pub timeline: u32,
    /// Where it ended.
    pub switchpoint: Lsn,
}

/// Parses a timeline history file (`<tli>\t<lsn>\t<reason>` lines, `#`
/// comments) (pure). `None` if a line is not of that form.
pub fn parse(text: &str) -> Option<Vec<Entry>> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut f = line.split_whitespace();
        let timeline = f.next()?.parse().ok()?;
        let switchpoint = f.next()?.parse().ok()?;
        out.push(Entry {
            timeline,
            switchpoint,
        });
    }
    Some(out)
}

/// Where a stopped node's WAL ends, from its control file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalEnd {
    /// The newest timeline of its WAL.
    pub timeline: u32,
    /// Its last checkpoint (for a cleanly stopped primary, the shutdown
    /// checkpoint: its last record).
    pub checkpoint: Lsn,
    /// A standby's minimum recovery point (0/0 for a primary).
    pub min_recovery: Lsn,
}

/// The verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Same timeline as the primary: nothing forked.
    SameTimeline,
    /// The primary's history passed through this node's timeline and forked
    /// after this node's last record.
    Follows {
        /// Where this node's timeline ended in the primary's history.
        fork: Lsn,
    },
    /// This node has WAL past the point where the primary's history forked.
    Diverged {
        /// The timeline they share.
        timeline: u32,
        /// Where the primary's history left it.
        fork: Lsn,
    },
    /// This node's timeline is not in the primary's history at all.
    NotInHistory,
}

/// Whether `local` can follow a primary on `primary_timeline` with
/// `history` (pure). A shutdown checkpoint record starting before the fork
/// ends at or before it (the fork is a record boundary), as pg_rewind
/// reasons; a standby's minimum recovery point must not pass it either.
pub fn follows(local: &LocalEnd, primary_timeline: u32, history: &[Entry]) -> Follow {
    if local.timeline == primary_timeline {
        return Follow::SameTimeline;
    }
    let Some(entry) = history.iter().find(|e| e.timeline == local.timeline) else {
        return Follow::NotInHistory;
    };
    let fork = entry.switchpoint;
    if local.checkpoint >= fork || local.min_recovery > fork {
        Follow::Diverged {
            timeline: local.timeline,
            fork,
        }
    } else {
        Follow::Follows { fork }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lsn(s: &str) -> Lsn {
        s.parse().unwrap()
    }

    const HISTORY_3: &str = "1\t0/3000148\tno recovery target specified\n\n\
                             2\t0/5000000\tno recovery target specified\n";

    #[test]
    fn history_files_are_read() {
        let h = parse(HISTORY_3).unwrap();
        assert_eq!(
            h,
            vec![
                Entry {
                    timeline: 1,
                    switchpoint: lsn("0/3000148")
                },
                Entry {
                    timeline: 2,
                    switchpoint: lsn("0/5000000")
                },
            ]
        );
        assert_eq!(parse("# nothing\n"), Some(vec![]));
        assert_eq!(parse("1\tnot-an-lsn\tx\n"), None);
    }

    /// The decision table, with the primary on timeline 3.
    #[test]
    fn a_node_follows_only_if_its_wal_ends_before_the_fork() {
        let h = parse(HISTORY_3).unwrap();
        let end = |timeline, checkpoint: &str, min_recovery: &str| LocalEnd {
            timeline,
            checkpoint: lsn(checkpoint),
            min_recovery: lsn(min_recovery),
        };
        let table = [
            // An old primary on timeline 1 whose shutdown checkpoint the new
            // primary received: it starts before the fork.
            (
                end(1, "0/30000D8", "0/0"),
                Follow::Follows {
                    fork: lsn("0/3000148"),
                },
            ),
            // Its checkpoint at or past the fork: WAL the primary lacks.
            (
                end(1, "0/3000148", "0/0"),
                Follow::Diverged {
                    timeline: 1,
                    fork: lsn("0/3000148"),
                },
            ),
            (
                end(1, "0/4000000", "0/0"),
                Follow::Diverged {
                    timeline: 1,
                    fork: lsn("0/3000148"),
                },
            ),
            // A standby that replayed past the fork.
            (
                end(2, "0/4000000", "0/5000100"),
                Follow::Diverged {
                    timeline: 2,
                    fork: lsn("0/5000000"),
                },
            ),
            // A standby whose recovery point is the fork itself.
            (
                end(2, "0/4000000", "0/5000000"),
                Follow::Follows {
                    fork: lsn("0/5000000"),
                },
            ),
            (end(3, "0/9000000", "0/0"), Follow::SameTimeline),
            // Timeline 4 was never the primary's.
            (end(4, "0/1000000", "0/0"), Follow::NotInHistory),
        ];
        for (local, want) in table {
            assert_eq!(follows(&local, 3, &h), want, "{local:?}");
        }
    }

    #[test]
    fn a_primary_on_the_first_timeline_has_no_history_to_follow_into() {
        let local = LocalEnd {
            timeline: 2,
            checkpoint: lsn("0/1000000"),
            min_recovery: lsn("0/0"),
        };
        assert_eq!(follows(&local, 1, &[]), Follow::NotInHistory);
    }
}
