//! Process-wide state: initialisation, options, the cached pid, the
//! per-thread re-entry flag and last error, fork handlers, and stderr lines.
//!
//! Initialisation runs from the library's constructor and, lazily, from the
//! first call, whichever comes first: another library's constructor may call
//! `shmget` before ours has run.
#![forbid(unsafe_code)]

use core::cell::{Cell, RefCell};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};
use std::sync::{Once, OnceLock};

use crate::error::{SENTENCE_CAP, Sentence};
use crate::options::{self, Options};
use crate::registry::REGISTRY;
use crate::sys;

static OPTIONS: OnceLock<Options> = OnceLock::new();
/// Option warnings, printed at the first call (see [`on_load`]).
static WARNINGS: OnceLock<Vec<String>> = OnceLock::new();
/// A call has been made: warnings are out, the exit check has work.
static ACTIVE: AtomicBool = AtomicBool::new(false);
static LOADED: Once = Once::new();
static ACTIVATED: Once = Once::new();
static PID: AtomicU32 = AtomicU32::new(0);
static PPID: AtomicU32 = AtomicU32::new(0);
/// `options().verbosity`, kept apart for the hot path.
static VERBOSITY: AtomicU8 = AtomicU8::new(0);
/// `policy=strict`, kept apart for the hot path.
static STRICT: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Set while this thread is inside shmguard (a signal handler calling
    /// `shmat` in the middle of our own call must not take our locks again).
    static BUSY: Cell<bool> = const { Cell::new(false) };
    /// `BUSY` as it was when this thread called fork (see `fork_prepare`).
    static BUSY_BEFORE_FORK: Cell<bool> = const { Cell::new(false) };
    /// This thread's id, once asked (gettid is a system call).
    static TID: Cell<u32> = const { Cell::new(0) };
    /// This thread's last diagnostic, NUL-terminated, and whether it is set.
    static LAST_ERROR: RefCell<(bool, [u8; SENTENCE_CAP + 1])> =
        const { RefCell::new((false, [0; SENTENCE_CAP + 1])) };
}

/// What the library's constructor does: learn the pid, register the fork
/// handlers and apply `SHMGUARD_OPTIONS` (guard pages install their fault
/// hook here, before the program sets handlers of its own). Warnings about
/// the options wait for the first call, so a process that never touches
/// shared memory (most of a `make check` tree under LD_PRELOAD, or the
/// shmguard command itself, which links this crate) prints nothing.
pub fn on_load() {
    LOADED.call_once(|| {
        PID.store(sys::getpid(), Ordering::Relaxed);
        PPID.store(sys::getppid(), Ordering::Relaxed);
        crate::fail_open((), || {
            let raw = sys::getenv(c"SHMGUARD_OPTIONS").unwrap_or_default();
            let (options, warnings) = options::parse(raw);
            VERBOSITY.store(options.verbosity, Ordering::Relaxed);
            STRICT.store(options.policy == options::Policy::Strict, Ordering::Relaxed);
            if options.log_path.is_some() {
                crate::audit::enable();
            }
            if options.guard_pages {
                crate::guard::enable();
            }
            if options.stacks {
                crate::stacks::enable();
            }
            if !options.fault.is_empty() {
                crate::fault::arm();
            }
            let _ = OPTIONS.set(options);
            let _ = WARNINGS.set(warnings);
        });
        sys::register_atfork(fork_prepare, fork_parent, fork_child);
        install_panic_hook();
    });
}

/// A panic inside an interposed call is a bug of shmguard's, which
/// `fail_open` catches: it is told in one line that names shmguard instead
/// of Rust's two-line message, which a C program's user could not place.
/// Other panics (a Rust program or test that links the rlib) go to the
/// hook there was before.
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !BUSY.try_with(Cell::get).unwrap_or(false) {
            return previous(info);
        }
        let payload = info.payload();
        let what = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let what = what.lines().next().unwrap_or("");
        let (file, line) = info.location().map_or(("?", 0), |l| (l.file(), l.line()));
        say(format_args!(
            "internal error: {what} ({file}:{line}); a bug in shmguard, caught: \
             the call goes on and returns what the kernel returns (please report it)"
        ));
    }));
}

/// Whether any call has been made (and so the exit check may have work).
pub fn active() -> bool {
    ACTIVE.load(Ordering::Acquire)
}

/// Makes sure the library is loaded and the option warnings printed; one
/// atomic load once done. The first call may come from another library's
/// constructor, before ours has run.
pub fn ensure_init() {
    if !ACTIVE.load(Ordering::Acquire) {
        activate();
    }
}

#[cold]
fn activate() {
    on_load();
    ACTIVATED.call_once(|| {
        for w in WARNINGS.get().map(Vec::as_slice).unwrap_or_default() {
            say(format_args!("warning: SHMGUARD_OPTIONS: {w}"));
        }
        ACTIVE.store(true, Ordering::Release);
    });
}

/// The options in force (defaults until initialised).
pub fn options() -> &'static Options {
    static DEFAULT: OnceLock<Options> = OnceLock::new();
    OPTIONS
        .get()
        .unwrap_or_else(|| DEFAULT.get_or_init(Options::default))
}

/// The verbosity option, read on every call.
pub fn verbosity() -> u8 {
    VERBOSITY.load(Ordering::Relaxed)
}

/// Whether `policy=strict` refuses calls.
pub fn strict() -> bool {
    STRICT.load(Ordering::Relaxed)
}

/// Whether the policy rules need to run: strict enforces them; audit only
/// records, so it checks only when a log or stderr listens.
pub fn policy_active() -> bool {
    strict() || verbosity() >= 1 || crate::audit::enabled()
}

/// This process's pid, kept current across fork by the fork handler.
pub fn pid() -> u32 {
    PID.load(Ordering::Relaxed)
}

/// The parent's pid as of start-up or the last fork.
pub fn ppid() -> u32 {
    PPID.load(Ordering::Relaxed)
}

/// This thread's id, cached per thread.
pub fn tid() -> u32 {
    TID.try_with(|t| {
        if t.get() == 0 {
            t.set(sys::gettid());
        }
        t.get()
    })
    .unwrap_or_else(|_| sys::gettid())
}

/// Marks this thread as inside shmguard for as long as the value lives.
pub struct Entered(());

impl Drop for Entered {
    fn drop(&mut self) {
        let _ = BUSY.try_with(|b| b.set(false));
    }
}

/// Enters shmguard, or `None` when this thread is already inside (a signal
/// handler interrupted one of our calls) or is being torn down: the caller
/// then forwards to the kernel without bookkeeping.
pub fn enter() -> Option<Entered> {
    ensure_init();
    BUSY.try_with(|b| {
        if b.replace(true) {
            None
        } else {
            Some(Entered(()))
        }
    })
    .ok()
    .flatten()
}

/// Records `detail` as this thread's last error.
pub fn set_last_error(detail: &Sentence) {
    let _ = LAST_ERROR.try_with(|cell| {
        if let Ok(mut slot) = cell.try_borrow_mut() {
            let text = detail.as_str().as_bytes();
            slot.1[..text.len()].copy_from_slice(text);
            slot.1[text.len()] = 0;
            slot.0 = true;
        }
    });
}

/// This thread's last error as a C string, or NULL.
pub fn last_error_ptr() -> *const core::ffi::c_char {
    LAST_ERROR
        .try_with(|cell| match cell.try_borrow() {
            Ok(slot) if slot.0 => slot.1.as_ptr().cast(),
            _ => core::ptr::null(),
        })
        .unwrap_or(core::ptr::null())
}

/// A line in a stack buffer, written with one `write(2)` so that lines of
/// concurrent processes and threads do not interleave.
pub struct Line {
    buf: [u8; 1024],
    len: usize,
}

impl Line {
    /// A line starting with the `==PID== shmguard: ` prefix.
    pub fn new() -> Self {
        let mut line = Self {
            buf: [0; 1024],
            len: 0,
        };
        let _ = write!(line, "=={}== shmguard: ", pid());
        line
    }

    /// Ends the line and writes it to `fd`.
    pub fn write_to(mut self, fd: i32) -> Result<(), sys::Errno> {
        sys::write_all(fd, self.finish())
    }

    /// The line's bytes, ending in a newline.
    pub fn finish(&mut self) -> &[u8] {
        if self.len == self.buf.len() {
            self.len -= 1;
        }
        self.buf[self.len] = b'\n';
        &self.buf[..=self.len]
    }
}

impl Default for Line {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Prints one prefixed line on stderr, keeping errno.
pub fn say(args: fmt::Arguments<'_>) {
    let saved = sys::errno();
    let mut line = Line::new();
    let _ = line.write_fmt(args);
    let _ = line.write_to(2);
    sys::set_errno(saved);
}

/// Marks the forking thread busy from `prepare` until `parent`/`child`:
/// holding every lock, it must not take one again from a signal handler
/// that calls shmat/shmdt (it gets the kernel's answer without
/// bookkeeping, as in any handler that interrupts shmguard).
fn fork_busy(on: bool) {
    let _ = BUSY.try_with(|busy| {
        let _ = BUSY_BEFORE_FORK.try_with(|before| {
            if on {
                before.set(busy.replace(true));
            } else {
                busy.set(before.get());
            }
        });
    });
}

extern "C" fn fork_prepare() {
    fork_busy(true);
    crate::audit::fork_prepare();
    crate::stacks::lock_for_fork();
    REGISTRY.lock_all_for_fork();
}

extern "C" fn fork_parent() {
    REGISTRY.unlock_all_in_parent();
    crate::stacks::unlock_in_parent();
    crate::audit::fork_parent();
    fork_busy(false);
}

extern "C" fn fork_child() {
    REGISTRY.unlock_all_in_child();
    crate::stacks::unlock_in_child();
    PPID.store(PID.load(Ordering::Relaxed), Ordering::Relaxed);
    PID.store(sys::getpid(), Ordering::Relaxed);
    let _ = TID.try_with(|t| t.set(0));
    crate::fault::reset_after_fork();
    crate::audit::fork_child();
    fork_busy(false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "pthread_atfork is not emulated by Miri")]
    fn reentry_is_refused_until_the_guard_drops() {
        let outer = enter().expect("first entry");
        assert!(enter().is_none());
        drop(outer);
        assert!(enter().is_some());
    }

    #[test]
    fn last_error_is_per_thread() {
        let mut s = Sentence::new();
        write!(s, "first").unwrap();
        set_last_error(&s);
        assert!(!last_error_ptr().is_null());
        std::thread::spawn(|| assert!(last_error_ptr().is_null()))
            .join()
            .unwrap();
    }

    #[test]
    fn long_lines_are_cut_and_still_end_in_newline() {
        let mut line = Line::new();
        for _ in 0..2000 {
            line.write_str("x").unwrap();
        }
        assert_eq!(line.len, 1024);
    }
}
