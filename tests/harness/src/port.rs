//! Free loopback ports.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Mutex;

use crate::LOOPBACK;

/// Every port handed out by this process, so no two nodes get the same one
/// even if the kernel offers it again after the probe socket is closed.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A TCP port on 127.0.0.1 that was free a moment ago and that this process
/// has not handed out before: bind port 0, read the port, close.
///
/// The kernel picks it from the ephemeral range, so in theory an outgoing
/// connection could take it before the server binds it; tests bind within
/// seconds and make few connections, and a clash shows up as a clear "address
/// already in use" in the server's log.
pub fn free_port() -> u16 {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let listener = TcpListener::bind((LOOPBACK, 0))
            .unwrap_or_else(|e| panic!("cannot bind {LOOPBACK}:0 to find a free port: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("cannot read the probe socket's address: {e}"))
            .port();
        drop(listener);
        if handed_out.insert(port) {
            return port;
        }
    }
    panic!("no fresh free port after 1000 tries");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_never_handed_out_twice() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let unique: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len());
        assert!(ports.iter().all(|&p| p != 0));
    }
}
