//! The stand-in RapidPro app (`app/`) against real servers: PostgreSQL and
//! Redis started by the agent, uWSGI, nginx, a celery worker and celery beat
//! started from the app's launchers, and a small HTTP gateway sink; then the
//! same launchers under `ocf:heartbeat:anything` and nginx under
//! `ocf:heartbeat:nginx`, run exactly as the sandbox cluster runs them.
//!
//! Every process a test starts is stopped by PID: its own children, then any
//! process whose environment names the test's run directory (what the
//! launchers export) or whose command line names the test's nginx.conf,
//! and their children.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rapidpro_ha_harness::{free_port, poll, run_command, Cluster, CmdOutput, Node};

use super::agent;

const OCF_SUCCESS: i32 = 0;
const OCF_ERR_GENERIC: i32 = 1;
const OCF_NOT_RUNNING: i32 = 7;
/// What every command here gets instead of the developer's environment.
const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
const RA_DIR: &str = "/usr/lib/ocf/resource.d/heartbeat";
/// The regex the nginx agent's level-10 monitor looks for in `GET /`.
const ROOT_REGEX: &str = "^rapidpro stand-in";
/// How long a stopped process gets before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The `app/` directory of this checkout.
fn app_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../app")
        .canonicalize()
        .expect("app/ exists beside agent/")
}

fn app_bin(name: &str) -> PathBuf {
    app_dir().join("bin").join(name)
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_owned()
}

/// One node's PostgreSQL and Redis (started and promoted by the agent when
/// `stack` is set), the app's configuration from `rapidpro-standin-setup`
/// in `<test dir>/app/{etc,run,log}`, and a gateway sink.
struct App {
    procs: Procs,
    sink: Sink,
    env_file: PathBuf,
    nginx_conf: PathBuf,
    run: PathBuf,
    log: PathBuf,
    uwsgi_addr: String,
    http_port: u16,
    cluster: Cluster,
}

impl App {
    fn new(name: &str, stack: bool) -> App {
        let cluster = Cluster::new(name, 1);
        let node = &cluster.nodes[0];
        if stack {
            agent(node, node).run("start").assert_code(OCF_SUCCESS);
            agent(node, node).run("promote").assert_code(OCF_SUCCESS);
        }
        let base = cluster.dir.join("app");
        let (etc, run, log) = (base.join("etc"), base.join("run"), base.join("log"));
        let sink = Sink::start();
        let uwsgi_addr = format!("127.0.0.1:{}", free_port());
        let http_port = free_port();
        let mut setup = Command::new(app_bin("rapidpro-standin-setup"));
        setup
            .arg(&etc)
            .env_clear()
            .env("PATH", PATH)
            .env("STANDIN_PG_PORT", node.pgport.to_string())
            .env(
                "STANDIN_REDIS_URL",
                format!("redis://127.0.0.1:{}/0", node.redis_port),
            )
            .env("STANDIN_UWSGI_SOCKET", &uwsgi_addr)
            .env("STANDIN_HTTP_LISTEN", format!("127.0.0.1:{http_port}"))
            .env("STANDIN_GATEWAY_URL", format!("{}/send", sink.url()))
            .env("STANDIN_RUN_DIR", &run)
            .env("STANDIN_LOG_DIR", &log);
        must(setup);
        App {
            procs: Procs::new(&run, &etc.join("nginx.conf")),
            sink,
            env_file: etc.join("standin.env"),
            nginx_conf: etc.join("nginx.conf"),
            run,
            log,
            uwsgi_addr,
            http_port,
            cluster,
        }
    }

    fn node(&self) -> &Node {
        &self.cluster.nodes[0]
    }

    /// Starts `program args…` with output to `<log dir>/<label>.out`.
    fn spawn(&mut self, label: &str, program: impl AsRef<Path>, args: &[&str]) {
        let out = File::create(self.log.join(format!("{label}.out"))).expect("log file");
        let mut cmd = Command::new(program.as_ref());
        cmd.args(args)
            .env_clear()
            .env("PATH", PATH)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out);
        self.procs.spawn(label, cmd);
    }

    /// uWSGI from its launcher, with the environment file as argument.
    fn start_uwsgi(&mut self) {
        let env_file = self.env_file.display().to_string();
        self.spawn("uwsgi", app_bin("rapidpro-standin-uwsgi"), &[&env_file]);
        wait_listening(&self.uwsgi_addr);
    }

    /// nginx in the foreground with the generated config.
    fn start_nginx(&mut self) {
        let conf = self.nginx_conf.display().to_string();
        self.spawn(
            "nginx",
            "/usr/sbin/nginx",
            &["-c", &conf, "-g", "daemon off;"],
        );
        wait_listening(&format!("127.0.0.1:{}", self.http_port));
    }

    /// The celery worker and beat, finding the environment file through
    /// `RAPIDPRO_STANDIN_ENV` this time.
    fn start_celery(&mut self) {
        for (label, bin) in [
            ("celery", "rapidpro-standin-celery"),
            ("celerybeat", "rapidpro-standin-celerybeat"),
        ] {
            let env = format!("RAPIDPRO_STANDIN_ENV={}", self.env_file.display());
            self.spawn(
                label,
                "/usr/bin/env",
                &[&env, &app_bin(bin).display().to_string()],
            );
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    fn get(&self, path: &str) -> (u16, String) {
        curl(&[&self.url(path)])
    }

    /// POSTs `fields` as an urlencoded form.
    fn post(&self, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
        let mut args = Vec::new();
        for (k, v) in fields {
            args.push("--data-urlencode".to_owned());
            args.push(format!("{k}={v}"));
        }
        args.push(self.url(path));
        curl(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn log_text(&self, label: &str) -> String {
        fs::read_to_string(self.log.join(format!("{label}.out"))).unwrap_or_default()
    }

    /// Runs resource agent `ra` (`anything` or `nginx`) for `instance`,
    /// with `params` as `OCF_RESKEY_*`, as Pacemaker would.
    fn ra(&self, ra: &str, instance: &str, params: &[(&str, String)], action: &str) -> CmdOutput {
        self.ra_at_level(ra, instance, params, action, None)
    }

    /// Like [`App::ra`], with `OCF_CHECK_LEVEL` set (a deeper monitor).
    fn ra_at_level(
        &self,
        ra: &str,
        instance: &str,
        params: &[(&str, String)],
        action: &str,
        level: Option<&str>,
    ) -> CmdOutput {
        let mut cmd = Command::new(Path::new(RA_DIR).join(ra));
        cmd.env_clear()
            .env("PATH", PATH)
            .env("OCF_ROOT", "/usr/lib/ocf")
            .env("OCF_RESOURCE_INSTANCE", instance)
            .env("OCF_RESKEY_CRM_meta_timeout", "20000")
            .arg(action);
        if let Some(level) = level {
            cmd.env("OCF_CHECK_LEVEL", level);
        }
        for (k, v) in params {
            cmd.env(format!("OCF_RESKEY_{k}"), v);
        }
        run_command(cmd, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `ocf:heartbeat:anything` parameters for launcher `bin`, as the
    /// sandbox cluster sets them.
    fn anything_params(&self, label: &str, bin: &str) -> Vec<(&'static str, String)> {
        vec![
            ("binfile", app_bin(bin).display().to_string()),
            ("cmdline_options", self.env_file.display().to_string()),
            (
                "pidfile",
                self.run
                    .join(format!("{label}.ra.pid"))
                    .display()
                    .to_string(),
            ),
            (
                "logfile",
                self.log.join(format!("{label}.log")).display().to_string(),
            ),
        ]
    }

    fn nginx_params(&self) -> Vec<(&'static str, String)> {
        vec![
            ("configfile", self.nginx_conf.display().to_string()),
            ("httpd", "/usr/sbin/nginx".to_owned()),
            ("status10url", self.url("/")),
            ("status10regex", ROOT_REGEX.to_owned()),
        ]
    }
}

/// Exits 0, or panics with the command's output.
#[track_caller]
fn must(cmd: Command) -> String {
    let out = run_command(cmd, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
    out.into_result().unwrap_or_else(|e| panic!("{e}"))
}

#[track_caller]
fn assert_code(out: &CmdOutput, code: i32) {
    assert_eq!(out.code(), code, "{}", out.failure_message());
}

/// `curl args…`: (HTTP status, body); status 0 if nothing answered.
fn curl(args: &[&str]) -> (u16, String) {
    let mut cmd = Command::new("/usr/bin/curl");
    cmd.env_clear()
        .args(["-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"])
        .args(args);
    let out = run_command(cmd, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
    let (body, code) = out.stdout.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[track_caller]
fn wait_listening(addr: &str) {
    let addr: SocketAddr = addr.parse().expect("ip:port");
    poll(
        &format!("{addr} accepting"),
        Duration::from_secs(30),
        || TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok(),
    );
}

/// The first value of `name` in an urlencoded form.
fn form_param(body: &str, name: &str) -> Option<String> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        let (mut out, mut i) = (Vec::new(), 0);
        while i < s.len() {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex.filter(|_| s.as_bytes()[i] == b'%') {
                Some(byte) => (out.push(byte), i += 3),
                None => (out.push(s.as_bytes()[i]), i += 1),
            };
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| decode(k) == name)
        .map(|(_, v)| decode(v))
}

/// A minimal SMS gateway: records each request's body, answers 200 "ok".
struct Sink {
    port: u16,
    bodies: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Sink {
    fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the sink");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("sink address").port();
        let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (Arc::clone(&bodies), Arc::clone(&stop));
        thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => b.lock().unwrap().extend(Sink::answer(conn)),
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Sink { port, bodies, stop }
    }

    /// Reads one request (headers, then Content-Length bytes), answers 200.
    fn answer(mut conn: TcpStream) -> Option<String> {
        conn.set_nonblocking(false).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let (mut buf, mut chunk) = (Vec::new(), [0u8; 4096]);
        // (where the body starts, its length), once the headers are in.
        let mut body = None;
        while !matches!(body, Some((start, len)) if buf.len() >= start + len) {
            let n = conn.read(&mut chunk).ok().filter(|&n| n > 0)?;
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                body = Some((end + 4, len));
            }
        }
        let (start, len) = body?;
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            .ok()?;
        Some(String::from_utf8_lossy(&buf[start..start + len]).into_owned())
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The processes of one test, stopped by PID on drop (also on panic).
struct Procs {
    children: Vec<(String, Child)>,
    /// `STANDIN_RUN_DIR=<run dir>`, in the environment of every launcher.
    env_marker: String,
    nginx_conf: String,
}

impl Procs {
    fn new(run: &Path, nginx_conf: &Path) -> Procs {
        Procs {
            children: Vec::new(),
            env_marker: format!("STANDIN_RUN_DIR={}", run.display()),
            nginx_conf: nginx_conf.display().to_string(),
        }
    }

    fn spawn(&mut self, label: &str, mut cmd: Command) {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label}: {e}"));
        self.children.push((label.to_owned(), child));
    }

    /// SIGTERM to our child `label`, SIGKILL after the grace period.
    fn stop(&mut self, label: &str) {
        let i = self
            .children
            .iter()
            .position(|(l, _)| l == label)
            .unwrap_or_else(|| panic!("no process {label}"));
        let (label, mut child) = self.children.remove(i);
        stop_child(&label, &mut child);
    }

    /// Live processes of this test that are not our children: by
    /// environment or nginx command line, plus their children.
    fn others(&self) -> Vec<i32> {
        let me = std::process::id() as i32;
        let mut found: Vec<i32> = pids()
            .into_iter()
            .filter(|&p| p != me && alive(p))
            .filter(|&p| {
                let env = fs::read(format!("/proc/{p}/environ")).unwrap_or_default();
                let cmdline = fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                env.split(|&b| b == 0)
                    .any(|e| e == self.env_marker.as_bytes())
                    || String::from_utf8_lossy(&cmdline).contains(&self.nginx_conf)
            })
            .collect();
        let kids: Vec<i32> = pids()
            .into_iter()
            .filter(|&p| alive(p) && ppid(p).is_some_and(|pp| found.contains(&pp)))
            .collect();
        found.extend(kids);
        found.sort_unstable();
        found.dedup();
        found
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (label, mut child) in self.children.drain(..).rev() {
            stop_child(&label, &mut child);
        }
        let others = self.others();
        for &p in &others {
            eprintln!("app_standin: stopping leftover pid {p}: {}", cmdline(p));
            signal(p, "TERM");
        }
        let start = Instant::now();
        while others.iter().any(|&p| alive(p)) && start.elapsed() < STOP_GRACE {
            thread::sleep(Duration::from_millis(100));
        }
        for &p in others.iter().filter(|&&p| alive(p)) {
            eprintln!("app_standin: SIGKILL to pid {p}");
            signal(p, "KILL");
        }
    }
}

fn stop_child(label: &str, child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        signal(child.id() as i32, "TERM");
        let start = Instant::now();
        while matches!(child.try_wait(), Ok(None)) && start.elapsed() < STOP_GRACE {
            thread::sleep(Duration::from_millis(50));
        }
        if matches!(child.try_wait(), Ok(None)) {
            eprintln!("app_standin: {label} ignored SIGTERM: SIGKILL");
            let _ = child.kill();
        }
    }
    let _ = child.wait();
}

fn signal(pid: i32, sig: &str) {
    let _ = Command::new("/bin/kill")
        .args(["-s", sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

fn pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// (state, ppid) from `/proc/<pid>/stat`.
fn stat(pid: i32) -> Option<(char, i32)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = s.rsplit_once(')')?.1.split_whitespace();
    let state = rest.next()?.chars().next()?;
    Some((state, rest.next()?.parse().ok()?))
}

fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|(s, _)| s != 'Z' && s != 'X')
}

fn ppid(pid: i32) -> Option<i32> {
    stat(pid).map(|(_, p)| p)
}

fn cmdline(pid: i32) -> String {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw).replace('\0', " ")
}

fn pidfile_pid(path: &Path) -> i32 {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{}: not a pid: {text:?}", path.display()))
}

#[test]
fn nginx_answers_get_root_through_uwsgi() {
    let mut app = App::new("app_get_root", false);
    app.start_uwsgi();
    app.start_nginx();
    let (code, body) = app.get("/");
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with("rapidpro stand-in"), "{body}");
    assert!(body.contains(&hostname()), "{body}");
    assert!(
        app.log_text("uwsgi").contains("GET / =>"),
        "uWSGI did not log the request"
    );
    assert_eq!(app.get("/nowhere").0, 404);
    // Without uWSGI nginx has nothing to answer with.
    app.procs.stop("uwsgi");
    assert_eq!(app.get("/").0, 502);
}

#[test]
fn standin_app_stores_incoming_sms_before_acknowledging() {
    let mut app = App::new("app_stores_sms", true);
    app.start_uwsgi();
    app.start_nginx();
    let sms = [
        ("id", "gw-1"),
        ("from", "+255700000001"),
        ("text", "habari yako? 50% & more"),
    ];
    let (code, body) = app.post("/sms", &sms);
    assert_eq!((code, body.as_str()), (200, "stored gw-1\n"));
    // Committed by the time the 200 arrived: no waiting here.
    let row =
        "select sender || '|' || body || '|' || received_by from incoming_sms where id = 'gw-1'";
    assert_eq!(
        app.node().psql(row),
        format!("+255700000001|habari yako? 50% & more|{}", hostname())
    );
    // The gateway retries after a lost answer: same id, still one row.
    assert_eq!(app.post("/sms", &sms), (200, "stored gw-1\n".to_owned()));
    assert_eq!(app.node().psql("select count(*) from incoming_sms"), "1");
    // An incomplete form is refused and stores nothing.
    let (code, body) = app.post("/sms", &[("id", "gw-2"), ("text", "no sender")]);
    assert_eq!((code, body.as_str()), (400, "missing from\n"));
    assert_eq!(app.node().psql("select count(*) from incoming_sms"), "1");
}

#[test]
fn standin_app_refuses_sms_when_postgres_is_read_only_frozen_or_down() {
    let mut app = App::new("app_refuses_sms", true);
    app.start_uwsgi();
    app.start_nginx();
    let node = app.node().clone();
    let post = |id: &str| {
        app.post(
            "/sms",
            &[("id", id), ("from", "+255700000001"), ("text", "x")],
        )
    };
    assert_eq!(post("before").0, 200);

    // A demoted primary is a read-only standby.
    agent(&node, &node).run("demote").assert_code(OCF_SUCCESS);
    let (code, body) = post("read-only");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("read-only"), "{body}");
    agent(&node, &node).run("promote").assert_code(OCF_SUCCESS);
    assert_eq!(post("promoted again").0, 200);

    // A frozen postmaster takes the connection and never answers.
    let pid = node.postmaster_pid().expect("postmaster");
    signal(pid, "STOP");
    let t = Instant::now();
    let (code, body) = post("frozen");
    let took = t.elapsed();
    signal(pid, "CONT");
    assert_eq!(code, 503, "{body}");
    assert!(took < Duration::from_secs(8), "the refusal took {took:?}");

    let rows = node.psql("select string_agg(id, ',' order by id) from incoming_sms");
    assert_eq!(rows, "before,promoted again");

    node.kill9_postgres();
    let t = Instant::now();
    let (code, body) = post("down");
    assert_eq!(code, 503, "{body}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    let (code, body) = app.post("/send", &[("to", "+255700000002"), ("text", "x")]);
    assert_eq!(code, 503, "{body}");
    // The front page does not need PostgreSQL.
    let (code, body) = app.get("/");
    assert_eq!(code, 200, "{body}");
}

#[test]
fn celery_sends_queued_sms_to_the_gateway_once() {
    let mut app = App::new("app_celery_sends", true);
    app.start_uwsgi();
    app.start_nginx();
    app.start_celery();
    let mut ids = Vec::new();
    for text in ["karibu sana", "second & last"] {
        let (code, body) = app.post("/send", &[("to", "+255700000002"), ("text", text)]);
        assert_eq!(code, 200, "{body}");
        let id = body
            .strip_prefix("queued ")
            .expect("queued <id>")
            .trim()
            .to_owned();
        ids.push((id, text));
    }
    poll("both SMS at the gateway", Duration::from_secs(60), || {
        (app.sink.bodies().len() >= 2).then_some(())
    });
    // Several beat ticks later, nothing was sent twice.
    thread::sleep(Duration::from_secs(3));
    let bodies = app.sink.bodies();
    assert_eq!(bodies.len(), 2, "{bodies:#?}");
    for ((id, text), body) in ids.iter().zip(&bodies) {
        assert_eq!(form_param(body, "id").as_ref(), Some(id), "{body}");
        assert_eq!(form_param(body, "to").as_deref(), Some("+255700000002"));
        assert_eq!(form_param(body, "text").as_deref(), Some(*text));
        assert_eq!(form_param(body, "node"), Some(hostname()));
    }
    let sent = app
        .node()
        .psql("select string_agg(sent_by, ',') from outbox where sent_at is not null");
    assert_eq!(sent, format!("{0},{0}", hostname()));
}

#[test]
fn ocf_anything_runs_the_launchers_with_a_tcp_monitor_hook() {
    let mut app = App::new("app_ocf_anything", true);
    let hook = format!("{} {}", app_bin("check-tcp").display(), app.uwsgi_addr);
    let mut params = Vec::new();
    for (label, bin) in [
        ("uwsgi", "rapidpro-standin-uwsgi"),
        ("celery", "rapidpro-standin-celery"),
        ("celerybeat", "rapidpro-standin-celerybeat"),
    ] {
        let mut p = app.anything_params(label, bin);
        if label == "uwsgi" {
            p.push(("monitor_hook", hook.clone()));
        }
        params.push((label, p));
    }
    for (label, p) in &params {
        assert_code(&app.ra("anything", label, p, "start"), OCF_SUCCESS);
        assert_code(&app.ra("anything", label, p, "monitor"), OCF_SUCCESS);
        // The tracked pid is the server itself: the launcher execs it, in
        // the same process. start returns once that pid lives, which may be
        // before the exec (the launcher's shell still running: seen in CI,
        // "pid 4957 is `/bin/sh .../rapidpro-standin-celerybeat ...`").
        let pid = pidfile_pid(&app.run.join(format!("{label}.ra.pid")));
        let expect = match *label {
            "uwsgi" => "/usr/bin/uwsgi",
            "celery" => "standin.tasks worker",
            _ => "standin.tasks beat",
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut cmd = cmdline(pid);
        while !cmd.contains(expect) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
            cmd = cmdline(pid);
        }
        assert!(
            cmd.contains(expect),
            "{label}: pid {pid} is `{cmd}` after 10 s"
        );
        assert_eq!(
            pidfile_pid(&app.run.join(format!("{label}.ra.pid"))),
            pid,
            "{label}: the tracked pid changed"
        );
    }
    // The hook is what fails the monitor when nothing answers.
    let mut closed = params[0].1.clone();
    closed.retain(|(k, _)| *k != "monitor_hook");
    let closed_hook = format!(
        "{} 127.0.0.1:{}",
        app_bin("check-tcp").display(),
        free_port()
    );
    closed.push(("monitor_hook", closed_hook));
    assert_code(
        &app.ra("anything", "uwsgi", &closed, "monitor"),
        OCF_ERR_GENERIC,
    );

    // The whole tier works as the agents run it.
    app.start_nginx();
    let (code, body) = app.post("/send", &[("to", "+255700000003"), ("text", "via ocf")]);
    assert_eq!(code, 200, "{body}");
    poll("the SMS at the gateway", Duration::from_secs(60), || {
        (!app.sink.bodies().is_empty()).then_some(())
    });
    app.procs.stop("nginx");

    for (label, p) in params.iter().rev() {
        assert_code(&app.ra("anything", label, p, "stop"), OCF_SUCCESS);
        assert_code(&app.ra("anything", label, p, "monitor"), OCF_NOT_RUNNING);
    }
    poll("no app process left", Duration::from_secs(10), || {
        app.procs.others().is_empty().then_some(())
    });
}

#[test]
fn ocf_nginx_runs_nginx_from_the_generated_config() {
    let mut app = App::new("app_ocf_nginx", false);
    app.start_uwsgi();
    let params = app.nginx_params();
    let level10 = |app: &App| app.ra_at_level("nginx", "nginx", &params, "monitor", Some("10"));
    assert_code(
        &app.ra("nginx", "nginx", &params, "monitor"),
        OCF_NOT_RUNNING,
    );
    assert_code(&app.ra("nginx", "nginx", &params, "start"), OCF_SUCCESS);
    assert_code(&app.ra("nginx", "nginx", &params, "monitor"), OCF_SUCCESS);
    assert_code(&level10(&app), OCF_SUCCESS);
    let pid = pidfile_pid(&app.run.join("nginx.pid"));
    assert!(cmdline(pid).contains(&app.nginx_conf.display().to_string()));
    assert_eq!(app.get("/").0, 200);

    // With uWSGI gone the process check passes but GET / does not.
    app.procs.stop("uwsgi");
    assert_code(&app.ra("nginx", "nginx", &params, "monitor"), OCF_SUCCESS);
    assert_code(&level10(&app), OCF_ERR_GENERIC);

    assert_code(&app.ra("nginx", "nginx", &params, "stop"), OCF_SUCCESS);
    assert_code(
        &app.ra("nginx", "nginx", &params, "monitor"),
        OCF_NOT_RUNNING,
    );
    assert!(!alive(pid), "nginx {pid} survived the stop");
    assert!(app.procs.others().is_empty(), "{:?}", app.procs.others());
}

#[test]
fn launchers_name_what_is_missing() {
    let dir = rapidpro_ha_harness::TestDir::new("app_launchers");
    let run = |program: PathBuf, args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(program);
        cmd.env_clear().env("PATH", PATH).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_command(cmd, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"))
    };
    let missing = dir.join("nowhere.env");
    let missing = missing.to_str().unwrap();
    for bin in [
        "rapidpro-standin-uwsgi",
        "rapidpro-standin-celery",
        "rapidpro-standin-celerybeat",
    ] {
        let out = run(app_bin(bin), &[missing], &[]);
        assert_eq!(out.code(), 1, "{}", out.failure_message());
        assert!(out.stderr.contains(missing), "{bin}: {}", out.stderr);
        let out = run(app_bin(bin), &[], &[("RAPIDPRO_STANDIN_ENV", missing)]);
        assert!(out.stderr.contains(missing), "{bin}: {}", out.stderr);
    }
    let partial = dir.join("partial.env");
    fs::write(&partial, "STANDIN_RUN_DIR='/tmp/x'\n").unwrap();
    let out = run(
        app_bin("rapidpro-standin-uwsgi"),
        &[partial.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.code(), 1);
    assert!(
        out.stderr.contains("STANDIN_UWSGI_SOCKET is not set"),
        "{}",
        out.stderr
    );

    let out = run(app_bin("rapidpro-standin-setup"), &[], &[]);
    assert_eq!(out.code(), 2);
    assert!(out.stderr.contains("OUTDIR"), "{}", out.stderr);

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap().to_string();
    assert_eq!(run(app_bin("check-tcp"), &[&open], &[]).code(), 0);
    let closed = format!("127.0.0.1:{}", free_port());
    let t = Instant::now();
    assert_eq!(run(app_bin("check-tcp"), &[&closed], &[]).code(), 1);
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    assert_eq!(run(app_bin("check-tcp"), &["no-port"], &[]).code(), 2);
}
