//! `INFO replication`: the server's role, its master link and its replicas.
//!
//! The reply is `key:value` lines separated by `\r\n`, with `# Section`
//! headers (<https://redis.io/docs/latest/commands/info/>). Redis adds keys
//! between versions, so unknown keys are ignored; only a missing or unknown
//! `role` is an error, since nothing can be decided without it.

use super::RedisError;

/// What `INFO replication` calls this server's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// `role:master`: accepts writes.
    Master,
    /// `role:slave`: replicates from `master_host:master_port`.
    Replica,
}

/// `master_link_status` of a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkStatus {
    /// `up`: connected to its master and streaming.
    Up,
    /// `down`: not connected, or still in the initial sync.
    Down,
}

/// One `slaveN:ip=...,port=...,state=...,offset=...,lag=...` line of a master.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaEntry {
    /// The replica's address as the master sees it (or `replica-announce-ip`).
    pub ip: String,
    /// The replica's listening port (`replica-announce-port` or `port`).
    pub port: u16,
    /// `online`, `wait_bgsave`, `send_bulk`, ...; empty when absent.
    pub state: String,
    /// The replication offset it acknowledged; -1 when absent.
    pub offset: i64,
    /// Seconds since its last acknowledgement; -1 when absent.
    pub lag: i64,
}

/// The parsed `INFO replication` section.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicationInfo {
    /// `role`.
    pub role: Role,
    /// `master_host` (replicas only).
    pub master_host: Option<String>,
    /// `master_port` (replicas only).
    pub master_port: Option<u16>,
    /// `master_link_status` (replicas only).
    pub master_link_status: Option<LinkStatus>,
    /// `master_link_down_since_seconds` (replicas whose link is down; -1 when
    /// the link was never up).
    pub master_link_down_since_seconds: Option<i64>,
    /// `master_sync_in_progress:1`: a full sync is being received.
    pub master_sync_in_progress: bool,
    /// `connected_slaves`.
    pub connected_slaves: u32,
    /// The `slaveN` lines, in the order Redis printed them.
    pub replicas: Vec<ReplicaEntry>,
    /// `master_replid`: the replication history this server is on.
    pub master_replid: String,
    /// `master_repl_offset`: how far along that history it is.
    pub master_repl_offset: i64,
    /// `slave_repl_offset` (replicas only): what it has processed.
    pub slave_repl_offset: Option<i64>,
}

/// Parses the reply to `INFO replication`.
///
/// Tolerates `\r\n` or `\n`, `#` comments, blank lines and unknown keys. A
/// value that does not parse is treated as absent; a malformed `slaveN` line
/// is skipped. Fails only when `role` is missing or unknown.
pub fn parse_info_replication(text: &str) -> Result<ReplicationInfo, RedisError> {
    let mut role = None;
    let mut info = ReplicationInfo {
        role: Role::Master,
        master_host: None,
        master_port: None,
        master_link_status: None,
        master_link_down_since_seconds: None,
        master_sync_in_progress: false,
        connected_slaves: 0,
        replicas: Vec::new(),
        master_replid: String::new(),
        master_repl_offset: 0,
        slave_repl_offset: None,
    };
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "role" => {
                role = Some(match value {
                    "master" => Role::Master,
                    // Redis 7 still prints "slave"; accept the newer word too.
                    "slave" | "replica" => Role::Replica,
                    other => {
                        return Err(RedisError::Parse {
                            what: "INFO replication",
                            reason: format!("unknown role {:?}", clip(other)),
                        })
                    }
                })
            }
            "master_host" => info.master_host = Some(value.to_string()).filter(|h| !h.is_empty()),
            "master_port" => info.master_port = value.parse().ok(),
            "master_link_status" => {
                info.master_link_status = match value {
                    "up" => Some(LinkStatus::Up),
                    "down" => Some(LinkStatus::Down),
                    _ => None,
                }
            }
            "master_link_down_since_seconds" => {
                info.master_link_down_since_seconds = value.parse().ok()
            }
            "master_sync_in_progress" => info.master_sync_in_progress = value == "1",
            "connected_slaves" => info.connected_slaves = value.parse().unwrap_or(0),
            "master_replid" => info.master_replid = value.to_string(),
            "master_repl_offset" => info.master_repl_offset = value.parse().unwrap_or(0),
            "slave_repl_offset" => info.slave_repl_offset = value.parse().ok(),
            k if is_replica_key(k) => {
                if let Some(entry) = parse_replica_entry(value) {
                    info.replicas.push(entry);
                }
            }
            _ => {}
        }
    }
    match role {
        Some(role) => Ok(ReplicationInfo { role, ..info }),
        None => Err(RedisError::Parse {
            what: "INFO replication",
            reason: format!("no role line in {:?}", clip(text)),
        }),
    }
}

/// `slave0`, `slave1`, ...
fn is_replica_key(key: &str) -> bool {
    key.strip_prefix("slave")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// `ip=127.0.0.1,port=26380,state=online,offset=50,lag=0`; `None` without a
/// usable ip and port.
fn parse_replica_entry(value: &str) -> Option<ReplicaEntry> {
    let (mut ip, mut port) = (None, None);
    let mut entry = ReplicaEntry {
        ip: String::new(),
        port: 0,
        state: String::new(),
        offset: -1,
        lag: -1,
    };
    for field in value.split(',') {
        let Some((k, v)) = field.split_once('=') else {
            continue;
        };
        let v = v.trim();
        match k.trim() {
            "ip" => ip = Some(v.to_string()).filter(|s| !s.is_empty()),
            "port" => port = v.parse().ok(),
            "state" => entry.state = v.to_string(),
            "offset" => entry.offset = v.parse().unwrap_or(-1),
            "lag" => entry.lag = v.parse().unwrap_or(-1),
            _ => {}
        }
    }
    Some(ReplicaEntry {
        ip: ip?,
        port: port?,
        ..entry
    })
}

/// The start of `s`, for error messages.
fn clip(s: &str) -> String {
    const MAX: usize = 60;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from Redis 7.0.15 (Debian 12) with `redis-cli -p N info
    // replication` on loopback test instances, bytes unchanged.

    // A master with one replica in sync.
    const MASTER_ONE_REPLICA: &str = "\
        # Replication\r\n\
        role:master\r\n\
        connected_slaves:1\r\n\
        slave0:ip=127.0.0.1,port=26380,state=online,offset=50,lag=0\r\n\
        master_failover_state:no-failover\r\n\
        master_replid:1e2afbfe91edd213f53431eaa2e4357c651208c7\r\n\
        master_replid2:0000000000000000000000000000000000000000\r\n\
        master_repl_offset:50\r\n\
        second_repl_offset:-1\r\n\
        repl_backlog_active:1\r\n\
        repl_backlog_size:1048576\r\n\
        repl_backlog_first_byte_offset:1\r\n\
        repl_backlog_histlen:50\r\n\
    ";

    // A master sending a disk-based full sync (rdb-key-save-delay slowed it).
    const MASTER_REPLICA_SYNCING: &str = "\
        # Replication\r\n\
        role:master\r\n\
        connected_slaves:1\r\n\
        slave0:ip=127.0.0.1,port=26385,state=wait_bgsave,offset=0,lag=0\r\n\
        master_failover_state:no-failover\r\n\
        master_replid:707e57fbc9a1a69ee33ac6d542f2daa4762395bb\r\n\
        master_replid2:0000000000000000000000000000000000000000\r\n\
        master_repl_offset:0\r\n\
        second_repl_offset:-1\r\n\
        repl_backlog_active:1\r\n\
        repl_backlog_size:1048576\r\n\
        repl_backlog_first_byte_offset:1\r\n\
        repl_backlog_histlen:0\r\n\
    ";

    // The replica of MASTER_ONE_REPLICA after its master was killed and it
    // was told REPLICAOF NO ONE.
    const PROMOTED_REPLICA: &str = "\
        # Replication\r\n\
        role:master\r\n\
        connected_slaves:0\r\n\
        master_failover_state:no-failover\r\n\
        master_replid:b9265f4e0f0fe68c75c5f35f7fa8e7a70c65029a\r\n\
        master_replid2:1e2afbfe91edd213f53431eaa2e4357c651208c7\r\n\
        master_repl_offset:50\r\n\
        second_repl_offset:51\r\n\
        repl_backlog_active:1\r\n\
        repl_backlog_size:1048576\r\n\
        repl_backlog_first_byte_offset:1\r\n\
        repl_backlog_histlen:50\r\n\
    ";

    // The replica of MASTER_ONE_REPLICA 3 s after its master was killed -9.
    const REPLICA_LINK_DOWN: &str = "\
        # Replication\r\n\
        role:slave\r\n\
        master_host:127.0.0.1\r\n\
        master_port:26379\r\n\
        master_link_status:down\r\n\
        master_last_io_seconds_ago:-1\r\n\
        master_sync_in_progress:0\r\n\
        slave_read_repl_offset:50\r\n\
        slave_repl_offset:50\r\n\
        master_link_down_since_seconds:3\r\n\
        slave_priority:100\r\n\
        slave_read_only:1\r\n\
        replica_announced:1\r\n\
        connected_slaves:0\r\n\
        master_failover_state:no-failover\r\n\
        master_replid:1e2afbfe91edd213f53431eaa2e4357c651208c7\r\n\
        master_replid2:0000000000000000000000000000000000000000\r\n\
        master_repl_offset:50\r\n\
        second_repl_offset:-1\r\n\
        repl_backlog_active:1\r\n\
        repl_backlog_size:1048576\r\n\
        repl_backlog_first_byte_offset:1\r\n\
        repl_backlog_histlen:50\r\n\
    ";

    // The replica of MASTER_ONE_REPLICA.
    const REPLICA_LINK_UP: &str = "\
        # Replication\r\n\
        role:slave\r\n\
        master_host:127.0.0.1\r\n\
        master_port:26379\r\n\
        master_link_status:up\r\n\
        master_last_io_seconds_ago:9\r\n\
        master_sync_in_progress:0\r\n\
        slave_read_repl_offset:50\r\n\
        slave_repl_offset:50\r\n\
        slave_priority:100\r\n\
        slave_read_only:1\r\n\
        replica_announced:1\r\n\
        connected_slaves:0\r\n\
        master_failover_state:no-failover\r\n\
        master_replid:1e2afbfe91edd213f53431eaa2e4357c651208c7\r\n\
        master_replid2:0000000000000000000000000000000000000000\r\n\
        master_repl_offset:50\r\n\
        second_repl_offset:-1\r\n\
        repl_backlog_active:1\r\n\
        repl_backlog_size:1048576\r\n\
        repl_backlog_first_byte_offset:1\r\n\
        repl_backlog_histlen:50\r\n\
    ";

    // A replica of a port where nothing listens.
    const REPLICA_NEVER_CONNECTED: &str = "\
        # Replication\r\n\
        role:slave\r\n\
        master_host:127.0.0.1\r\n\
        master_port:26399\r\n\
        master_link_status:down\r\n\
        master_last_io_seconds_ago:-1\r\n\
        master_sync_in_progress:0\r\n\
        slave_read_repl_offset:0\r\n\
        slave_repl_offset:0\r\n\
        master_link_down_since_seconds:-1\r\n\
        slave_priority:100\r\n\
        slave_read_only:1\r\n\
        replica_announced:1\r\n\
        connected_slaves:0\r\n\
        master_failover_state:no-failover\r\n\
        master_replid:beb5b381d01b5a98e36d1b84adf04cc18b70e610\r\n\
        master_replid2:0000000000000000000000000000000000000000\r\n\
        master_repl_offset:0\r\n\
        second_repl_offset:-1\r\n\
        repl_backlog_active:0\r\n\
        repl_backlog_size:1048576\r\n\
        repl_backlog_first_byte_offset:0\r\n\
        repl_backlog_histlen:0\r\n\
    ";

    // The replica of MASTER_REPLICA_SYNCING, receiving the full sync.
    const REPLICA_SYNC_IN_PROGRESS: &str = "\
        # Replication\r\n\
        role:slave\r\n\
        master_host:127.0.0.1\r\n\
        master_port:26384\r\n\
        master_link_status:down\r\n\
        master_last_io_seconds_ago:-1\r\n\
        master_sync_in_progress:1\r\n\
        slave_read_repl_offset:0\r\n\
        slave_repl_offset:0\r\n\
        master_sync_total_bytes:-1\r\n\
        master_sync_read_bytes:0\r\n\
        master_sync_left_bytes:-1\r\n\
        master_sync_perc:-0.00\r\n\
        master_sync_last_io_seconds_ago:1\r\n\
        master_link_down_since_seconds:-1\r\n\
        slave_priority:100\r\n\
        slave_read_only:1\r\n\
        replica_announced:1\r\n\
        connected_slaves:0\r\n\
        master_failover_state:no-failover\r\n\
        master_replid:02519d295651371b7c06bedd58001bcf49062f41\r\n\
        master_replid2:0000000000000000000000000000000000000000\r\n\
        master_repl_offset:0\r\n\
        second_repl_offset:-1\r\n\
        repl_backlog_active:0\r\n\
        repl_backlog_size:1048576\r\n\
        repl_backlog_first_byte_offset:0\r\n\
        repl_backlog_histlen:0\r\n\
    ";

    #[test]
    fn a_master_lists_its_online_replica() {
        let info = parse_info_replication(MASTER_ONE_REPLICA).unwrap();
        assert_eq!(
            info,
            ReplicationInfo {
                role: Role::Master,
                master_host: None,
                master_port: None,
                master_link_status: None,
                master_link_down_since_seconds: None,
                master_sync_in_progress: false,
                connected_slaves: 1,
                replicas: vec![ReplicaEntry {
                    ip: "127.0.0.1".into(),
                    port: 26380,
                    state: "online".into(),
                    offset: 50,
                    lag: 0,
                }],
                master_replid: "1e2afbfe91edd213f53431eaa2e4357c651208c7".into(),
                master_repl_offset: 50,
                slave_repl_offset: None,
            }
        );
    }

    #[test]
    fn a_master_feeding_a_full_sync_shows_the_replica_waiting_for_bgsave() {
        let info = parse_info_replication(MASTER_REPLICA_SYNCING).unwrap();
        assert_eq!(info.role, Role::Master);
        assert_eq!(info.replicas.len(), 1);
        assert_eq!(info.replicas[0].state, "wait_bgsave");
        assert_eq!(info.replicas[0].port, 26385);
    }

    #[test]
    fn a_replica_with_its_link_up_reports_master_and_offset() {
        let info = parse_info_replication(REPLICA_LINK_UP).unwrap();
        assert_eq!(info.role, Role::Replica);
        assert_eq!(info.master_host.as_deref(), Some("127.0.0.1"));
        assert_eq!(info.master_port, Some(26379));
        assert_eq!(info.master_link_status, Some(LinkStatus::Up));
        assert_eq!(info.master_link_down_since_seconds, None);
        assert!(!info.master_sync_in_progress);
        assert_eq!(info.slave_repl_offset, Some(50));
        assert_eq!(info.master_repl_offset, 50);
        assert_eq!(info.connected_slaves, 0);
        assert!(info.replicas.is_empty());
    }

    #[test]
    fn a_replica_whose_master_died_reports_how_long_the_link_is_down() {
        let info = parse_info_replication(REPLICA_LINK_DOWN).unwrap();
        assert_eq!(info.role, Role::Replica);
        assert_eq!(info.master_link_status, Some(LinkStatus::Down));
        assert_eq!(info.master_link_down_since_seconds, Some(3));
        // It keeps the history it had: promotion candidates compare these.
        assert_eq!(
            info.master_replid,
            "1e2afbfe91edd213f53431eaa2e4357c651208c7"
        );
        assert_eq!(info.slave_repl_offset, Some(50));
    }

    #[test]
    fn a_replica_whose_master_never_answered_has_never_had_a_link() {
        let info = parse_info_replication(REPLICA_NEVER_CONNECTED).unwrap();
        assert_eq!(info.role, Role::Replica);
        assert_eq!(info.master_port, Some(26399));
        assert_eq!(info.master_link_status, Some(LinkStatus::Down));
        assert_eq!(info.master_link_down_since_seconds, Some(-1));
        assert_eq!(info.slave_repl_offset, Some(0));
        assert!(!info.master_sync_in_progress);
    }

    #[test]
    fn a_replica_receiving_a_full_sync_is_down_and_syncing() {
        let info = parse_info_replication(REPLICA_SYNC_IN_PROGRESS).unwrap();
        assert_eq!(info.master_link_status, Some(LinkStatus::Down));
        assert!(info.master_sync_in_progress);
    }

    #[test]
    fn a_promoted_replica_is_a_master_continuing_the_old_offset() {
        let info = parse_info_replication(PROMOTED_REPLICA).unwrap();
        assert_eq!(info.role, Role::Master);
        assert_eq!(info.master_repl_offset, 50);
        assert_eq!(info.master_host, None);
        assert_eq!(info.connected_slaves, 0);
    }

    #[test]
    fn plain_newlines_and_unknown_keys_are_accepted() {
        let text = REPLICA_LINK_UP.replace("\r\n", "\n") + "some_future_key:42\nno colon here\n";
        assert_eq!(
            parse_info_replication(&text).unwrap(),
            parse_info_replication(REPLICA_LINK_UP).unwrap()
        );
    }

    #[test]
    fn a_malformed_replica_line_is_skipped_not_fatal() {
        let text = "role:master\r\nconnected_slaves:2\r\n\
                    slave0:ip=10.0.0.3,port=bad,state=online\r\n\
                    slave1:ip=::1,port=6380,state=online,offset=7\r\n";
        let info = parse_info_replication(text).unwrap();
        assert_eq!(info.connected_slaves, 2);
        assert_eq!(
            info.replicas,
            vec![ReplicaEntry {
                ip: "::1".into(),
                port: 6380,
                state: "online".into(),
                offset: 7,
                lag: -1,
            }]
        );
    }

    #[test]
    fn output_without_a_role_is_an_error() {
        for text in [
            "",
            "\r\n",
            "# Replication\r\n",
            "connected_slaves:0\r\n",
            "garbage",
        ] {
            let err = parse_info_replication(text).unwrap_err();
            assert!(matches!(err, RedisError::Parse { .. }), "{text:?}: {err:?}");
            assert!(err.to_string().contains("no role"), "{err}");
        }
    }

    #[test]
    fn an_unknown_role_is_an_error() {
        let err = parse_info_replication("role:sentinel\r\n").unwrap_err();
        assert!(
            err.to_string().contains("unknown role \"sentinel\""),
            "{err}"
        );
    }

    #[test]
    fn truncated_output_never_panics() {
        for fixture in [
            MASTER_ONE_REPLICA,
            MASTER_REPLICA_SYNCING,
            REPLICA_LINK_UP,
            REPLICA_LINK_DOWN,
            REPLICA_NEVER_CONNECTED,
            REPLICA_SYNC_IN_PROGRESS,
            PROMOTED_REPLICA,
        ] {
            for end in (0..=fixture.len()).filter(|&i| fixture.is_char_boundary(i)) {
                let _ = parse_info_replication(&fixture[..end]);
            }
        }
        // A reply cut inside the role value names the role it could not read.
        let err = parse_info_replication("# Replication\r\nrole:mas").unwrap_err();
        assert!(err.to_string().contains("\"mas\""), "{err}");
    }

    #[test]
    fn garbage_never_panics() {
        // A fixed pseudo-random stream (an LCG) over bytes that matter to
        // the parser, so failures reproduce.
        let alphabet: Vec<char> = ":,=#\r\n \tslave0role:master-1é\u{0}9".chars().collect();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..2_000 {
            let mut s = String::new();
            for _ in 0..(x % 120) {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                s.push(alphabet[(x >> 33) as usize % alphabet.len()]);
            }
            let _ = parse_info_replication(&s);
        }
        let long = "x".repeat(1_000);
        let err = parse_info_replication(&long).unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
    }

    /// Property-based fuzzing of `INFO replication` replies (see
    /// `crate::fuzz_tests`): any text, the recorded replies mutated, and
    /// replies rendered from known values.
    mod fuzz {
        use proptest::prelude::*;
        use proptest::sample::Index;

        use super::*;
        use crate::fuzz_tests::{config, hostile_text};

        const SAMPLES: &[&str] = &[
            MASTER_ONE_REPLICA,
            MASTER_REPLICA_SYNCING,
            PROMOTED_REPLICA,
            REPLICA_LINK_DOWN,
            REPLICA_LINK_UP,
            REPLICA_NEVER_CONNECTED,
            REPLICA_SYNC_IN_PROGRESS,
        ];

        #[derive(Debug, Clone)]
        enum Op {
            DeleteLine(Index),
            DuplicateLine(Index, Index),
            SetValue(Index, String),
            ReplaceLine(Index, String),
            Truncate(Index),
            PlainNewlines,
            Uppercase(Index),
        }

        fn op() -> impl Strategy<Value = Op> {
            let i = any::<Index>;
            prop_oneof![
                2 => i().prop_map(Op::DeleteLine),
                1 => (i(), i()).prop_map(|(a, b)| Op::DuplicateLine(a, b)),
                3 => (i(), hostile_text()).prop_map(|(a, v)| Op::SetValue(a, v)),
                1 => (i(), hostile_text()).prop_map(|(a, v)| Op::ReplaceLine(a, v)),
                2 => i().prop_map(Op::Truncate),
                1 => Just(Op::PlainNewlines),
                1 => i().prop_map(Op::Uppercase),
            ]
        }

        fn apply(text: &str, op: &Op) -> String {
            let mut lines: Vec<String> = text.split("\r\n").map(str::to_string).collect();
            let n = lines.len();
            match op {
                Op::DeleteLine(i) => {
                    lines.remove(i.index(n));
                }
                Op::DuplicateLine(a, b) => {
                    let l = lines[a.index(n)].clone();
                    lines.insert(b.index(n), l);
                }
                Op::SetValue(i, v) => {
                    let l = &mut lines[i.index(n)];
                    if let Some((k, _)) = l.split_once(':') {
                        *l = format!("{k}:{v}");
                    }
                }
                Op::ReplaceLine(i, v) => lines[i.index(n)] = v.clone(),
                Op::Truncate(i) => {
                    let mut end = i.index(text.len() + 1);
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    return text[..end].to_string();
                }
                Op::PlainNewlines => return text.replace("\r\n", "\n"),
                Op::Uppercase(i) => {
                    let l = &mut lines[i.index(n)];
                    *l = l.to_uppercase();
                }
            }
            lines.join("\r\n")
        }

        /// Ok only with a role line whose value is a role; otherwise an error
        /// that says the role is missing, or names the one it got.
        fn check(text: &str) -> Result<(), TestCaseError> {
            let roles: Vec<&str> = text
                .lines()
                .filter_map(|l| l.trim().split_once(':'))
                .filter(|(k, _)| k.trim() == "role")
                .map(|(_, v)| v.trim())
                .collect();
            match parse_info_replication(text) {
                Ok(info) => {
                    let want = match roles.last() {
                        Some(&"master") => Role::Master,
                        Some(&("slave" | "replica")) => Role::Replica,
                        other => {
                            return Err(TestCaseError::fail(format!("role {other:?} accepted")))
                        }
                    };
                    prop_assert_eq!(info.role, want);
                    prop_assert!(info.replicas.iter().all(|r| !r.ip.is_empty()));
                }
                Err(e) => {
                    let msg = e.to_string();
                    if roles.is_empty() {
                        prop_assert!(msg.contains("no role line"), "{}", msg);
                    } else {
                        let bad = roles
                            .iter()
                            .find(|r| !["master", "slave", "replica"].contains(r))
                            .expect("an unknown role");
                        prop_assert!(
                            msg.contains(&format!("unknown role {:?}", clip(bad))),
                            "{}",
                            msg
                        );
                    }
                    // The input is quoted, cut at 60 characters (each at
                    // most 10 bytes once escaped).
                    prop_assert!(msg.len() < 60 * 10 + 100, "{}", msg);
                }
            }
            Ok(())
        }

        fn replica_entry() -> impl Strategy<Value = ReplicaEntry> {
            (
                "[0-9a-f:.]{1,39}",
                1u16..,
                "[a-z_]{0,12}",
                -1i64..,
                -1i64..100_000,
            )
                .prop_map(|(ip, port, state, offset, lag)| ReplicaEntry {
                    ip,
                    port,
                    state,
                    offset,
                    lag,
                })
        }

        fn render(i: &ReplicationInfo) -> String {
            let mut s = String::from("# Replication\r\n");
            let mut line = |k: &str, v: String| s.push_str(&format!("{k}:{v}\r\n"));
            match i.role {
                Role::Master => line("role", "master".into()),
                Role::Replica => {
                    line("role", "slave".into());
                    line("master_host", i.master_host.clone().unwrap_or_default());
                    line(
                        "master_port",
                        i.master_port.map(|p| p.to_string()).unwrap_or_default(),
                    );
                    let link = match i.master_link_status {
                        Some(LinkStatus::Up) => "up",
                        Some(LinkStatus::Down) => "down",
                        None => "",
                    };
                    line("master_link_status", link.into());
                    line(
                        "master_sync_in_progress",
                        u8::from(i.master_sync_in_progress).to_string(),
                    );
                    if let Some(o) = i.slave_repl_offset {
                        line("slave_repl_offset", o.to_string());
                    }
                    if let Some(d) = i.master_link_down_since_seconds {
                        line("master_link_down_since_seconds", d.to_string());
                    }
                }
            }
            line("connected_slaves", i.connected_slaves.to_string());
            for (n, r) in i.replicas.iter().enumerate() {
                line(
                    &format!("slave{n}"),
                    format!(
                        "ip={},port={},state={},offset={},lag={}",
                        r.ip, r.port, r.state, r.offset, r.lag
                    ),
                );
            }
            line("master_failover_state", "no-failover".into());
            line("master_replid", i.master_replid.clone());
            line("master_repl_offset", i.master_repl_offset.to_string());
            s
        }

        fn replication_info() -> impl Strategy<Value = ReplicationInfo> {
            let replica = (
                "[a-z0-9.-]{1,30}",
                any::<u16>(),
                prop::option::of(prop_oneof![Just(LinkStatus::Up), Just(LinkStatus::Down)]),
                prop::option::of(-1i64..1_000_000),
                any::<bool>(),
                prop::option::of(0i64..),
            );
            (
                prop::option::of(replica),
                any::<u32>(),
                prop::collection::vec(replica_entry(), 0..4),
                "[0-9a-f]{40}",
                0i64..,
            )
                .prop_map(|(rep, connected, replicas, replid, offset)| {
                    let mut i = ReplicationInfo {
                        role: Role::Master,
                        master_host: None,
                        master_port: None,
                        master_link_status: None,
                        master_link_down_since_seconds: None,
                        master_sync_in_progress: false,
                        connected_slaves: connected,
                        replicas,
                        master_replid: replid,
                        master_repl_offset: offset,
                        slave_repl_offset: None,
                    };
                    if let Some((host, port, link, down, syncing, slave_offset)) = rep {
                        i.role = Role::Replica;
                        i.master_host = Some(host);
                        i.master_port = Some(port);
                        i.master_link_status = link;
                        i.master_link_down_since_seconds = down;
                        i.master_sync_in_progress = syncing;
                        i.slave_repl_offset = slave_offset;
                    }
                    i
                })
        }

        proptest! {
            #![proptest_config(config(2000))]

            #[test]
            fn any_text_reads_without_panic(text in hostile_text()) {
                check(&text)?;
            }

            #[test]
            fn mutated_replies_read_without_panic(
                which in 0..SAMPLES.len(),
                ops in prop::collection::vec(op(), 1..5),
            ) {
                let mut text = SAMPLES[which].to_string();
                for op in &ops {
                    text = apply(&text, op);
                }
                check(&text)?;
            }

            #[test]
            fn rendered_replies_read_back(info in replication_info()) {
                let text = render(&info);
                prop_assert_eq!(parse_info_replication(&text).unwrap(), info.clone());
                prop_assert_eq!(
                    parse_info_replication(&text.replace("\r\n", "\n")).unwrap(),
                    info
                );
            }
        }
    }
}
