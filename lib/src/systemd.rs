//! Whether systemd would start PostgreSQL or Redis at boot, behind
//! Pacemaker's back.
//!
//! Debian enables `postgresql.service` and `redis-server.service` when the
//! packages are installed. A node that boots with them enabled starts
//! PostgreSQL from whatever its data directory says (an old primary comes up
//! writable) and Redis as a master, before Pacemaker has decided anything.
//!
//! The enablement is read from the files `systemctl enable` writes, not by
//! running `systemctl`: cluster nodes in containers or test sandboxes have no
//! running systemd, and the files are the truth `systemctl is-enabled` reads:
//! - a symlink named after the unit in a `*.wants/` or `*.requires/`
//!   directory under `/etc/systemd/system` (and `/run/systemd/system` for
//!   `enable --runtime`);
//! - a unit masked by a symlink to `/dev/null` never starts, whatever wants it;
//! - Debian's `postgresql@<version>-<cluster>` instances are made by a
//!   generator from `/etc/postgresql/<version>/<cluster>/start.conf`:
//!   `auto` starts the cluster with `postgresql.service` (also on a package
//!   upgrade); `manual` and `disabled` do not.
//!
//! Observation ([`observe`]) is separate from the verdict ([`verdict`]).

use std::path::{Path, PathBuf};

/// Where `systemctl enable` writes its symlinks.
pub const ETC_UNITS: &str = "/etc/systemd/system";
/// Where `systemctl enable --runtime` writes them.
pub const RUN_UNITS: &str = "/run/systemd/system";

/// The unit directories to read: [`ETC_UNITS`] and [`RUN_UNITS`] (which
/// exists only while systemd runs).
pub fn default_roots() -> [&'static Path; 2] {
    [Path::new(ETC_UNITS), Path::new(RUN_UNITS)]
}

/// What the unit directories hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitFiles {
    /// `(target.wants, unit)` for every entry of a `*.wants` or `*.requires`
    /// directory.
    pub wanted: Vec<(String, String)>,
    /// Units masked (symlinked to `/dev/null`).
    pub masked: Vec<String>,
    /// `start.conf` of the Debian cluster whose configuration directory is
    /// `datadir`: `(path, first word)`, when there is one.
    pub start_conf: Option<(PathBuf, String)>,
}

/// Reads the unit directories under `roots` and the `start.conf` in
/// `datadir` (pure reads; no process).
pub fn observe(roots: &[&Path], datadir: &Path) -> UnitFiles {
    let mut f = UnitFiles::default();
    for root in roots {
        let Ok(dir) = std::fs::read_dir(root) else {
            continue;
        };
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if name.ends_with(".wants") || name.ends_with(".requires") {
                if let Ok(sub) = std::fs::read_dir(&path) {
                    for u in sub.flatten() {
                        f.wanted
                            .push((name.clone(), u.file_name().to_string_lossy().into_owned()));
                    }
                }
            } else if std::fs::read_link(&path).is_ok_and(|t| t == Path::new("/dev/null")) {
                f.masked.push(name);
            }
        }
    }
    let sc = datadir.join("start.conf");
    if let Ok(text) = std::fs::read_to_string(&sc) {
        let word = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .find(|l| !l.is_empty())
            .unwrap_or("")
            .to_string();
        f.start_conf = Some((sc, word));
    }
    f
}

/// Whether a unit name is one of PostgreSQL's or Redis's Debian units.
fn is_managed_unit(unit: &str) -> bool {
    let base = unit.strip_suffix(".service").unwrap_or(unit);
    base == "postgresql"
        || base.starts_with("postgresql@")
        || base == "redis-server"
        || base.starts_with("redis-server@")
        || base == "redis"
}

/// What starts PostgreSQL or Redis at boot (pure). Empty: nothing.
/// Each entry says what was found and how to undo it.
pub fn verdict(f: &UnitFiles) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (target, unit) in &f.wanted {
        let base = unit.strip_suffix(".service").unwrap_or(unit);
        if !is_managed_unit(unit) || f.masked.iter().any(|m| m == unit) || seen.contains(&base) {
            continue;
        }
        seen.push(base);
        v.push(format!(
            "{unit} is enabled ({target}): run `systemctl disable {unit}`"
        ));
    }
    if let Some((path, word)) = &f.start_conf {
        let pg_masked = f.masked.iter().any(|m| m == "postgresql.service");
        if word == "auto" && !pg_masked {
            v.push(format!(
                "{} says auto: the cluster starts with postgresql.service (and on package upgrades); \
                 write `manual` in it",
                path.display()
            ));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn enabled_units_and_debian_auto_clusters_are_named() {
        let table: Vec<(UnitFiles, Vec<&str>)> = vec![
            (UnitFiles::default(), vec![]),
            // Debian 12 right after apt install.
            (
                UnitFiles {
                    wanted: wanted(&[
                        ("multi-user.target.wants", "postgresql.service"),
                        ("multi-user.target.wants", "redis-server.service"),
                        ("multi-user.target.wants", "nginx.service"),
                    ]),
                    masked: vec![],
                    start_conf: Some(("/etc/postgresql/15/main/start.conf".into(), "auto".into())),
                },
                vec![
                    "postgresql.service",
                    "redis-server.service",
                    "start.conf says auto",
                ],
            ),
            // As the README says: disabled, start.conf manual.
            (
                UnitFiles {
                    wanted: wanted(&[("multi-user.target.wants", "nginx.service")]),
                    masked: vec![],
                    start_conf: Some((
                        "/etc/postgresql/15/main/start.conf".into(),
                        "manual".into(),
                    )),
                },
                vec![],
            ),
            // Masked wins over wanted.
            (
                UnitFiles {
                    wanted: wanted(&[("multi-user.target.wants", "redis-server.service")]),
                    masked: vec!["redis-server.service".into()],
                    start_conf: None,
                },
                vec![],
            ),
            // An instance enabled by hand.
            (
                UnitFiles {
                    wanted: wanted(&[("multi-user.target.wants", "postgresql@15-main.service")]),
                    masked: vec![],
                    start_conf: None,
                },
                vec!["postgresql@15-main.service"],
            ),
        ];
        for (i, (f, want)) in table.into_iter().enumerate() {
            let got = verdict(&f);
            assert_eq!(got.len(), want.len(), "case {i}: {got:?}");
            for (g, w) in got.iter().zip(want) {
                assert!(g.contains(w), "case {i}: {g}");
            }
        }
    }

    #[test]
    fn observe_reads_wants_links_masks_and_start_conf() {
        let dir = std::env::temp_dir().join(format!("rapidpro-systemd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let wants = dir.join("units/multi-user.target.wants");
        std::fs::create_dir_all(&wants).unwrap();
        std::os::unix::fs::symlink(
            "/lib/systemd/system/redis-server.service",
            wants.join("redis-server.service"),
        )
        .unwrap();
        std::os::unix::fs::symlink("/dev/null", dir.join("units/postgresql.service")).unwrap();
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(dir.join("etc/start.conf"), "# comment\n\nauto\n").unwrap();
        let f = observe(&[&dir.join("units"), &dir.join("absent")], &dir.join("etc"));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            f.wanted,
            wanted(&[("multi-user.target.wants", "redis-server.service")])
        );
        assert_eq!(f.masked, ["postgresql.service"]);
        assert_eq!(f.start_conf.as_ref().map(|s| s.1.as_str()), Some("auto"));
        // postgresql.service masked: start.conf auto starts nothing.
        let v = verdict(&f);
        assert_eq!(v.len(), 1, "{v:?}");
    }
}
