//! `rapidpro-ha-manpages DIR DATE`: writes the package's man pages (roff,
//! not compressed) into DIR, one file per page, dated DATE (YYYY-MM-DD),
//! and prints their paths. Run by `scripts/build-deb`; see
//! `rapidpro_tools::manpages`.

#![forbid(unsafe_code)]

use std::path::PathBuf;

fn main() {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), Some(date), None) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: rapidpro-ha-manpages DIR DATE");
        std::process::exit(2);
    };
    let Some(date) = date.to_str().filter(|d| is_date(d)) else {
        eprintln!("rapidpro-ha-manpages: DATE must be YYYY-MM-DD, got {date:?}");
        std::process::exit(2);
    };
    let dir = PathBuf::from(dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("rapidpro-ha-manpages: cannot create {}: {e}", dir.display());
        std::process::exit(1);
    }
    for page in rapidpro_tools::manpages::all(date) {
        let path = dir.join(&page.file_name);
        if let Err(e) = std::fs::write(&path, &page.roff) {
            eprintln!("rapidpro-ha-manpages: cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
        println!("{}", path.display());
    }
}

/// `YYYY-MM-DD`, in form.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}
