//! Stand-in receivers for what the alert agent and the app send out: an
//! HTTP sink (an SMS gateway) and an SMTP sink (a mail relay).
//!
//! Both record what arrives so tests can assert on it, listen on a free port
//! of the address given (optionally inside another process's network
//! namespace, joined by the listener thread as `workload.rs` does), and stop
//! their threads when dropped. They speak just enough of each protocol for a
//! well-behaved client: one HTTP request per connection with a
//! `Content-Length` body (answered with `Connection: close`), and the SMTP
//! commands of RFC 5321 section 4.5.1's minimum (`EHLO`/`HELO`, `MAIL`,
//! `RCPT`, `DATA`, `RSET`, `NOOP`, `QUIT`).
//!
//! Both can also stand behind TLS with a certificate of a [`TestCa`]
//! (rustls, server side): the HTTP sink as HTTPS, the SMTP sink with
//! STARTTLS or implicit TLS, and with AUTH PLAIN and LOGIN checking a
//! password (see [`SmtpSinkOptions`]). And both have misbehaving variants
//! for the bounds of the clients: an SMTP server that streams `220-` lines
//! forever, and servers that answer one byte per second.
//!
//! [`TestCa`]: crate::TestCa

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use base64::Engine as _;
use nix::sched::{setns, CloneFlags};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::tls::Issued;

/// How often blocked threads look at the stop flag.
const TICK: Duration = Duration::from_millis(50);
/// Largest request head or SMTP line accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest body or message accepted.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// Joins the network namespace of `pid` on the current thread.
fn enter_netns(pid: i32) -> io::Result<()> {
    let f = File::open(format!("/proc/{pid}/ns/net"))?;
    setns(f, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
}

/// The listener thread and the connection threads of one sink.
struct Server {
    ip: String,
    port: u16,
    stop: Arc<AtomicBool>,
    listener: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Server {
    /// Binds `bind_ip:0` (in the namespace of `netns_pid` if given) and
    /// hands every accepted connection to `serve` on its own thread.
    fn start<F>(what: &str, netns_pid: Option<i32>, bind_ip: &str, serve: F) -> Server
    where
        F: Fn(Conn) + Send + Sync + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (tx, rx) = mpsc::channel::<Result<u16, String>>();
        let (s, c, ip) = (stop.clone(), conns.clone(), bind_ip.to_string());
        let serve = Arc::new(serve);
        let listener = thread::spawn(move || {
            let bound = (|| {
                if let Some(pid) = netns_pid {
                    enter_netns(pid)
                        .map_err(|e| format!("join the network namespace of {pid}: {e}"))?;
                }
                let l =
                    TcpListener::bind((ip.as_str(), 0)).map_err(|e| format!("bind {ip}:0: {e}"))?;
                l.set_nonblocking(true)
                    .map_err(|e| format!("set the listener non-blocking: {e}"))?;
                let port = l.local_addr().map_err(|e| e.to_string())?.port();
                Ok((l, port))
            })();
            let l = match bound {
                Ok((l, port)) => {
                    let _ = tx.send(Ok(port));
                    l
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((stream, _)) => {
                        // Accepted sockets inherit blocking mode on Linux
                        // only if the listener was blocking; make sure.
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(TICK));
                        let conn = Conn {
                            stream: Stream::Plain(stream),
                            buf: Vec::new(),
                            stop: s.clone(),
                        };
                        let serve = serve.clone();
                        let h = thread::spawn(move || serve(conn));
                        c.lock().unwrap_or_else(|e| e.into_inner()).push(h);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(TICK / 5),
                    Err(_) => thread::sleep(TICK),
                }
            }
        });
        let port = match rx.recv() {
            Ok(Ok(port)) => port,
            Ok(Err(e)) => panic!("{what} sink: {e}"),
            Err(_) => panic!("{what} sink: the listener thread died before binding"),
        };
        Server {
            ip: bind_ip.to_string(),
            port,
            stop,
            listener: Some(listener),
            conns,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.listener.take() {
            let _ = h.join();
        }
        let conns = std::mem::take(&mut *self.conns.lock().unwrap_or_else(|e| e.into_inner()));
        for h in conns {
            let _ = h.join();
        }
    }
}

/// A server-side TLS configuration (ring provider) for `issued`.
pub fn server_config(issued: &Issued) -> Arc<ServerConfig> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("the issued certificate is PEM");
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("the issued key");
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("a server certificate");
    Arc::new(config)
}

/// A connection, plain or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
    Gone,
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
            Stream::Gone => Ok(0),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
            Stream::Gone => Ok(()),
        }
    }
}

fn is_wait(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// One accepted connection: a stream read with a short timeout so that the
/// stop flag is seen, and what has been read but not yet consumed.
struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    stop: Arc<AtomicBool>,
}

impl Conn {
    /// Starts TLS as the server and completes the handshake; `false` if it
    /// failed (a client that refused the certificate) or the sink stopped.
    fn start_tls(&mut self, config: &Arc<ServerConfig>) -> bool {
        self.buf.clear();
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return false;
        };
        let Ok(conn) = ServerConnection::new(config.clone()) else {
            return false;
        };
        let mut tls = StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            if self.stopped() {
                return false;
            }
            match tls.conn.complete_io(&mut tls.sock) {
                Ok((0, 0)) if tls.conn.is_handshaking() => {
                    // EOF from the client during the handshake.
                    if tls.conn.wants_read() {
                        return false;
                    }
                }
                Ok(_) => {}
                Err(e) if is_wait(&e) => {}
                Err(_) => return false,
            }
        }
        self.stream = Stream::Tls(Box::new(tls));
        true
    }

    /// Whether the connection is TLS.
    fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Reads more into the buffer; `false` at EOF, error or stop.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        loop {
            if self.stopped() {
                return false;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return true;
                }
                Err(e) if is_wait(&e) => {}
                Err(_) => return false,
            }
        }
    }

    /// Everything up to and including the first `delim`; `None` at EOF or
    /// once more than `max` bytes arrived without it.
    fn read_until(&mut self, delim: &[u8], max: usize) -> Option<Vec<u8>> {
        let mut searched: usize = 0;
        loop {
            let start = searched.saturating_sub(delim.len());
            if let Some(i) = find(&self.buf[start..], delim) {
                let end = start + i + delim.len();
                return Some(self.buf.drain(..end).collect());
            }
            searched = self.buf.len();
            if self.buf.len() > max || !self.fill() {
                return None;
            }
        }
    }

    /// Exactly `n` bytes; `None` at EOF.
    fn read_exact(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill() {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    /// One line without its `\n` or `\r\n`.
    fn read_line(&mut self) -> Option<String> {
        let mut line = self.read_until(b"\n", MAX_HEAD)?;
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Some(String::from_utf8_lossy(&line).into_owned())
    }

    /// Writes all of `text` (retrying while the socket times out, until the
    /// sink stops).
    fn write(&mut self, text: &str) -> bool {
        self.write_bytes(text.as_bytes())
    }

    fn write_bytes(&mut self, mut data: &[u8]) -> bool {
        while !data.is_empty() {
            if self.stopped() {
                return false;
            }
            match self.stream.write(data) {
                Ok(0) => return false,
                Ok(n) => data = &data[n..],
                Err(e) if is_wait(&e) => {}
                Err(_) => return false,
            }
        }
        loop {
            match self.stream.flush() {
                Ok(()) => return true,
                Err(e) if is_wait(&e) && !self.stopped() => {}
                Err(_) => return false,
            }
        }
    }

    /// Keeps the connection open, saying nothing, until the sink stops or
    /// the peer goes away.
    fn hang(&mut self) {
        while self.fill() {
            self.buf.clear();
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One HTTP request as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target: path and query, as sent.
    pub target: String,
    /// Header names and values, in order, as sent (values trimmed).
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes).
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The decoded value of parameter `name`, from the query string or else
    /// from an `application/x-www-form-urlencoded` body.
    pub fn param(&self, name: &str) -> Option<String> {
        let query = self.target.split_once('?').map(|(_, q)| q);
        if let Some(v) = query.and_then(|q| form_value(q, name)) {
            return Some(v);
        }
        let is_form = match self.header("content-type") {
            None => true,
            Some(t) => t
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded"),
        };
        if is_form {
            form_value(&String::from_utf8_lossy(&self.body), name)
        } else {
            None
        }
    }
}

/// The value of `name` in `a=1&b=2` form data, decoded.
fn form_value(form: &str, name: &str) -> Option<String> {
    form.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (form_decode(k) == name).then(|| form_decode(v))
    })
}

/// Decodes `+` and `%XX` (invalid escapes are kept as they are).
fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(x) => {
                        out.push(x);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one request (head and `Content-Length` body).
fn read_request(conn: &mut Conn) -> Option<HttpRequest> {
    let head = conn.read_until(b"\r\n\r\n", MAX_HEAD)?;
    let head = String::from_utf8_lossy(&head);
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split_whitespace();
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_BODY);
    let body = conn.read_exact(len)?;
    Some(HttpRequest {
        method,
        target,
        headers,
        body,
    })
}

/// How an [`HttpSink`] answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum HttpMode {
    /// 200 `ok`.
    Answer,
    /// Never.
    Hang,
    /// A 200 answer, one byte per second.
    Drip,
}

/// An HTTP server that records every request; answers 200 `ok`, or never
/// answers at all (see [`HttpSink::start_hanging`]).
pub struct HttpSink {
    requests: Arc<Mutex<Vec<HttpRequest>>>,
    server: Server,
    https: bool,
}

impl HttpSink {
    /// Listens on `bind_ip:<free port>`; with `Some(pid)`, inside that
    /// process's network namespace (setns in the listener thread, as
    /// `workload.rs` does). Every request is answered 200 `ok`.
    pub fn start(netns_pid: Option<i32>, bind_ip: &str) -> HttpSink {
        HttpSink::with(netns_pid, bind_ip, HttpMode::Answer, None)
    }

    /// Accepts connections and reads requests but never answers (a hung
    /// gateway). The requests are still recorded.
    pub fn start_hanging(netns_pid: Option<i32>, bind_ip: &str) -> HttpSink {
        HttpSink::with(netns_pid, bind_ip, HttpMode::Hang, None)
    }

    /// Answers 200, one byte per second (a gateway that would hold a client
    /// with per-read timeouts forever).
    pub fn start_dripping(netns_pid: Option<i32>, bind_ip: &str) -> HttpSink {
        HttpSink::with(netns_pid, bind_ip, HttpMode::Drip, None)
    }

    /// HTTPS with `cert` (issued for `bind_ip`); answers 200 `ok`.
    pub fn start_https(netns_pid: Option<i32>, bind_ip: &str, cert: &Issued) -> HttpSink {
        HttpSink::with(
            netns_pid,
            bind_ip,
            HttpMode::Answer,
            Some(server_config(cert)),
        )
    }

    fn with(
        netns_pid: Option<i32>,
        bind_ip: &str,
        mode: HttpMode,
        tls: Option<Arc<ServerConfig>>,
    ) -> HttpSink {
        let requests: Arc<Mutex<Vec<HttpRequest>>> = Arc::default();
        let r = requests.clone();
        let https = tls.is_some();
        let server = Server::start("HTTP", netns_pid, bind_ip, move |mut conn| {
            if let Some(config) = &tls {
                if !conn.start_tls(config) {
                    return;
                }
            }
            let Some(req) = read_request(&mut conn) else {
                return;
            };
            r.lock().unwrap_or_else(|e| e.into_inner()).push(req);
            let answer = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\
                          Connection: close\r\n\r\nok";
            match mode {
                HttpMode::Hang => conn.hang(),
                HttpMode::Answer => {
                    conn.write(answer);
                }
                HttpMode::Drip => {
                    for b in answer.as_bytes() {
                        if !conn.write_bytes(&[*b]) || !sleep_unless_stopped(&conn, DRIP) {
                            return;
                        }
                    }
                }
            }
        });
        HttpSink {
            requests,
            server,
            https,
        }
    }

    /// The port listened on.
    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// `http://ip:port`, or `https://` behind TLS.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!(
            "{scheme}://{}",
            host_port(&self.server.ip, self.server.port)
        )
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<HttpRequest> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The pace of the dripping servers.
const DRIP: Duration = Duration::from_secs(1);

/// Sleeps `d` in ticks; `false` if the sink stopped meanwhile.
fn sleep_unless_stopped(conn: &Conn, d: Duration) -> bool {
    let mut left = d;
    while !left.is_zero() {
        if conn.stopped() {
            return false;
        }
        let t = left.min(TICK);
        thread::sleep(t);
        left -= t;
    }
    true
}

/// `ip:port`, with brackets around an IPv6 address.
fn host_port(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// One message accepted by the [`SmtpSink`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpMessage {
    /// The `MAIL FROM` address (without angle brackets).
    pub from: String,
    /// The `RCPT TO` addresses, in order (without angle brackets).
    pub to: Vec<String>,
    /// The message (headers and body) with dot-stuffing undone and lines
    /// ending in `\r\n`, without the final `.` line.
    pub data: String,
    /// Whether it arrived over TLS.
    pub tls: bool,
    /// The user that authenticated, if any.
    pub user: Option<String>,
}

impl SmtpMessage {
    /// The first value of header `name` (case-insensitive) in [`data`](Self::data).
    pub fn header(&self, name: &str) -> Option<String> {
        self.data
            .split("\r\n")
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    }

    /// The body: what follows the empty line after the headers.
    pub fn body(&self) -> String {
        if let Some(body) = self.data.strip_prefix("\r\n") {
            return body.to_string();
        }
        self.data
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    }
}

/// How an [`SmtpSink`] protects its sessions.
#[derive(Clone, Default)]
pub enum SmtpTlsMode {
    /// Plain SMTP.
    #[default]
    None,
    /// Offers STARTTLS with this certificate.
    StartTls(Issued),
    /// TLS from the first byte (SMTPS) with this certificate.
    Implicit(Issued),
}

/// What an [`SmtpSink`] offers and demands.
#[derive(Clone, Default)]
pub struct SmtpSinkOptions {
    /// Plain, STARTTLS or implicit TLS.
    pub tls: SmtpTlsMode,
    /// With `Some((user, password))`, advertises AUTH PLAIN LOGIN (also on
    /// a plain connection, as a careless server does), checks the
    /// password and refuses MAIL before a successful AUTH.
    pub auth: Option<(String, String)>,
}

/// How a misbehaving [`SmtpSink`] misbehaves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SmtpMisbehaviour {
    /// Streams `220-` continuation lines forever, as fast as it can.
    Stream220,
    /// Sends its greeting one byte per second.
    Drip,
}

/// An SMTP server that accepts every message and records it.
pub struct SmtpSink {
    messages: Arc<Mutex<Vec<SmtpMessage>>>,
    lines: Arc<Mutex<Vec<String>>>,
    server: Server,
}

impl SmtpSink {
    /// Listens on `bind_ip:<free port>`; with `Some(pid)`, inside that
    /// process's network namespace.
    pub fn start(netns_pid: Option<i32>, bind_ip: &str) -> SmtpSink {
        SmtpSink::start_with(netns_pid, bind_ip, SmtpSinkOptions::default())
    }

    /// As [`SmtpSink::start`], with TLS and AUTH as `options` say.
    pub fn start_with(netns_pid: Option<i32>, bind_ip: &str, options: SmtpSinkOptions) -> SmtpSink {
        let messages: Arc<Mutex<Vec<SmtpMessage>>> = Arc::default();
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let (m, l) = (messages.clone(), lines.clone());
        let session = Arc::new(Session::new(options));
        let server = Server::start("SMTP", netns_pid, bind_ip, move |mut conn| {
            session.run(&mut conn, &m, &l)
        });
        SmtpSink {
            messages,
            lines,
            server,
        }
    }

    /// A server that misbehaves as `how` says (and records nothing).
    pub fn start_misbehaving(
        netns_pid: Option<i32>,
        bind_ip: &str,
        how: SmtpMisbehaviour,
    ) -> SmtpSink {
        let server = Server::start("SMTP", netns_pid, bind_ip, move |mut conn| match how {
            SmtpMisbehaviour::Stream220 => {
                let chunk = "220-flood flood flood flood flood flood flood flood flood flood\r\n"
                    .repeat(256);
                while conn.write(&chunk) {}
            }
            SmtpMisbehaviour::Drip => {
                for b in b"220 slow ESMTP\r\n" {
                    if !conn.write_bytes(&[*b]) || !sleep_unless_stopped(&conn, DRIP) {
                        return;
                    }
                }
                conn.hang();
            }
        });
        SmtpSink {
            messages: Arc::default(),
            lines: Arc::default(),
            server,
        }
    }

    /// The port listened on.
    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// `ip:port`.
    pub fn addr(&self) -> String {
        host_port(&self.server.ip, self.server.port)
    }

    /// Every message accepted so far, in arrival order.
    pub fn messages(&self) -> Vec<SmtpMessage> {
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every command line received outside DATA, AUTH exchanges included,
    /// in order, as received (after TLS decryption).
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The address inside `FROM:<a@b> SIZE=10`, without brackets.
fn smtp_path(arg: &str) -> String {
    let arg = arg.trim();
    match (arg.find('<'), arg.find('>')) {
        (Some(a), Some(b)) if a < b => arg[a + 1..b].to_string(),
        _ => arg.split_whitespace().next().unwrap_or("").to_string(),
    }
}

/// One SMTP sink's behaviour.
struct Session {
    tls: SmtpTlsMode,
    config: Option<Arc<ServerConfig>>,
    auth: Option<(String, String)>,
}

fn b64(s: &str) -> Option<String> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

impl Session {
    fn new(o: SmtpSinkOptions) -> Session {
        let config = match &o.tls {
            SmtpTlsMode::None => None,
            SmtpTlsMode::StartTls(c) | SmtpTlsMode::Implicit(c) => Some(server_config(c)),
        };
        Session {
            tls: o.tls,
            config,
            auth: o.auth,
        }
    }

    /// Reads one line, recording it.
    fn line(conn: &mut Conn, lines: &Mutex<Vec<String>>) -> Option<String> {
        let l = conn.read_line()?;
        lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(l.clone());
        Some(l)
    }

    /// AUTH PLAIN or LOGIN: whether `user`/`password` matched.
    fn authenticate(&self, conn: &mut Conn, arg: &str, lines: &Mutex<Vec<String>>) -> Option<bool> {
        let (mech, initial) = arg.split_once(' ').unwrap_or((arg, ""));
        let (user, password) = match mech.to_ascii_uppercase().as_str() {
            "PLAIN" => {
                let data = if initial.is_empty() {
                    conn.write("334 \r\n").then_some(())?;
                    Session::line(conn, lines)?
                } else {
                    initial.to_string()
                };
                let decoded = b64(&data).unwrap_or_default();
                let mut parts = decoded.split('\0');
                let _authzid = parts.next();
                (
                    parts.next().unwrap_or("").to_string(),
                    parts.next().unwrap_or("").to_string(),
                )
            }
            "LOGIN" => {
                conn.write("334 VXNlcm5hbWU6\r\n").then_some(())?;
                let u = b64(&Session::line(conn, lines)?).unwrap_or_default();
                conn.write("334 UGFzc3dvcmQ6\r\n").then_some(())?;
                let p = b64(&Session::line(conn, lines)?).unwrap_or_default();
                (u, p)
            }
            _ => return Some(false),
        };
        Some(
            self.auth
                .as_ref()
                .is_some_and(|(u, p)| *u == user && *p == password),
        )
    }

    fn run(&self, conn: &mut Conn, messages: &Mutex<Vec<SmtpMessage>>, lines: &Mutex<Vec<String>>) {
        if let (SmtpTlsMode::Implicit(_), Some(config)) = (&self.tls, &self.config) {
            if !conn.start_tls(config) {
                return;
            }
        }
        if !conn.write("220 rapidpro-ha-sink ESMTP ready\r\n") {
            return;
        }
        let mut from: Option<String> = None;
        let mut to: Vec<String> = Vec::new();
        let mut authenticated = false;
        while let Some(line) = Session::line(conn, lines) {
            let (verb, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            let verb = verb.to_ascii_uppercase();
            let upper = arg.to_ascii_uppercase();
            let reply: String = match verb.as_str() {
                "EHLO" => {
                    let mut r = "250-rapidpro-ha-sink\r\n250-8BITMIME\r\n".to_string();
                    if matches!(self.tls, SmtpTlsMode::StartTls(_)) && !conn.is_tls() {
                        r.push_str("250-STARTTLS\r\n");
                    }
                    if self.auth.is_some() {
                        r.push_str("250-AUTH PLAIN LOGIN\r\n");
                    }
                    r.push_str("250 SIZE 4194304\r\n");
                    r
                }
                "STARTTLS" if matches!(self.tls, SmtpTlsMode::StartTls(_)) && !conn.is_tls() => {
                    if !conn.write("220 2.0.0 ready to start TLS\r\n") {
                        return;
                    }
                    let Some(config) = &self.config else { return };
                    if !conn.start_tls(config) {
                        return;
                    }
                    from = None;
                    to.clear();
                    continue;
                }
                "AUTH" if self.auth.is_some() => match self.authenticate(conn, arg, lines) {
                    None => return,
                    Some(true) => {
                        authenticated = true;
                        "235 2.7.0 authentication successful\r\n".into()
                    }
                    Some(false) => "535 5.7.8 authentication credentials invalid\r\n".into(),
                },
                "MAIL" if self.auth.is_some() && !authenticated => {
                    "530 5.7.0 authentication required\r\n".into()
                }
                "HELO" => "250 rapidpro-ha-sink\r\n".into(),
                "MAIL" if upper.starts_with("FROM:") => {
                    from = Some(smtp_path(&arg[5..]));
                    to.clear();
                    "250 2.1.0 sender ok\r\n".into()
                }
                "RCPT" if upper.starts_with("TO:") => {
                    if from.is_none() {
                        "503 5.5.1 MAIL first\r\n".into()
                    } else {
                        to.push(smtp_path(&arg[3..]));
                        "250 2.1.5 recipient ok\r\n".into()
                    }
                }
                "DATA" if from.is_none() || to.is_empty() => {
                    "503 5.5.1 MAIL and RCPT first\r\n".into()
                }
                "DATA" => {
                    if !conn.write("354 end data with <CR><LF>.<CR><LF>\r\n") {
                        return;
                    }
                    let mut data = String::new();
                    loop {
                        let Some(l) = conn.read_line() else { return };
                        if l == "." {
                            break;
                        }
                        // RFC 5321 4.5.2: a leading dot was doubled by the client.
                        data.push_str(l.strip_prefix('.').unwrap_or(&l));
                        data.push_str("\r\n");
                        if data.len() > MAX_BODY {
                            return;
                        }
                    }
                    let msg = SmtpMessage {
                        from: from.take().unwrap_or_default(),
                        to: std::mem::take(&mut to),
                        data,
                        tls: conn.is_tls(),
                        user: authenticated
                            .then(|| self.auth.as_ref().map(|(u, _)| u.clone()))
                            .flatten(),
                    };
                    messages.lock().unwrap_or_else(|e| e.into_inner()).push(msg);
                    "250 2.0.0 queued\r\n".into()
                }
                "RSET" => {
                    from = None;
                    to.clear();
                    "250 2.0.0 ok\r\n".into()
                }
                "NOOP" => "250 2.0.0 ok\r\n".into(),
                "QUIT" => {
                    conn.write("221 2.0.0 bye\r\n");
                    return;
                }
                _ => "500 5.5.2 command not recognized\r\n".into(),
            };
            if !conn.write(&reply) {
                return;
            }
        }
    }
}
