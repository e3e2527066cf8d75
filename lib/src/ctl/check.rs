//! `rapidproctl check`: is the configuration right? The replacement of
//! `rapidpro-config`.
//!
//! Checks, each `ok`, `warning` or `error`:
//! - `stack resource`: an `ocf:rapidpro:stack` primitive in a clone;
//! - `parameters`: its parameters pass the agent's own form checks
//!   ([`crate::config::Config::from_env`]);
//! - `clone`: `promotable=true`, `promoted-max=1`, `notify=true`;
//! - `monitors`: one monitor per role, at different intervals;
//! - `primary_host`: the VIP's address (standbys follow the VIP);
//! - `fencing`: `stonith-enabled` is not false;
//! - `node-health-strategy`: what Pacemaker does with `#health-*` attributes;
//! - `validate-all`: the agent's `validate-all` on this node, with the
//!   configured parameters (`crm_resource --validate`), which also checks
//!   this host (binaries, users, data directory);
//! - `fencing device`: a `class="stonith"` primitive that is not disabled;
//! - `quorum device`, `qdevice`, `qnetd connection`, `qdevice heuristics`,
//!   `qdevice vote` ([`super::qdevice`]): a 2-node cluster without an
//!   arbiter is a warning (a cut-off primary wins the fence race); a
//!   configured one must run on this node, be connected to qnetd, pass its
//!   heuristics and have its vote counted on every member;
//! - the preflight ([`super::preflight`]): PostgreSQL and Redis reachable at
//!   `primary_host` and on every node, `pg_hba.conf` in both directions, the
//!   pg_rewind grants, the replication settings, the same cluster
//!   everywhere, the systemd units;
//! - `alert <id>: ...`: each `rapidpro-alert` alert: the agent installed on
//!   this node, its options and recipients, the SMTP server answering, the
//!   SMS gateway reachable ([`crate::alert::check`]); no alert at all is a
//!   warning.
//!
//! JSON: `checks[]` {`check`, `status`, `detail`}, `status` (the worst).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::cluster::{admin, Cluster};
use crate::config::names;
use crate::deadline::Deadline;

use super::cib::{self, CibFacts};
use super::table::Table;
use super::{corosync, preflight, qdevice};
use super::{Error, Outcome};

/// How long the agent's validate-all may take.
const VALIDATE_TIMEOUT: Duration = Duration::from_secs(30);

/// A check's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but not as recommended.
    Warning,
    /// Wrong.
    Error,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Error => "error",
        }
    }
}

/// One check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Its name.
    pub check: String,
    /// Its result.
    pub status: Status,
    /// What was found.
    pub detail: String,
}

/// A [`Check`], for every module that makes them (this one, `preflight`,
/// `qdevice`).
pub(super) fn check(name: impl Into<String>, status: Status, detail: impl Into<String>) -> Check {
    Check {
        check: name.into(),
        status,
        detail: detail.into(),
    }
}

fn truthy(v: Option<&String>) -> bool {
    matches!(
        v.map(|s| s.to_ascii_lowercase()).as_deref(),
        Some("true" | "yes" | "on" | "1")
    )
}

/// The checks that read only the CIB (pure).
pub fn cib_checks(f: &CibFacts) -> Vec<Check> {
    let mut v = Vec::new();
    let Some(s) = f.stack.as_ref() else {
        v.push(check(
            "stack resource",
            Status::Error,
            "no ocf:rapidpro:stack primitive is configured",
        ));
        return v;
    };
    match &s.clone_id {
        Some(c) => v.push(check(
            "stack resource",
            Status::Ok,
            format!("{} in clone {c}", s.id),
        )),
        None => v.push(check(
            "stack resource",
            Status::Error,
            format!("{} is not in a clone: it must be a promotable clone", s.id),
        )),
    }
    match s.config() {
        Ok(c) => v.push(check(
            "parameters",
            Status::Ok,
            format!(
                "primary_host={} repl_user={} maxlag={} sync_replication={} rewind={}",
                c.primary_host, c.repl_user, c.maxlag, c.sync_replication, c.rewind
            ),
        )),
        Err(e) => v.push(check("parameters", Status::Error, e.to_string())),
    }
    if s.clone_id.is_some() {
        let m: &BTreeMap<String, String> = &s.clone_meta;
        let mut problems = Vec::new();
        if !truthy(m.get("promotable")) {
            problems.push("promotable is not true".to_string());
        }
        let max = m
            .get("promoted-max")
            .or(m.get("master-max"))
            .map(String::as_str)
            .unwrap_or("1");
        if max != "1" {
            problems.push(format!("promoted-max={max}, must be 1"));
        }
        let notify_ok = truthy(m.get("notify"));
        if !problems.is_empty() {
            v.push(check("clone", Status::Error, problems.join("; ")));
        } else if !notify_ok {
            v.push(check(
                "clone",
                Status::Error,
                "notify is not true: the agent needs pre/post-promote notifications",
            ));
        } else {
            v.push(check(
                "clone",
                Status::Ok,
                "promotable, promoted-max=1, notify=true",
            ));
        }
    }
    let monitor = |roles: &[&str]| {
        s.ops
            .iter()
            .find(|o| o.name == "monitor" && o.role.as_deref().is_some_and(|r| roles.contains(&r)))
    };
    match (
        monitor(&["Promoted", "Master"]),
        monitor(&["Unpromoted", "Slave"]),
    ) {
        (Some(p), Some(u)) if p.interval != u.interval => v.push(check(
            "monitors",
            Status::Ok,
            format!(
                "Promoted every {}, Unpromoted every {}",
                p.interval, u.interval
            ),
        )),
        (Some(p), Some(_)) => v.push(check(
            "monitors",
            Status::Error,
            format!(
                "both role monitors run every {}: Pacemaker needs different intervals",
                p.interval
            ),
        )),
        _ => v.push(check(
            "monitors",
            Status::Error,
            "a monitor for each role (Promoted and Unpromoted) is needed",
        )),
    }
    let primary = s.params.get(names::PRIMARY_HOST);
    match (primary, f.vip()) {
        (Some(p), Some(vip)) if *p == vip.ip => v.push(check(
            "primary_host",
            Status::Ok,
            format!("{p} is the address of {}", vip.id),
        )),
        (Some(p), Some(vip)) => v.push(check(
            "primary_host",
            Status::Warning,
            format!(
                "{p} is not the VIP {} ({}): standbys should follow the VIP",
                vip.ip, vip.id
            ),
        )),
        (Some(p), None) => v.push(check(
            "primary_host",
            Status::Warning,
            format!("{p}: no IPaddr2 resource (VIP) is configured"),
        )),
        (None, _) => {} // reported by "parameters"
    }
    match f.properties.get("stonith-enabled").map(String::as_str) {
        Some("false" | "no" | "off" | "0") => v.push(check(
            "fencing",
            Status::Warning,
            "stonith-enabled=false: a lost node cannot be fenced, two primaries become possible",
        )),
        _ => v.push(check("fencing", Status::Ok, "stonith-enabled")),
    }
    let (stopped, active): (Vec<_>, Vec<_>) = f.stonith.iter().partition(|(_, off)| *off);
    if !active.is_empty() {
        let ids: Vec<&str> = active.iter().map(|(id, _)| id.as_str()).collect();
        v.push(check("fencing device", Status::Ok, ids.join(", ")));
    } else {
        let disabled = if stopped.is_empty() {
            String::new()
        } else {
            let ids: Vec<&str> = stopped.iter().map(|(id, _)| id.as_str()).collect();
            format!(" ({} disabled: target-role=Stopped)", ids.join(", "))
        };
        v.push(check(
            "fencing device",
            Status::Error,
            format!(
                "no fencing device is configured{disabled}: a node that stops answering cannot be \
                 fenced, so no failover happens (or two primaries run); configure one, such as \
                 `pcs stonith create fence-ipmi fence_ipmilan ...` (see README), or \
                 `pcs resource enable` the disabled one"
            ),
        ));
    }
    let strategy = f
        .properties
        .get("node-health-strategy")
        .map(String::as_str)
        .unwrap_or("none");
    v.push(check(
        "node-health-strategy",
        Status::Ok,
        if strategy == "none" {
            "none: `rapidproctl health --publish` attributes are shown but do not move resources"
                .to_string()
        } else {
            format!("{strategy}: `rapidproctl health --publish` attributes move resources")
        },
    ));
    v
}

fn validate_check(f: &CibFacts) -> Option<Check> {
    let s = f.stack.as_ref()?;
    Some(match admin::validate_resource(&s.id, VALIDATE_TIMEOUT) {
        Ok((Some(0), _)) => check("validate-all", Status::Ok, "passed on this node"),
        Ok((code, out)) => check(
            "validate-all",
            Status::Error,
            format!(
                "failed on this node (crm_resource exit {}): {}",
                code.map(|c| c.to_string()).unwrap_or_else(|| "?".into()),
                out.lines().collect::<Vec<_>>().join(" / ")
            ),
        ),
        Err(e) => check("validate-all", Status::Error, e.to_string()),
    })
}

/// Renders checks as a table with a verdict line.
fn render(v: &[Check]) -> (String, Status) {
    let worst = v.iter().map(|c| c.status).max().unwrap_or(Status::Ok);
    let mut t = Table::new(&["Check", "Status", "Detail"]);
    for c in v {
        t.row(vec![
            c.check.clone(),
            c.status.as_str().into(),
            c.detail.clone(),
        ]);
    }
    let mut s = t.render();
    s.push_str(&format!("configuration: {}\n", worst.as_str()));
    (s, worst)
}

/// `rapidproctl check`.
pub fn run(cluster: &Cluster, deadline: &Deadline) -> Result<Outcome, Error> {
    let f = cib::query(cluster, deadline)?;
    let mut v = cib_checks(&f);
    v.extend(validate_check(&f));
    v.extend(qdevice::verdicts(&qdevice::observe(
        Path::new(corosync::COROSYNC_CONF),
        deadline,
    )));
    if let Some(cfg) = f.stack.as_ref().and_then(|s| s.config().ok()) {
        let o = preflight::observe(
            cluster,
            &cfg,
            Path::new(corosync::COROSYNC_CONF),
            &crate::systemd::default_roots(),
            deadline,
        );
        v.extend(preflight::verdicts(&o));
    }
    v.extend(super::alerts::checks(&f.xml));
    let (text, worst) = render(&v);
    let json = serde_json::json!({ "status": worst, "checks": v });
    Ok(Outcome::with(json, text, worst != Status::Error))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CIB: &str = include_str!("fixtures/cib-live.xml");

    fn status_of(v: &[Check], name: &str) -> Status {
        v.iter()
            .find(|c| c.check == name)
            .unwrap_or_else(|| panic!("no check {name}: {v:?}"))
            .status
    }

    #[test]
    fn the_recorded_configuration_passes() {
        let v = cib_checks(&cib::parse(CIB).unwrap());
        for c in &v {
            assert_eq!(c.status, Status::Ok, "{c:?}");
        }
        let names: Vec<&str> = v.iter().map(|c| c.check.as_str()).collect();
        assert_eq!(
            names,
            [
                "stack resource",
                "parameters",
                "clone",
                "monitors",
                "primary_host",
                "fencing",
                "fencing device",
                "node-health-strategy"
            ]
        );
        let (text, worst) = render(&v);
        assert_eq!(worst, Status::Ok);
        assert!(text.ends_with("configuration: ok\n"), "{text}");
    }

    #[test]
    fn a_bad_parameter_is_an_error_naming_it() {
        let cib = CIB.replace(
            "name=\"maxlag\" value=\"65536\"",
            "name=\"maxlag\" value=\"lots\"",
        );
        let v = cib_checks(&cib::parse(&cib).unwrap());
        assert_eq!(status_of(&v, "parameters"), Status::Error);
        let d = &v.iter().find(|c| c.check == "parameters").unwrap().detail;
        assert!(d.contains("maxlag"), "{d}");
    }

    #[test]
    fn clone_meta_monitors_vip_and_fencing_are_checked() {
        let cib = CIB
            .replace(
                "name=\"notify\" value=\"true\"",
                "name=\"notify\" value=\"false\"",
            )
            .replace(
                "interval=\"16s\" role=\"Unpromoted\"",
                "interval=\"15s\" role=\"Unpromoted\"",
            )
            .replace(
                "name=\"primary_host\" value=\"10.200.200.100\"",
                "name=\"primary_host\" value=\"10.200.200.11\"",
            )
            .replace(
                "name=\"stonith-enabled\" value=\"true\"",
                "name=\"stonith-enabled\" value=\"false\"",
            );
        let f = cib::parse(&cib).unwrap();
        let v = cib_checks(&f);
        assert_eq!(status_of(&v, "clone"), Status::Error);
        assert_eq!(status_of(&v, "monitors"), Status::Error);
        // primary_host no longer names the VIP: found by its id "vip" as
        // the first IPaddr2.
        assert_eq!(status_of(&v, "primary_host"), Status::Warning);
        assert_eq!(status_of(&v, "fencing"), Status::Warning);
        let (_, worst) = render(&v);
        assert_eq!(worst, Status::Error);
    }

    #[test]
    fn a_missing_stack_is_one_error() {
        let f = cib::parse("<cib><configuration><resources/></configuration></cib>").unwrap();
        let v = cib_checks(&f);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].status, Status::Error);
    }
}
