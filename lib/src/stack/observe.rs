//! What the actions read, as typed facts: the servers, the data directory,
//! primary_host. All reading of the world that a decision depends on is
//! here or in `act/`; [`super::decide`] only looks at the values.
//!
//! Where a fact still arrives as text from the lower layers (a control-file
//! state, a connection error), it is turned into an enum here, in one place.

use std::time::Duration;

use super::act::{local_db, primary_target, redis_local};
use super::decide::{self, PrimaryAt, RedisAtPrimary, StartFacts};
use super::{Ctx, Error};
use crate::deadline::Deadline;
use crate::postgres::db::{Db, LocalStatus, Reach, StandbyRow};
use crate::postgres::history::{self, Follow};
use crate::postgres::server::{ControlData, ControlState, DataOrigin, ProcessState};
use crate::postgres::PgError;
use crate::redis::{self, Role};

/// The processes a monitor finds, before any connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processes {
    /// PostgreSQL's postmaster.
    pub pg: ProcessState,
    /// The running postmaster is stopped by a signal (SIGSTOP, a debugger).
    pub pg_frozen: bool,
    /// redis-server.
    pub redis: redis::ProcessState,
    /// No `standby.signal`: this instance was the primary.
    pub was_primary: bool,
    /// A probe (interval 0): no history, Pacemaker may have restarted.
    pub probe: bool,
}

/// Reads the processes of this instance (pid files, no connection).
pub fn processes(ctx: &Ctx<'_>) -> Processes {
    let pg = ctx.pg.process_state();
    Processes {
        pg,
        pg_frozen: matches!(pg, ProcessState::Running(pid) if ctx.pg.is_frozen(pid)),
        redis: redis::process_state(&ctx.redis),
        was_primary: !ctx.pg.is_standby_configured(),
        probe: ctx.env.is_probe(),
    }
}

/// Why the local PostgreSQL, whose postmaster runs, gave no session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoSession {
    /// It is starting up (a standby replaying WAL up to consistency): the
    /// error's text.
    StartingUp(String),
    /// Anything else: the error's text.
    Failed(String),
}

/// A session on the local PostgreSQL, or why there is none.
pub fn local_session(ctx: &Ctx<'_>) -> Result<Db, NoSession> {
    local_db(ctx).map_err(|e| match e {
        Error::Postgres(pg) if pg.is_cannot_connect_now() => NoSession::StartingUp(pg.to_string()),
        e => NoSession::Failed(e.to_string()),
    })
}

/// What the monitor asks the running local servers, in one round trip each.
#[derive(Debug)]
pub struct LocalServers {
    /// PostgreSQL's status (recovery, positions, settings).
    pub status: LocalStatus,
    /// On a primary: its `pg_stat_replication`, fetched with the status.
    pub standbys: Option<Result<Vec<StandbyRow>, PgError>>,
    /// Redis's `INFO replication`.
    pub redis: redis::ReplicationInfo,
}

/// Asks the local PostgreSQL (over `db`) and Redis what they are; the
/// error's text if either fails. Redis is asked on a helper thread while
/// PostgreSQL answers the status query: the monitor waits for the slower of
/// the two, not for both in turn. The answers are looked at in the same
/// order as ever (PostgreSQL's error first).
pub fn local_servers(ctx: &Ctx<'_>, db: &Db, was_primary: bool) -> Result<LocalServers, String> {
    let redis_info = local_redis_info_soon(ctx);
    // On a primary, its view of the standbys comes in the same round trip.
    let status = if was_primary {
        db.status_and_standbys().map(|(st, sb)| (st, Some(sb)))
    } else {
        db.status().map(|st| (st, None))
    };
    let (status, standbys) = status.map_err(|e| e.to_string())?;
    let redis = redis_info().map_err(|e| e.to_string())?;
    Ok(LocalServers {
        status,
        standbys,
        redis,
    })
}

/// How stopped data was last stopped, as far as a standby's history check
/// cares: pg_rewind reads only cleanly stopped data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LastStop {
    /// `shut down in recovery`: a standby stopped cleanly.
    CleanInRecovery,
    /// Any other control-file state (the text, for the log).
    Other(String),
}

impl LastStop {
    /// From the control file.
    pub fn of(control: &ControlData) -> LastStop {
        if control.state == ControlState::ShutDownInRecovery {
            LastStop::CleanInRecovery
        } else {
            LastStop::Other(control.state.to_string())
        }
    }
}

/// What a start of stopped data looks at: `primary_at` as already read
/// (trusted), the control file, and the primary's timeline when it matters.
pub fn start_facts(ctx: &Ctx<'_>, primary_at: &PrimaryAt, control: &ControlData) -> StartFacts {
    let origin = DataOrigin::of(
        control,
        ctx.pg.has_backup_label(),
        ctx.pg.is_standby_configured(),
    );
    let primary_timeline = if decide::needs_primary_timeline(origin, primary_at) {
        primary_timeline(ctx)
    } else {
        None
    };
    StartFacts {
        origin,
        primary_at: primary_at.clone(),
        local_timeline: control.newest_timeline(),
        primary_timeline,
        last_stop: LastStop::of(control),
    }
}

/// How long promote waits for a TCP answer at primary_host before it
/// concludes that nobody holds the address. On a LAN the kernel of a live
/// host answers a SYN in well under a millisecond, whatever its PostgreSQL
/// is doing (a hung postmaster's kernel still completes handshakes until
/// its listen backlog is full), so 200 ms is generous; waiting out
/// `connect_timeout` (1 s) here cost every failover a second while the
/// virtual IP was down. connect_timeout's meta-data and README
/// (Performance) say so: a shorter connect_timeout shortens it, nothing
/// lengthens it, as primary_host is on the nodes' own network.
pub const PROMOTE_SYN_WINDOW: Duration = Duration::from_millis(200);

/// Promote's window when Pacemaker's own lists show that the promoted role
/// leaves its every holder in this transition ([`decide::promote_probe`]):
/// the check then only looks for a live host that holds the address
/// without Pacemaker knowing, whose kernel answers within a millisecond.
/// Three SYNs still go out, about 17 ms apart.
pub const RELEASED_SYN_WINDOW: Duration = Duration::from_millis(50);

/// SYNs sent within the window, each on its own connection and spaced
/// evenly: one lost packet does not pass for an empty address, without
/// waiting for the kernel's 1 s retransmission.
pub const SYNS: u32 = 3;

/// Where connections to primary_host are tried, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Start and monitor: `connect_timeout`, one connection.
    Patient,
    /// Promote: [`SYNS`] connections within [`PROMOTE_SYN_WINDOW`] (or
    /// `connect_timeout`, when that is shorter).
    Lan,
    /// Promote, when the promoted role leaves its every holder in this
    /// transition: [`SYNS`] connections within [`RELEASED_SYN_WINDOW`].
    Released,
}

impl Probe {
    /// The window and the number of connections, `connect_timeout` being
    /// the longest window.
    pub fn window(self, connect_timeout: Duration) -> (Duration, u32) {
        match self {
            Probe::Patient => (connect_timeout, 1),
            Probe::Lan => (connect_timeout.min(PROMOTE_SYN_WINDOW), SYNS),
            Probe::Released => (connect_timeout.min(RELEASED_SYN_WINDOW), SYNS),
        }
    }
}

/// Whether anything accepts a TCP connection at one of `addrs` within
/// `window`, trying `syns` connections spaced evenly across it. Returns as
/// soon as one is accepted.
pub fn answers_tcp(addrs: &[std::net::SocketAddr], window: Duration, syns: u32) -> bool {
    let syns = syns.max(1);
    let start = std::time::Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    for k in 0..syns {
        let offset = window * k / syns;
        for &a in addrs {
            let tx = tx.clone();
            // Detached: each ends by itself within the window.
            std::thread::spawn(move || {
                std::thread::sleep(offset);
                let left = window
                    .saturating_sub(start.elapsed())
                    .max(Duration::from_millis(1));
                let _ = tx.send(std::net::TcpStream::connect_timeout(&a, left).is_ok());
            });
        }
    }
    drop(tx);
    loop {
        let left = window.saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok(true) => return true,
            Ok(false) => continue,
            // Every attempt failed (refused: nothing listens), or the
            // window is over.
            Err(_) => return false,
        }
    }
}

/// What answers at primary_host.
pub fn primary_at(ctx: &Ctx<'_>) -> Result<PrimaryAt, Error> {
    primary_at_by(ctx, Probe::Patient)
}

/// What answers at primary_host, its TCP step as `probe` says.
pub fn primary_at_by(ctx: &Ctx<'_>, probe: Probe) -> Result<PrimaryAt, Error> {
    // First a bare TCP connect: nothing there (the virtual IP down during a
    // failover) is known quickly. Whatever accepts it gets the whole
    // query_timeout for the PostgreSQL handshake, and is a possible primary
    // until it says otherwise.
    let addr = format!("{}:{}", ctx.cfg.primary_host, ctx.cfg.primary_port);
    let sockaddrs: Vec<std::net::SocketAddr> = match std::net::ToSocketAddrs::to_socket_addrs(&addr)
    {
        Ok(a) => a.collect(),
        Err(e) => return Ok(PrimaryAt::NoAnswer(format!("cannot resolve {addr}: {e}"))),
    };
    let (window, syns) = probe.window(ctx.cfg.connect_timeout);
    let t = primary_target(ctx);
    let total = Deadline::after(ctx.deadline.cap(ctx.cfg.query_timeout));
    let mut exchange = FIRST_EXCHANGE;
    loop {
        let timeout = ctx.deadline.cap(window).max(Duration::from_millis(1));
        if !answers_tcp(&sockaddrs, timeout, syns) {
            return Ok(PrimaryAt::NoAnswer(format!(
                "no TCP connection within {:.1} s",
                timeout.as_secs_f64()
            )));
        }
        let bound = exchange
            .min(total.remaining())
            .max(Duration::from_millis(1));
        let again = |r: String| {
            if total.expired() {
                // It accepted TCP every time, and never answered: hung.
                Some(PrimaryAt::Unknown(r))
            } else {
                None
            }
        };
        let seen = match Db::reach(&t, bound, bound, &ctx.deadline)? {
            Reach::Connected(db) => match db.in_recovery() {
                Ok(true) => Some(PrimaryAt::Standby),
                Ok(false) => Some(PrimaryAt::Writable),
                Err(e @ PgError::Timeout { .. }) => again(e.to_string()),
                Err(e) => Some(PrimaryAt::Unknown(e.to_string())),
            },
            // It accepted TCP a moment ago: gone since, or hung.
            Reach::NoAnswer(r) => again(r),
            Reach::Refused(e) if e.is_cannot_connect_now() => Some(PrimaryAt::Standby),
            Reach::Refused(e) => Some(PrimaryAt::Unknown(e.to_string())),
            Reach::Tls(e) => Some(PrimaryAt::Untrusted(e)),
        };
        if let Some(seen) = seen {
            return Ok(seen);
        }
        exchange *= 2;
    }
}

/// How long the first PostgreSQL exchange with whatever accepted TCP at
/// primary_host may take before the probe starts over, TCP first; each
/// next one may take twice as long, all within `query_timeout`. A
/// connection the VIP's old holder accepted just before the address left
/// it never hears an answer (seen when promote ran beside the VIP's stop:
/// it waited out the whole `query_timeout`, 10 s, and refused); started
/// over, the probe finds nothing at the address, or its new holder. A hung
/// server accepts TCP every time and never answers: still `Unknown` after
/// `query_timeout`, as before. A slow live one gets ever longer.
pub const FIRST_EXCHANGE: Duration = Duration::from_millis(250);

/// What answers at primary_host, unless it failed TLS: a start does not
/// go on to follow (or to wait for) a server it cannot trust, and says
/// why in its exit reason.
pub fn trusted_primary_at(ctx: &Ctx<'_>) -> Result<PrimaryAt, Error> {
    match primary_at(ctx)? {
        PrimaryAt::Untrusted(e) => {
            log::error!("{e}");
            Err(Error::Failed(e.to_string()))
        }
        other => Ok(other),
    }
}

/// This node's data (`control`) against the newest timeline history file
/// its own `pg_wal` holds past its timeline ([`ControlData::local_end`],
/// [`crate::postgres::server::Server::newest_history`]): `None` when there
/// is none, or it cannot be read (logged: a start then behaves as before,
/// and a monitor waits out its grace).
pub fn local_fork(ctx: &Ctx<'_>, control: &ControlData) -> Option<Follow> {
    let local = control.local_end();
    match ctx.pg.newest_history(local.timeline) {
        Ok(Some((timeline, entries))) => Some(history::follows(&local, timeline, &entries)),
        Ok(None) => None,
        Err(e) => {
            log::warn!("cannot read the timeline history files in pg_wal: {e}");
            None
        }
    }
}

/// [`local_fork`] for a running standby, its control file read by
/// `pg_controldata` (a process: off the steady path only); `None` when that
/// cannot be read either.
pub fn running_fork(ctx: &Ctx<'_>) -> Option<Follow> {
    let control = ctx.pg.controldata(&ctx.deadline).ok()?;
    local_fork(ctx, &control)
}

/// The timeline the primary at primary_host writes, from the name of its
/// current WAL file; `None` when it cannot be read.
pub fn primary_timeline(ctx: &Ctx<'_>) -> Option<u32> {
    let t = primary_target(ctx);
    let q = ctx.cfg.query_timeout;
    let db = match Db::reach(&t, ctx.cfg.connect_timeout, q, &ctx.deadline) {
        Ok(Reach::Connected(db)) => db,
        Ok(_) | Err(_) => return None,
    };
    let row = db
        .row(
            "the primary's timeline",
            "select pg_walfile_name(pg_current_wal_lsn())",
        )
        .ok()?;
    let name = row.into_iter().next().flatten()?;
    u32::from_str_radix(name.get(..8)?, 16).ok()
}

/// it overlaps with PostgreSQL's queries, and returns what waits for the
/// answer (asking there and then if no thread could be started). Bounded
/// like [`redis_local`].
///
/// Call it only once connected to PostgreSQL: that connection switches the
/// effective uid of the whole process for peer authentication, and glibc
/// does so in every thread by a signal, which would open Redis's socket as
/// `system_user` and interrupt its reads (EINTR on a socket with a timeout).
fn local_redis_info_soon<'c>(
    ctx: &'c Ctx<'_>,
) -> impl FnOnce() -> Result<redis::ReplicationInfo, Error> + 'c {
    let endpoint = ctx.redis.endpoint();
    let password = ctx.cfg.redis_password.clone();
    let timeout = ctx.deadline.cap(ctx.cfg.query_timeout);
    let thread = std::thread::Builder::new()
        .name("redis-info".into())
        .spawn(move || {
            redis::connect(&endpoint, password.as_deref(), timeout)
                .and_then(|mut c| c.info_replication())
        })
        .ok();
    move || match thread {
        Some(t) => match t.join() {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(Error::Failed("the Redis query thread panicked".into())),
        },
        None => Ok(redis_local(ctx)?.info_replication()?),
    }
}

/// Whether primary_host resolves to an address of this node's interfaces
/// (`getifaddrs`, no process); `None` when either cannot be read.
pub fn primary_host_is_local(ctx: &Ctx<'_>) -> Option<bool> {
    addresses_are_local(&primary_host_addresses(ctx)?)
}

/// The addresses primary_host resolves to: one lookup (a name goes to the
/// resolver, which may wait out its own timeouts); `None` when it does not
/// resolve. Whoever polls whether primary_host is here resolves it once,
/// then polls [`addresses_are_local`].
pub fn primary_host_addresses(ctx: &Ctx<'_>) -> Option<Vec<std::net::IpAddr>> {
    let wanted = std::net::ToSocketAddrs::to_socket_addrs(&(ctx.cfg.primary_host.as_str(), 0))
        .ok()?
        .map(|sa| sa.ip())
        .collect();
    Some(wanted)
}

/// Whether one of `wanted` is an address of this node's interfaces
/// (`getifaddrs`: no process, no resolver); `None` when they cannot be read.
pub fn addresses_are_local(wanted: &[std::net::IpAddr]) -> Option<bool> {
    let local: Vec<std::net::IpAddr> = nix::ifaddrs::getifaddrs()
        .ok()?
        .filter_map(|ifa| {
            let a = ifa.address?;
            a.as_sockaddr_in()
                .map(|v4| std::net::IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| std::net::IpAddr::V6(v6.ip())))
        })
        .collect();
    Some(decide::is_local(wanted, &local))
}

/// What answers as Redis at primary_host (over TLS with redis_tls).
pub fn redis_at_primary_host(ctx: &Ctx<'_>) -> RedisAtPrimary {
    let ep = ctx
        .cfg
        .redis_endpoint(&ctx.cfg.primary_host, ctx.cfg.redis_primary_port);
    let info = redis::connect(
        &ep,
        ctx.cfg.redis_password.as_deref(),
        ctx.deadline.cap(ctx.cfg.connect_timeout),
    )
    .and_then(|mut c| c.info_replication());
    match info {
        Ok(i) if i.role == Role::Master => RedisAtPrimary::Master,
        Ok(_) => RedisAtPrimary::Replica,
        Err(e) if e.is_tls() => RedisAtPrimary::TlsRefused(e.to_string()),
        Err(e) => RedisAtPrimary::NoAnswer(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, TcpListener};
    use std::time::Instant;

    #[test]
    fn loopback_is_an_address_of_this_host_and_a_documentation_address_is_not() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert_eq!(addresses_are_local(&[ip("127.0.0.1")]), Some(true));
        assert_eq!(addresses_are_local(&[ip("192.0.2.1")]), Some(false));
        assert_eq!(
            addresses_are_local(&[ip("192.0.2.1"), ip("127.0.0.1")]),
            Some(true)
        );
        assert_eq!(addresses_are_local(&[]), Some(false));
    }

    #[test]
    fn a_listening_address_answers_the_probe_at_once() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a: SocketAddr = l.local_addr().unwrap();
        let t = Instant::now();
        assert!(answers_tcp(&[a], PROMOTE_SYN_WINDOW, SYNS));
        assert!(t.elapsed() < PROMOTE_SYN_WINDOW, "{:?}", t.elapsed());
    }

    #[test]
    fn an_address_where_nothing_listens_does_not_answer_and_the_probe_ends_within_its_window() {
        // Bound, then closed: the kernel refuses connections to it.
        let a = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let t = Instant::now();
        assert!(!answers_tcp(&[a], PROMOTE_SYN_WINDOW, SYNS));
        assert!(
            t.elapsed() < PROMOTE_SYN_WINDOW + Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn one_answering_address_among_several_is_enough() {
        let dead = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(answers_tcp(
            &[dead, l.local_addr().unwrap()],
            PROMOTE_SYN_WINDOW,
            SYNS
        ));
    }
}
