//! Runs a child as another user with that user's own supplementary groups,
//! as a login (or `runuser`) would give them.
//!
//! Why a crate of its own: the library and the binaries of rapidpro-ha
//! `#![forbid(unsafe_code)]`, and this is the one thing they need that safe
//! Rust cannot do. std's `CommandExt::uid` calls `setgroups(0, NULL)`, leaving
//! the child with its primary group alone, and `CommandExt::groups` is still
//! unstable (rust-lang/rust#90747). Debian's PostgreSQL reads its TLS key
//! through the `ssl-cert` group of which `postgres` is a member, so the
//! groups matter. The switch must therefore happen in the child between
//! `fork` and `exec`, in a `pre_exec` hook, which is `unsafe`: the hook runs
//! in a copy of a multi-threaded process where only async-signal-safe calls
//! are allowed. Keeping it here, in a dozen lines that can be read in one
//! sitting, lets every other crate forbid `unsafe` outright.

#![deny(unsafe_code)]

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::unistd::{Gid, Uid};

/// The supplementary groups a login of `name` gets (`getgrouplist`, read
/// from the group database now, in the parent: it is not async-signal-safe
/// and may allocate), always including `gid`. An unknown user, or no name,
/// gets `gid` alone.
pub fn groups_of(name: Option<&str>, gid: Gid) -> Vec<Gid> {
    let Some(cname) = name.and_then(|n| CString::new(n).ok()) else {
        return vec![gid];
    };
    let mut groups = nix::unistd::getgrouplist(&cname, gid).unwrap_or_default();
    if !groups.contains(&gid) {
        groups.insert(0, gid);
    }
    groups
}

/// Makes `cmd` run as `uid`/`gid` with the supplementary groups of the user
/// called `name` (see [`groups_of`]).
///
/// When the caller is not root no switch is possible: std's `uid`/`gid` are
/// set instead, so that spawning fails with std's error if the ids differ
/// from the caller's.
pub fn switch_user(cmd: &mut Command, uid: Uid, gid: Gid, name: Option<&str>) {
    if !Uid::effective().is_root() {
        cmd.uid(uid.as_raw()).gid(gid.as_raw());
        return;
    }
    // Built before the fork: the hook below only reads it.
    let groups = groups_of(name, gid);
    #[allow(unsafe_code)]
    // SAFETY: `pre_exec` runs the closure in the child after `fork`, where
    // only async-signal-safe functions may be called. The closure allocates
    // nothing and takes no lock: it makes the setgroups(2), setgid(2) and
    // setuid(2) system calls (nix's wrappers pass the slice's pointer and
    // length straight to libc and turn errno into an `io::Error` without
    // allocating) on `groups`, `gid` and `uid`, all prepared before the
    // fork. The order is the one the kernel requires: groups and gid while
    // still root, uid last.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setgroups(&groups)?;
            nix::unistd::setgid(gid)?;
            nix::unistd::setuid(uid)?;
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_always_include_the_primary_group() {
        let gid = Gid::from_raw(4242);
        assert_eq!(groups_of(None, gid), vec![gid]);
        assert!(groups_of(Some("root"), gid).contains(&gid));
    }

    #[test]
    fn a_child_switched_to_nobody_runs_as_nobody() {
        if !Uid::effective().is_root() {
            eprintln!("skipped: needs root to switch users");
            return;
        }
        let Ok(Some(nobody)) = nix::unistd::User::from_name("nobody") else {
            eprintln!("skipped: no user nobody");
            return;
        };
        let mut uid = Command::new("id");
        uid.arg("-u");
        switch_user(&mut uid, nobody.uid, nobody.gid, Some("nobody"));
        let out = uid.output().unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            nobody.uid.to_string()
        );
    }
}
