//! `bench/readme-tables`: rewrites README.md's Performance tables from the
//! newest stored run of each benchmark in `bench/results/`, between the
//! markers `<!-- bench:KIND -->` and `<!-- /bench:KIND -->`, with the tables
//! byte for byte as the bench printed them. No figure in those blocks is
//! typed by hand.
//!
//! Usage (from the repository root): rapidpro-bench-readme [--check]
//! `--check` changes nothing and exits 1 when README differs.

use std::fs;
use std::path::Path;
use std::process::ExitCode;

use rapidpro_ha_harness::bench::{self, check_run, newest, readme_block, readme_section, Kind};

fn main() -> ExitCode {
    let check = std::env::args().nth(1).as_deref() == Some("--check");
    let root = std::env::current_dir().expect("current directory");
    let readme_path = root.join("README.md");
    let readme = match fs::read_to_string(&readme_path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "{}: {e}; run this from the repository root",
                readme_path.display()
            );
            return ExitCode::from(2);
        }
    };
    let rel = |p: &Path| p.strip_prefix(&root).unwrap_or(p).display().to_string();
    let mut text = readme.clone();
    for kind in Kind::ALL {
        let run = match newest(&root.join(bench::REFERENCE_DIR), kind) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("readme-tables: {e}");
                return ExitCode::from(2);
            }
        };
        if let Err(why) = check_run(&root, &run) {
            eprintln!("readme-tables: warning: {}: {why}", rel(&run.json_path));
        }
        let (start, end) = match readme_section(&text, kind) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("readme-tables: {e}; put the two markers where the tables go");
                return ExitCode::from(2);
            }
        };
        text.replace_range(start..end, &readme_block(&run, &rel));
        eprintln!("readme-tables: {}: {}", kind.name(), rel(&run.json_path));
    }
    if text == readme {
        eprintln!("readme-tables: README.md already matches the newest stored runs");
        return ExitCode::SUCCESS;
    }
    if check {
        eprintln!(
            "readme-tables: README.md differs from the newest stored runs; run bench/readme-tables"
        );
        return ExitCode::from(1);
    }
    if let Err(e) = fs::write(&readme_path, text) {
        eprintln!("{}: {e}", readme_path.display());
        return ExitCode::from(2);
    }
    eprintln!("readme-tables: README.md rewritten");
    ExitCode::SUCCESS
}
