//! Stored benchmark runs, `bench/results/`.
//!
//! Every run of `bench/agents` and `bench/failover` writes two files named by
//! its UTC start time and kind: the raw results (every measured sample, JSON)
//! and its tables exactly as it printed them (Markdown). The JSON also says
//! what was measured and where: the commit and whether the tree was dirty,
//! the machine (CPU, cores, RAM, Debian, load average at start), the
//! versions of the components measured, and the command line. README's
//! Performance tables are copied from the newest run of each kind by
//! `bench/readme-tables`, never by hand, and the integration test
//! `bench_results` checks that they still match and that the run is not
//! older than the agent it measured. All three use this module, so that they
//! agree on which run is the newest and on what README's block holds.
//!
//! Where a run is written: the directory named by [`RESULTS_ENV`]. The bench
//! scripts set it to `bench/results/` (the reference runs, committed) when
//! given `--record`, and to `target/bench-results/` otherwise, so that CI's
//! short runs and casual runs are kept but never become README's figures.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::run_command;

/// The directory a run is written to; unset: the run is not recorded.
pub const RESULTS_ENV: &str = "RAPIDPRO_BENCH_RESULTS";
/// The command line the bench script was started with (`bench/agents …`),
/// recorded as the way to redo the run.
pub const COMMAND_ENV: &str = "RAPIDPRO_BENCH_COMMAND";
/// The reference runs, relative to the repository root.
pub const REFERENCE_DIR: &str = "bench/results";
/// The agent's code: a run older than its last change measured another agent.
pub const STACK_DIR: &str = "lib/src/stack";
/// Deadline for each `git`, `dpkg-query` call.
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// Which benchmark a run is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `bench/agents`: monitor and meta-data against the anchors.
    Agents,
    /// `bench/failover`: switchover and power-off in a 2-node cluster.
    Failover,
}

impl Kind {
    /// Every kind, in README's order.
    pub const ALL: [Kind; 2] = [Kind::Agents, Kind::Failover];

    /// The name in file names and README's markers.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Agents => "agents",
            Kind::Failover => "failover",
        }
    }

    /// README's opening marker of this kind's generated block.
    pub fn open_marker(self) -> String {
        format!("<!-- bench:{} -->", self.name())
    }

    /// README's closing marker of this kind's generated block.
    pub fn close_marker(self) -> String {
        format!("<!-- /bench:{} -->", self.name())
    }
}

// ---------------------------------------------------------------------------
// Writing a run.

/// A run being measured: what was known at its start.
pub struct Recorder {
    kind: Kind,
    stamp: String,
    started: SystemTime,
    header: Value,
}

impl Recorder {
    /// Takes the facts of the start of a run: date, commit, dirty paths,
    /// machine and load average, component versions, command line. Call it
    /// before any work, so that the load average is the machine's, not the
    /// run's.
    pub fn start(kind: Kind, argv: &[String]) -> Recorder {
        let started = SystemTime::now();
        let secs = started
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let (date, stamp) = utc_stamps(secs);
        let git = git_state();
        let header = json!({
            "kind": kind.name(),
            "date": date,
            "command": std::env::var(COMMAND_ENV).ok(),
            "argv": argv,
            "commit": git.commit,
            "dirty": !git.dirty_paths.is_empty(),
            "dirty_paths": git.dirty_paths,
            "git_error": git.error,
            "machine": machine(),
            "versions": versions(),
        });
        Recorder {
            kind,
            stamp,
            started,
            header,
        }
    }

    /// One line that says where and on what the run was made, for the
    /// printed output.
    pub fn describe(&self) -> String {
        describe_header(&self.header)
    }

    /// Writes `<stamp>-<kind>.json` (the header, `raw`, the duration and
    /// `tables`) and `<stamp>-<kind>.md` (`tables`, byte for byte) into the
    /// directory named by [`RESULTS_ENV`]; returns their paths, or `None`
    /// when that variable is unset. Files are created exclusively: a run
    /// never replaces another.
    pub fn finish(self, raw: Value, tables: &str) -> io::Result<Option<(PathBuf, PathBuf)>> {
        let Some(dir) = std::env::var_os(RESULTS_ENV) else {
            return Ok(None);
        };
        let dir = PathBuf::from(dir);
        fs::create_dir_all(&dir)?;
        let mut record = self.header;
        let seconds = self
            .started
            .elapsed()
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        record["duration_s"] = json!((seconds * 10.0).round() / 10.0);
        record["load_average_at_end"] = json!(loadavg());
        record["raw"] = raw;
        record["tables"] = json!(tables);
        let base = format!("{}-{}", self.stamp, self.kind.name());
        let json_path = dir.join(format!("{base}.json"));
        let md_path = dir.join(format!("{base}.md"));
        let text = serde_json::to_string_pretty(&record).map_err(io::Error::other)? + "\n";
        create_new(&json_path, text.as_bytes())?;
        create_new(&md_path, tables.as_bytes())?;
        Ok(Some((json_path, md_path)))
    }
}

fn create_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    f.write_all(bytes)
}

/// `(2026-12-02T14:03:05Z, 2026-12-02T14-03-05Z)`: the date for the record
/// and the same for file names (no colons), which sort by time.
pub fn utc_stamps(unix_secs: u64) -> (String, String) {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    (
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z"),
        format!("{y:04}-{m:02}-{d:02}T{hh:02}-{mm:02}-{ss:02}Z"),
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

struct GitState {
    commit: Option<String>,
    dirty_paths: Vec<String>,
    error: Option<String>,
}

/// The commit checked out in the working directory and the paths that
/// differ from it (staged, unstaged or untracked).
fn git_state() -> GitState {
    let head = git(&["rev-parse", "HEAD"]);
    let status = git(&["status", "--porcelain=v1", "--untracked-files=all"]);
    match (head, status) {
        (Ok(commit), Ok(status)) => GitState {
            commit: Some(commit.trim().to_string()),
            dirty_paths: status
                .lines()
                .filter_map(|l| l.get(3..))
                .map(|p| p.rsplit(" -> ").next().unwrap_or(p).to_string())
                .collect(),
            error: None,
        },
        (Err(e), _) | (_, Err(e)) => GitState {
            commit: None,
            dirty_paths: Vec::new(),
            error: Some(e),
        },
    }
}

/// `git <args>` in the working directory: its stdout, or a message.
pub fn git(args: &[&str]) -> Result<String, String> {
    git_in(Path::new("."), args)
}

/// `git <args>` in `dir`: its stdout, or a message naming the command.
pub fn git_in(dir: &Path, args: &[&str]) -> Result<String, String> {
    let mut c = Command::new("git");
    c.args(args).current_dir(dir);
    run_command(c, TOOL_TIMEOUT)
        .map_err(|e| e.to_string())?
        .into_result()
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn machine() -> Value {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let mem_kib: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    json!({
        "cpu_model": cpu,
        "cores": cores,
        "ram_kib": mem_kib,
        "debian": read("/etc/debian_version").trim(),
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "load_average_at_start": loadavg(),
    })
}

/// The measured components, by their Debian package versions.
const COMPONENTS: &[(&str, &str)] = &[
    ("PostgreSQL", "postgresql-15"),
    ("Redis", "redis-server"),
    ("Pacemaker", "pacemaker"),
    ("Corosync", "corosync"),
    ("resource-agents", "resource-agents"),
    ("PAF", "resource-agents-paf"),
];

fn versions() -> Value {
    let mut v = serde_json::Map::new();
    for (name, pkg) in COMPONENTS {
        let mut c = Command::new("dpkg-query");
        c.args(["-W", "-f", "${Version}", pkg]);
        let version = run_command(c, TOOL_TIMEOUT)
            .ok()
            .filter(|o| o.success())
            .map(|o| o.stdout.trim().to_string())
            .unwrap_or_else(|| "not installed".into());
        v.insert((*name).into(), json!(format!("{pkg} {version}")));
    }
    Value::Object(v)
}

fn describe_header(h: &Value) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("?").to_string();
    let m = &h["machine"];
    let commit = match h["commit"].as_str() {
        Some(c) => format!(
            "commit {}{}",
            &c[..c.len().min(12)],
            if h["dirty"].as_bool() == Some(true) {
                " (tree dirty: see dirty_paths)"
            } else {
                " (clean tree)"
            }
        ),
        None => format!("no commit ({})", s(&h["git_error"])),
    };
    let versions: Vec<String> = COMPONENTS
        .iter()
        .map(|(name, _)| s(&h["versions"][*name]))
        .collect();
    format!(
        "{} UTC, {commit}; {} CPUs ({}), {:.0} GiB RAM, Debian {}, kernel {}; load average at start {}; {}",
        s(&h["date"]).replace('T', " ").trim_end_matches('Z'),
        m["cores"],
        s(&m["cpu_model"]),
        m["ram_kib"].as_f64().unwrap_or(0.0) / 1024.0 / 1024.0,
        s(&m["debian"]),
        s(&m["kernel"]),
        s(&m["load_average_at_start"]),
        versions.join(", ")
    )
}

// ---------------------------------------------------------------------------
// Reading runs back.

/// A stored run: its record and its tables as printed.
#[derive(Debug)]
pub struct StoredRun {
    /// Which benchmark.
    pub kind: Kind,
    /// The JSON file.
    pub json_path: PathBuf,
    /// The Markdown file.
    pub md_path: PathBuf,
    /// The JSON record.
    pub record: Value,
    /// The Markdown file's text: the tables as the bench printed them.
    pub tables: String,
}

impl StoredRun {
    /// The commit the run was made on, if it was made in a git checkout.
    pub fn commit(&self) -> Option<&str> {
        self.record["commit"].as_str()
    }

    /// The paths that differed from the commit when the run started.
    pub fn dirty_paths(&self) -> Vec<String> {
        self.record["dirty_paths"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The newest run of `kind` in `dir` (file names start with the UTC
/// start time, so the greatest name is the newest), with both its files.
pub fn newest(dir: &Path, kind: Kind) -> Result<StoredRun, String> {
    let suffix = format!("-{}.json", kind.name());
    let entries = fs::read_dir(dir).map_err(|e| {
        format!(
            "{}: {e}; record a run with `bench/{} --record`",
            dir.display(),
            kind.name()
        )
    })?;
    let name = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(&suffix))
        .max()
        .ok_or_else(|| {
            format!(
                "no stored run of bench/{} in {}: record one with `bench/{} --record`",
                kind.name(),
                dir.display(),
                kind.name()
            )
        })?;
    let json_path = dir.join(&name);
    let md_path = json_path.with_extension("md");
    let text =
        fs::read_to_string(&json_path).map_err(|e| format!("{}: {e}", json_path.display()))?;
    let record: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not JSON: {e}", json_path.display()))?;
    let tables = fs::read_to_string(&md_path).map_err(|e| {
        format!(
            "{}: {e}: every run stores its tables beside its JSON",
            md_path.display()
        )
    })?;
    if record["tables"].as_str() != Some(tables.as_str()) {
        return Err(format!(
            "{} differs from the tables recorded in {}: a stored run is never edited; record a new one",
            md_path.display(),
            json_path.display()
        ));
    }
    Ok(StoredRun {
        kind,
        json_path,
        md_path,
        record,
        tables,
    })
}

/// What README holds between the kind's markers for `run`: the run's
/// files, command and duration, then its output verbatim (whose first line
/// is the date, commit, machine, load and versions: [`Recorder::describe`]).
/// `rel` shows the files' paths relative to the repository root.
pub fn readme_block(run: &StoredRun, rel: &dyn Fn(&Path) -> String) -> String {
    let command = run.record["command"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| {
            run.record["argv"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default()
        });
    let mut b = String::new();
    let _ = writeln!(b, "{}", run.kind.open_marker());
    let _ = writeln!(
        b,
        "<!-- generated by bench/readme-tables from {}: do not edit -->",
        rel(&run.json_path)
    );
    let _ = writeln!(
        b,
        "Stored run `{}` (every sample, the commit, machine and versions; the tables as printed: `{}`), \
         made with `{command}` in {} s:",
        rel(&run.json_path),
        rel(&run.md_path),
        run.record["duration_s"],
    );
    let _ = writeln!(b);
    b.push_str(run.tables.trim_end());
    let _ = writeln!(b);
    let _ = write!(b, "{}", run.kind.close_marker());
    b
}

/// The text of README from the kind's opening marker to the end of its
/// closing marker, with its byte range.
pub fn readme_section(readme: &str, kind: Kind) -> Result<(usize, usize), String> {
    let (open, close) = (kind.open_marker(), kind.close_marker());
    let start = readme
        .find(&open)
        .ok_or_else(|| format!("README.md has no `{open}` marker"))?;
    let end = readme[start..]
        .find(&close)
        .map(|i| start + i + close.len())
        .ok_or_else(|| format!("README.md has `{open}` but no `{close}` after it"))?;
    if readme[end..].contains(&open) {
        return Err(format!("README.md has `{open}` twice"));
    }
    Ok((start, end))
}

// ---------------------------------------------------------------------------
// Is a run still about the agent in this checkout?

/// Why a stored run cannot stand for the agent in this checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Staleness {
    /// The checkout has no usable history (no git, not a repository, or a
    /// shallow clone), so nothing can be said: the check fails.
    NoHistory(String),
    /// The run was made outside a git checkout.
    RunWithoutCommit,
    /// The run's commit is not in this repository (rebased away?).
    UnknownCommit(String),
    /// The agent changed after the run's commit.
    AgentChangedSince {
        /// The run's commit.
        run: String,
        /// The last commit that changed the agent.
        change: String,
    },
    /// The run was made on a tree whose uncommitted changes touched the agent.
    DirtyAgent(Vec<String>),
}

/// What git says about a run's commit and the agent's last change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ancestry {
    /// The last change of the agent is the run's commit or one of its
    /// ancestors.
    Contained,
    /// It is not.
    NotContained,
    /// The run's commit is not an object of this repository.
    UnknownCommit,
}

/// Decides, without I/O, whether a run measured the agent of this
/// checkout: `ancestry` is `None` when history is unusable (`history_error`
/// says why).
pub fn judge_run(
    run_commit: Option<&str>,
    dirty_paths: &[String],
    last_change: &Result<String, String>,
    ancestry: Option<Ancestry>,
) -> Result<(), Staleness> {
    let change = last_change.clone().map_err(Staleness::NoHistory)?;
    let run = run_commit.ok_or(Staleness::RunWithoutCommit)?;
    let touched: Vec<String> = dirty_paths
        .iter()
        .filter(|p| p.starts_with(STACK_DIR))
        .cloned()
        .collect();
    if !touched.is_empty() {
        return Err(Staleness::DirtyAgent(touched));
    }
    match ancestry {
        Some(Ancestry::Contained) => Ok(()),
        Some(Ancestry::NotContained) => Err(Staleness::AgentChangedSince {
            run: run.into(),
            change,
        }),
        Some(Ancestry::UnknownCommit) => Err(Staleness::UnknownCommit(run.into())),
        None => Err(Staleness::NoHistory(
            "git could not compare the commits".into(),
        )),
    }
}

/// The last commit that changed [`STACK_DIR`] in the repository at `root`,
/// or why history cannot say.
pub fn last_agent_change(root: &Path) -> Result<String, String> {
    let shallow = git_in(root, &["rev-parse", "--is-shallow-repository"])
        .map_err(|e| format!("no git history in {}: {e}", root.display()))?;
    if shallow.trim() == "true" {
        return Err(format!(
            "{} is a shallow clone: its history is cut, so the last change to {STACK_DIR} \
             cannot be known; fetch the whole history (`git fetch --unshallow`)",
            root.display()
        ));
    }
    let last = git_in(root, &["log", "-1", "--format=%H", "--", STACK_DIR])
        .map_err(|e| format!("git log on {}: {e}", root.display()))?;
    let last = last.trim();
    if last.is_empty() {
        return Err(format!(
            "git log names no commit that changed {STACK_DIR} in {}",
            root.display()
        ));
    }
    Ok(last.to_string())
}

/// Observes git for `run`, then judges it with [`judge_run`].
pub fn check_run(root: &Path, run: &StoredRun) -> Result<(), Staleness> {
    let last = last_agent_change(root);
    let ancestry = match (&last, run.commit()) {
        (Ok(change), Some(commit)) => {
            let known = git_in(root, &["cat-file", "-e", &format!("{commit}^{{commit}}")]);
            if known.is_err() {
                Some(Ancestry::UnknownCommit)
            } else {
                let mut c = Command::new("git");
                c.args(["merge-base", "--is-ancestor", change, commit])
                    .current_dir(root);
                match run_command(c, TOOL_TIMEOUT).map(|o| o.code()) {
                    Ok(0) => Some(Ancestry::Contained),
                    Ok(1) => Some(Ancestry::NotContained),
                    _ => None,
                }
            }
        }
        _ => None,
    };
    judge_run(run.commit(), &run.dirty_paths(), &last, ancestry)
}

impl std::fmt::Display for Staleness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Staleness::NoHistory(why) => write!(
                f,
                "cannot tell whether the stored runs measured this agent: {why}. \
                 Run this test in a full git clone"
            ),
            Staleness::RunWithoutCommit => write!(
                f,
                "the run was made outside a git checkout, so it names no commit; \
                 redo it in a clone (commands in README's Performance section)"
            ),
            Staleness::UnknownCommit(c) => write!(
                f,
                "the run's commit {c} is not in this repository (rebased or squashed away?); \
                 redo the run (commands in README's Performance section)"
            ),
            Staleness::AgentChangedSince { run, change } => write!(
                f,
                "the run measured commit {run}, but {STACK_DIR} changed after it, in {change}: \
                 the figures are of an older agent. Redo the runs and regenerate README \
                 (commands in README's Performance section)"
            ),
            Staleness::DirtyAgent(paths) => write!(
                f,
                "the run was made on uncommitted changes to the agent ({}): it measured no \
                 commit. Commit, then redo the run (commands in README's Performance section)",
                paths.join(", ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps_name_the_date_and_sort_as_time() {
        assert_eq!(
            utc_stamps(0),
            ("1970-01-01T00:00:00Z".into(), "1970-01-01T00-00-00Z".into())
        );
        // 2026-12-02 13:55:15 UTC
        assert_eq!(utc_stamps(1_796_219_715).0, "2026-12-02T13:55:15Z");
        // 2024-02-29, a leap day.
        assert_eq!(utc_stamps(1_709_164_800).0, "2024-02-29T00:00:00Z");
    }

    fn ok(s: &str) -> Result<String, String> {
        Ok(s.into())
    }

    #[test]
    fn a_run_stands_only_when_it_contains_the_last_change_of_the_agent() {
        let clean: Vec<String> = Vec::new();
        assert_eq!(
            judge_run(Some("b"), &clean, &ok("a"), Some(Ancestry::Contained)),
            Ok(())
        );
        assert_eq!(
            judge_run(Some("b"), &clean, &ok("a"), Some(Ancestry::NotContained)),
            Err(Staleness::AgentChangedSince {
                run: "b".into(),
                change: "a".into()
            })
        );
        assert_eq!(
            judge_run(Some("b"), &clean, &ok("a"), Some(Ancestry::UnknownCommit)),
            Err(Staleness::UnknownCommit("b".into()))
        );
        assert_eq!(
            judge_run(None, &clean, &ok("a"), None),
            Err(Staleness::RunWithoutCommit)
        );
        assert!(matches!(
            judge_run(Some("b"), &clean, &Err("not a git repository".into()), None),
            Err(Staleness::NoHistory(_))
        ));
        assert!(matches!(
            judge_run(Some("b"), &clean, &ok("a"), None),
            Err(Staleness::NoHistory(_))
        ));
    }

    #[test]
    fn a_run_on_uncommitted_agent_changes_does_not_stand_but_other_dirt_does() {
        let stack = vec!["lib/src/stack/monitor.rs".to_string(), "README.md".into()];
        assert_eq!(
            judge_run(Some("b"), &stack, &ok("a"), Some(Ancestry::Contained)),
            Err(Staleness::DirtyAgent(vec![
                "lib/src/stack/monitor.rs".into()
            ]))
        );
        let other = vec!["bench/results/x-agents.json".to_string()];
        assert_eq!(
            judge_run(Some("b"), &other, &ok("a"), Some(Ancestry::Contained)),
            Ok(())
        );
    }
}
