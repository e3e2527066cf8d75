//! Addresses and connecting, for the SMTP relay and the gateway probe.
//!
//! Each connect gets `send_timeout`, or what is left of the deadline if
//! that is shorter.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::deadline::Deadline;

/// One step's timeout, or `None` once the deadline has passed.
pub(crate) fn step(step: Duration, deadline: &Deadline) -> Option<Duration> {
    let t = deadline.cap(step);
    (!t.is_zero()).then_some(t)
}

/// Splits `host:port` (or `[v6]:port`, or `host` alone when `default` is
/// given) into host and port.
pub(crate) fn split_host_port(s: &str, default: Option<u16>) -> Result<(String, u16), String> {
    let s = s.trim();
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| "missing `]` after an IPv6 address".to_string())?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err(format!("unexpected {after:?} after `]`")),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err("an IPv6 address must be written in brackets, as [::1]:25".into())
            }
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "/?#@{}".contains(c))
    {
        return Err(format!("{host:?} is not a host name or address"));
    }
    let port = match (port, default) {
        (Some(p), _) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("{p:?} is not a port number (1-65535)")),
        },
        (None, Some(d)) => d,
        (None, None) => return Err("no port".into()),
    };
    Ok((host.to_string(), port))
}

/// Connects to `host:port` trying each resolved address, each with the step
/// timeout. Name resolution itself cannot be bounded (getaddrinfo); callers
/// run this on a worker thread and stop waiting at the deadline.
pub(crate) fn connect(
    host: &str,
    port: u16,
    t: Duration,
    deadline: &Deadline,
) -> io::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
    for addr in addrs {
        let Some(t) = step(t, deadline) else {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
        };
        match TcpStream::connect_timeout(&addr, t) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Seconds, as written in messages: `2 s`, `0.5 s`.
pub(crate) fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_are_split() {
        assert_eq!(
            split_host_port("mail.example.org:587", None).unwrap(),
            ("mail.example.org".into(), 587)
        );
        assert_eq!(
            split_host_port("127.0.0.1", Some(25)).unwrap(),
            ("127.0.0.1".into(), 25)
        );
        assert_eq!(
            split_host_port("[::1]:2525", None).unwrap(),
            ("::1".into(), 2525)
        );
        assert_eq!(
            split_host_port("[::1]", Some(25)).unwrap(),
            ("::1".into(), 25)
        );
        for bad in [
            "",
            ":25",
            "host:",
            "host:x",
            "host:0",
            "host:70000",
            "::1",
            "a b:25",
        ] {
            assert!(split_host_port(bad, Some(25)).is_err(), "{bad:?}");
        }
        assert!(split_host_port("host", None).is_err());
    }

    #[test]
    fn seconds_read_naturally() {
        assert_eq!(secs(Duration::from_secs(2)), "2 s");
        assert_eq!(secs(Duration::from_millis(1500)), "1.5 s");
    }
}
