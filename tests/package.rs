//! The Debian package `rapidpro-ha` (`scripts/build-deb`, cargo-deb): its
//! contents and control fields, `dpkg -i` followed by `pcs resource describe
//! ocf:rapidpro:stack` in a throwaway mount namespace (the host's /usr,
//! /etc and /var are overlays there, their changes on a tmpfs that goes with
//! the namespace), and a namespaced cluster running the agent and
//! rapidproctl installed from the package.
//!
//! The package is built once per test process (the first test to need it
//! runs `scripts/build-deb`: a release build, a minute or more when the
//! sources changed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use rapidpro_ha_harness::{run_command, CmdOutput, NsCluster, TestDir};
use rapidpro_tools::manpages;
use serde_json::Value;

use super::cluster::{assert_watched, WatchMark};
use super::cluster::{wait_one_promoted, SETTLE};

const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
/// A release build with LTO on a busy machine.
const BUILD_TIMEOUT: Duration = Duration::from_secs(1800);
const TIMEOUT: Duration = Duration::from_secs(120);

/// The agent and the tools, where the package installs them.
const AGENT: &str = "/usr/lib/ocf/resource.d/rapidpro/stack";
const CTL: &str = "/usr/sbin/rapidproctl";
const ALERT: &str = "/usr/sbin/rapidpro-alert";
const DOC: &str = "/usr/share/doc/rapidpro-ha";

#[track_caller]
fn run(cmd: Command, timeout: Duration) -> CmdOutput {
    run_command(cmd, timeout).unwrap_or_else(|e| panic!("{e}"))
}

#[track_caller]
fn must(cmd: Command, timeout: Duration) -> String {
    run(cmd, timeout)
        .into_result()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn command(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}

/// The package, built by `scripts/build-deb` once per test process.
pub(crate) fn deb() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        let mut build = Command::new(Path::new(WORKSPACE).join("scripts/build-deb"));
        build.current_dir(WORKSPACE);
        let out = must(build, BUILD_TIMEOUT);
        let path = PathBuf::from(out.lines().last().unwrap_or_default().trim());
        assert!(
            path.extension().is_some_and(|e| e == "deb") && path.is_file(),
            "scripts/build-deb printed no .deb path: {out:?}"
        );
        path
    })
}

/// Every file of the package (`dpkg-deb -c`), by absolute path: its mode
/// string (`-rwxr-xr-x`) and owner (`root/root` or `0/0`).
fn contents(deb: &Path) -> BTreeMap<String, (String, String)> {
    let listing = must(command("dpkg-deb", &["-c", deb.to_str().unwrap()]), TIMEOUT);
    listing
        .lines()
        .filter(|l| !l.starts_with('d'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f.len() >= 6, "unexpected dpkg-deb -c line {l:?}");
            let path = f[5].trim_start_matches('.').to_owned();
            (path, (f[0].to_owned(), f[1].to_owned()))
        })
        .collect()
}

/// A control field of the package (`dpkg-deb -f`).
fn field(deb: &Path, name: &str) -> String {
    must(
        command("dpkg-deb", &["-f", deb.to_str().unwrap(), name]),
        TIMEOUT,
    )
    .trim()
    .to_owned()
}

/// The `.TH` date of a page.
fn th_date(roff: &str) -> String {
    let th = roff
        .lines()
        .find(|l| l.starts_with(".TH "))
        .unwrap_or_else(|| panic!("no .TH line in\n{roff}"));
    th.split_whitespace()
        .nth(3)
        .unwrap_or_else(|| panic!("no date in {th:?}"))
        .to_owned()
}

/// `dpkg-deb -c`/`-f`: every file where it belongs, with its mode, nothing
/// else; the control fields; the man pages present, gzipped, equal to what
/// the generator writes now, and formatting without warnings; the packaged
/// agent prints the checked-in meta-data.
#[test]
fn the_package_installs_the_agent_tools_docs_and_man_pages() {
    let deb = deb();
    eprintln!("package: {}", deb.display());

    assert_eq!(field(deb, "Package"), "rapidpro-ha");
    assert_eq!(field(deb, "Architecture"), "amd64");
    let depends = field(deb, "Depends");
    for d in [
        "pacemaker-cli-utils",
        "postgresql-15 | postgresql",
        "redis-server",
        "libc6",
    ] {
        assert!(depends.contains(d), "Depends: {depends} (no {d})");
    }
    let recommends = field(deb, "Recommends");
    for r in ["pacemaker", "corosync", "pcs | crmsh", "resource-agents"] {
        assert!(recommends.contains(r), "Recommends: {recommends} (no {r})");
    }

    let files = contents(deb);
    let listing = format!("{files:#?}");
    let mut expected: BTreeMap<String, &str> = BTreeMap::new();
    for exe in [AGENT, CTL, ALERT] {
        expected.insert(exe.to_owned(), "-rwxr-xr-x");
    }
    for doc in [
        "README.md",
        "RUNBOOK.md",
        "copyright",
        "examples/README.md",
        "examples/rapidpro-cluster.pcs.sh",
        "examples/rapidpro-cluster.crm.sh",
        "examples/rapidpro-secret.sh",
        "examples/sandbox/fence_rapidpro_sandbox",
    ] {
        expected.insert(format!("{DOC}/{doc}"), "-rw-r--r--");
    }
    // Whatever the date, the generator's pages, by name.
    let pages = manpages::all("2000-01-01");
    for p in &pages {
        expected.insert(
            format!("/usr/share/man/man{}/{}.gz", p.section, p.file_name),
            "-rw-r--r--",
        );
    }
    for (path, mode) in &expected {
        let (got, owner) = files
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not in the package:\n{listing}"));
        assert_eq!(got, mode, "mode of {path}");
        assert!(
            owner == "root/root" || owner == "0/0",
            "owner of {path}: {owner}"
        );
    }
    let extra: Vec<&String> = files
        .keys()
        .filter(|p| !expected.contains_key(*p))
        .collect();
    assert!(
        extra.is_empty(),
        "unexpected files in the package: {extra:?}"
    );

    // Extract and look inside.
    let dir = TestDir::new("package_contents");
    let root = dir.join("root");
    must(
        command(
            "dpkg-deb",
            &["-x", deb.to_str().unwrap(), root.to_str().unwrap()],
        ),
        TIMEOUT,
    );
    let at = |abs: &str| root.join(abs.trim_start_matches('/'));
    let date = {
        let gz = at("/usr/share/man/man8/rapidproctl.8.gz");
        th_date(&must(
            command("gzip", &["-dc", gz.to_str().unwrap()]),
            TIMEOUT,
        ))
    };
    let groff = Path::new("/usr/bin/groff").exists();
    for p in manpages::all(&date) {
        let gz = at(&format!(
            "/usr/share/man/man{}/{}.gz",
            p.section, p.file_name
        ));
        let roff = must(command("gzip", &["-dc", gz.to_str().unwrap()]), TIMEOUT);
        assert!(
            roff.contains(&format!(
                ".TH {} {}",
                p.file_name.rsplit_once('.').unwrap().0.to_uppercase(),
                p.section
            )),
            "{}: no .TH line:\n{roff}",
            p.file_name
        );
        assert!(roff.contains(".SH NAME"), "{}", p.file_name);
        assert_eq!(
            roff, p.roff,
            "{} in the package differs from what rapidpro-ha-manpages writes now",
            p.file_name
        );
        if groff {
            // -ww: all warnings; -z: no output, only the diagnostics.
            let plain = dir.join(&p.file_name);
            std::fs::write(&plain, &roff).unwrap();
            let out = run(
                command(
                    "groff",
                    &["-man", "-Tutf8", "-ww", "-z", plain.to_str().unwrap()],
                ),
                TIMEOUT,
            );
            assert!(
                out.success() && out.stderr.trim().is_empty(),
                "groff on {}: {}",
                p.file_name,
                out.failure_message()
            );
        }
    }
    if !groff {
        eprintln!("groff is not installed: the man pages were checked for .TH and NAME only");
    }

    // The packaged agent is this source's agent.
    let meta = must(
        command(at(AGENT).to_str().unwrap(), &["meta-data"]),
        TIMEOUT,
    );
    assert_eq!(
        meta,
        std::fs::read_to_string(Path::new(WORKSPACE).join("ocf-metadata/stack.xml")).unwrap()
    );
    let help = must(command(at(CTL).to_str().unwrap(), &["--help"]), TIMEOUT);
    assert!(help.contains("switchover"), "{help}");
}

/// The inner script of the throwaway install: the host's /usr, /etc and
/// /var become overlays whose upper layers are on a tmpfs mounted in this
/// mount namespace only; everything dpkg and the man-db trigger write goes
/// there, and goes away with the namespace.
const THROWAWAY_INSTALL: &str = r#"set -eu
tmp=$1 deb=$2
mount -t tmpfs -o mode=0700 rapidpro-deb-test "$tmp"
for d in /usr /etc /var; do
  mkdir -p "$tmp/upper$d" "$tmp/work$d"
  mount -t overlay overlay -o "lowerdir=$d,upperdir=$tmp/upper$d,workdir=$tmp/work$d" "$d"
done
dpkg -i "$deb"
echo "== pcs resource describe ocf:rapidpro:stack"
pcs resource describe ocf:rapidpro:stack
echo "== rapidproctl --help"
rapidproctl --help
echo "== rapidpro-alert"
test -x /usr/sbin/rapidpro-alert && echo "/usr/sbin/rapidpro-alert is there"
if command -v man >/dev/null 2>&1; then
  echo "== man -w"
  man -w rapidproctl rapidproctl-switchover rapidpro-alert ocf_rapidpro_stack
  MANWIDTH=80 man -P cat rapidproctl
fi
"#;

/// Acceptance 4: `dpkg -i` of the package, then `pcs resource describe
/// ocf:rapidpro:stack`, as on a fresh machine, in a mount namespace of
/// overlays (the package's dependencies are the test machine's own, from
/// scripts/install-deps); the host is unchanged afterwards.
#[test]
fn dpkg_i_then_pcs_resource_describe_works_and_leaves_the_host_alone() {
    let deb = deb();
    let agent_dir = Path::new("/usr/lib/ocf/resource.d/rapidpro");
    let dpkg_state = || {
        run(
            command(
                "dpkg-query",
                &["-W", "-f", "${Status} ${Version}", "rapidpro-ha"],
            ),
            TIMEOUT,
        )
        .stdout
    };
    let had_agent = agent_dir.exists();
    let had_ctl = Path::new(CTL).exists();
    let state_before = dpkg_state();

    let dir = TestDir::new("package_dpkg_i");
    let tmp = dir.join("ns");
    std::fs::create_dir(&tmp).unwrap();
    let mut c = command(
        "unshare",
        &[
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            THROWAWAY_INSTALL,
            "sh",
        ],
    );
    c.arg(&tmp).arg(deb);
    let out = run(c, TIMEOUT);
    eprintln!("{}", out.stdout);
    assert!(out.success(), "{}", out.failure_message());
    let text = &out.stdout;
    let describe = text
        .split("== pcs resource describe ocf:rapidpro:stack\n")
        .nth(1)
        .and_then(|s| s.split("== rapidproctl --help").next())
        .unwrap_or_default();
    assert!(
        describe.starts_with("ocf:rapidpro:stack - PostgreSQL and Redis replication for RapidPro"),
        "{describe}"
    );
    for p in rapidpro_ha::config::PARAMETERS {
        let shown = if p.required {
            format!("  {} (required):", p.name)
        } else {
            format!("  {}:", p.name)
        };
        assert!(describe.contains(&shown), "no {shown:?} in:\n{describe}");
    }
    assert!(describe.contains("primary_host (required)"), "{describe}");
    assert!(
        text.contains("Usage: rapidproctl [OPTIONS] <COMMAND>"),
        "{text}"
    );
    assert!(text.contains("/usr/sbin/rapidpro-alert is there"));
    if Path::new("/usr/bin/man").exists() {
        for page in [
            "/usr/share/man/man8/rapidproctl.8.gz",
            "/usr/share/man/man8/rapidproctl-switchover.8.gz",
            "/usr/share/man/man8/rapidpro-alert.8.gz",
            "/usr/share/man/man7/ocf_rapidpro_stack.7.gz",
        ] {
            assert!(text.contains(page), "man -w found no {page}:\n{text}");
        }
        assert!(text.contains("rapidproctl-switchover(8)"), "{text}");
    } else {
        eprintln!("man-db is not installed: man -w was not tried");
    }

    // Nothing of it reached the host.
    assert_eq!(agent_dir.exists(), had_agent, "{}", agent_dir.display());
    if !had_agent {
        assert!(!agent_dir.exists());
    }
    assert_eq!(Path::new(CTL).exists(), had_ctl, "{CTL}");
    assert_eq!(dpkg_state(), state_before, "dpkg's record of rapidpro-ha");
    assert!(
        std::fs::read_dir(&tmp).unwrap().next().is_none(),
        "the tmpfs of the namespace shows on the host: {}",
        tmp.display()
    );
}

/// A 2-node cluster whose agent, rapidproctl and rapidpro-alert come from
/// the package (`NsClusterBuilder::from_deb`): the stack is promoted on one
/// node with the VIP, and the package's rapidproctl, run inside a node as
/// /usr/sbin/rapidproctl, reports it.
#[test]
fn a_cluster_installed_from_the_package_promotes_and_rapidproctl_answers() {
    let deb = deb();
    let c = NsCluster::builder("package").nodes(2).from_deb(deb).build();
    // Every moment of the cluster's life: never two primaries, every
    // node sampled every 250 ms.
    let watch_mark = WatchMark::at_build(&c);
    let first = c.nodes()[0].name.clone();
    c.wait_settled(&first, SETTLE);
    let primary = wait_one_promoted(&c, &first, None);
    assert!(c.node(&primary).has_address(c.vip()));

    // The nodes run the package's files, not the freshly built ones.
    let root = c.dir.join("deb-root");
    let sha = |path: &Path| {
        must(command("sha256sum", &[path.to_str().unwrap()]), TIMEOUT)
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    for n in c.nodes() {
        for abs in [AGENT, CTL, ALERT] {
            let inside = n.run(&["sha256sum", abs]).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                inside.split_whitespace().next(),
                Some(sha(&root.join(abs.trim_start_matches('/'))).as_str()),
                "{abs} on {} is not the package's",
                n.name
            );
        }
    }

    let standby = c
        .nodes()
        .iter()
        .map(|n| n.name.clone())
        .find(|n| *n != primary)
        .unwrap();
    for ask in [&primary, &standby] {
        let out = c
            .node(ask)
            .exec(&[CTL, "--json", "status"], TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.success(),
            "{}\n{}",
            out.failure_message(),
            c.diagnostics()
        );
        let status: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
            panic!("rapidproctl --json printed no JSON ({e}):\n{}", out.stdout)
        });
        assert_eq!(
            status["cluster"]["promoted"],
            primary.as_str(),
            "{status:#}"
        );
        assert_eq!(status["vip"]["node"], primary.as_str(), "{status:#}");
    }
    let text = c
        .node(&standby)
        .exec(&[CTL, "status"], TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{}", text.stdout);
    assert!(text.success(), "{}", text.failure_message());
    assert!(text.stdout.contains(&primary), "{}", text.stdout);
    assert_watched(
        &c,
        &watch_mark,
        "a cluster installed from the package promotes and rapidproctl answers",
    );
}

/// The shipped crates (the library and the binaries) forbid `unsafe` in
/// every crate root; the one block they need lives in `privdrop/`, which
/// denies it everywhere but in that block.
#[test]
fn the_shipped_crates_forbid_unsafe_code_and_privdrop_holds_the_one_block() {
    let ws = Path::new(WORKSPACE);
    let mut roots = vec![ws.join("lib/src/lib.rs"), ws.join("agent/src/lib.rs")];
    for e in std::fs::read_dir(ws.join("agent/src/bin")).unwrap() {
        roots.push(e.unwrap().path());
    }
    for root in &roots {
        let text = std::fs::read_to_string(root).unwrap();
        assert!(
            text.lines().any(|l| l.trim() == "#![forbid(unsafe_code)]"),
            "{} does not forbid unsafe code",
            root.display()
        );
    }
    let privdrop = std::fs::read_to_string(ws.join("privdrop/src/lib.rs")).unwrap();
    assert!(privdrop.contains("#![deny(unsafe_code)]"));
    assert_eq!(privdrop.matches("#[allow(unsafe_code)]").count(), 1);
    assert_eq!(privdrop.matches("unsafe {").count(), 1);
    assert_eq!(privdrop.matches("// SAFETY:").count(), 1);
}

/// Crates with a security advisory against the versions below these: none
/// may come back into Cargo.lock, directly or through another crate.
const ADVISORY_MINIMUMS: &[(&str, (u64, u64, u64), &str)] = &[(
    "quick-xml",
    (0, 41, 0),
    "RUSTSEC-2026-0194 and RUSTSEC-2026-0195",
)];

#[test]
fn the_lock_file_has_no_crate_version_with_a_known_advisory() {
    let lock = std::fs::read_to_string(Path::new(WORKSPACE).join("Cargo.lock")).unwrap();
    let mut seen = 0;
    let mut name = "";
    for line in lock.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = n.trim_matches('"');
        } else if let Some(v) = line.strip_prefix("version = ") {
            let Some((_, min, why)) = ADVISORY_MINIMUMS.iter().find(|(n, _, _)| *n == name) else {
                continue;
            };
            seen += 1;
            let v = v.trim_matches('"');
            let parts: Vec<u64> = v
                .split(['.', '-', '+'])
                .take(3)
                .map(|p| p.parse().unwrap_or(0))
                .collect();
            let got = (parts[0], parts[1], parts[2]);
            assert!(
                got >= *min,
                "Cargo.lock has {name} {v}, below {}.{}.{} ({why})",
                min.0,
                min.1,
                min.2
            );
        }
    }
    assert!(
        seen > 0,
        "no quick-xml in Cargo.lock: the test reads nothing"
    );
}
