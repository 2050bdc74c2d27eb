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
//!
//! The crate's Rust interface is the C one, [`ffi`]: the modules above are
//! private, so safe Rust cannot reach the kernel layer, the locks or the
//! registry, and every export that takes a raw address or a descriptor is
//! an `unsafe fn`. Safe code cannot make the kernel write through, or
//! unmap, memory it does not own:
//!
//! ```compile_fail,E0603
//! // The kernel layer is private.
//! let _ = shmguard::sys::shmctl(0, libc::IPC_STAT, 0x1000);
//! ```
//!
//! ```compile_fail,E0603
//! // So are the locks and their fork protocol.
//! let lock = shmguard::lock::Locked::new(0);
//! ```
//!
//! ```compile_fail,E0133
//! // Writing a shmid_ds through any pointer takes `unsafe`.
//! shmguard::ffi::shmguard_shmctl(0, libc::IPC_STAT, 0x1000 as *mut libc::shmid_ds);
//! ```
//!
//! ```compile_fail,E0133
//! // So does unmapping an address, or mapping over one.
//! shmguard::ffi::shmdt(core::ptr::null());
//! ```
//!
//! ```compile_fail,E0133
//! shmguard::ffi::shmat(0, core::ptr::null(), 0);
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
// `Error` carries its sentence inline (about 500 bytes) so that a failure
// never needs the heap; the success path only writes the discriminant.
#![allow(clippy::result_large_err)]

mod audit;
mod diagnose;
mod error;
mod event;
mod fault;
pub mod ffi;
#[doc(hidden)]
pub mod fuzzing;
mod guard;
mod leak;
mod lock;
mod logfile;
mod options;
mod policy;
mod registry;
mod runtime;
mod shm;
mod stacks;
mod start;
mod suppress;
mod sys;

/// What the `shmguard` command and the tests share with the library: the
/// parser of `/proc/sysvipc/shm`, removing a segment, and checking an
/// options string. Not a stable interface; every item is safe to call.
#[doc(hidden)]
pub mod support {
    pub use crate::diagnose::{SegmentRow, parse_segments};
    pub use crate::suppress::{
        MAX_FILE as SUPPRESSIONS_MAX_FILE, Subject, Suppression, Suppressions, What,
        load as load_suppressions, parse as parse_suppressions, template_match,
    };
    pub use crate::sys::{Errno, shm_rmid};

    /// What the library's own parser says about `SHMGUARD_OPTIONS` text:
    /// one sentence per pair it would skip (an unknown key, a bad value,
    /// a pair that is not `key=value`), in order; empty when every pair
    /// applies. `shmguard run --options` refuses such text up front.
    pub fn option_problems(text: &str) -> Vec<String> {
        crate::options::parse(text.as_bytes()).1
    }

    /// Every option the library knows, as `help=1` lists them: (key,
    /// values, default). The man page shmguard(3) is checked against it.
    pub fn option_docs() -> Vec<(&'static str, &'static str, &'static str)> {
        crate::options::DOCS
            .iter()
            .map(|d| (d.key, d.values, d.default))
            .collect()
    }
}

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
