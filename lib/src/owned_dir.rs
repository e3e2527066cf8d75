//! Files in a directory that another user owns, read and written by root.
//!
//! The agent runs as root, but the PostgreSQL data directory belongs to
//! `system_user` and the generated Redis directory to `redis_user`. Whoever
//! owns a directory can put anything under any name in it: a symbolic link
//! to `/etc/shadow`, a hard link to `/etc/passwd` (root is exempt from
//! `fs.protected_hardlinks`, and a link made before the file became root's
//! keeps working), or a FIFO on which an `open` blocks forever. A root
//! process that opens, chowns or renames by path in such a directory hands
//! the other user whatever the name points to: this is how the `postgres`
//! user, or any PostgreSQL superuser through `COPY ... TO PROGRAM`, could
//! become root (issue 11).
//!
//! So every file operation the agent does there goes through [`OwnedDir`]:
//!
//! - the directory is opened once, no component of its path followed if it
//!   is a link owned by anyone but root (root's links are the
//!   administrator's: `/var/run -> /run`, a data directory moved to another
//!   disk), and every later name is looked up in that open directory;
//! - reads open with `O_NOFOLLOW | O_NONBLOCK` and accept only a regular file
//!   with one link, owned by the expected user or root, of bounded size;
//! - writes create a new temporary file exclusively (`O_CREAT | O_EXCL |
//!   O_NOFOLLOW`), chown and chmod it through its descriptor, and rename it
//!   within the directory, which replaces a name and never follows it;
//! - removals unlink the name, never what it points to.
//!
//! Names are looked up under `/proc/self/fd/N/`, which the kernel resolves
//! to the open directory itself whatever happened to its path since. This
//! gives `openat` semantics with std's `File` and no `unsafe`: nix 0.29's
//! `openat` returns a raw descriptor that only `unsafe` code could own.
//! `renameat` and `unlinkat` take the descriptor directly.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::OFlag;
use nix::unistd::{Gid, Uid, UnlinkatFlags, User};

/// The largest file [`OwnedDir::read`] returns. The files the agent reads
/// there (`postgresql.conf`, `pg_hba.conf`, pidfiles, its state) are far
/// smaller; the bound keeps a planted huge or sparse file from exhausting
/// memory.
pub const MAX_READ: u64 = 8 << 20;

/// How many root-owned symbolic links opening a directory may follow, as
/// the kernel's own limit (`MAXSYMLINKS`, path_resolution(7)).
const MAX_LINKS: u32 = 40;

/// The suffix of the temporary file a write creates beside its target.
pub const TMP_SUFFIX: &str = ".rapidpro-ha.tmp";

/// What kind of directory entry a name is, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    Regular,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A unix socket.
    Socket,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
}

impl Kind {
    fn of(t: fs::FileType) -> Kind {
        if t.is_symlink() {
            Kind::Symlink
        } else if t.is_dir() {
            Kind::Directory
        } else if t.is_fifo() {
            Kind::Fifo
        } else if t.is_socket() {
            Kind::Socket
        } else if t.is_char_device() {
            Kind::CharDevice
        } else if t.is_block_device() {
            Kind::BlockDevice
        } else {
            Kind::Regular
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Regular => "regular file",
            Kind::Directory => "directory",
            Kind::Symlink => "symbolic link",
            Kind::Fifo => "FIFO",
            Kind::Socket => "socket",
            Kind::CharDevice => "character device",
            Kind::BlockDevice => "block device",
        })
    }
}

/// Why a file was refused or could not be used.
#[derive(Debug)]
pub enum Reason {
    /// The name is a symbolic link (or a directory on the way is one that
    /// root did not make).
    Symlink,
    /// The file has more than one name: another may be outside the directory.
    HardLinks(u64),
    /// A FIFO, device, socket or directory where a regular file belongs.
    NotRegular(Kind),
    /// Owned by someone else than the directory's user and root.
    Owner {
        /// The file's owner.
        uid: u32,
        /// Who may own it, by name.
        expected: String,
    },
    /// Larger than [`MAX_READ`].
    TooLarge(u64),
    /// Not a plain file name (a `/`, `.` or `..`).
    BadName,
    /// The system refused (permission, missing directory, disk full...).
    Io(io::Error),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Symlink => f.write_str("is a symbolic link"),
            Reason::HardLinks(n) => write!(f, "has {n} hard links"),
            Reason::NotRegular(k) => write!(f, "is a {k}, not a regular file"),
            Reason::Owner { uid, expected } => {
                write!(f, "is owned by uid {uid}, expected {expected} or root")
            }
            Reason::TooLarge(size) => write!(f, "has {size} bytes, more than {MAX_READ}"),
            Reason::BadName => f.write_str("is not a plain file name"),
            Reason::Io(e) => write!(f, "cannot be used: {e}"),
        }
    }
}

/// A file of an [`OwnedDir`] that was refused or failed, with its full path.
///
/// The path and the reason come first: the OCF exit reason keeps only 128
/// characters.
#[derive(Debug)]
pub struct Error {
    /// The full path of the file (or directory).
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: Reason,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.path.display(), self.reason)?;
        if self.is_refusal() {
            f.write_str(
                ": refused, root neither follows nor shares such a file in a directory \
                 another user owns; remove it and find out who put it there",
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.reason {
            Reason::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl Error {
    /// Whether the file was refused for what it is (a link, a FIFO, a
    /// stranger's file), as opposed to an I/O failure. A refusal is a sign
    /// of an attack or a corruption that retrying cannot fix.
    pub fn is_refusal(&self) -> bool {
        !matches!(self.reason, Reason::Io(_))
    }

    /// Whether the failure is a missing file or directory.
    pub fn is_not_found(&self) -> bool {
        matches!(&self.reason, Reason::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }

    fn new(path: PathBuf, reason: Reason) -> Self {
        Error { path, reason }
    }
}

/// What a name in the directory is, read without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Its kind.
    pub kind: Kind,
    /// Its owner.
    pub uid: u32,
    /// Its number of hard links.
    pub nlink: u64,
}

/// A directory owned by another user, opened once without following links;
/// every name is looked up inside it. See the module documentation.
#[derive(Debug)]
pub struct OwnedDir {
    dir: File,
    path: PathBuf,
    owner: Uid,
}

impl OwnedDir {
    /// Opens `path`, whose files belong to `owner` (or root). No component is
    /// followed if it is a symbolic link that root does not own.
    pub fn open(path: &Path, owner: Uid) -> Result<OwnedDir, Error> {
        let dir = open_dir_nofollow(path).map_err(|e| {
            let reason = if e.raw_os_error() == Some(nix::libc::ELOOP) {
                Reason::Symlink
            } else {
                Reason::Io(e)
            };
            Error::new(path.to_path_buf(), reason)
        })?;
        Ok(OwnedDir::from_open(dir, path.to_path_buf(), owner))
    }

    /// Wraps a directory the caller opened safely already (see
    /// [`open_dir_nofollow`]); `path` only names it in messages.
    pub fn from_open(dir: File, path: PathBuf, owner: Uid) -> OwnedDir {
        OwnedDir { dir, path, owner }
    }

    /// The directory's path, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The full path of `name`, for messages.
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// `name` inside the open directory, whatever its path became.
    fn at(&self, name: &str) -> PathBuf {
        at(&self.dir, name)
    }

    fn err(&self, name: &str, reason: Reason) -> Error {
        Error::new(self.path_of(name), reason)
    }

    fn io(&self, name: &str, e: io::Error) -> Error {
        self.err(name, Reason::Io(e))
    }

    fn check_name(&self, name: &str) -> Result<(), Error> {
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(self.err(name, Reason::BadName));
        }
        Ok(())
    }

    /// What `name` is, without following it; `None` when it does not exist.
    pub fn entry(&self, name: &str) -> Result<Option<Entry>, Error> {
        self.check_name(name)?;
        match fs::symlink_metadata(self.at(name)) {
            Ok(m) => Ok(Some(Entry {
                kind: Kind::of(m.file_type()),
                uid: m.uid(),
                nlink: m.nlink(),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(name, e)),
        }
    }

    /// Whether `name` exists as a file root may use: `Ok(false)` when it
    /// does not exist, a refusal when it is a link, a FIFO, a device, a
    /// directory, has several links or belongs to a stranger.
    pub fn check(&self, name: &str) -> Result<bool, Error> {
        match self.entry(name)? {
            None => Ok(false),
            Some(e) => {
                self.judge(name, e.kind, e.nlink, e.uid)?;
                Ok(true)
            }
        }
    }

    /// The rules for a file root may read or replace.
    fn judge(&self, name: &str, kind: Kind, nlink: u64, uid: u32) -> Result<(), Error> {
        match kind {
            Kind::Regular => {}
            Kind::Symlink => return Err(self.err(name, Reason::Symlink)),
            other => return Err(self.err(name, Reason::NotRegular(other))),
        }
        if nlink != 1 {
            return Err(self.err(name, Reason::HardLinks(nlink)));
        }
        if uid != 0 && uid != self.owner.as_raw() {
            return Err(self.err(
                name,
                Reason::Owner {
                    uid,
                    expected: user_name(self.owner),
                },
            ));
        }
        Ok(())
    }

    /// Reads `name`: `Ok(None)` when it does not exist; refused unless it
    /// is a regular file with one link, owned by the directory's user or
    /// root, of at most [`MAX_READ`] bytes. Never blocks on a FIFO.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.read_with_mode(name)?.map(|(content, _)| content))
    }

    /// As [`OwnedDir::read`], with the file's permission bits, for a copy
    /// that keeps them.
    pub fn read_with_mode(&self, name: &str) -> Result<Option<(Vec<u8>, u32)>, Error> {
        // Look before opening: opening a device can have effects of its own.
        if !self.check(name)? {
            return Ok(None);
        }
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).bits())
            .open(self.at(name))
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
                return Err(self.err(name, Reason::Symlink))
            }
            Err(e) => return Err(self.io(name, e)),
        };
        // The name may have been replaced between the look and the open:
        // judge what was opened.
        let meta = file.metadata().map_err(|e| self.io(name, e))?;
        self.judge(name, Kind::of(meta.file_type()), meta.nlink(), meta.uid())?;
        if meta.len() > MAX_READ {
            return Err(self.err(name, Reason::TooLarge(meta.len())));
        }
        let mut content = Vec::with_capacity(meta.len() as usize);
        file.take(MAX_READ + 1)
            .read_to_end(&mut content)
            .map_err(|e| self.io(name, e))?;
        if content.len() as u64 > MAX_READ {
            return Err(self.err(name, Reason::TooLarge(content.len() as u64)));
        }
        Ok(Some((content, meta.mode() & 0o7777)))
    }

    /// Replaces `name` atomically with `content`, owned by `uid:gid` with
    /// `mode` (the owner is set only when running as root, as only root
    /// can). A link, FIFO, device or stranger's file at `name` is refused
    /// and left as it is. A leftover temporary file is unlinked first,
    /// whatever it is, since a crash can leave one.
    pub fn write(
        &self,
        name: &str,
        content: &[u8],
        uid: Uid,
        gid: Gid,
        mode: u32,
    ) -> Result<(), Error> {
        self.check_name(name)?;
        self.check(name)?;
        let tmp = format!("{name}{TMP_SUFFIX}");
        match self.entry(&tmp)? {
            None => {}
            Some(e) => {
                if e.kind != Kind::Regular || e.nlink != 1 {
                    log::warn!(
                        "removing {} ({}, {} links): a leftover temporary file is never reused",
                        self.path_of(&tmp).display(),
                        e.kind,
                        e.nlink
                    );
                }
                self.remove(&tmp)?;
            }
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
            .mode(0o600)
            .open(self.at(&tmp))
            .map_err(|e| self.io(&tmp, e))?;
        let fill = |file: &mut File| -> io::Result<()> {
            if Uid::effective().is_root() {
                std::os::unix::fs::fchown(&*file, Some(uid.as_raw()), Some(gid.as_raw()))?;
            }
            // After the chown, which may clear set-id bits.
            file.set_permissions(fs::Permissions::from_mode(mode))?;
            file.write_all(content)?;
            file.sync_all()
        };
        if let Err(e) = fill(&mut file) {
            let _ = self.remove(&tmp);
            return Err(self.io(&tmp, e));
        }
        drop(file);
        let fd = self.dir.as_raw_fd();
        if let Err(e) = nix::fcntl::renameat(Some(fd), tmp.as_str(), Some(fd), name) {
            let _ = self.remove(&tmp);
            return Err(self.io(name, e.into()));
        }
        // The rename is durable once the directory is.
        self.dir
            .sync_all()
            .map_err(|e| Error::new(self.path.clone(), Reason::Io(e)))
    }

    /// Takes the exclusive `flock` of `name` without waiting, creating it
    /// (mode 0600, empty) if needed: `Ok(None)` when another process holds
    /// it. The lock lasts as long as the returned value. A link, FIFO,
    /// device or stranger's file at `name` is refused, as for a read; what
    /// was opened is judged again, since the name may change in between.
    pub fn try_lock(&self, name: &str) -> Result<Option<nix::fcntl::Flock<File>>, Error> {
        self.check_name(name)?;
        self.check(name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).bits())
            .mode(0o600)
            .open(self.at(name))
            .map_err(|e| {
                if e.raw_os_error() == Some(nix::libc::ELOOP) {
                    self.err(name, Reason::Symlink)
                } else {
                    self.io(name, e)
                }
            })?;
        let meta = file.metadata().map_err(|e| self.io(name, e))?;
        self.judge(name, Kind::of(meta.file_type()), meta.nlink(), meta.uid())?;
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(lock)),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(self.io(name, e.into())),
        }
    }

    /// Unlinks `name` (the name itself, never what a link points to).
    /// Returns whether it existed.
    pub fn remove(&self, name: &str) -> Result<bool, Error> {
        self.check_name(name)?;
        match nix::unistd::unlinkat(Some(self.dir.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => Ok(true),
            Err(nix::errno::Errno::ENOENT) => Ok(false),
            Err(e) => Err(self.io(name, e.into())),
        }
    }
}

/// A user's name for messages, or `uid N` when it has none.
fn user_name(uid: Uid) -> String {
    match User::from_uid(uid) {
        Ok(Some(u)) => u.name,
        _ => format!("uid {uid}"),
    }
}

/// `/proc/self/fd/N/name`: `name` inside the directory open as `dir`. The
/// kernel resolves the descriptor's link to the very directory, so a rename
/// or a link planted on its path since it was opened changes nothing.
pub fn at(dir: &File, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name)
}

/// Opens the directory `path` (absolute) one component at a time, each with
/// `O_DIRECTORY | O_NOFOLLOW` inside the one before. A symbolic link on the
/// way is followed only when root owns it: the administrator made it (a data
/// directory moved to another disk, `/var/run -> /run`). One owned by
/// another user is refused, since that user could point it anywhere and
/// turn root's writes there.
pub fn open_dir_nofollow(path: &Path) -> io::Result<File> {
    if !path.is_absolute() {
        return Err(io::Error::other("not an absolute path"));
    }
    let open = |p: &Path| {
        OpenOptions::new()
            .read(true)
            .custom_flags((OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
            .open(p)
    };
    // The components still to walk, the next one last.
    let mut parts: Vec<std::ffi::OsString> = Vec::new();
    let push_rev = |parts: &mut Vec<std::ffi::OsString>, p: &Path| {
        for c in p.components().rev() {
            match c {
                Component::Normal(n) => parts.push(n.to_owned()),
                Component::ParentDir => parts.push("..".into()),
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            }
        }
    };
    push_rev(&mut parts, path);
    let mut dir = open(Path::new("/"))?;
    let mut links = 0;
    while let Some(name) = parts.pop() {
        let p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(&name);
        let meta = fs::symlink_metadata(&p)?;
        if meta.file_type().is_symlink() {
            links += 1;
            if meta.uid() != 0 || links > MAX_LINKS {
                // What the kernel says of O_NOFOLLOW on a link.
                return Err(io::Error::from_raw_os_error(nix::libc::ELOOP));
            }
            let target = fs::read_link(&p)?;
            push_rev(&mut parts, &target);
            if target.is_absolute() {
                dir = open(Path::new("/"))?;
            }
            continue;
        }
        dir = open(&p)?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    /// The user the test files belong to (not root, so ownership shows).
    const NOBODY: u32 = 65534;

    /// A fresh directory owned by `nobody` and, beside it, a victim file
    /// owned by root, 0644, that nothing may touch.
    struct Scene {
        root: PathBuf,
        dir: PathBuf,
        victim: PathBuf,
    }

    const VICTIM: &[u8] = b"root:secret-hash:19000::::::\n";

    impl Scene {
        fn new() -> Scene {
            static N: AtomicU32 = AtomicU32::new(0);
            let root = std::env::temp_dir().join(format!(
                "rapidpro-owned-dir-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&root);
            let dir = root.join("owned");
            fs::create_dir_all(&dir).unwrap();
            let victim = root.join("victim");
            fs::write(&victim, VICTIM).unwrap();
            fs::set_permissions(&victim, fs::Permissions::from_mode(0o640)).unwrap();
            if Uid::effective().is_root() {
                nix::unistd::chown(&dir, Some(Uid::from_raw(NOBODY)), None).unwrap();
            }
            Scene { root, dir, victim }
        }

        fn owner() -> Uid {
            if Uid::effective().is_root() {
                Uid::from_raw(NOBODY)
            } else {
                Uid::effective()
            }
        }

        fn open(&self) -> OwnedDir {
            OwnedDir::open(&self.dir, Scene::owner()).unwrap()
        }

        /// The victim is as it was: content, owner, mode, one link.
        #[track_caller]
        fn assert_victim_untouched(&self) {
            let m = fs::metadata(&self.victim).unwrap();
            assert_eq!(fs::read(&self.victim).unwrap(), VICTIM);
            assert_eq!(m.uid(), Uid::effective().as_raw());
            assert_eq!(m.mode() & 0o7777, 0o640);
            assert_eq!(m.nlink(), 1);
        }

        fn fifo(&self, name: &str) {
            nix::unistd::mkfifo(&self.dir.join(name), nix::sys::stat::Mode::S_IRWXU).unwrap();
        }
    }

    impl Drop for Scene {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    #[track_caller]
    fn assert_refused(r: Result<impl fmt::Debug, Error>, path: &Path, why: &str) {
        let e = r.expect_err("must be refused");
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("{} {why}", path.display())),
            "{text}"
        );
        assert!(e.is_refusal(), "{text}");
    }

    #[test]
    fn a_regular_file_is_read_and_a_missing_one_is_none() {
        let s = Scene::new();
        fs::write(s.dir.join("a.conf"), b"port = 5432\n").unwrap();
        let d = s.open();
        assert_eq!(d.read("a.conf").unwrap().unwrap(), b"port = 5432\n");
        assert_eq!(d.read("missing").unwrap(), None);
        assert!(!d.check("missing").unwrap());
    }

    #[test]
    fn reading_through_a_symbolic_link_is_refused() {
        let s = Scene::new();
        symlink(&s.victim, s.dir.join("postgresql.auto.conf")).unwrap();
        let r = s.open().read("postgresql.auto.conf");
        assert_refused(r, &s.dir.join("postgresql.auto.conf"), "is a symbolic link");
        s.assert_victim_untouched();
    }

    #[test]
    fn reading_a_hard_link_is_refused() {
        let s = Scene::new();
        fs::hard_link(&s.victim, s.dir.join("pg_hba.conf")).unwrap();
        let r = s.open().read("pg_hba.conf");
        assert_refused(r, &s.dir.join("pg_hba.conf"), "has 2 hard links");
        fs::remove_file(s.dir.join("pg_hba.conf")).unwrap();
        s.assert_victim_untouched();
    }

    #[test]
    fn reading_a_fifo_is_refused_without_blocking() {
        let s = Scene::new();
        s.fifo("postmaster.pid");
        let t = Instant::now();
        let r = s.open().read("postmaster.pid");
        assert_refused(
            r,
            &s.dir.join("postmaster.pid"),
            "is a FIFO, not a regular file",
        );
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn reading_a_directory_is_refused() {
        let s = Scene::new();
        fs::create_dir(s.dir.join("pg_ident.conf")).unwrap();
        let r = s.open().read("pg_ident.conf");
        assert_refused(r, &s.dir.join("pg_ident.conf"), "is a directory");
    }

    #[test]
    fn reading_a_strangers_file_is_refused() {
        let s = Scene::new();
        if !Uid::effective().is_root() {
            panic!("this test needs root to give a file away");
        }
        let f = s.dir.join("x.pid");
        fs::write(&f, b"1\n").unwrap();
        nix::unistd::chown(&f, Some(Uid::from_raw(4242)), None).unwrap();
        let r = s.open().read("x.pid");
        assert_refused(r, &f, "is owned by uid 4242, expected nobody or root");
        // Root's own file is fine.
        nix::unistd::chown(&f, Some(Uid::from_raw(0)), None).unwrap();
        assert_eq!(s.open().read("x.pid").unwrap().unwrap(), b"1\n");
    }

    #[test]
    fn a_huge_file_is_refused() {
        let s = Scene::new();
        let f = File::create(s.dir.join("big")).unwrap();
        f.set_len(MAX_READ + 1).unwrap();
        let r = s.open().read("big");
        assert_refused(r, &s.dir.join("big"), "has 8388609 bytes");
    }

    #[test]
    fn a_write_creates_the_file_with_owner_and_mode_atomically() {
        let s = Scene::new();
        let d = s.open();
        let (uid, gid) = (Scene::owner(), Gid::from_raw(NOBODY));
        let gid = if Uid::effective().is_root() {
            gid
        } else {
            Gid::effective()
        };
        d.write("standby.signal", b"", uid, gid, 0o600).unwrap();
        d.write("a.conf", b"one\n", uid, gid, 0o640).unwrap();
        d.write("a.conf", b"two\n", uid, gid, 0o640).unwrap();
        let m = fs::symlink_metadata(s.dir.join("a.conf")).unwrap();
        assert_eq!(fs::read(s.dir.join("a.conf")).unwrap(), b"two\n");
        assert_eq!((m.uid(), m.gid()), (uid.as_raw(), gid.as_raw()));
        assert_eq!(m.mode() & 0o7777, 0o640);
        assert!(fs::symlink_metadata(s.dir.join("standby.signal"))
            .unwrap()
            .is_file());
        let left: Vec<_> = fs::read_dir(&s.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(TMP_SUFFIX))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_planted_temporary_link_is_unlinked_not_followed() {
        let s = Scene::new();
        let tmp = format!("standby.signal{TMP_SUFFIX}");
        symlink(&s.victim, s.dir.join(&tmp)).unwrap();
        s.open()
            .write(
                "standby.signal",
                b"",
                Scene::owner(),
                Gid::effective(),
                0o600,
            )
            .unwrap();
        s.assert_victim_untouched();
        assert!(fs::symlink_metadata(s.dir.join(&tmp)).is_err());
        assert_eq!(fs::read(s.dir.join("standby.signal")).unwrap(), b"");
    }

    #[test]
    fn a_planted_temporary_hard_link_or_fifo_is_unlinked() {
        let s = Scene::new();
        fs::hard_link(&s.victim, s.dir.join(format!("a.conf{TMP_SUFFIX}"))).unwrap();
        s.fifo(&format!("b.conf{TMP_SUFFIX}"));
        let d = s.open();
        d.write("a.conf", b"a\n", Scene::owner(), Gid::effective(), 0o600)
            .unwrap();
        d.write("b.conf", b"b\n", Scene::owner(), Gid::effective(), 0o600)
            .unwrap();
        s.assert_victim_untouched();
        assert_eq!(fs::read(s.dir.join("a.conf")).unwrap(), b"a\n");
        assert_eq!(fs::read(s.dir.join("b.conf")).unwrap(), b"b\n");
    }

    #[test]
    fn writing_over_a_link_a_hard_link_or_a_fifo_is_refused() {
        let s = Scene::new();
        symlink(&s.victim, s.dir.join("link")).unwrap();
        fs::hard_link(&s.victim, s.dir.join("hard")).unwrap();
        s.fifo("fifo");
        let d = s.open();
        let w = |n| d.write(n, b"x", Scene::owner(), Gid::effective(), 0o600);
        assert_refused(w("link"), &s.dir.join("link"), "is a symbolic link");
        assert_refused(w("hard"), &s.dir.join("hard"), "has 2 hard links");
        assert_refused(w("fifo"), &s.dir.join("fifo"), "is a FIFO");
        // Nothing was replaced.
        assert!(fs::symlink_metadata(s.dir.join("link"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(fs::symlink_metadata(s.dir.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
        fs::remove_file(s.dir.join("hard")).unwrap();
        s.assert_victim_untouched();
    }

    #[test]
    fn removing_a_link_removes_the_link_only() {
        let s = Scene::new();
        symlink(&s.victim, s.dir.join("redis.pid")).unwrap();
        let d = s.open();
        assert!(d.remove("redis.pid").unwrap());
        assert!(!d.remove("redis.pid").unwrap());
        s.assert_victim_untouched();
    }

    #[test]
    fn names_that_leave_the_directory_are_refused() {
        let s = Scene::new();
        let d = s.open();
        for bad in ["", ".", "..", "../victim", "a/b"] {
            assert!(
                matches!(d.read(bad).unwrap_err().reason, Reason::BadName),
                "{bad:?}"
            );
        }
        s.assert_victim_untouched();
    }

    #[test]
    fn a_directory_reached_through_a_strangers_link_is_refused() {
        let s = Scene::new();
        let other = s.root.join("elsewhere");
        fs::create_dir(&other).unwrap();
        fs::write(other.join("f"), b"x").unwrap();
        let link = s.root.join("via-link");
        symlink(&other, &link).unwrap();
        if Uid::effective().is_root() {
            // Root's link: the administrator's, followed.
            assert_eq!(
                OwnedDir::open(&link, Uid::effective())
                    .unwrap()
                    .read("f")
                    .unwrap()
                    .unwrap(),
                b"x"
            );
            std::os::unix::fs::lchown(&link, Some(NOBODY), Some(NOBODY)).unwrap();
        }
        assert_refused(
            OwnedDir::open(&link, Uid::effective()),
            &link,
            "is a symbolic link",
        );
        // A stranger's link higher up the path too.
        fs::create_dir(other.join("sub")).unwrap();
        assert_refused(
            OwnedDir::open(&link.join("sub"), Uid::effective()),
            &link.join("sub"),
            "is a symbolic link",
        );
    }
}
