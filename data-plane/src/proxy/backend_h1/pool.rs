//! A worker's idle backend connections, by backend address.
//!
//! For: keeping a connection whose response ended cleanly for the next request to the same
//! address, most recently used first (its buffers and the backend's caches are warm), up to its
//! idle timeout. Each worker thread runs a single-threaded runtime of its own, so the list is the
//! thread's (`thread_local!`) and taking or returning a connection takes no lock. A connection
//! the backend has closed, or that has unread bytes, is never handed out: the check asks the
//! runtime's readiness first and reads the socket only when it says the socket is readable
//! (after a response was read whole, tokio has already cleared that, so a healthy connection
//! costs no system call). A sweeper task per worker, running only while the list is not empty,
//! closes connections idle past their timeout or closed by the backend.
//! Not for: runtimes with several worker threads, where a task may move between threads: there a
//! returned connection is closed instead (tests only; berth-proxy's workers are single-threaded).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::Conn;

/// How often, at most, the sweeper wakes to look for connections the backend closed.
const SWEEP_AT_MOST: Duration = Duration::from_secs(1);
/// How soon, at least, the sweeper wakes again (a burst of expiries is swept together).
const SWEEP_AT_LEAST: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Idle {
    /// foldhash: looked up twice per request, by addresses from the route table.
    lists: HashMap<SocketAddr, VecDeque<Entry>, foldhash::fast::RandomState>,
    /// Whether this thread's sweeper task is running.
    sweeping: bool,
}

struct Entry {
    conn: Box<Conn>,
    since: Instant,
    keep: Duration,
}

impl Entry {
    fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.since) >= self.keep
    }
}

thread_local! {
    static IDLE: RefCell<Idle> = RefCell::new(Idle::default());
}

/// An idle connection to `addr` that may be used, if there is one.
pub(super) fn checkout(addr: SocketAddr) -> Option<Box<Conn>> {
    IDLE.with_borrow_mut(|idle| {
        let list = idle.lists.get_mut(&addr)?;
        let now = Instant::now();
        while let Some(entry) = list.pop_back() {
            // The list is oldest first: once one has expired, so have all below it.
            if entry.expired(now) {
                list.clear();
                break;
            }
            if usable(&entry.conn) {
                return Some(entry.conn);
            }
        }
        None
    })
}

/// Keeps `conn` for the next request to its address for up to `keep`, or closes it (see the
/// module documentation).
pub(super) fn checkin(conn: Box<Conn>, keep: Duration) {
    if keep.is_zero() || !conn.read.is_empty() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
        return;
    }
    let start_sweeper = IDLE.with_borrow_mut(|idle| {
        idle.lists.entry(conn.addr).or_default().push_back(Entry {
            conn,
            since: Instant::now(),
            keep,
        });
        !std::mem::replace(&mut idle.sweeping, true)
    });
    if start_sweeper {
        runtime.spawn(sweep());
    }
}

/// Whether an idle connection may take a request: no unread bytes and, as far as the socket
/// tells without waiting, still open.
fn usable(conn: &Conn) -> bool {
    if !conn.read.is_empty() {
        return false;
    }
    let mut cx = Context::from_waker(Waker::noop());
    match conn.stream.poll_read_ready(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        // Readable: closed, bytes nobody asked for, or a stale readiness (then the read says
        // `WouldBlock` and tokio clears it).
        Poll::Ready(Ok(())) => {
            let mut byte = [0u8; 1];
            matches!(conn.stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        }
    }
}

/// This thread's sweeper: closes expired and closed connections until none is left idle.
async fn sweep() {
    loop {
        let next = IDLE.with_borrow_mut(|idle| {
            let now = Instant::now();
            let mut next = now + SWEEP_AT_MOST;
            idle.lists.retain(|_, list| {
                list.retain(|entry| !entry.expired(now) && usable(&entry.conn));
                for entry in list.iter() {
                    next = next.min(entry.since + entry.keep);
                }
                !list.is_empty()
            });
            if idle.lists.is_empty() {
                idle.sweeping = false;
                return None;
            }
            Some(next.max(now + SWEEP_AT_LEAST))
        });
        let Some(next) = next else {
            return;
        };
        tokio::time::sleep_until(next.into()).await;
    }
}

/// How many idle connections this thread keeps to `addr` (tests).
#[cfg(test)]
pub(super) fn idle_count(addr: SocketAddr) -> usize {
    IDLE.with_borrow(|idle| idle.lists.get(&addr).map_or(0, VecDeque::len))
}
