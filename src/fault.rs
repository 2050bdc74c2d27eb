//! Fault injection (`fault=CALL@N=ERRNO`): the Nth call of CALL in this
//! process fails with ERRNO without reaching the kernel, so that error paths
//! of C programs can be tested from `make check`. `CALL@N=panic` instead
//! panics inside shmguard, to show that such a bug changes nothing.
#![forbid(unsafe_code)]

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::error::{ErrnoName, Sentence};
use crate::options::{CallKind, FaultAction};
use crate::runtime;
use crate::sys::Errno;

/// Rules exist: count calls. Off, the check is one relaxed load.
static ARMED: AtomicBool = AtomicBool::new(false);
static COUNTS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

/// Starts counting (at start-up, when `fault=` has rules).
pub fn arm() {
    ARMED.store(true, Ordering::Relaxed);
}

/// Counts this call of `kind`; what to do to it, if a rule says so.
pub fn check(kind: CallKind) -> Option<FaultAction> {
    if !ARMED.load(Ordering::Relaxed) {
        return None;
    }
    let n = COUNTS[kind as usize].fetch_add(1, Ordering::Relaxed) + 1;
    runtime::options()
        .fault
        .iter()
        .find(|rule| rule.call == kind && rule.nth == n)
        .map(|rule| rule.action)
}

/// The diagnostic of an injected failure.
pub fn explain(kind: CallKind, errno: Errno) -> Sentence {
    let mut s = Sentence::new();
    let n = COUNTS[kind as usize].load(Ordering::Relaxed);
    let _ = write!(
        s,
        "injected failure: SHMGUARD_OPTIONS fault={}@{n}={} (call {n} of {} in this process did not reach the kernel)",
        kind.name(),
        ErrnoName(errno),
        kind.name()
    );
    s
}

/// `CALL@N=panic`: panics, as a bug in shmguard would; the caller runs it
/// under `fail_open`, which must catch it.
pub fn deliberate_panic(kind: CallKind) {
    let n = COUNTS[kind as usize].load(Ordering::Relaxed);
    panic!(
        "a deliberate panic (SHMGUARD_OPTIONS fault={}@{n}=panic)",
        kind.name()
    );
}

/// Calls are counted per process: a fork child starts from zero.
pub fn reset_after_fork() {
    for c in &COUNTS {
        c.store(0, Ordering::Relaxed);
    }
}
