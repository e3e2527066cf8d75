//! The one place the process changes its effective uid, and the lock that
//! keeps everything else from running under the borrowed uid.
//!
//! Peer authentication on PostgreSQL's socket takes the credentials of the
//! connecting process, so root connects as `system_user` by switching its
//! effective uid for the handshake. glibc applies `seteuid` to every
//! thread of the process, not just the caller, and `rapidproctl check`
//! runs its probes on threads: while one thread borrowed `postgres`'s uid,
//! another read `redis_tls_ca` under `/var/lib/redis` (mode 0750) and got
//! "Permission denied". So the switch holds a process-wide write lock, and
//! what must run as root (reading CA, certificate, key and password files,
//! forking a child) holds the read lock: they wait for the switch to end.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use nix::unistd::{seteuid, Uid};

static LOCK: RwLock<()> = RwLock::new(());

/// Held while the effective uid is another user's; restores root on drop.
pub struct Borrowed {
    restore: Option<Uid>,
    _lock: Option<RwLockWriteGuard<'static, ()>>,
}

/// Switches the effective uid to `to` (when running as root and `to` is
/// not root) until the returned guard is dropped.
pub fn borrow(to: Option<Uid>) -> nix::Result<Borrowed> {
    match to {
        Some(uid) if Uid::effective().is_root() && !uid.is_root() => {
            let lock = LOCK.write().unwrap_or_else(|p| p.into_inner());
            seteuid(uid)?;
            Ok(Borrowed {
                restore: Some(Uid::from_raw(0)),
                _lock: Some(lock),
            })
        }
        _ => Ok(Borrowed {
            restore: None,
            _lock: None,
        }),
    }
}

impl Drop for Borrowed {
    fn drop(&mut self) {
        if let Some(root) = self.restore {
            // Cannot fail: the real and saved uids are still root.
            let _ = seteuid(root);
        }
    }
}

/// Waits until no other thread has borrowed a uid, and keeps it so while
/// the guard lives: for file reads and forks that must be root's.
pub fn as_root() -> RwLockReadGuard<'static, ()> {
    LOCK.read().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The failure seen in a cluster: a file only root may read, read on
    /// one thread while another borrows a uid, is always read as root.
    #[test]
    fn a_root_read_never_runs_while_another_thread_borrowed_a_uid() {
        if !Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let Ok(Some(nobody)) = nix::unistd::User::from_name("nobody") else {
            eprintln!("skipped: no user nobody");
            return;
        };
        let dir = std::env::temp_dir().join(format!("euid-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("root-only");
        std::fs::write(&secret, "x").unwrap();
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _b = borrow(Some(nobody.uid)).unwrap();
                    std::thread::yield_now();
                }
            });
            for _ in 0..2000 {
                let _root = as_root();
                assert_eq!(Uid::effective(), Uid::from_raw(0));
                std::fs::read(&secret).expect("read as root");
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
}
