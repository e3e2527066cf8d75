//! The root-namespace half of the sandbox fence agent
//! (`pcs-examples/sandbox/fence_rapidpro_sandbox`).
//!
//! The agent, run by pacemaker-fenced inside a node, creates
//! `<fence dir>/X.request` to fence node X and waits for `X.done`. The fence
//! directory is one host directory of the test, bind-mounted at
//! `/var/lib/rapidpro-fence` in every node. This thread watches it: for a
//! request without a `done`, it powers node X off (SIGKILL to its PID 1, the
//! power cut), waits until the node's namespaces are gone, then writes
//! `X.done`. The agent removes both files.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::proc;

use super::node::{lock, ProcsCell};

/// How often the directory is scanned.
const INTERVAL: Duration = Duration::from_millis(50);

/// One fencing the harness carried out.
#[derive(Debug, Clone)]
pub struct FenceEvent {
    /// The fenced node.
    pub node: String,
    /// When its PID 1 got SIGKILL.
    pub at: Instant,
    /// Whether it was running at that moment (fencing a node that is
    /// already off succeeds too).
    pub was_up: bool,
}

/// The watcher thread; stopped and joined on drop.
#[derive(Debug)]
pub(crate) struct FenceWatcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    events: Arc<Mutex<Vec<FenceEvent>>>,
}

impl FenceWatcher {
    /// Watches `dir` for requests to fence the nodes in `nodes` (name to
    /// the node's processes).
    pub(crate) fn start(dir: PathBuf, nodes: BTreeMap<String, ProcsCell>) -> FenceWatcher {
        let stop = Arc::new(AtomicBool::new(false));
        let events = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, events) = (stop.clone(), events.clone());
            thread::Builder::new()
                .name("harness-fence".into())
                .spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        scan(&dir, &nodes, &events);
                        thread::sleep(INTERVAL);
                    }
                })
                .expect("harness: cannot start the fence watcher thread")
        };
        FenceWatcher {
            stop,
            thread: Some(thread),
            events,
        }
    }

    /// Every fencing so far, oldest first.
    pub(crate) fn events(&self) -> Vec<FenceEvent> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops the thread and waits for it.
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FenceWatcher {
    fn drop(&mut self) {
        self.stop();
    }
}

fn scan(dir: &Path, nodes: &BTreeMap<String, ProcsCell>, events: &Mutex<Vec<FenceEvent>>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(node) = file.to_str().and_then(|f| f.strip_suffix(".request")) else {
            continue;
        };
        let done = dir.join(format!("{node}.done"));
        if done.exists() {
            continue;
        }
        let Some(cell) = nodes.get(node) else {
            eprintln!("harness: fence request for unknown node {node:?} ignored");
            continue;
        };
        let at = Instant::now();
        let was_up = {
            let mut procs = lock(cell);
            match procs.take() {
                Some(p) => {
                    proc::signal(p.init, Signal::SIGKILL);
                    for pid in [p.init, p.unshare] {
                        if !proc::wait_reaped(pid, Duration::from_secs(20)) {
                            eprintln!("harness: fencing {node}: pid {pid} still there");
                        }
                    }
                    true
                }
                None => false,
            }
        };
        eprintln!("harness: fenced {node} (was up: {was_up})");
        if let Err(e) = fs::write(&done, "") {
            eprintln!("harness: cannot write {}: {e}", done.display());
        }
        events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(FenceEvent {
                node: node.to_owned(),
                at,
                was_up,
            });
    }
}
