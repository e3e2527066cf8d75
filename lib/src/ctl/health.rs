//! `rapidproctl health`: the old monit "alert-only" checks of this node
//! (CPU, memory, load, disk space, network, the SMS gateway's port), each
//! green, yellow or red against documented thresholds.
//!
//! With `--publish` each result becomes a node health attribute
//! (`attrd_updater --name=#health-<check> --update=<colour>`), which
//! Pacemaker uses when the cluster property `node-health-strategy` is set
//! (`migrate-on-red`: resources leave a node with a red attribute;
//! `only-green`: they leave on yellow too). Attributes: `#health-cpu`,
//! `#health-memory`, `#health-load`, `#health-disk` (the worst of the
//! disks), `#health-network`, and `#health-gateway` when a gateway is given.
//!
//! Default thresholds (each a flag of the command):
//!
//! | check | yellow | red |
//! |---|---|---|
//! | CPU busy over the sample (~200 ms) | ≥ 90 % | never, unless `--cpu-red` |
//! | memory available (`MemAvailable`) | < 20 % | < 10 % |
//! | load, 5-minute average per core | ≥ 2.0 | ≥ 4.0 |
//! | disk free of `/`, pgdata, the Redis `dir` | < 20 % | < 10 % |
//! | network: interfaces with an address | one is down | none up, or the Corosync address is down |
//! | gateway: TCP connect to `--gateway HOST:PORT` | | fails within `--gateway-timeout` |
//!
//! CPU is never red by default: a 200 ms sample measures a moment, and a
//! red `#health-cpu` under `migrate-on-red` would move the primary away on a
//! spike (a backup, a build). Sustained overload shows in the load average,
//! which turns red.
//!
//! JSON: `node`, `status` (worst colour), `checks[]` {`check`, `status`,
//! `value`, `detail`, `attribute`}, `published[]` (attribute names).

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::cluster::{admin, Cluster};
use crate::cmd::{self, Spec};
use crate::deadline::Deadline;

use super::table::Table;
use super::{corosync, postgres::local_config, Error, Outcome};

/// A check's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    /// Fine.
    Green,
    /// Worth a look.
    Yellow,
    /// Act now.
    Red,
}

impl Colour {
    /// `green`, `yellow`, `red`: the values Pacemaker's node health reads.
    pub fn as_str(self) -> &'static str {
        match self {
            Colour::Green => "green",
            Colour::Yellow => "yellow",
            Colour::Red => "red",
        }
    }
}

/// Thresholds; see the module documentation for the defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// CPU busy % for yellow.
    pub cpu_yellow: f64,
    /// CPU busy % for red; `None`: never red (see the module docs).
    pub cpu_red: Option<f64>,
    /// Memory available % below which yellow.
    pub memory_yellow: f64,
    /// Memory available % below which red.
    pub memory_red: f64,
    /// 5-minute load per core for yellow.
    pub load_yellow: f64,
    /// 5-minute load per core for red.
    pub load_red: f64,
    /// Disk free % below which yellow.
    pub disk_yellow: f64,
    /// Disk free % below which red.
    pub disk_red: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            cpu_yellow: 90.0,
            cpu_red: None,
            memory_yellow: 20.0,
            memory_red: 10.0,
            load_yellow: 2.0,
            load_red: 4.0,
            disk_yellow: 20.0,
            disk_red: 10.0,
        }
    }
}

/// What to check and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Thresholds.
    pub thresholds: Thresholds,
    /// The SMS gateway, `HOST:PORT`.
    pub gateway: Option<String>,
    /// TCP connect timeout towards the gateway.
    pub gateway_timeout: Duration,
    /// The PostgreSQL data directory (default: the stack's `pgdata`).
    pub pgdata: Option<PathBuf>,
    /// The Redis data directory (default: `dir` of the stack's `redis_config`).
    pub redis_dir: Option<PathBuf>,
    /// How long CPU use is sampled.
    pub cpu_sample: Duration,
    /// Publish node health attributes.
    pub publish: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            thresholds: Thresholds::default(),
            gateway: None,
            gateway_timeout: Duration::from_secs(2),
            pgdata: None,
            redis_dir: None,
            cpu_sample: Duration::from_millis(200),
            publish: false,
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// `cpu`, `memory`, `load`, `disk /`, `disk pgdata`, `network`, `gateway`.
    pub check: String,
    /// Its colour.
    pub status: Colour,
    /// The measure, as text (`12.5 %`, `0.42`).
    pub value: String,
    /// What it means.
    pub detail: String,
    /// The node health attribute it counts towards.
    pub attribute: String,
}

/// Red at or above `red`, yellow at or above `yellow`.
pub fn colour_high(v: f64, yellow: f64, red: f64) -> Colour {
    if v >= red {
        Colour::Red
    } else if v >= yellow {
        Colour::Yellow
    } else {
        Colour::Green
    }
}

/// Red below `red`, yellow below `yellow`.
pub fn colour_low(v: f64, yellow: f64, red: f64) -> Colour {
    if v < red {
        Colour::Red
    } else if v < yellow {
        Colour::Yellow
    } else {
        Colour::Green
    }
}

/// The aggregate `cpu` line of `/proc/stat`: (busy, total) jiffies, where
/// idle and iowait are not busy (proc(5)).
pub fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest is in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Busy % between two `/proc/stat` samples.
pub fn cpu_percent(a: (u64, u64), b: (u64, u64)) -> f64 {
    let total = b.1.saturating_sub(a.1);
    if total == 0 {
        return 0.0;
    }
    100.0 * b.0.saturating_sub(a.0) as f64 / total as f64
}

/// `MemTotal` and `MemAvailable` of `/proc/meminfo`, in kB.
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let get = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((get("MemTotal:")?, get("MemAvailable:")?))
}

/// The 1-, 5- and 15-minute load averages of `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Option<(f64, f64, f64)> {
    let mut it = text.split_whitespace().map(|x| x.parse::<f64>().ok());
    Some((it.next()??, it.next()??, it.next()??))
}

/// The Redis data directory: the last `dir` directive of a `redis.conf`
/// (`/var/lib/redis` when none).
pub fn redis_dir_of(conf: &str) -> PathBuf {
    conf.lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("dir "))
        .map(|d| d.trim().trim_matches('"'))
        .next_back()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/redis"))
}

/// One network interface, from `ip -j addr show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Up: operstate `UP`, or `UNKNOWN` with a carrier (`LOWER_UP`), as
    /// virtual interfaces report.
    pub up: bool,
    /// A loopback interface.
    pub loopback: bool,
    /// Its addresses.
    pub addresses: Vec<String>,
}

/// Reads `ip -j addr show` (iproute2's JSON).
pub fn parse_ip_addr(json: &str) -> Result<Vec<Interface>, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let arr = v.as_array().ok_or("not a JSON array")?;
    Ok(arr
        .iter()
        .map(|i| {
            let flags: Vec<&str> = i["flags"]
                .as_array()
                .map(|f| f.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            let state = i["operstate"].as_str().unwrap_or("");
            Interface {
                name: i["ifname"].as_str().unwrap_or("").to_string(),
                up: state == "UP" || (state == "UNKNOWN" && flags.contains(&"LOWER_UP")),
                loopback: flags.contains(&"LOOPBACK"),
                addresses: i["addr_info"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x["local"].as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect())
}

/// Judges the interfaces: red if none with an address is up or if the one
/// carrying `ring_addr` (this node's Corosync address) is down; yellow if
/// another interface with an address is down.
pub fn judge_network(ifaces: &[Interface], ring_addr: Option<&str>) -> (Colour, String) {
    let with_addr: Vec<&Interface> = ifaces
        .iter()
        .filter(|i| !i.loopback && !i.addresses.is_empty())
        .collect();
    let up: Vec<&str> = with_addr
        .iter()
        .filter(|i| i.up)
        .map(|i| i.name.as_str())
        .collect();
    let down: Vec<&&Interface> = with_addr.iter().filter(|i| !i.up).collect();
    if up.is_empty() {
        return (Colour::Red, "no interface with an address is up".into());
    }
    if let Some(ring) = ring_addr {
        if let Some(i) = down.iter().find(|i| i.addresses.iter().any(|a| a == ring)) {
            return (
                Colour::Red,
                format!("{} (Corosync address {ring}) is down", i.name),
            );
        }
    }
    if !down.is_empty() {
        let names: Vec<&str> = down.iter().map(|i| i.name.as_str()).collect();
        return (
            Colour::Yellow,
            format!("down: {}; up: {}", names.join(", "), up.join(", ")),
        );
    }
    (Colour::Green, format!("up: {}", up.join(", ")))
}

fn read(path: &str) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

fn cpu_check(o: &Options) -> Result<Check, Error> {
    let a = parse_proc_stat(&read("/proc/stat")?)
        .ok_or_else(|| Error::Usage("/proc/stat: no cpu line".into()))?;
    std::thread::sleep(o.cpu_sample);
    let b = parse_proc_stat(&read("/proc/stat")?)
        .ok_or_else(|| Error::Usage("/proc/stat: no cpu line".into()))?;
    let pct = cpu_percent(a, b);
    let t = &o.thresholds;
    Ok(Check {
        check: "cpu".into(),
        status: colour_high(pct, t.cpu_yellow, t.cpu_red.unwrap_or(f64::INFINITY)),
        value: format!("{pct:.1} %"),
        detail: format!(
            "busy over {} ms (yellow >= {} %, red {})",
            o.cpu_sample.as_millis(),
            t.cpu_yellow,
            match t.cpu_red {
                Some(r) => format!(">= {r} %"),
                None => "never".to_string(),
            }
        ),
        attribute: "#health-cpu".into(),
    })
}

fn memory_check(t: &Thresholds) -> Result<Check, Error> {
    let (total, avail) = parse_meminfo(&read("/proc/meminfo")?)
        .ok_or_else(|| Error::Usage("/proc/meminfo: no MemAvailable".into()))?;
    let pct = if total == 0 {
        0.0
    } else {
        100.0 * avail as f64 / total as f64
    };
    Ok(Check {
        check: "memory".into(),
        status: colour_low(pct, t.memory_yellow, t.memory_red),
        value: format!("{pct:.1} %"),
        detail: format!(
            "available: {} MiB of {} MiB (yellow < {} %, red < {} %)",
            avail / 1024,
            total / 1024,
            t.memory_yellow,
            t.memory_red
        ),
        attribute: "#health-memory".into(),
    })
}

fn load_check(t: &Thresholds) -> Result<Check, Error> {
    let (l1, l5, l15) = parse_loadavg(&read("/proc/loadavg")?)
        .ok_or_else(|| Error::Usage("/proc/loadavg unreadable".into()))?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    let per_core = l5 / cores;
    Ok(Check {
        check: "load".into(),
        status: colour_high(per_core, t.load_yellow, t.load_red),
        value: format!("{per_core:.2}"),
        detail: format!(
            "5-min load per core ({l1:.2} {l5:.2} {l15:.2} on {cores} cores; yellow >= {}, red >= {})",
            t.load_yellow, t.load_red
        ),
        attribute: "#health-load".into(),
    })
}

fn disk_check(label: &str, path: &Path, t: &Thresholds) -> Check {
    let name = format!("disk {label}");
    match nix::sys::statvfs::statvfs(path) {
        Ok(s) => {
            let total = s.blocks() as f64 * s.fragment_size() as f64;
            let free = s.blocks_available() as f64 * s.fragment_size() as f64;
            let pct = if total > 0.0 {
                100.0 * free / total
            } else {
                0.0
            };
            Check {
                check: name,
                status: colour_low(pct, t.disk_yellow, t.disk_red),
                value: format!("{pct:.1} %"),
                detail: format!(
                    "free on {}: {} of {} (yellow < {} %, red < {} %)",
                    path.display(),
                    super::human_bytes(free as u64),
                    super::human_bytes(total as u64),
                    t.disk_yellow,
                    t.disk_red
                ),
                attribute: "#health-disk".into(),
            }
        }
        Err(e) => Check {
            check: name,
            status: Colour::Yellow,
            value: "-".into(),
            detail: format!("cannot stat {}: {e}", path.display()),
            attribute: "#health-disk".into(),
        },
    }
}

fn network_check(ring_addr: Option<&str>) -> Check {
    let out = cmd::run(
        &Spec::new("ip")
            .args(["-j", "addr", "show"])
            .timeout(Duration::from_secs(5)),
    );
    let (status, detail) = match out
        .map_err(|e| e.to_string())
        .and_then(|o| parse_ip_addr(&o.stdout))
    {
        Ok(ifaces) => judge_network(&ifaces, ring_addr),
        Err(e) => (Colour::Yellow, format!("cannot list interfaces: {e}")),
    };
    Check {
        check: "network".into(),
        status,
        value: if status == Colour::Green {
            "up"
        } else {
            "degraded"
        }
        .into(),
        detail,
        attribute: "#health-network".into(),
    }
}

/// TCP connect to `host:port` within `timeout` (each resolved address gets
/// what is left).
pub fn gateway_check(target: &str, timeout: Duration) -> Check {
    let deadline = Deadline::after(timeout);
    let result = (|| -> Result<(), String> {
        let addrs: Vec<_> = target
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {target}: {e}"))?
            .collect();
        let mut last = format!("{target} resolves to no address");
        for a in addrs {
            let left = deadline.remaining();
            if left.is_zero() {
                break;
            }
            match TcpStream::connect_timeout(&a, left) {
                Ok(_) => return Ok(()),
                Err(e) => last = format!("{a}: {e}"),
            }
        }
        Err(last)
    })();
    let (status, value, detail) = match result {
        Ok(()) => (
            Colour::Green,
            "reachable",
            format!("TCP connect to {target} succeeded"),
        ),
        Err(e) => (
            Colour::Red,
            "unreachable",
            format!(
                "TCP connect within {:.1} s failed: {e}",
                timeout.as_secs_f64()
            ),
        ),
    };
    Check {
        check: "gateway".into(),
        status,
        value: value.into(),
        detail,
        attribute: "#health-gateway".into(),
    }
}

/// The worst colour of each attribute, in the order checks were made.
pub fn attribute_colours(checks: &[Check]) -> Vec<(String, Colour)> {
    let mut out: Vec<(String, Colour)> = Vec::new();
    for c in checks {
        match out.iter_mut().find(|(a, _)| *a == c.attribute) {
            Some((_, col)) => *col = (*col).max(c.status),
            None => out.push((c.attribute.clone(), c.status)),
        }
    }
    out
}

/// Runs every check.
pub fn checks(cluster: &Cluster, o: &Options, deadline: &Deadline) -> Result<Vec<Check>, Error> {
    let node = cluster.local_node_name(None, deadline);
    let ring = corosync::parse_nodelist(
        &std::fs::read_to_string(corosync::COROSYNC_CONF).unwrap_or_default(),
    )
    .ok()
    .and_then(|nodes| nodes.into_iter().find(|n| n.name == node.as_str()))
    .map(|n| n.ring0_addr);
    let (pgdata, redis_dir) = match (&o.pgdata, &o.redis_dir) {
        (Some(p), Some(r)) => (p.clone(), r.clone()),
        _ => {
            let cfg = local_config(cluster, deadline);
            let redis = std::fs::read_to_string(&cfg.redis_config)
                .map(|c| redis_dir_of(&c))
                .unwrap_or_else(|_| redis_dir_of(""));
            (
                o.pgdata.clone().unwrap_or(cfg.pgdata),
                o.redis_dir.clone().unwrap_or(redis),
            )
        }
    };
    let t = &o.thresholds;
    let mut v = vec![cpu_check(o)?, memory_check(t)?, load_check(t)?];
    v.push(disk_check("/", Path::new("/"), t));
    v.push(disk_check("pgdata", &pgdata, t));
    v.push(disk_check("redis", &redis_dir, t));
    v.push(network_check(ring.as_deref()));
    if let Some(g) = &o.gateway {
        v.push(gateway_check(g, o.gateway_timeout));
    }
    Ok(v)
}

/// `rapidproctl health`.
pub fn health(cluster: &Cluster, o: &Options, deadline: &Deadline) -> Result<Outcome, Error> {
    let node = cluster.local_node_name(None, deadline).to_string();
    let v = checks(cluster, o, deadline)?;
    let worst = v.iter().map(|c| c.status).max().unwrap_or(Colour::Green);
    let mut published = Vec::new();
    if o.publish {
        for (attr, colour) in attribute_colours(&v) {
            admin::update_local_attribute(&attr, colour.as_str(), deadline)?;
            published.push(attr);
        }
    }
    let mut t = Table::new(&["Check", "Status", "Value", "Detail"]);
    for c in &v {
        t.row(vec![
            c.check.clone(),
            c.status.as_str().to_string(),
            c.value.clone(),
            c.detail.clone(),
        ]);
    }
    let mut text = format!("Health of {node}: {}\n", worst.as_str());
    text.push_str(&t.render());
    if o.publish {
        text.push_str(&format!("published: {}\n", published.join(", ")));
    }
    let json = serde_json::json!({
        "node": node,
        "status": worst,
        "checks": v,
        "published": published,
    });
    Ok(Outcome::with(json, text, worst != Colour::Red))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_use_is_busy_jiffies_over_all_jiffies() {
        let a = parse_proc_stat("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        assert_eq!(a, (200, 1000));
        let b = parse_proc_stat("cpu  150 0 150 750 150 0 0 0 0 0\n").unwrap();
        assert_eq!(cpu_percent(a, b), 50.0);
        assert_eq!(cpu_percent(a, a), 0.0);
        assert!(parse_proc_stat("intr 1 2 3\n").is_none());
    }

    #[test]
    fn memory_and_load_are_read_from_proc() {
        let mem = "MemTotal:       24000000 kB\nMemFree:  1 kB\nMemAvailable:    6000000 kB\n";
        assert_eq!(parse_meminfo(mem), Some((24_000_000, 6_000_000)));
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
        assert_eq!(
            parse_loadavg("0.30 0.67 1.04 2/345 6789\n"),
            Some((0.30, 0.67, 1.04))
        );
        assert_eq!(parse_loadavg("x"), None);
    }

    #[test]
    fn thresholds_colour_each_side() {
        let t = Thresholds::default();
        assert_eq!(colour_high(1.9, t.load_yellow, t.load_red), Colour::Green);
        assert_eq!(colour_high(2.0, t.load_yellow, t.load_red), Colour::Yellow);
        assert_eq!(colour_high(4.0, t.load_yellow, t.load_red), Colour::Red);
        // CPU is never red by default.
        assert_eq!(t.cpu_red, None);
        assert_eq!(colour_low(25.0, t.disk_yellow, t.disk_red), Colour::Green);
        assert_eq!(colour_low(15.0, t.disk_yellow, t.disk_red), Colour::Yellow);
        assert_eq!(colour_low(9.9, t.disk_yellow, t.disk_red), Colour::Red);
    }

    #[test]
    fn the_redis_dir_is_the_last_dir_directive() {
        assert_eq!(
            redis_dir_of("bind 0.0.0.0\ndir /var/lib/redis\n# dir /x\ndir \"/srv/redis\"\n"),
            PathBuf::from("/srv/redis")
        );
        assert_eq!(redis_dir_of(""), PathBuf::from("/var/lib/redis"));
    }

    /// `ip -j addr show` inside a node of the namespaced test cluster.
    const IP_JSON: &str = r#"[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,"operstate":"UNKNOWN","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},{"ifindex":2,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,"operstate":"UP","addr_info":[{"family":"inet","local":"10.200.200.11","prefixlen":24},{"family":"inet","local":"10.200.200.100","prefixlen":24}]},{"ifindex":3,"ifname":"eth1","flags":["BROADCAST","MULTICAST"],"mtu":1500,"operstate":"DOWN","addr_info":[{"family":"inet","local":"192.0.2.5","prefixlen":24}]},{"ifindex":4,"ifname":"eth2","flags":["BROADCAST"],"operstate":"DOWN","addr_info":[]}]"#;

    #[test]
    fn interfaces_are_read_from_ip_json() {
        let i = parse_ip_addr(IP_JSON).unwrap();
        assert_eq!(i.len(), 4);
        assert!(i[0].loopback && i[0].up);
        assert_eq!(i[1].name, "eth0");
        assert!(i[1].up);
        assert_eq!(i[1].addresses, ["10.200.200.11", "10.200.200.100"]);
        assert!(!i[2].up);
        assert!(parse_ip_addr("{}").is_err());
    }

    #[test]
    fn network_is_red_when_the_corosync_interface_is_down() {
        let mut i = parse_ip_addr(IP_JSON).unwrap();
        // eth1 (with an address) is down, eth2 (without) does not count.
        let (c, d) = judge_network(&i, Some("10.200.200.11"));
        assert_eq!(c, Colour::Yellow, "{d}");
        assert_eq!(d, "down: eth1; up: eth0");
        i[2].up = true;
        assert_eq!(judge_network(&i, Some("10.200.200.11")).0, Colour::Green);
        i[1].up = false;
        let (c, d) = judge_network(&i, Some("10.200.200.11"));
        assert_eq!(c, Colour::Red);
        assert_eq!(d, "eth0 (Corosync address 10.200.200.11) is down");
        i[2].up = false;
        assert_eq!(judge_network(&i, None).0, Colour::Red);
    }

    #[test]
    fn the_disk_attribute_takes_the_worst_disk() {
        let mk = |check: &str, status, attribute: &str| Check {
            check: check.into(),
            status,
            value: String::new(),
            detail: String::new(),
            attribute: attribute.into(),
        };
        let v = [
            mk("cpu", Colour::Green, "#health-cpu"),
            mk("disk /", Colour::Green, "#health-disk"),
            mk("disk pgdata", Colour::Red, "#health-disk"),
            mk("disk redis", Colour::Yellow, "#health-disk"),
        ];
        assert_eq!(
            attribute_colours(&v),
            [
                ("#health-cpu".to_string(), Colour::Green),
                ("#health-disk".to_string(), Colour::Red)
            ]
        );
    }

    #[test]
    fn a_closed_gateway_port_is_red_and_an_open_one_green() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let c = gateway_check(&addr, Duration::from_secs(2));
        assert_eq!(c.status, Colour::Green, "{}", c.detail);
        drop(l);
        let c = gateway_check(&addr, Duration::from_secs(2));
        assert_eq!(c.status, Colour::Red, "{}", c.detail);
        assert!(c.detail.contains(&addr), "{}", c.detail);
    }

    #[test]
    fn the_local_checks_run_on_this_machine() {
        let o = Options::default();
        let t = Thresholds::default();
        let cpu = cpu_check(&o).unwrap();
        assert!(cpu.value.ends_with('%'));
        assert!(memory_check(&t).unwrap().detail.contains("MiB"));
        assert_eq!(load_check(&t).unwrap().attribute, "#health-load");
        let d = disk_check("/", Path::new("/"), &t);
        assert!(d.detail.starts_with("free on /:"), "{}", d.detail);
        let missing = disk_check("x", Path::new("/nonexistent/rapidproctl"), &t);
        assert_eq!(missing.status, Colour::Yellow);
    }
}
