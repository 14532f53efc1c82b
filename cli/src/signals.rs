//! SIGINT, SIGTERM and SIGHUP, all alike: Ctrl-C at a terminal, `kill`, `timeout`, `docker stop`,
//! systemd and CI cancellation must all leave the same clean state (no unfinished multipart
//! upload, no temporary file) and exit with 128 + the signal's number.
//!
//! One thread receives the signals ([`install`], from `main`). What it does with the first one
//! depends on the command:
//! * S3 commands run on tokio and stop cooperatively ([`cooperate`]): the signal completes
//!   [`received`], each transfer aborts its multipart upload and removes its temporary file, and
//!   the command returns [`crate::exit::Failure::Interrupted`].
//! * Local commands (`encrypt`, `decrypt`, …) have nothing to abort: the thread removes the
//!   temporary files registered with [`track`] and exits at once.
//!
//! A second signal while a cooperative stop is under way (an abort that hangs on an unreachable
//! server, say) removes the temporary files and exits at once, as `aws s3 cp` does.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// A terminating signal that was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Signal(i32);

impl Signal {
    /// Ctrl-C (when a stop is reported without a signal number, e.g. by the library).
    pub(crate) const INT: Signal = Signal(SIGINT);

    /// The exit status for it: 128 + its number, as shells report a process it killed.
    pub(crate) fn exit_code(self) -> u8 {
        u8::try_from(128 + self.0).unwrap_or(255)
    }

    /// Its name, for the message.
    pub(crate) fn name(self) -> &'static str {
        match self.0 {
            SIGINT => "SIGINT",
            SIGTERM => "SIGTERM",
            SIGHUP => "SIGHUP",
            _ => "a signal",
        }
    }
}

struct State {
    /// The first signal received, for cooperative commands.
    tx: tokio::sync::watch::Sender<Option<Signal>>,
    /// Temporary files to remove on an immediate exit.
    temps: Mutex<HashMap<u64, PathBuf>>,
    next: AtomicU64,
    /// Whether the running command stops cooperatively.
    cooperative: AtomicBool,
}

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| State {
        tx: tokio::sync::watch::channel(None).0,
        temps: Mutex::new(HashMap::new()),
        next: AtomicU64::new(0),
        cooperative: AtomicBool::new(false),
    })
}

/// Starts receiving SIGINT, SIGTERM and SIGHUP (their default action, dying on the spot, is
/// replaced). If they cannot be caught, they keep their default action.
pub(crate) fn install() {
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        return;
    };
    let st = state();
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for n in signals.forever() {
                let sig = Signal(n);
                let first = st.tx.borrow().is_none();
                if first && st.cooperative.load(Ordering::SeqCst) {
                    st.tx.send_replace(Some(sig));
                    continue;
                }
                exit_now(sig);
            }
        });
    let _ = spawned;
}

/// Removes the tracked temporary files, says so, and exits with the signal's status.
fn exit_now(sig: Signal) -> ! {
    let st = state();
    if let Ok(temps) = st.temps.lock() {
        for p in temps.values() {
            let _ = std::fs::remove_file(p);
        }
    }
    eprintln!("s3crypt: interrupted ({})", sig.name());
    std::process::exit(i32::from(sig.exit_code()));
}

/// The running command stops cooperatively on the first signal (see the module docs).
pub(crate) fn cooperate() {
    state().cooperative.store(true, Ordering::SeqCst);
}

/// Completes with the first signal received once [`cooperate`] was called; never, if signals
/// could not be caught (rather than at once, which would cancel every transfer).
pub(crate) async fn received() -> Signal {
    let mut rx = state().tx.subscribe();
    let got = rx.wait_for(Option::is_some).await.map(|s| *s);
    match got {
        Ok(s) => s.unwrap_or(Signal::INT),
        Err(_) => std::future::pending().await,
    }
}

/// The signal received so far, if any.
pub(crate) fn which() -> Option<Signal> {
    *state().tx.borrow()
}

/// A temporary file removed if the process exits on a signal; untracked when dropped.
#[derive(Debug)]
pub(crate) struct Tracked(u64);

/// Tracks `path` until the returned value is dropped.
pub(crate) fn track(path: PathBuf) -> Tracked {
    let st = state();
    let id = st.next.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut t) = st.temps.lock() {
        t.insert(id, path);
    }
    Tracked(id)
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Ok(mut t) = state().temps.lock() {
            t.remove(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_128_plus_the_signal() {
        assert_eq!(Signal(SIGINT).exit_code(), 130);
        assert_eq!(Signal(SIGTERM).exit_code(), 143);
        assert_eq!(Signal(SIGHUP).exit_code(), 129);
    }

    #[test]
    fn tracked_paths_are_forgotten_when_dropped() {
        let a = track("/nonexistent/a".into());
        let b = track("/nonexistent/b".into());
        drop(a);
        let temps = state().temps.lock().unwrap();
        assert!(temps
            .values()
            .all(|p| p != &PathBuf::from("/nonexistent/a")));
        assert!(temps
            .values()
            .any(|p| p == &PathBuf::from("/nonexistent/b")));
        drop(temps);
        drop(b);
    }
}
