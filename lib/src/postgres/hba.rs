//! Which `pg_hba.conf` line decides a connection, evaluated from the rows of
//! `pg_hba_file_rules` (pure).
//!
//! The preflight connects from this node to every peer, which proves the
//! peers' `pg_hba.conf` admits this node. The other direction (a peer
//! connecting here, as it will when this node is the primary) is decided by
//! this node's file, read from `pg_hba_file_rules` (a superuser view) and
//! evaluated the way PostgreSQL does (`check_hba` in `src/backend/libpq/hba.c`):
//! the first line whose connection type, database, user and address all match
//! decides; `reject` refuses; no matching line refuses too.
//!
//! Note that `pg_hba_file_rules` shows the file as it is on disk, not
//! necessarily what the server has loaded (a reload loads it).

use std::net::IpAddr;

/// One row of `pg_hba_file_rules`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HbaRule {
    /// `line_number`.
    pub line: u32,
    /// `type`: `local`, `host`, `hostssl`, `hostnossl`, `hostgssenc`, `hostnogssenc`.
    pub conn_type: String,
    /// `database`, as listed (`all`, `replication`, `sameuser`, names...).
    pub databases: Vec<String>,
    /// `user_name`, as listed (`all`, `+group`, names...).
    pub users: Vec<String>,
    /// `address`: an IP, `all`, `samehost`, `samenet`, or a host name.
    pub address: Option<String>,
    /// `netmask`, for an IP address.
    pub netmask: Option<String>,
    /// `auth_method`.
    pub auth_method: String,
    /// `error`: the line could not be read; the server ignores the whole
    /// file when reloading then, and keeps the rules it had.
    pub error: Option<String>,
}

/// The query that gives [`HbaRule`]s, in [`parse_rows`]'s column order.
pub const RULES_SQL: &str = "SELECT line_number::text, type, array_to_string(database, chr(31)), \
  array_to_string(user_name, chr(31)), address, netmask, auth_method, error \
  FROM pg_hba_file_rules ORDER BY line_number";

/// Reads [`RULES_SQL`] rows.
pub fn parse_rows(rows: &[Vec<Option<String>>]) -> Vec<HbaRule> {
    let col = |r: &[Option<String>], i: usize| r.get(i).cloned().flatten();
    let list = |v: Option<String>| -> Vec<String> {
        v.map(|s| {
            s.split('\u{1f}')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
    };
    rows.iter()
        .map(|r| HbaRule {
            line: col(r, 0).and_then(|v| v.parse().ok()).unwrap_or(0),
            conn_type: col(r, 1).unwrap_or_default(),
            databases: list(col(r, 2)),
            users: list(col(r, 3)),
            address: col(r, 4),
            netmask: col(r, 5),
            auth_method: col(r, 6).unwrap_or_default(),
            error: col(r, 7),
        })
        .collect()
}

/// The database a connection asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbRequest<'a> {
    /// A physical replication connection (only the `replication` keyword
    /// matches it; `all` does not).
    Replication,
    /// An ordinary connection to this database.
    Named(&'a str),
}

/// A TCP connection to judge.
#[derive(Debug, Clone, Copy)]
pub struct HbaRequest<'a> {
    /// Database.
    pub database: DbRequest<'a>,
    /// Role.
    pub user: &'a str,
    /// Roles the user is a member of (for `+group` and `samerole`).
    pub member_of: &'a [String],
    /// The client's address.
    pub addr: IpAddr,
    /// Whether the connection uses TLS.
    pub ssl: bool,
}

/// What `pg_hba.conf` does with a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HbaVerdict {
    /// A line admits it (the method may still ask a password).
    Admitted {
        /// The line number.
        line: u32,
        /// The auth method (`scram-sha-256`, `md5`, `trust`...).
        method: String,
    },
    /// A `reject` line matches first.
    Rejected {
        /// The line number.
        line: u32,
    },
    /// No line matches: PostgreSQL refuses ("no pg_hba.conf entry").
    NoEntry,
    /// A line before any decision names its clients by host name,
    /// `samehost` or `samenet`, which a pure evaluation cannot resolve.
    Undecided {
        /// The line number.
        line: u32,
        /// The address as written.
        address: String,
    },
}

fn type_matches(t: &str, ssl: bool) -> bool {
    match t {
        "host" | "hostnogssenc" => true,
        "hostssl" => ssl,
        "hostnossl" => !ssl,
        _ => false, // local, hostgssenc
    }
}

fn db_matches(list: &[String], req: &HbaRequest<'_>) -> bool {
    list.iter().any(|d| match req.database {
        DbRequest::Replication => d == "replication",
        DbRequest::Named(name) => match d.as_str() {
            "all" => true,
            "replication" => false,
            "sameuser" => name == req.user,
            "samerole" | "samegroup" => name == req.user || req.member_of.iter().any(|r| r == name),
            other => other == name,
        },
    })
}

fn user_matches(list: &[String], req: &HbaRequest<'_>) -> bool {
    list.iter().any(|u| {
        if u == "all" || u == req.user {
            return true;
        }
        match u.strip_prefix('+') {
            Some(group) => group == req.user || req.member_of.iter().any(|r| r == group),
            None => false,
        }
    })
}

/// Whether `addr` is in `net`/`mask`; `None` when the address is not an IP
/// (a host name, `samehost`, `samenet`).
fn addr_matches(address: &str, netmask: Option<&str>, addr: IpAddr) -> Option<bool> {
    if address == "all" {
        return Some(true);
    }
    let net: IpAddr = address.parse().ok()?;
    let mask: Option<IpAddr> = netmask.and_then(|m| m.parse().ok());
    Some(match (net, addr, mask) {
        (IpAddr::V4(n), IpAddr::V4(a), Some(IpAddr::V4(m))) => {
            let m = u32::from(m);
            u32::from(n) & m == u32::from(a) & m
        }
        (IpAddr::V6(n), IpAddr::V6(a), Some(IpAddr::V6(m))) => {
            let m = u128::from(m);
            u128::from(n) & m == u128::from(a) & m
        }
        (n, a, None) => n == a,
        // An IPv4 client against an IPv6 line (or the reverse) does not match.
        _ => false,
    })
}

/// The line that decides `req` among `rules` (in file order). Lines with an
/// error are skipped (the caller reports them).
pub fn evaluate(rules: &[HbaRule], req: &HbaRequest<'_>) -> HbaVerdict {
    for r in rules.iter().filter(|r| r.error.is_none()) {
        if !type_matches(&r.conn_type, req.ssl)
            || !db_matches(&r.databases, req)
            || !user_matches(&r.users, req)
        {
            continue;
        }
        let address = r.address.as_deref().unwrap_or("all");
        match addr_matches(address, r.netmask.as_deref(), req.addr) {
            Some(false) => continue,
            None => {
                return HbaVerdict::Undecided {
                    line: r.line,
                    address: address.to_string(),
                }
            }
            Some(true) => {}
        }
        return if r.auth_method == "reject" {
            HbaVerdict::Rejected { line: r.line }
        } else {
            HbaVerdict::Admitted {
                line: r.line,
                method: r.auth_method.clone(),
            }
        };
    }
    HbaVerdict::NoEntry
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        line: u32,
        t: &str,
        db: &str,
        user: &str,
        addr: Option<(&str, &str)>,
        m: &str,
    ) -> HbaRule {
        HbaRule {
            line,
            conn_type: t.into(),
            databases: db.split(',').map(str::to_string).collect(),
            users: user.split(',').map(str::to_string).collect(),
            address: addr.map(|a| a.0.to_string()),
            netmask: addr.map(|a| a.1.to_string()),
            auth_method: m.into(),
            error: None,
        }
    }

    /// Debian's shipped pg_hba.conf plus the harness's two lines for the
    /// cluster network.
    fn debian_plus_cluster() -> Vec<HbaRule> {
        vec![
            rule(90, "local", "all", "postgres", None, "peer"),
            rule(95, "local", "all", "all", None, "peer"),
            rule(
                97,
                "host",
                "all",
                "all",
                Some(("127.0.0.1", "255.255.255.255")),
                "scram-sha-256",
            ),
            rule(
                99,
                "host",
                "all",
                "all",
                Some(("::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
                "scram-sha-256",
            ),
            rule(102, "local", "replication", "all", None, "peer"),
            rule(
                103,
                "host",
                "replication",
                "all",
                Some(("127.0.0.1", "255.255.255.255")),
                "scram-sha-256",
            ),
            rule(
                110,
                "host",
                "all",
                "all",
                Some(("10.200.200.0", "255.255.255.0")),
                "scram-sha-256",
            ),
            rule(
                111,
                "host",
                "replication",
                "replicator",
                Some(("10.200.200.0", "255.255.255.0")),
                "scram-sha-256",
            ),
        ]
    }

    fn req<'a>(db: DbRequest<'a>, addr: &str, member_of: &'a [String]) -> HbaRequest<'a> {
        HbaRequest {
            database: db,
            user: "replicator",
            member_of,
            addr: addr.parse().unwrap(),
            ssl: false,
        }
    }

    #[test]
    fn the_first_matching_line_decides() {
        let none: Vec<String> = vec![];
        let table: Vec<(Vec<HbaRule>, DbRequest, &str, HbaVerdict)> = vec![
            // The cluster lines admit a peer for both.
            (
                debian_plus_cluster(),
                DbRequest::Named("postgres"),
                "10.200.200.12",
                HbaVerdict::Admitted {
                    line: 110,
                    method: "scram-sha-256".into(),
                },
            ),
            (
                debian_plus_cluster(),
                DbRequest::Replication,
                "10.200.200.12",
                HbaVerdict::Admitted {
                    line: 111,
                    method: "scram-sha-256".into(),
                },
            ),
            // Debian's file as shipped: a peer has no entry.
            (
                debian_plus_cluster()[..6].to_vec(),
                DbRequest::Replication,
                "10.200.200.12",
                HbaVerdict::NoEntry,
            ),
            (
                debian_plus_cluster()[..6].to_vec(),
                DbRequest::Named("postgres"),
                "10.200.200.12",
                HbaVerdict::NoEntry,
            ),
            // `all` does not cover replication: line 110 alone is not enough.
            (
                debian_plus_cluster()[..7].to_vec(),
                DbRequest::Replication,
                "10.200.200.12",
                HbaVerdict::NoEntry,
            ),
            // A reject line before the cluster lines wins.
            (
                {
                    let mut v = vec![rule(
                        1,
                        "host",
                        "replication",
                        "replicator",
                        Some(("10.200.200.12", "255.255.255.255")),
                        "reject",
                    )];
                    v.extend(debian_plus_cluster());
                    v
                },
                DbRequest::Replication,
                "10.200.200.12",
                HbaVerdict::Rejected { line: 1 },
            ),
            // ... but not for another peer.
            (
                {
                    let mut v = vec![rule(
                        1,
                        "host",
                        "replication",
                        "replicator",
                        Some(("10.200.200.12", "255.255.255.255")),
                        "reject",
                    )];
                    v.extend(debian_plus_cluster());
                    v
                },
                DbRequest::Replication,
                "10.200.200.13",
                HbaVerdict::Admitted {
                    line: 111,
                    method: "scram-sha-256".into(),
                },
            ),
            // hostssl does not admit a connection without TLS.
            (
                vec![rule(
                    5,
                    "hostssl",
                    "replication",
                    "all",
                    Some(("0.0.0.0", "0.0.0.0")),
                    "md5",
                )],
                DbRequest::Replication,
                "10.200.200.12",
                HbaVerdict::NoEntry,
            ),
            // A host name cannot be judged without resolving it.
            (
                vec![rule(
                    7,
                    "host",
                    "all",
                    "all",
                    Some(("node2.example", "")),
                    "md5",
                )],
                DbRequest::Named("postgres"),
                "10.200.200.12",
                HbaVerdict::Undecided {
                    line: 7,
                    address: "node2.example".into(),
                },
            ),
            // sameuser: only the database named like the user.
            (
                vec![rule(8, "host", "sameuser", "all", Some(("all", "")), "md5")],
                DbRequest::Named("postgres"),
                "10.200.200.12",
                HbaVerdict::NoEntry,
            ),
            // An IPv6 line does not take an IPv4 client.
            (
                vec![rule(9, "host", "all", "all", Some(("::", "::")), "md5")],
                DbRequest::Named("postgres"),
                "10.200.200.12",
                HbaVerdict::NoEntry,
            ),
        ];
        for (i, (rules, db, addr, want)) in table.into_iter().enumerate() {
            assert_eq!(evaluate(&rules, &req(db, addr, &none)), want, "case {i}");
        }
    }

    #[test]
    fn group_membership_matches_plus_entries() {
        let rules = vec![rule(
            3,
            "host",
            "replication",
            "+replicators",
            Some(("all", "")),
            "scram-sha-256",
        )];
        let member = vec!["replicators".to_string()];
        let none: Vec<String> = vec![];
        assert!(matches!(
            evaluate(&rules, &req(DbRequest::Replication, "10.0.0.2", &member)),
            HbaVerdict::Admitted { line: 3, .. }
        ));
        assert_eq!(
            evaluate(&rules, &req(DbRequest::Replication, "10.0.0.2", &none)),
            HbaVerdict::NoEntry
        );
    }

    #[test]
    fn lines_with_errors_are_skipped_and_rows_are_parsed() {
        let rows = vec![
            vec![
                Some("4".into()),
                Some("host".into()),
                Some("all".into()),
                Some("all".into()),
                Some("10.0.0.0".into()),
                Some("255.0.0.0".into()),
                Some("reject".into()),
                Some("invalid".into()),
            ],
            vec![
                Some("5".into()),
                Some("host".into()),
                Some("replication\u{1f}postgres".into()),
                Some("replicator".into()),
                Some("10.0.0.0".into()),
                Some("255.0.0.0".into()),
                Some("md5".into()),
                None,
            ],
        ];
        let rules = parse_rows(&rows);
        assert_eq!(rules[1].databases, ["replication", "postgres"]);
        let none: Vec<String> = vec![];
        assert_eq!(
            evaluate(
                &rules,
                &req(DbRequest::Named("postgres"), "10.1.2.3", &none)
            ),
            HbaVerdict::Admitted {
                line: 5,
                method: "md5".into()
            }
        );
    }
}
