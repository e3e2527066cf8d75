//! README's Performance figures come from stored runs (`bench/results/`,
//! written by `bench/agents --record` and `bench/failover --record`), never
//! from a hand: its tables must be those of the newest run of each
//! benchmark, its prose may quote no measured figure of its own, and the
//! runs must have measured the agent of this checkout. No cluster, no
//! server: these read files and git.

use std::fs;
use std::path::{Path, PathBuf};

use rapidpro_ha_harness::bench::{self, check_run, newest, readme_block, readme_section, Kind};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root above agent/")
        .to_path_buf()
}

fn readme() -> String {
    let p = root().join("README.md");
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The first line where `got` and `want` differ, both shown.
fn first_difference(got: &str, want: &str) -> String {
    let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
    for i in 0..g.len().max(w.len()) {
        let (a, b) = (g.get(i).copied(), w.get(i).copied());
        if a != b {
            return format!(
                "line {} of the block:\n  README:     {}\n  stored run: {}",
                i + 1,
                a.unwrap_or("(missing)"),
                b.unwrap_or("(missing)")
            );
        }
    }
    "(same lines, different line endings)".into()
}

#[test]
fn readme_performance_tables_match_the_newest_stored_runs() {
    let root = root();
    let readme = readme();
    let rel = |p: &Path| p.strip_prefix(&root).unwrap_or(p).display().to_string();
    let mut wrong = Vec::new();
    for kind in Kind::ALL {
        let run = newest(&root.join(bench::REFERENCE_DIR), kind).unwrap_or_else(|e| panic!("{e}"));
        let (start, end) = readme_section(&readme, kind).unwrap_or_else(|e| panic!("{e}"));
        let want = readme_block(&run, &rel);
        if readme[start..end] != want {
            wrong.push(format!(
                "README's `{}` block is not the newest stored run {}: {}",
                kind.open_marker(),
                rel(&run.json_path),
                first_difference(&readme[start..end], &want)
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{}\nRegenerate README's tables with `bench/readme-tables` (never edit them by hand).",
        wrong.join("\n")
    );
}

#[test]
fn the_newest_stored_runs_are_not_older_than_the_agent() {
    let root = root();
    let mut stale = Vec::new();
    for kind in Kind::ALL {
        let run = newest(&root.join(bench::REFERENCE_DIR), kind).unwrap_or_else(|e| panic!("{e}"));
        if let Err(why) = check_run(&root, &run) {
            stale.push(format!(
                "{}: {why}",
                run.json_path
                    .strip_prefix(&root)
                    .unwrap_or(&run.json_path)
                    .display()
            ));
        }
    }
    assert!(stale.is_empty(), "{}", stale.join("\n"));
}

/// README's `## Performance` section, with the generated blocks cut out.
fn performance_prose(readme: &str) -> String {
    let start = readme
        .find("\n## Performance\n")
        .expect("README has a `## Performance` section");
    let end = readme[start + 1..]
        .find("\n## ")
        .map(|i| start + 1 + i)
        .unwrap_or(readme.len());
    let mut prose = readme[start..end].to_string();
    for kind in Kind::ALL {
        let (s, e) = readme_section(&prose, kind).unwrap_or_else(|e| panic!("{e}"));
        prose.replace_range(s..e, "");
    }
    prose
}

/// Numbers followed by a unit of measure (`7.74 ms`, `23.8×`, `3.6 MiB`,
/// `5 %`, `0.8 s`), as a hand would copy them from a run.
fn quoted_figures(text: &str) -> Vec<String> {
    const UNITS: &[&str] = &["ms", "µs", "s", "×", "MiB", "GiB", "KiB", "%"];
    let chars: Vec<char> = text.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts = chars[i].is_ascii_digit()
            && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '.'));
        if !starts {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == '.') {
            j += 1;
        }
        let number: String = chars[i..j].iter().collect();
        let k = if chars.get(j) == Some(&' ') { j + 1 } else { j };
        let rest: String = chars[k..chars.len().min(k + 4)].iter().collect();
        for unit in UNITS {
            let after = rest.strip_prefix(*unit);
            let bounded = after
                .map(|a| !a.starts_with(|c: char| c.is_alphanumeric()))
                .unwrap_or(false);
            if bounded {
                found.push(format!("{number} {unit}"));
                break;
            }
        }
        i = j;
    }
    found
}

#[test]
fn the_figures_detector_finds_what_a_hand_would_copy() {
    assert_eq!(
        quoted_figures("took 7.74 ms, 23.8× faster, 3.6 MiB, 0.8 s and 5 % more"),
        ["7.74 ms", "23.8 ×", "3.6 MiB", "0.8 s", "5 %"]
    );
    assert!(
        quoted_figures("Pacemaker 2.1.5, 2 standbys, bench/agents 31, 2-node, v1ms").is_empty()
    );
}

#[test]
fn readme_performance_prose_quotes_no_figure_outside_the_generated_blocks() {
    let figures = quoted_figures(&performance_prose(&readme()));
    assert!(
        figures.is_empty(),
        "README's Performance prose quotes figures that no generated block holds: {figures:?}. \
         Measured figures belong in the blocks bench/readme-tables writes from bench/results/; \
         refer to those instead."
    );
}
