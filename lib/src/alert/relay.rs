//! A loopback relay that bounds an SMTP session in bytes and in time.
//!
//! Why: lettre bounds the *number* of reply lines (100 kB in all) but reads
//! each line with `BufRead::read_line`, which grows without limit until a
//! `\n` arrives, and it only sets per-read socket timeouts, so a server that
//! sends one byte a second holds it forever. lettre's `SmtpConnection`
//! takes no stream of ours and exposes no descriptor, so a watchdog cannot
//! shut its socket down. Instead the agent connects to the server itself,
//! and lettre connects to this relay on 127.0.0.1, which copies bytes both
//! ways and:
//!
//! - stops after [`MAX_FROM_SERVER`] bytes from the server (replies and the
//!   TLS handshake of one message are a few kB);
//! - shuts both connections down when the deadline passes, so lettre's
//!   blocked read returns at once.
//!
//! TLS stays end to end (lettre verifies the server's certificate against
//! the server's name, not the relay's address); the relay sees only
//! ciphertext. It accepts one connection, from loopback, then closes its
//! listening socket.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::net;
use crate::deadline::Deadline;

/// Most bytes taken from the server in one session.
pub const MAX_FROM_SERVER: u64 = 1024 * 1024;
/// How often a blocked copy looks at the deadline.
const TICK: Duration = Duration::from_millis(50);

/// Why the relay cut the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The deadline passed.
    Deadline,
    /// The server sent more than [`MAX_FROM_SERVER`] bytes.
    TooMuch,
}

struct Shared {
    cut: Mutex<Option<Cut>>,
    closed: AtomicBool,
}

/// A running relay to one server.
pub struct Relay {
    port: u16,
    shared: Arc<Shared>,
}

impl Relay {
    /// Connects to `host:port` (each address tried within `step`) and
    /// listens on 127.0.0.1 for the client.
    pub fn open(host: &str, port: u16, step: Duration, deadline: &Deadline) -> io::Result<Relay> {
        let upstream = net::connect(host, port, step, deadline)?;
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            cut: Mutex::new(None),
            closed: AtomicBool::new(false),
        });
        let (s, d) = (shared.clone(), *deadline);
        thread::Builder::new()
            .name("smtp-relay".into())
            .spawn(move || {
                if let Some(client) = accept_one(&listener, &s, &d) {
                    drop(listener);
                    relay(client, upstream, &s, &d);
                }
            })?;
        Ok(Relay {
            port: local,
            shared,
        })
    }

    /// The loopback port the client connects to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Why the session was cut, if it was.
    pub fn cut(&self) -> Option<Cut> {
        *self.shared.cut.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Relay {
    /// Ends the copying threads within a tick.
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Relaxed);
    }
}

fn accept_one(listener: &TcpListener, s: &Shared, d: &Deadline) -> Option<TcpStream> {
    loop {
        if s.closed.load(Ordering::Relaxed) {
            return None;
        }
        if d.expired() {
            set_cut(s, Cut::Deadline);
            return None;
        }
        match listener.accept() {
            Ok((c, peer)) if peer.ip().is_loopback() => {
                let _ = c.set_nonblocking(false);
                let _ = c.set_nodelay(true);
                return Some(c);
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(TICK / 5),
            Err(_) => return None,
        }
    }
}

fn set_cut(s: &Shared, cut: Cut) {
    s.cut
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert(cut);
}

/// Copies both ways until both sides closed, the deadline passed or the
/// server sent too much; then shuts both connections down.
fn relay(client: TcpStream, server: TcpStream, s: &Arc<Shared>, d: &Deadline) {
    let pair = (|| Ok::<_, io::Error>((client.try_clone()?, server.try_clone()?)))();
    let Ok((client2, server2)) = pair else {
        return;
    };
    let (s2, d2) = (s.clone(), *d);
    let up = thread::Builder::new()
        .name("smtp-relay-up".into())
        .spawn(move || copy(client2, server2, None, &s2, &d2));
    copy(server, client, Some(MAX_FROM_SERVER), s, d);
    if let Ok(h) = up {
        let _ = h.join();
    }
}

/// Copies `from` to `to`; at EOF half-closes `to`; on a cut or an error
/// shuts both down entirely.
fn copy(mut from: TcpStream, mut to: TcpStream, max: Option<u64>, s: &Shared, d: &Deadline) {
    let _ = from.set_read_timeout(Some(TICK));
    let mut total: u64 = 0;
    let mut buf = [0u8; 8192];
    let kill = |from: &TcpStream, to: &TcpStream| {
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    };
    loop {
        if s.closed.load(Ordering::Relaxed) {
            return kill(&from, &to);
        }
        if d.expired() {
            set_cut(s, Cut::Deadline);
            return kill(&from, &to);
        }
        match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                total += n as u64;
                if max.is_some_and(|m| total > m) {
                    set_cut(s, Cut::TooMuch);
                    return kill(&from, &to);
                }
                let _ = to.set_write_timeout(Some(d.remaining().max(Duration::from_millis(1))));
                if to.write_all(&buf[..n]).is_err() {
                    return kill(&from, &to);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return kill(&from, &to),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A server that greets and then streams `220-` lines as fast as it can.
    fn streaming_server() -> (u16, thread::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = thread::spawn(move || {
            if let Ok((mut c, _)) = l.accept() {
                let line = b"220-flood flood flood flood flood flood flood flood\r\n".repeat(100);
                while c.write_all(&line).is_ok() {}
            }
        });
        (port, h)
    }

    #[test]
    fn a_flooding_server_is_cut_after_the_byte_limit() {
        let (port, h) = streaming_server();
        let d = Deadline::after(Duration::from_secs(10));
        let r = Relay::open("127.0.0.1", port, Duration::from_secs(2), &d).unwrap();
        let mut c = TcpStream::connect(("127.0.0.1", r.port())).unwrap();
        let mut got = Vec::new();
        let _ = c.read_to_end(&mut got);
        assert!(got.len() as u64 <= MAX_FROM_SERVER, "{}", got.len());
        assert_eq!(r.cut(), Some(Cut::TooMuch));
        drop(c);
        h.join().unwrap();
    }

    #[test]
    fn a_slow_server_is_cut_at_the_deadline() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = thread::spawn(move || {
            if let Ok((mut c, _)) = l.accept() {
                for _ in 0..20 {
                    if c.write_all(b"2").is_err() {
                        return;
                    }
                    thread::sleep(Duration::from_millis(500));
                }
            }
        });
        let started = Instant::now();
        let d = Deadline::after(Duration::from_secs(2));
        let r = Relay::open("127.0.0.1", port, Duration::from_secs(5), &d).unwrap();
        let mut c = TcpStream::connect(("127.0.0.1", r.port())).unwrap();
        let mut got = Vec::new();
        let _ = c.read_to_end(&mut got);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert_eq!(r.cut(), Some(Cut::Deadline));
        drop(c);
        h.join().unwrap();
    }
}
