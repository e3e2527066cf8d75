//! A unique directory per test (ripgrep `tests/util.rs` `Dir::new`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{KEEP_DIRS_ENV, TEST_ROOT};

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// Longest test name kept in a directory name. Unix socket paths are limited
/// to 107 bytes (`sun_path`), and the PostgreSQL and Redis sockets live two
/// levels below the test directory.
const MAX_NAME: usize = 32;

/// `/tmp/rapidpro-ha-tests/<pid>-<n>-<name>/`, created empty with mode 0755
/// (so the `postgres` and `redis` users can traverse it) and removed with
/// everything in it on drop, unless `RAPIDPRO_KEEP_TEST_DIRS` is set.
#[derive(Debug)]
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    /// Creates a fresh directory for the test `name`. Characters other than
    /// ASCII letters, digits, `-` and `_` become `_`, and long names are cut
    /// to keep socket paths short.
    pub fn new(name: &str) -> TestDir {
        let root = Path::new(TEST_ROOT);
        make_dir(root, 0o755);
        let id = NEXT_ID.fetch_add(1, Ordering::SeqCst);
        let clean: String = name
            .chars()
            .map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' => c,
                _ => '_',
            })
            .take(MAX_NAME)
            .collect();
        let path = root.join(format!("{}-{id}-{clean}", std::process::id()));
        if path.exists() {
            // Left by an earlier process with our pid (pids wrap).
            fs::remove_dir_all(&path)
                .unwrap_or_else(|e| panic!("cannot remove stale {}: {e}", path.display()));
        }
        fs::create_dir(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        set_mode(&path, 0o755);
        TestDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path().join(rel)`.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::env::var_os(KEEP_DIRS_ENV).is_some() {
            eprintln!("harness: kept {}", self.path.display());
            return;
        }
        if let Err(e) = fs::remove_dir_all(&self.path) {
            eprintln!("harness: cannot remove {}: {e}", self.path.display());
        }
    }
}

/// Creates `path` (and parents) if missing, then sets its mode.
pub(crate) fn make_dir(path: &Path, mode: u32) {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    set_mode(path, mode);
}

/// `chmod mode path`, panicking with the path on failure.
pub(crate) fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("cannot chmod {mode:o} {}: {e}", path.display()));
}

/// `chown user:group path` (the user's primary group), panicking on failure.
pub(crate) fn chown_to(path: &Path, user: &str) {
    let u = crate::cmd::lookup_user(user);
    nix::unistd::chown(path, Some(u.uid), Some(u.gid))
        .unwrap_or_else(|e| panic!("cannot chown {user} {}: {e}", path.display()));
}

/// Writes `contents` to a new file `path` owned by `user` with `mode`.
pub(crate) fn write_file(path: &Path, contents: &str, user: Option<&str>, mode: u32) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    if let Some(user) = user {
        chown_to(path, user);
    }
    set_mode(path, mode);
}

/// Appends `text` to the file `path`.
pub(crate) fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open {} to append: {e}", path.display()));
    f.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("cannot append to {}: {e}", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirs_are_unique_traversable_and_removed() {
        let a = TestDir::new("same name/with: odd chars");
        let b = TestDir::new("same name/with: odd chars");
        assert_ne!(a.path(), b.path());
        let name = a.path().file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.ends_with("-same_name_with__odd_chars"), "{name}");
        let mode = fs::metadata(a.path()).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o755);
        let path = a.path().to_owned();
        fs::write(a.join("f"), "x").unwrap();
        drop(a);
        if std::env::var_os(KEEP_DIRS_ENV).is_none() {
            assert!(!path.exists(), "{} not removed", path.display());
        }
    }
}
