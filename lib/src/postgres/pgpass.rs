//! The password file `~/.pgpass` of `system_user`, read as libpq reads it.
//!
//! The README offers `.pgpass` instead of `repl_password`: PostgreSQL's WAL
//! receiver, pg_rewind and pg_basebackup run as `system_user` and libpq finds
//! the password there by itself. The agent's own connections to
//! `primary_host` (tokio-postgres, as root) must find the same password, or
//! they report "cannot tell" where the truth was one connection away.
//!
//! The file lives in a directory that `system_user` owns, and the agent runs
//! as root: a link there could point at any file of the machine, whose
//! contents would then be sent as a password. So the file is opened without
//! following links, and used only if it is a regular file owned by
//! `system_user` (or root) that nobody else may read, as libpq requires.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::Uid;

/// The largest password file read; libpq has no limit, but a file this big
/// is not a password file.
const MAX_SIZE: u64 = 1 << 20;

/// Why the password file was not used. Never carries the file's contents.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PgpassError {
    /// A symbolic link, a directory or a device.
    #[error("{}: not a regular file (links are not followed)", .0.display())]
    NotRegular(PathBuf),
    /// Owned by someone else than system_user or root.
    #[error("{path}: owned by uid {uid}, not by system_user or root", path = .0.display(), uid = .1)]
    Owner(PathBuf, u32),
    /// Readable by the group or others: libpq ignores such a file too.
    #[error("{path}: mode {mode:04o}: group or others may read it; chmod 0600 it (libpq ignores it too)", path = .0.display(), mode = .1)]
    Mode(PathBuf, u32),
    /// Too large to be a password file.
    #[error("{}: larger than 1 MiB", .0.display())]
    TooLarge(PathBuf),
    /// Could not be read.
    #[error("{path}: {reason}", path = .0.display(), reason = .1)]
    Io(PathBuf, String),
}

/// What a connection looks up: the four keys of a `.pgpass` line.
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    /// The host as given to the connection (`primary_host`).
    pub host: &'a str,
    /// The port.
    pub port: u16,
    /// The database; `replication` for a replication connection.
    pub dbname: &'a str,
    /// The role.
    pub user: &'a str,
}

/// The password of the first line matching `key`, as libpq picks it (pure).
///
/// A line is `hostname:port:database:username:password`; each of the first
/// four may be `*`; `\:` and `\\` escape a colon and a backslash; lines
/// starting with `#` and lines with fewer fields are skipped.
pub fn lookup(text: &str, key: &Key<'_>) -> Option<String> {
    let port = key.port.to_string();
    let wanted = [key.host, port.as_str(), key.dbname, key.user];
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(split_line)
        .find(|(fields, _)| fields.iter().zip(wanted).all(|(f, w)| f == "*" || f == w))
        .map(|(_, password)| password)
}

/// Splits a line into its four keys and the password, unescaping; `None`
/// for a line with fewer than five fields.
fn split_line(line: &str) -> Option<([String; 4], String)> {
    let mut fields: Vec<String> = Vec::with_capacity(5);
    let mut cur = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    cur.push(next);
                }
            }
            ':' if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if fields.len() < 4 {
        return None;
    }
    let [h, p, d, u]: [String; 4] = fields.try_into().ok()?;
    Some(([h, p, d, u], cur))
}

/// The password file of a user whose home is `home`.
pub fn path_in(home: &Path) -> PathBuf {
    home.join(".pgpass")
}

/// Reads the password file at `path` for a lookup, if it exists and may be
/// used: `Ok(None)` when there is none; an error when it exists but is not
/// safe or not private (the caller says so: it is a misconfiguration).
pub fn read(path: &Path, owner: Uid) -> Result<Option<String>, PgpassError> {
    let file = match File::options()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // O_NOFOLLOW on a link fails with ELOOP.
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(PgpassError::NotRegular(path.to_owned()))
        }
        Err(e) => return Err(PgpassError::Io(path.to_owned(), e.to_string())),
    };
    let md = file
        .metadata()
        .map_err(|e| PgpassError::Io(path.to_owned(), e.to_string()))?;
    if !md.is_file() {
        return Err(PgpassError::NotRegular(path.to_owned()));
    }
    if md.uid() != owner.as_raw() && md.uid() != 0 {
        return Err(PgpassError::Owner(path.to_owned(), md.uid()));
    }
    if md.mode() & 0o077 != 0 {
        return Err(PgpassError::Mode(path.to_owned(), md.mode() & 0o7777));
    }
    if md.len() > MAX_SIZE {
        return Err(PgpassError::TooLarge(path.to_owned()));
    }
    let mut text = String::new();
    file.take(MAX_SIZE)
        .read_to_string(&mut text)
        .map_err(|e| PgpassError::Io(path.to_owned(), e.to_string()))?;
    Ok(Some(text))
}

/// The password `system_user` (uid `owner`, home `home`) would send for
/// `key`, from its `~/.pgpass`.
pub fn password_for(home: &Path, owner: Uid, key: &Key<'_>) -> Result<Option<String>, PgpassError> {
    Ok(read(&path_in(home), owner)?.and_then(|text| lookup(&text, key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(host: &'a str, dbname: &'a str) -> Key<'a> {
        Key {
            host,
            port: 5432,
            dbname,
            user: "replicator",
        }
    }

    #[test]
    fn the_first_matching_line_gives_the_password() {
        let text = "# comment\n\
                    10.0.0.1:5432:replication:replicator:only-replication\n\
                    10.0.0.1:5432:*:replicator:s3cret\n\
                    *:*:*:*:fallback\n";
        assert_eq!(
            lookup(text, &key("10.0.0.1", "postgres")).as_deref(),
            Some("s3cret")
        );
        assert_eq!(
            lookup(text, &key("10.0.0.1", "replication")).as_deref(),
            Some("only-replication")
        );
        assert_eq!(
            lookup(text, &key("10.0.0.2", "postgres")).as_deref(),
            Some("fallback")
        );
    }

    #[test]
    fn escaped_colons_and_backslashes_are_read_as_libpq_reads_them() {
        let text = r"10.0.0.1:5432:postgres:replicator:pa\:ss\\wo:rd";
        assert_eq!(
            lookup(text, &key("10.0.0.1", "postgres")).as_deref(),
            Some(r"pa:ss\wo:rd")
        );
        let host = r"fe80\:\:1:*:*:*:v6";
        assert_eq!(lookup(host, &key("fe80::1", "x")).as_deref(), Some("v6"));
    }

    #[test]
    fn short_lines_comments_and_other_ports_do_not_match() {
        let text =
            "10.0.0.1:5432:postgres\n#10.0.0.1:5432:*:*:commented\n10.0.0.1:5433:*:*:other-port\n";
        assert_eq!(lookup(text, &key("10.0.0.1", "postgres")), None);
    }

    #[test]
    fn a_link_a_shared_file_or_a_strangers_file_is_refused() {
        if !Uid::effective().is_root() {
            eprintln!("skipped: needs root to chown");
            return;
        }
        let dir = std::env::temp_dir().join(format!("rapidpro-pgpass-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(".pgpass");
        let me = Uid::effective();
        assert_eq!(read(&file, me), Ok(None), "no file");

        std::fs::write(&file, "*:*:*:*:pw\n").unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        assert!(matches!(read(&file, me), Err(PgpassError::Mode(_, 0o644))));
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let k = key("h", "postgres");
        assert_eq!(password_for(&dir, me, &k), Ok(Some("pw".into())));

        nix::unistd::chown(&file, Some(Uid::from_raw(4242)), None).unwrap();
        assert!(matches!(read(&file, me), Err(PgpassError::Owner(_, 4242))));

        let link = dir.join("link");
        std::os::unix::fs::symlink("/etc/shadow", &link).unwrap();
        assert!(matches!(read(&link, me), Err(PgpassError::NotRegular(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
