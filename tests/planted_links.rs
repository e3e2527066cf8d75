//! Files planted by another user where the agent, as root, reads and writes:
//! the PostgreSQL data directory (the `postgres` user's, or any superuser's
//! through `COPY ... TO PROGRAM`), `state_dir` and the generated Redis
//! directory (the `redis` user's). A symbolic link, a hard link or a FIFO
//! under a name the agent uses is refused with a reason naming the path
//! (OCF_ERR_PERM), or, for a leftover temporary file, unlinked without being
//! followed; the victim file never changes and no action hangs (issue 11).

use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rapidpro_ha_harness::{run_command, Node, Pair, PG_USER, REDIS_USER};

use super::agent;
use super::agent_node::{diverge, OCF_SUCCESS};

const OCF_ERR_PERM: i32 = 4;
/// An action that would block on a FIFO is killed (and the test fails) after
/// this long instead of the harness's default.
const NO_HANG: Duration = Duration::from_secs(60);

/// A root-owned file, mode 0640, outside the directories the agent uses:
/// what `/etc/shadow` or `/etc/passwd` would be.
struct Victim {
    path: PathBuf,
    content: Vec<u8>,
}

impl Victim {
    fn new(pair: &Pair, name: &str) -> Victim {
        let path = pair.dir.join(format!("victim-{name}"));
        let content = format!("root:$6$secret-of-{name}:19000:0:99999:7:::\n").into_bytes();
        fs::write(&path, &content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        Victim { path, content }
    }

    /// Content, owner, group, mode and link count as they were.
    #[track_caller]
    fn assert_untouched(&self) {
        let m = fs::metadata(&self.path).unwrap();
        assert_eq!(
            fs::read(&self.path).unwrap(),
            self.content,
            "{} was overwritten",
            self.path.display()
        );
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7777, m.nlink()),
            (0, 0, 0o640, 1),
            "{}: owner, group, mode or links changed",
            self.path.display()
        );
    }

    /// No regular file directly in `dir` holds the victim's content: root
    /// made no copy of it for the directory's owner to read.
    #[track_caller]
    fn assert_not_copied_into(&self, dir: &Path) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_file() && m.nlink() == 1 {
                let text = fs::read(&p).unwrap();
                assert!(
                    !text
                        .windows(self.content.len())
                        .any(|w| w == self.content.as_slice()),
                    "{} holds a copy of {}",
                    p.display(),
                    self.path.display()
                );
            }
        }
    }
}

fn mkfifo(p: &Path) {
    let mut c = Command::new("mkfifo");
    c.arg("-m").arg("0600").arg(p);
    run_command(c, Duration::from_secs(10))
        .unwrap()
        .into_result()
        .unwrap();
}

/// A user's uid and gid, from `id`.
fn ids(user: &str) -> (u32, u32) {
    let id = |flag: &str| {
        let mut c = Command::new("id");
        c.args([flag, user]);
        let out = run_command(c, Duration::from_secs(10))
            .unwrap()
            .into_result()
            .unwrap();
        out.trim().parse::<u32>().unwrap()
    };
    (id("-u"), id("-g"))
}

/// Removes the FIFOs it names when dropped. Declared after the [`Pair`], it
/// drops first: the harness's teardown reads the pidfiles, and a FIFO left
/// there by a failing test would hang it.
struct Fifos(Vec<PathBuf>);

impl Drop for Fifos {
    fn drop(&mut self) {
        for p in &self.0 {
            if fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_fifo()) {
                let _ = fs::remove_file(p);
            }
        }
    }
}

/// Replaces whatever is at `p` (not following it).
fn clear(p: &Path) {
    match fs::remove_file(p) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("{}: {e}", p.display()),
    }
}

/// Runs `start` on `node` (following itself), which must be refused with
/// OCF_ERR_PERM and a reason naming `path` and `why`, without hanging.
#[track_caller]
fn assert_start_refused(node: &Node, path: &Path, why: &str) {
    let t = Instant::now();
    let out = agent(node, node).timeout(NO_HANG).run("start");
    out.assert_code(OCF_ERR_PERM);
    out.assert_reason_contains(&format!("{} {why}", path.display()));
    assert!(t.elapsed() < NO_HANG);
}

#[test]
fn planted_files_in_the_data_directory_are_never_followed() {
    let pair = Pair::new("planted_pgdata");
    let n1 = &pair.nodes[0];
    let victim = Victim::new(&pair, "pgdata");
    let pgdata = &n1.pgdata;
    let _fifos = Fifos(vec![pgdata.join("postmaster.pid")]);

    // Leftover temporary files of the writes: under the names this version
    // uses and the ones it used before. Unlinked or ignored, not followed.
    for tmp in [
        "standby.rapidpro-ha.tmp",
        "standby.signal.rapidpro-ha.tmp",
        "postgresql.auto.rapidpro-ha.tmp",
        "postgresql.auto.conf.rapidpro-ha.tmp",
    ] {
        symlink(&victim.path, pgdata.join(tmp)).unwrap();
    }
    agent(n1, n1).run("start").assert_code(OCF_SUCCESS);
    victim.assert_untouched();
    for f in ["standby.signal", "postgresql.auto.conf"] {
        let m = fs::symlink_metadata(pgdata.join(f)).unwrap();
        assert!(m.is_file(), "{f} is not a regular file");
        assert_eq!(m.mode() & 0o777, 0o600, "{f}");
    }
    agent(n1, n1).run("stop").assert_code(OCF_SUCCESS);

    // postgresql.auto.conf, which start reads and rewrites.
    let auto = pgdata.join("postgresql.auto.conf");
    let kept = fs::read(&auto).unwrap();
    clear(&auto);
    symlink(&victim.path, &auto).unwrap();
    assert_start_refused(n1, &auto, "is a symbolic link");
    victim.assert_untouched();
    victim.assert_not_copied_into(pgdata);
    clear(&auto);
    fs::hard_link(&victim.path, &auto).unwrap();
    assert_start_refused(n1, &auto, "has 2 hard links");
    clear(&auto);
    victim.assert_untouched();
    victim.assert_not_copied_into(pgdata);
    mkfifo(&auto);
    assert_start_refused(n1, &auto, "is a FIFO, not a regular file");
    clear(&auto);
    fs::write(&auto, &kept).unwrap();
    std::os::unix::fs::chown(&auto, Some(ids(PG_USER).0), None).unwrap();
    assert!(
        n1.postmaster_pid().is_none(),
        "PostgreSQL must not run after a refused start"
    );

    // standby.signal, which start writes when it is missing.
    let signal = pgdata.join("standby.signal");
    clear(&signal);
    symlink(&victim.path, &signal).unwrap();
    assert_start_refused(n1, &signal, "is a symbolic link");
    clear(&signal);
    mkfifo(&signal);
    assert_start_refused(n1, &signal, "is a FIFO, not a regular file");
    clear(&signal);
    victim.assert_untouched();

    // postmaster.pid, which every action reads: a FIFO there must not hang
    // the agent. It is no pidfile PostgreSQL wrote: a leftover, removed.
    let pidfile = pgdata.join("postmaster.pid");
    mkfifo(&pidfile);
    let t = Instant::now();
    agent(n1, n1)
        .timeout(NO_HANG)
        .run("start")
        .assert_code(OCF_SUCCESS);
    assert!(t.elapsed() < NO_HANG);
    assert!(fs::symlink_metadata(&pidfile).unwrap().is_file());
    agent(n1, n1).run("monitor").assert_code(OCF_SUCCESS);
    victim.assert_untouched();
}

#[test]
fn a_planted_configuration_file_stops_pg_rewind_before_it_runs() {
    let pair = Pair::new("planted_rewind");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    diverge(&pair);
    let victim = Victim::new(&pair, "rewind");
    // pg_hba.conf is one of the files kept around pg_rewind: read before it
    // runs, written back after. (A symbolic link there pg_rewind refuses
    // itself, in its dry run: "is of different type in source and target".)
    let hba = n1.pgdata.join("pg_hba.conf");
    let start = || {
        agent(n1, n2)
            .param("rewind", "true")
            .timeout(NO_HANG)
            .run("start")
    };
    clear(&hba);
    fs::hard_link(&victim.path, &hba).unwrap();
    let out = start();
    // The hard link itself has two links and is not counted as a copy.
    victim.assert_not_copied_into(&n1.pgdata);
    out.assert_code(OCF_ERR_PERM);
    out.assert_reason_contains(&format!("{} has 2 hard links", hba.display()));
    clear(&hba);
    victim.assert_untouched();
    mkfifo(&hba);
    let out = start();
    out.assert_code(OCF_ERR_PERM);
    out.assert_reason_contains(&format!("{} is a FIFO", hba.display()));
    clear(&hba);
    symlink(&victim.path, &hba).unwrap();
    assert_ne!(start().code, OCF_SUCCESS);
    victim.assert_untouched();
    victim.assert_not_copied_into(&n1.pgdata);
    assert!(n1.postmaster_pid().is_none());
}

#[test]
fn planted_files_in_state_dir_are_never_followed() {
    let pair = Pair::new("planted_state");
    let n1 = &pair.nodes[0];
    let victim = Victim::new(&pair, "state");
    agent(n1, n1).run("start").assert_code(OCF_SUCCESS);
    // The temporary file of a save, old and new names.
    for tmp in ["stack.state.tmp", "stack.state.json.rapidpro-ha.tmp"] {
        symlink(&victim.path, n1.state_dir.join(tmp)).unwrap();
    }
    // promote saves the state (its score).
    agent(n1, n1).run("promote").assert_code(OCF_SUCCESS);
    victim.assert_untouched();
    let state = n1.state_dir.join("stack.state.json");
    let m = fs::symlink_metadata(&state).unwrap();
    assert!(m.is_file() && m.mode() & 0o777 == 0o644);

    // The state file itself: a link is neither read nor replaced, a FIFO
    // does not hang the agent; the state is only a cache, so the action
    // goes on and the log says why.
    clear(&state);
    symlink(&victim.path, &state).unwrap();
    let out = agent(n1, n1).timeout(NO_HANG).run("demote");
    out.assert_code(OCF_SUCCESS);
    assert!(
        out.stderr
            .contains(&format!("{} is a symbolic link", state.display())),
        "{out}"
    );
    assert!(fs::symlink_metadata(&state)
        .unwrap()
        .file_type()
        .is_symlink());
    victim.assert_untouched();
    clear(&state);
    mkfifo(&state);
    let out = agent(n1, n1).timeout(NO_HANG).run("promote");
    out.assert_code(OCF_SUCCESS);
    assert!(out.stderr.contains("is a FIFO"), "{out}");
    victim.assert_untouched();
}

#[test]
fn planted_files_in_the_redis_directory_are_never_followed() {
    let pair = Pair::new("planted_redis");
    let n1 = &pair.nodes[0];
    let victim = Victim::new(&pair, "redis");
    // The directory the agent creates for redis-server, owned by redis.
    let run = n1.state_dir.join("redis");
    fs::create_dir(&run).unwrap();
    fs::set_permissions(&run, fs::Permissions::from_mode(0o750)).unwrap();
    let (redis_uid, redis_gid) = ids(REDIS_USER);
    std::os::unix::fs::chown(&run, Some(redis_uid), Some(redis_gid)).unwrap();

    // The pidfile, read by every action: a FIFO must not hang the agent; a
    // link is not read through. Either is a leftover, unlinked.
    let pidfile = run.join("stack.pid");
    let _fifos = Fifos(vec![pidfile.clone()]);
    mkfifo(&pidfile);
    for tmp in [".stack.conf.tmp", "stack.conf.rapidpro-ha.tmp"] {
        symlink(&victim.path, run.join(tmp)).unwrap();
    }
    agent(n1, n1)
        .timeout(NO_HANG)
        .run("start")
        .assert_code(OCF_SUCCESS);
    victim.assert_untouched();
    let conf = run.join("stack.conf");
    let m = fs::symlink_metadata(&conf).unwrap();
    assert!(m.is_file() && m.mode() & 0o777 == 0o600 && m.uid() == redis_uid);
    agent(n1, n1).run("stop").assert_code(OCF_SUCCESS);
    symlink(&victim.path, &pidfile).unwrap();
    agent(n1, n1).run("monitor");
    victim.assert_untouched();
    clear(&pidfile);

    // The generated config, which start replaces: a link, a hard link or a
    // FIFO there is refused.
    clear(&conf);
    symlink(&victim.path, &conf).unwrap();
    assert_start_refused(n1, &conf, "is a symbolic link");
    clear(&conf);
    fs::hard_link(&victim.path, &conf).unwrap();
    assert_start_refused(n1, &conf, "has 2 hard links");
    clear(&conf);
    mkfifo(&conf);
    assert_start_refused(n1, &conf, "is a FIFO, not a regular file");
    clear(&conf);
    victim.assert_untouched();
    victim.assert_not_copied_into(&run);
    agent(n1, n1).run("start").assert_code(OCF_SUCCESS);
}
