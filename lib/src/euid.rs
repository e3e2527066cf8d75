//! The one place the process changes its effective uid, for one thread only.
//!
//! Peer authentication on PostgreSQL's socket takes the credentials of the
//! connecting process, so root connects as `system_user` by switching its
//! effective uid for the handshake.
//!
//! The switch is the kernel's `setresuid`, which applies to the calling
//! thread alone. glibc's `seteuid` applies to every thread: it signals each
//! one (SIGSETXID) to make it switch too. `rapidproctl check` runs its
//! probes on threads, and both halves of that hurt:
//! - another thread ran under the borrowed uid: it read `redis_tls_ca` under
//!   `/var/lib/redis` (mode 0750) as postgres and got "Permission denied";
//! - the signal interrupted another thread's socket read that had a timeout
//!   (`SO_RCVTIMEO` reads are not restarted): the Redis probe failed "AUTH
//!   failed: Interrupted system call" in the README's cluster.
//!
//! With a per-thread switch, every other thread stays root and is never
//! signalled, so nothing else has to wait for the switch.

use nix::unistd::Uid;
use rustix::thread::{set_thread_res_uid, Uid as RawUid};

/// Held while the calling thread's effective uid is another user's;
/// restores root on drop. Not `Send`: the uid belongs to the thread that
/// switched it, so the guard must be dropped there.
pub struct Borrowed {
    restore: bool,
    _thread_bound: std::marker::PhantomData<*const ()>,
}

/// Switches the calling thread's effective uid to `to` (when running as
/// root and `to` is not root) until the returned guard is dropped. The real
/// and saved uids stay root, so the switch back cannot fail.
pub fn borrow(to: Option<Uid>) -> std::io::Result<Borrowed> {
    match to {
        Some(uid) if Uid::effective().is_root() && !uid.is_root() => {
            set_thread_res_uid(None, Some(RawUid::from_raw(uid.as_raw())), None)?;
            Ok(Borrowed {
                restore: true,
                _thread_bound: std::marker::PhantomData,
            })
        }
        _ => Ok(Borrowed {
            restore: false,
            _thread_bound: std::marker::PhantomData,
        }),
    }
}

impl Drop for Borrowed {
    fn drop(&mut self) {
        if self.restore {
            // Cannot fail: the real and saved uids are still root.
            let _ = set_thread_res_uid(None, Some(RawUid::ROOT), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    fn nobody() -> Option<Uid> {
        if !Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return None;
        }
        match nix::unistd::User::from_name("nobody") {
            Ok(Some(u)) => Some(u.uid),
            _ => {
                eprintln!("skipped: no user nobody");
                None
            }
        }
    }

    /// The first failure seen in a cluster: a file only root may read, read
    /// on one thread while another borrows a uid, is always read as root.
    #[test]
    fn a_root_read_never_runs_while_another_thread_borrowed_a_uid() {
        let Some(nobody) = nobody() else { return };
        let dir = std::env::temp_dir().join(format!("euid-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("root-only");
        std::fs::write(&secret, "x").unwrap();
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let _b = borrow(Some(nobody)).unwrap();
                    assert_eq!(Uid::effective(), nobody);
                    std::thread::yield_now();
                }
            });
            for _ in 0..2000 {
                assert_eq!(Uid::effective(), Uid::from_raw(0));
                std::fs::read(&secret).expect("read as root");
            }
            stop.store(true, Ordering::Relaxed);
        });
        assert_eq!(Uid::effective(), Uid::from_raw(0));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The second: a socket read with a timeout on one thread, while
    /// another thread borrows and returns a uid many times, gets its data
    /// rather than "Interrupted system call".
    #[test]
    fn a_read_with_a_timeout_is_not_interrupted_by_another_threads_borrow() {
        let Some(nobody) = nobody() else { return };
        let (mut reader, mut writer) = std::os::unix::net::UnixStream::pair().unwrap();
        reader
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let stop = AtomicBool::new(false);
        let got = std::thread::scope(|s| {
            let read = s.spawn(move || {
                let mut byte = [0u8; 1];
                reader.read(&mut byte).map(|n| (n, byte[0]))
            });
            s.spawn(|| {
                let started = std::time::Instant::now();
                while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(2) {
                    drop(borrow(Some(nobody)).unwrap());
                    std::thread::sleep(Duration::from_micros(200));
                }
            });
            std::thread::sleep(Duration::from_millis(300));
            // Fails when the reader already gave up (and closed its end).
            let _ = writer.write_all(b"!");
            let got = read.join().unwrap();
            stop.store(true, Ordering::Relaxed);
            got
        });
        assert_eq!(got.expect("the read was interrupted"), (1, b'!'));
    }
}
