//! Self-tests against the real services: the harness must hand the agent
//! what it promises, and must leave nothing running.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Duration;

use crate::cmd::{as_user, clean_command, lookup_user, must};
use crate::dir::{chown_to, make_dir, write_file};
use crate::{poll, proc, Cluster, Node, Pair, REDIS_SERVER, REDIS_USER};

const START: Duration = Duration::from_secs(60);

/// Starts PostgreSQL the way an operator would: `pg_ctl start -w` as
/// postgres, logging to the node's log file. Returns the postmaster's pid.
#[track_caller]
fn start_postgres(node: &Node) -> i32 {
    let log = node.pg_logfile().display().to_string();
    if let Err(e) = node.try_pg_ctl(&["-w", "-t", "60", "-l", &log, "start"]) {
        panic!("{e}\n{}", node.log_tails(40));
    }
    poll("postgres answers psql", START, || {
        node.try_psql("select 1").ok().filter(|s| s == "1")
    });
    node.postmaster_pid()
        .expect("postmaster.pid names a live postmaster")
}

/// Starts Redis as the agent would leave it: as the redis user, with its
/// pidfile where the agent writes it. Returns its pid.
#[track_caller]
fn start_redis(node: &Node) -> i32 {
    let piddir = node.redis_pidfile().parent().unwrap().to_owned();
    make_dir(&piddir, 0o755);
    chown_to(&piddir, REDIS_USER);
    let mut cmd = clean_command(REDIS_SERVER);
    cmd.arg(&node.redis_config)
        .args(["--daemonize", "yes", "--pidfile"])
        .arg(node.redis_pidfile())
        .arg("--unixsocket")
        .arg(&node.redis_socket);
    as_user(&mut cmd, REDIS_USER);
    must(cmd, START);
    poll("redis answers PING", START, || {
        node.try_redis_cli(&["ping"]).ok().filter(|s| s == "PONG")
    });
    poll("redis pidfile names a live redis-server", START, || {
        node.redis_pid()
    })
}

/// Stops the postmaster by PID (fast shutdown) and waits until it is reaped.
fn stop_postgres_by_pid(pid: i32) {
    proc::signal(pid, nix::sys::signal::Signal::SIGINT);
    assert!(
        proc::wait_dead(&[pid], START),
        "postmaster {pid} ignored SIGINT"
    );
    assert!(
        proc::wait_reaped(pid, Duration::from_secs(5)),
        "postmaster {pid} not reaped"
    );
}

#[test]
fn pair_data_dirs_are_laid_out_as_promised() {
    let pair = Pair::new("pair_layout");
    let postgres = lookup_user("postgres");
    let redis = lookup_user(REDIS_USER);
    assert_eq!(pair.nodes.len(), 2);
    let mut ports = BTreeSet::new();
    for (i, node) in pair.nodes.iter().enumerate() {
        assert_eq!(node.name, format!("node{}", i + 1));
        assert_eq!(node.dir, pair.dir.join(&node.name));
        assert_eq!(node.instance, "stack");
        assert!(ports.insert(node.pgport) && ports.insert(node.redis_port));
        let meta = fs::metadata(&node.pgdata).unwrap();
        assert_eq!(meta.uid(), postgres.uid.as_raw());
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        let conf = fs::read_to_string(node.pgdata.join("postgresql.conf")).unwrap();
        assert!(
            conf.contains(&format!("\nport = {}\n", node.pgport)),
            "{conf}"
        );
        let sock = format!(
            "unix_socket_directories = '{}'",
            node.pg_socket_dir.display()
        );
        assert!(conf.contains(&sock), "{conf}");
        assert!(conf.contains("wal_level = replica"), "{conf}");
        assert!(!node.pgdata.join("postmaster.pid").exists());
        let rconf = fs::read_to_string(&node.redis_config).unwrap();
        assert!(
            rconf.contains(&format!("\nport {}\n", node.redis_port)),
            "{rconf}"
        );
        assert!(rconf.contains("daemonize no"), "{rconf}");
        let data = fs::metadata(node.dir.join("redis-data")).unwrap();
        assert_eq!(data.uid(), redis.uid.as_raw());
        let state = fs::metadata(&node.state_dir).unwrap();
        assert_eq!(state.permissions().mode() & 0o777, 0o755);
        assert_eq!(node.postmaster_pid(), None);
        assert_eq!(node.redis_pid(), None);
        let params = node.params();
        let get = |k: &str| params.iter().find(|p| p.0 == k).map(|p| p.1.clone());
        assert_eq!(get("primary_port"), Some(node.pgport.to_string()));
        assert_eq!(get("redis_primary_port"), Some(node.redis_port.to_string()));
        assert_eq!(
            get("pghost"),
            Some(node.pg_socket_dir.display().to_string())
        );
        assert_eq!(params.len(), 17);
    }
}

#[test]
fn node1_starts_by_hand_answers_psql_and_stops_by_pid() {
    let pair = Pair::new("manual_start");
    let n1 = &pair.nodes[0];
    let pid = start_postgres(n1);
    assert_eq!(n1.psql("select pg_is_in_recovery()"), "f");
    assert_eq!(n1.psql("show port"), n1.pgport.to_string());
    assert_eq!(n1.psql("select count(*) from public.sms"), "0");
    assert_eq!(
        n1.psql("select rolreplication from pg_roles where rolname = 'replicator'"),
        "t"
    );
    assert_eq!(n1.psql("show data_checksums"), "on");
    let err = n1.try_psql("select * from no_such_table").unwrap_err();
    assert!(err.contains("no_such_table"), "{err}");
    stop_postgres_by_pid(pid);
    assert_eq!(n1.postmaster_pid(), None);
    assert!(n1.try_psql("select 1").is_err());
}

#[test]
fn node2_is_a_valid_standby_of_node1() {
    let pair = Pair::new("standby_copy");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    start_postgres(n1);
    write_file(
        &n2.pgdata.join("standby.signal"),
        "",
        Some("postgres"),
        0o600,
    );
    crate::dir::append(
        &n2.pgdata.join("postgresql.auto.conf"),
        &format!(
            "primary_conninfo = 'host=127.0.0.1 port={} user=replicator password=secret'\n",
            n1.pgport
        ),
    );
    start_postgres(n2);
    assert_eq!(n2.psql("select pg_is_in_recovery()"), "t");
    poll("node1 sees node2 streaming", START, || {
        (n1.psql("select state from pg_stat_replication") == "streaming").then_some(())
    });
    n1.psql("insert into sms (body) values ('replicated')");
    poll("node2 has the row", START, || {
        (n2.psql("select body from sms") == "replicated").then_some(())
    });
    // What pg_rewind needs from the source, as the replication role.
    for f in [
        "pg_ls_dir(text, boolean, boolean)",
        "pg_stat_file(text, boolean)",
        "pg_read_binary_file(text)",
        "pg_read_binary_file(text, bigint, bigint, boolean)",
    ] {
        let sql =
            format!("select has_function_privilege('replicator', 'pg_catalog.{f}', 'execute')");
        assert_eq!(n1.psql(&sql), "t", "replicator may not execute {f}");
    }
}

#[test]
fn teardown_stops_every_server_by_pid() {
    let (dir, pids) = {
        let pair = Pair::new("teardown");
        let mut pids = Vec::new();
        for node in &pair.nodes {
            let pg = start_postgres(node);
            let redis = start_redis(node);
            assert!(proc::alive(pg) && proc::alive(redis));
            // The checkpointer, walwriter, … (and maybe a backend on its way out).
            pids.extend(proc::children(pg));
            pids.extend([pg, redis]);
        }
        // Found only by the safety net: its pidfile is gone.
        fs::remove_file(pair.nodes[0].redis_pidfile()).unwrap();
        assert_eq!(pair.nodes[0].redis_pid(), None);
        // A test that fakes a hang must not slow the teardown down.
        let stopped = pair.nodes[1].redis_pid().unwrap();
        proc::signal(stopped, nix::sys::signal::Signal::SIGSTOP);
        let dir = pair.dir.path().to_owned();
        let started = std::time::Instant::now();
        drop(pair);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(4), "teardown took {took:?}");
        (dir, pids)
    };
    let left: Vec<i32> = pids.iter().copied().filter(|&p| proc::alive(p)).collect();
    assert!(left.is_empty(), "still alive after teardown: {left:?}");
    let strays: Vec<i32> = proc::all_stats()
        .into_iter()
        .filter(|s| !s.is_zombie() && proc::cwd(s.pid).is_some_and(|c| c.starts_with(&dir)))
        .map(|s| s.pid)
        .collect();
    assert!(
        strays.is_empty(),
        "processes in {}: {strays:?}",
        dir.display()
    );
    if std::env::var_os(crate::KEEP_DIRS_ENV).is_none() {
        assert!(!dir.exists(), "{} not removed", dir.display());
    }
}

#[test]
fn teardown_runs_when_the_test_panics() {
    let pids = std::sync::Mutex::new(Vec::new());
    let result = catch_unwind(AssertUnwindSafe(|| {
        let pair = Pair::new("teardown_on_panic");
        let n1 = &pair.nodes[0];
        pids.lock().unwrap().push(start_postgres(n1));
        pids.lock().unwrap().push(start_redis(n1));
        panic!("the test failed");
    }));
    assert!(result.is_err());
    let pids = pids.into_inner().unwrap();
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|&p| !proc::alive(p)), "{pids:?}");
}

#[test]
fn kill9_leaves_nothing_that_blocks_a_restart() {
    let pair = Pair::new("kill9");
    let n1 = &pair.nodes[0];
    let pg = start_postgres(n1);
    let backends = proc::children(pg);
    let redis = start_redis(n1);
    n1.kill9_postgres();
    n1.kill9_redis();
    assert!(proc::stat(pg).is_none(), "postmaster {pg} not reaped");
    assert!(proc::stat(redis).is_none(), "redis {redis} not reaped");
    assert!(backends.iter().all(|&b| !proc::alive(b)));
    assert!(
        n1.pgdata.join("postmaster.pid").exists(),
        "a crash leaves the pidfile"
    );
    assert!(n1.redis_pidfile().exists(), "a crash leaves the pidfile");
    assert_eq!((n1.postmaster_pid(), n1.redis_pid()), (None, None));
    // PostgreSQL probes the old pid in postmaster.pid with kill(pid, 0): it
    // only starts if the dead postmaster was reaped.
    let pg2 = start_postgres(n1);
    assert_ne!(pg, pg2);
    let redis2 = start_redis(n1);
    assert_ne!(redis, redis2);
}

/// A stand-in agent: prints its environment and arguments, and ends as
/// its action says. Run through `/bin/sh` so that no freshly written file is
/// executed (another test thread's fork may still hold it open for writing:
/// ETXTBSY).
fn fake_agent(dir: &Path) -> std::path::PathBuf {
    let script = dir.join("fake-agent");
    write_file(
        &script,
        r#"echo "argv: $*"
env | sort
echo "ocf-exit-reason:first" >&2
echo "ocf-exit-reason: the last one " >&2
case "$1" in
  monitor) exit 7 ;;
  panic) echo "thread 'main' panicked" >&2; exit 101 ;;
  hang) exec sleep 30 ;;
  crash) kill -9 $$ ;;
  quiet) exit 0 ;;
esac
exit 0
"#,
        None,
        0o644,
    );
    script
}

#[test]
fn the_agent_gets_the_environment_pacemaker_would_set() {
    let pair = Cluster::new("agent_env", 2);
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    let script = fake_agent(pair.dir.path());
    let out = n1
        .agent(&script)
        .primary(n2)
        .param("maxlag", "1000")
        .unset_param("redis_user")
        .meta("interval", "10000")
        .env("CIB_file", "/nonexistent")
        .run_under(&["/bin/sh"], "monitor");
    out.assert_code(7);
    assert_eq!(out.exit_reason().as_deref(), Some("the last one"));
    out.assert_reason_contains("last");
    let env: BTreeSet<&str> = out.stdout.lines().collect();
    let want = [
        "argv: monitor".to_string(),
        "OCF_ROOT=/usr/lib/ocf".into(),
        "OCF_RA_VERSION_MAJOR=1".into(),
        "OCF_RA_VERSION_MINOR=1".into(),
        "OCF_RESOURCE_INSTANCE=stack".into(),
        "OCF_RESOURCE_TYPE=stack".into(),
        "OCF_RESOURCE_PROVIDER=rapidpro".into(),
        "OCF_RESKEY_CRM_meta_timeout=60000".into(),
        "OCF_RESKEY_CRM_meta_interval=10000".into(),
        "OCF_RESKEY_CRM_meta_on_node=node1".into(),
        "OCF_RESKEY_CRM_meta_clone_max=2".into(),
        "OCF_RESKEY_CRM_meta_promoted_max=1".into(),
        "OCF_RESKEY_CRM_meta_notify=true".into(),
        format!("OCF_RESKEY_pgdata={}", n1.pgdata.display()),
        format!("OCF_RESKEY_pgport={}", n1.pgport),
        format!("OCF_RESKEY_primary_port={}", n2.pgport),
        format!("OCF_RESKEY_redis_primary_port={}", n2.redis_port),
        format!("OCF_RESKEY_state_dir={}", n1.state_dir.display()),
        "OCF_RESKEY_bindir=/usr/lib/postgresql/15/bin".into(),
        "OCF_RESKEY_maxlag=1000".into(),
        "CIB_file=/nonexistent".into(),
        format!("PWD={}", n1.dir.display()),
    ];
    for w in &want {
        assert!(env.contains(w.as_str()), "missing {w}\n{out}");
    }
    let path = env.iter().find_map(|l| l.strip_prefix("PATH=")).unwrap();
    for d in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        assert!(path.split(':').any(|p| p == d), "{d} not in PATH {path}");
    }
    assert!(!out.stdout.contains("OCF_RESKEY_redis_user="), "{out}");
    assert!(
        !out.stdout.contains("CARGO"),
        "environment not cleared\n{out}"
    );
    assert!(
        !out.stdout.contains("OCF_RESKEY_CRM_meta_notify_type"),
        "{out}"
    );
}

#[test]
fn notify_sets_every_list_as_pacemaker_does() {
    let pair = Pair::new("agent_notify");
    let script = fake_agent(pair.dir.path());
    let out = pair.nodes[1]
        .agent(&script)
        .notify(
            "pre",
            "promote",
            &[("promote_uname", "node1"), ("active_uname", "node1 node2")],
        )
        .run_under(&["/bin/sh"], "notify");
    out.assert_code(0);
    for w in [
        "OCF_RESKEY_CRM_meta_notify_type=pre",
        "OCF_RESKEY_CRM_meta_notify_operation=promote",
        "OCF_RESKEY_CRM_meta_notify_promote_uname=node1",
        "OCF_RESKEY_CRM_meta_notify_active_uname=node1 node2",
        "OCF_RESKEY_CRM_meta_notify_demote_uname= ",
        "OCF_RESKEY_CRM_meta_notify_stop_resource= ",
    ] {
        assert!(out.stdout.lines().any(|l| l == w), "missing {w:?}\n{out}");
    }
}

#[test]
fn agent_failures_panic_with_the_whole_story() {
    let pair = Pair::new("agent_failures");
    let n1 = &pair.nodes[0];
    let script = fake_agent(pair.dir.path());
    let agent = n1.agent(&script);
    let panic_text = |f: &dyn Fn()| -> String {
        let err = catch_unwind(AssertUnwindSafe(f)).expect_err("should have panicked");
        err.downcast_ref::<String>().cloned().unwrap_or_default()
    };

    let msg = panic_text(&|| {
        agent.run_under(&["/bin/sh"], "monitor").assert_code(0);
    });
    assert!(
        msg.contains("agent `monitor` on node1: expected exit code 0, got 7"),
        "{msg}"
    );
    assert!(
        msg.contains("argv: monitor") && msg.contains("the last one"),
        "{msg}"
    );

    let msg = panic_text(&|| {
        agent
            .run_under(&["/bin/sh"], "quiet")
            .assert_reason_contains("nothing like it");
    });
    assert!(
        msg.contains("does not contain \"nothing like it\""),
        "{msg}"
    );

    let msg = panic_text(&|| {
        agent.run_under(&["/bin/sh"], "panic");
    });
    assert!(
        msg.contains("agent `panic` on node1 panicked") && msg.contains("thread 'main' panicked"),
        "{msg}"
    );

    let msg = panic_text(&|| {
        agent.run_under(&["/bin/sh"], "crash");
    });
    assert!(msg.contains("killed by signal 9"), "{msg}");

    let msg = panic_text(&|| {
        agent
            .clone()
            .timeout(Duration::from_millis(500))
            .run_under(&["/bin/sh"], "hang");
    });
    assert!(
        msg.contains("agent `hang` on node1") && msg.contains("timed out after 0.5s"),
        "{msg}"
    );
}

#[test]
fn the_agent_runs_under_strace() {
    let pair = Pair::new("agent_strace");
    let script = fake_agent(pair.dir.path());
    let log = pair.dir.join("strace.log");
    let prefix = [
        "strace",
        "-f",
        "-e",
        "trace=execve",
        "-o",
        log.to_str().unwrap(),
        "/bin/sh",
    ];
    pair.nodes[0]
        .agent(&script)
        .run_under(&prefix, "monitor")
        .assert_code(7);
    let trace = fs::read_to_string(&log).unwrap();
    assert!(trace.contains("execve(\"/bin/sh\""), "{trace}");
}

#[test]
fn the_strace_builder_traces_the_agent() {
    let pair = Pair::new("agent_strace_builder");
    let log = pair.dir.join("strace.log");
    pair.nodes[0]
        .agent("/bin/true")
        .strace(&log)
        .run("monitor")
        .assert_code(0);
    let trace = fs::read_to_string(&log).unwrap();
    assert!(
        trace.contains("execve(\"/bin/true\", [\"/bin/true\", \"monitor\"]"),
        "{trace}"
    );
}

mod sinks {
    //! The HTTP and SMTP sinks, driven by hand-written clients.

    use std::fs::File;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;
    use std::process::{Child, Command};
    use std::time::{Duration, Instant};

    use nix::sched::{setns, CloneFlags};

    use crate::sinks::{HttpSink, SmtpSink};
    use crate::{poll, LOOPBACK};

    const IO: Duration = Duration::from_secs(5);

    fn connect(addr: &str) -> TcpStream {
        let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        s.set_read_timeout(Some(IO)).unwrap();
        s
    }

    /// Sends `request` and returns the whole answer (the sink closes).
    fn http(addr: &str, request: &[u8]) -> String {
        let mut s = connect(addr);
        s.write_all(request).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    }

    #[test]
    fn the_http_sink_records_a_get_and_answers_ok() {
        let sink = HttpSink::start(None, LOOPBACK);
        assert_eq!(sink.url(), format!("http://127.0.0.1:{}", sink.port()));
        let addr = format!("{LOOPBACK}:{}", sink.port());
        let answer = http(
            &addr,
            b"GET /send?to=%2B255700000001&text=hello+there%21 HTTP/1.0\r\nHost: x\r\n\r\n",
        );
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("Connection: close\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nok"), "{answer}");
        let reqs = sink.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].method, "GET");
        assert_eq!(
            reqs[0].target,
            "/send?to=%2B255700000001&text=hello+there%21"
        );
        assert_eq!(reqs[0].header("host"), Some("x"));
        assert_eq!(reqs[0].param("to").as_deref(), Some("+255700000001"));
        assert_eq!(reqs[0].param("text").as_deref(), Some("hello there!"));
        assert_eq!(reqs[0].param("nothing"), None);
    }

    #[test]
    fn the_http_sink_reads_a_form_body_of_content_length_bytes() {
        let sink = HttpSink::start(None, LOOPBACK);
        let addr = format!("{LOOPBACK}:{}", sink.port());
        let body = "id=7&text=caf%C3%A9%20%26%20more";
        let req = format!(
            "POST /sms HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        assert!(http(&addr, req.as_bytes()).starts_with("HTTP/1.1 200"));
        let reqs = sink.requests();
        assert_eq!(reqs[0].method, "POST");
        assert_eq!(reqs[0].target, "/sms");
        assert_eq!(reqs[0].body, body.as_bytes());
        assert_eq!(reqs[0].param("id").as_deref(), Some("7"));
        assert_eq!(reqs[0].param("text").as_deref(), Some("café & more"));
    }

    #[test]
    fn the_hanging_http_sink_records_but_never_answers() {
        let sink = HttpSink::start_hanging(None, LOOPBACK);
        let mut s = connect(&format!("{LOOPBACK}:{}", sink.port()));
        s.set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        s.write_all(b"GET /x?text=a HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 16];
        let err = s.read(&mut buf).expect_err("no answer");
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{err:?}"
        );
        assert_eq!(sink.requests().len(), 1);
        // Dropping the sink ends the hung connection promptly.
        let t = Instant::now();
        drop(sink);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert_eq!(s.read(&mut buf).unwrap_or(0), 0);
    }

    /// Reads one SMTP reply (all its lines) and returns it.
    fn reply(r: &mut BufReader<TcpStream>) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    fn say(r: &mut BufReader<TcpStream>, line: &str, code: &str) -> String {
        r.get_mut().write_all(line.as_bytes()).unwrap();
        let got = reply(r);
        assert!(got.starts_with(code), "{line:?} -> {got:?}");
        got
    }

    #[test]
    fn the_smtp_sink_accepts_a_message_for_two_recipients() {
        let sink = SmtpSink::start(None, LOOPBACK);
        assert_eq!(sink.addr(), format!("127.0.0.1:{}", sink.port()));
        let mut r = BufReader::new(connect(&sink.addr()));
        assert!(reply(&mut r).starts_with("220 "));
        let ehlo = say(&mut r, "EHLO client.example\r\n", "250");
        assert!(ehlo.starts_with("250-"), "multi-line EHLO answer: {ehlo}");
        say(&mut r, "NOOP\r\n", "250");
        say(&mut r, "RCPT TO:<early@example.org>\r\n", "503");
        say(&mut r, "MAIL FROM:<ha@example.org>\r\n", "250");
        say(&mut r, "RCPT TO:<a@example.org>\r\n", "250");
        say(&mut r, "RCPT TO:<b@example.org>\r\n", "250");
        say(&mut r, "DATA\r\n", "354");
        say(
            &mut r,
            "Subject: hi\r\nTo: a@example.org\r\n\r\nline one\r\n..dot line\r\n.\r\n",
            "250",
        );
        // A second transaction after RSET, with HELO.
        say(&mut r, "HELO client.example\r\n", "250");
        say(&mut r, "MAIL FROM:<x@example.org>\r\n", "250");
        say(&mut r, "RCPT TO:<dropped@example.org>\r\n", "250");
        say(&mut r, "RSET\r\n", "250");
        say(&mut r, "DATA\r\n", "503");
        say(&mut r, "MAIL FROM:<>\r\n", "250");
        say(&mut r, "RCPT TO:<c@example.org> NOTIFY=NEVER\r\n", "250");
        say(&mut r, "DATA\r\n", "354");
        say(&mut r, "\r\nbody only\r\n.\r\n", "250");
        say(&mut r, "BOGUS\r\n", "500");
        say(&mut r, "QUIT\r\n", "221");

        let msgs = sink.messages();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert_eq!(msgs[0].from, "ha@example.org");
        assert_eq!(msgs[0].to, ["a@example.org", "b@example.org"]);
        assert_eq!(
            msgs[0].data,
            "Subject: hi\r\nTo: a@example.org\r\n\r\nline one\r\n.dot line\r\n"
        );
        assert_eq!(msgs[0].header("subject").as_deref(), Some("hi"));
        assert_eq!(msgs[0].body(), "line one\r\n.dot line\r\n");
        assert_eq!(msgs[1].from, "");
        assert_eq!(msgs[1].to, ["c@example.org"]);
        assert_eq!(msgs[1].body(), "body only\r\n");
    }

    /// A process in a new network namespace whose loopback is up.
    struct Netns(Child);

    impl Netns {
        fn new() -> Netns {
            let child = Command::new("unshare")
                .args(["--net", "sh", "-c", "ip link set lo up && exec sleep 120"])
                .spawn()
                .expect("unshare --net");
            let ns = Netns(child);
            let pid = ns.pid();
            // Until unshare(2) has run, the child is still in this
            // namespace, whose loopback is up: wait for a namespace of its
            // own, then for its loopback.
            let netns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/net")).ok();
            poll("the new namespace's loopback is up", IO, || {
                let own = netns(&pid.to_string())?;
                if Some(own) == netns("self") {
                    return None;
                }
                let out = Command::new("nsenter")
                    .args([
                        "-t",
                        &pid.to_string(),
                        "-n",
                        "ip",
                        "-o",
                        "link",
                        "show",
                        "lo",
                    ])
                    .output()
                    .ok()?;
                let link = String::from_utf8_lossy(&out.stdout).into_owned();
                (link.contains(",UP") || link.contains("<UP")).then_some(())
            });
            ns
        }

        fn pid(&self) -> i32 {
            self.0.id() as i32
        }
    }

    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn sinks_listen_inside_another_network_namespace() {
        let ns = Netns::new();
        let web = HttpSink::start(Some(ns.pid()), LOOPBACK);
        let smtp = SmtpSink::start(Some(ns.pid()), LOOPBACK);
        // Not reachable from the test's own namespace...
        assert!(TcpStream::connect(smtp.addr()).is_err());
        // ...but from a thread that joined the namespace.
        let pid = ns.pid();
        let (http_port, smtp_addr) = (web.port(), smtp.addr());
        std::thread::spawn(move || {
            let f = File::open(format!("/proc/{pid}/ns/net")).unwrap();
            setns(f, CloneFlags::CLONE_NEWNET).unwrap();
            let answer = http(
                &format!("{LOOPBACK}:{http_port}"),
                b"GET /?text=in+ns HTTP/1.1\r\nHost: x\r\n\r\n",
            );
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            let mut r = BufReader::new(connect(&smtp_addr));
            assert!(reply(&mut r).starts_with("220"));
            say(&mut r, "QUIT\r\n", "221");
        })
        .join()
        .expect("the client thread in the namespace");
        assert_eq!(web.requests()[0].param("text").as_deref(), Some("in ns"));
    }
}
