//! WAL positions: LSNs, timelines, and the (timeline, LSN) pairs standbys are
//! ranked by.
//!
//! PAF 2.3.0 ranks standbys with `ORDER BY location ASC`, so the most lagging
//! one gets the best score. Here the order is the derived `Ord` of
//! [`Position`]: a later timeline wins, then a larger LSN. Tests pin it.

use std::fmt;
use std::str::FromStr;

/// A WAL location (`pg_lsn`), printed as PostgreSQL does: `X/Y` in hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

/// Why a WAL location or position did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: expected {expected}")]
pub struct ParseError {
    what: &'static str,
    input: String,
    expected: &'static str,
}

impl FromStr for Lsn {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError {
            what: "LSN",
            input: s.chars().take(64).collect(),
            expected:
                "two hexadecimal numbers of at most 8 digits separated by '/', such as 0/3000060",
        };
        let (hi, lo) = s.trim().split_once('/').ok_or_else(err)?;
        let ok =
            |p: &str| !p.is_empty() && p.len() <= 8 && p.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok(hi) || !ok(lo) {
            return Err(err());
        }
        let hi = u64::from_str_radix(hi, 16).map_err(|_| err())?;
        let lo = u64::from_str_radix(lo, 16).map_err(|_| err())?;
        Ok(Lsn((hi << 32) | lo))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// As PostgreSQL prints it (`0/3000148`), as `rapidproctl` shows it in
/// JSON.
impl serde::Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Lsn {
    /// Bytes from `other` up to `self`, zero when `other` is ahead.
    pub fn bytes_after(self, other: Lsn) -> u64 {
        self.0.saturating_sub(other.0)
    }
}

/// A timeline and a WAL location on it: how far a node's history goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Timeline ID.
    pub timeline: u32,
    /// WAL location.
    pub lsn: Lsn,
}

impl fmt::Display for Position {
    /// `timeline#lsn`, the form published between nodes (as PAF does).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.timeline, self.lsn)
    }
}

impl FromStr for Position {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError {
            what: "position",
            input: s.chars().take(64).collect(),
            expected: "TIMELINE#LSN, such as 2#0/3000060",
        };
        let (tl, lsn) = s.trim().split_once('#').ok_or_else(err)?;
        let timeline = tl.parse::<u32>().map_err(|_| err())?;
        if timeline == 0 {
            return Err(err());
        }
        Ok(Position {
            timeline,
            lsn: lsn.parse().map_err(|_| err())?,
        })
    }
}

/// The timeline in a WAL file name (its first 8 hex digits), as returned by
/// `pg_walfile_name()`.
pub fn timeline_of_walfile(name: &str) -> Option<u32> {
    let t = name.get(..8)?;
    u32::from_str_radix(t, 16).ok().filter(|t| *t > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_round_trip_in_postgres_notation() {
        for s in ["0/0", "0/3000060", "16/B374D848", "FFFFFFFF/FFFFFFFF"] {
            assert_eq!(s.parse::<Lsn>().unwrap().to_string(), s);
        }
        assert_eq!("0/10".parse::<Lsn>().unwrap(), Lsn(16));
        assert_eq!("1/0".parse::<Lsn>().unwrap(), Lsn(1 << 32));
    }

    #[test]
    fn malformed_lsns_are_rejected() {
        for s in [
            "",
            "/",
            "0/",
            "/0",
            "0/3000060/1",
            "g/0",
            "123456789/0",
            "0 /1",
            "-1/0",
            "0x1/0",
        ] {
            assert!(s.parse::<Lsn>().is_err(), "{s:?}");
        }
    }

    #[test]
    fn a_later_timeline_outranks_a_larger_lsn() {
        let a: Position = "2#0/3000000".parse().unwrap();
        let b: Position = "1#0/9000000".parse().unwrap();
        assert!(a > b);
    }

    #[test]
    fn on_one_timeline_the_larger_lsn_ranks_first() {
        let mut v: Vec<Position> = ["1#0/5000000", "1#0/9000000", "1#0/3000000"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        v.sort_by(|a, b| b.cmp(a));
        assert_eq!(v[0].to_string(), "1#0/9000000");
        assert_eq!(v[2].to_string(), "1#0/3000000");
    }

    #[test]
    fn malformed_positions_are_rejected() {
        for s in ["", "#", "1#", "#0/1", "0#0/1", "x#0/1", "1#zz", "1/0/1"] {
            assert!(s.parse::<Position>().is_err(), "{s:?}");
        }
    }

    #[test]
    fn timelines_come_from_wal_file_names() {
        assert_eq!(timeline_of_walfile("000000020000000000000003"), Some(2));
        assert_eq!(timeline_of_walfile("0000000A0000000000000003"), Some(10));
        assert_eq!(timeline_of_walfile("zz"), None);
        assert_eq!(timeline_of_walfile("000000000000000000000003"), None);
    }

    #[test]
    fn bytes_after_saturates() {
        assert_eq!(Lsn(10).bytes_after(Lsn(4)), 6);
        assert_eq!(Lsn(4).bytes_after(Lsn(10)), 0);
    }
}
