//! shmguard: a hardened, drop-in implementation of the System V
//! shared-memory API (`shmget`, `shmat`, `shmdt`, `shmctl`, `ftok`).
//!
//! The path of a call: [`ffi`] (the exported C symbols: errno and the
//! thread's last error) -> [`shm`] (the safe core) -> [`sys`] (the one module
//! that issues system calls) -> back in [`shm`]: [`registry`] (accounting),
//! [`diagnose`] (why a call failed) and the verbosity trace. At exit,
//! [`leak`] checks the registry against the kernel and reports.
//!
//! With `log_path` set, [`audit`] appends each call as a JSON line to the
//! process's own log file, one `write(2)` per event ([`logfile`]).
//!
//! `unsafe` lives only in `sys`, `lock`, `logfile` and `ffi`; every other
//! module forbids it.
#![deny(unsafe_op_in_unsafe_fn)]
// `Error` carries its sentence inline (about 500 bytes) so that a failure
// never needs the heap; the success path only writes the discriminant.
#![allow(clippy::result_large_err)]

pub mod audit;
pub mod diagnose;
pub mod error;
pub mod event;
pub mod fault;
pub mod ffi;
#[doc(hidden)]
pub mod fuzzing;
pub mod guard;
pub mod leak;
pub mod lock;
pub mod logfile;
pub mod options;
pub mod policy;
pub mod registry;
pub mod runtime;
pub mod shm;
pub mod stacks;
pub mod sys;

/// Runs `f`, returning `fallback` if it panics: bookkeeping must never
/// change a call's result or unwind into C.
pub(crate) fn fail_open<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(fallback)
}

#[cfg(test)]
mod tests {
    /// A panic in bookkeeping is caught (by the unwinder linked into the
    /// library, see build.rs) and the fallback returned.
    #[test]
    fn fail_open_returns_the_fallback_when_bookkeeping_panics() {
        let got = super::fail_open(7, || -> i32 { panic!("a bug in bookkeeping (expected)") });
        assert_eq!(got, 7);
        assert_eq!(super::fail_open(7, || 8), 8);
    }
}
