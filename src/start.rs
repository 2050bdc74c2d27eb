//! Start-up and the wiring of the features: the library's constructor and
//! the first call run [`on_load`], which reads `SHMGUARD_OPTIONS`, puts
//! them in force in `runtime` and switches the features on (the log, guard
//! pages, call stacks, fault injection); the fork handlers take and let go
//! of every feature's locks. This module sits above the features, which
//! read the process state in `runtime` below them: no feature imports it.
//!
//! Start-up runs from the library's constructor and, lazily, from the
//! first call, whichever comes first: another library's constructor, or the
//! program's `.preinit_array` (before libc sets `environ`), may call
//! `shmget` before ours has run. It never blocks a thread that the thread
//! running it might never let go (a forked child, a signal handler), and in
//! a privileged process (`AT_SECURE`) it reads nothing from the environment.
#![forbid(unsafe_code)]

use core::cell::Cell;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use crate::lock::Published;
use crate::options::{self, Options};
use crate::registry::REGISTRY;
use crate::runtime::{self, Entered};
use crate::{audit, fault, guard, stacks, sys};

// Start-up is an atomic state machine, never a lock: a thread that finds
// start-up under way in a thread that cannot finish it (a forked child of
// a process that was starting up in another thread) or in itself (a signal
// handler that interrupted start-up) does not wait, its call goes to the
// kernel without bookkeeping. Nothing here uses `Once` or `OnceLock`,
// whose waiters block for ever when the thread that runs them never ends.

/// `UNLOADED` -> `LOADING` (one thread: [`load`]) -> `LOADED`.
static STATE: AtomicU8 = AtomicU8::new(UNLOADED);
const UNLOADED: u8 = 0;
const LOADING: u8 = 1;
const LOADED: u8 = 2;
/// `pid << 32 | tid` of the thread running [`load`] (0 until known).
static LOADER: AtomicU64 = AtomicU64::new(0);
/// A thread waited for start-up in vain: nobody waits any more.
static STALLED: AtomicBool = AtomicBool::new(false);
/// Lines to print at the first call (see [`on_load`]), set once by [`load`].
static WARNINGS: Published<Vec<String>> = Published::new();
/// The warnings have been taken for printing (by exactly one thread).
static WARNED: AtomicBool = AtomicBool::new(false);
/// `SHMGUARD_OPTIONS` could not be read yet (a call from `.preinit_array`
/// before libc set `environ`, with no /proc): read at the next chance.
static REREAD: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// This thread is running start-up (see [`on_load`]).
    static LOADING_HERE: Cell<bool> = const { Cell::new(false) };
}

/// What the library's constructor does: learn the pid, register the fork
/// handlers and apply `SHMGUARD_OPTIONS` (guard pages install their fault
/// hook here, before the program sets handlers of its own). Warnings about
/// the options wait for the first call, so a process that never touches
/// shared memory (most of a `make check` tree under LD_PRELOAD, or the
/// shmguard command itself, which links this crate) prints nothing.
///
/// Returns whether start-up is complete; `false` when it runs elsewhere
/// and cannot be waited for (see [`wait_for_loader`]).
pub fn on_load() -> bool {
    match STATE.load(Ordering::Acquire) {
        LOADED => return loaded(),
        LOADING => return wait_for_loader(),
        _ => {}
    }
    // Set before the state changes: a signal handler that interrupts this
    // thread's start-up must know it, even before `LOADER` says so.
    let _ = LOADING_HERE.try_with(|l| l.set(true));
    let won = STATE.compare_exchange(UNLOADED, LOADING, Ordering::AcqRel, Ordering::Acquire);
    if won.is_ok() {
        load();
        STATE.store(LOADED, Ordering::Release);
    }
    let _ = LOADING_HERE.try_with(|l| l.set(false));
    match won {
        Ok(_) => true,
        Err(LOADED) => loaded(),
        Err(_) => wait_for_loader(),
    }
}

/// Start-up is complete; the options may still wait to be read.
fn loaded() -> bool {
    if REREAD.load(Ordering::Acquire) {
        reread();
    }
    true
}

/// Start-up proper, run by exactly one thread.
fn load() {
    let pid = sys::getpid();
    LOADER.store(
        u64::from(pid) << 32 | u64::from(sys::gettid()),
        Ordering::Release,
    );
    runtime::set_pids(pid, sys::getppid());
    crate::fail_open((), || {
        let (options, warnings) = read_options();
        apply(options);
        WARNINGS.publish(warnings);
    });
    sys::register_atfork(fork_prepare, fork_parent, fork_child);
    install_panic_hook();
}

/// The options and the lines to print about them. In a privileged process
/// (set-user-ID, set-group-ID, file capabilities: `AT_SECURE`) the
/// environment belongs to whoever started it, not to the program: nothing
/// is read from it, and one line says so when `SHMGUARD_OPTIONS` was set.
fn read_options() -> (Options, Vec<String>) {
    let mut raw = Vec::new();
    let found = match sys::startup_env(c"SHMGUARD_OPTIONS", &mut raw) {
        sys::EnvLookup::Found => true,
        sys::EnvLookup::Absent => false,
        sys::EnvLookup::Unavailable => {
            REREAD.store(true, Ordering::Release);
            false
        }
    };
    if sys::secure() {
        REREAD.store(false, Ordering::Release);
        let mut lines = Vec::new();
        if found {
            lines.push(
                "warning: SHMGUARD_OPTIONS ignored: this process is privileged \
                 (set-user-ID, set-group-ID or file capabilities), so its environment \
                 is not trusted; the defaults apply"
                    .to_owned(),
            );
        }
        return (Options::default(), lines);
    }
    let (options, warnings) = options::parse(&raw);
    let lines = option_lines(&options, warnings);
    (options, lines)
}

/// What to print about the options at the first call: the warnings, then
/// the list of options if `help=1` asked for it.
fn option_lines(options: &Options, warnings: Vec<String>) -> Vec<String> {
    let mut lines: Vec<String> = warnings
        .into_iter()
        .map(|w| format!("warning: SHMGUARD_OPTIONS: {w}"))
        .collect();
    if options.help {
        lines.extend(options::help());
    }
    lines
}

/// Puts `options` in force.
fn apply(options: Options) {
    if options.log_path.is_some() {
        audit::enable();
    }
    if options.guard_pages {
        guard::enable();
    }
    if options.stacks {
        stacks::enable();
    }
    let arm = !options.fault.is_empty();
    runtime::set_options(options);
    if arm {
        fault::arm();
    }
}

/// Start-up ran before `environ` was set and without /proc (a call from
/// `.preinit_array`): the defaults applied until now; read the options as
/// soon as `environ` is there (our constructor, or a later call).
#[cold]
fn reread() {
    let mut raw = Vec::new();
    if sys::startup_env(c"SHMGUARD_OPTIONS", &mut raw) == sys::EnvLookup::Unavailable {
        return;
    }
    if !REREAD.swap(false, Ordering::AcqRel) {
        return;
    }
    crate::fail_open((), || {
        let (options, warnings) = options::parse(&raw);
        let lines = option_lines(&options, warnings);
        apply(options);
        if WARNED.load(Ordering::Acquire) {
            // The first call is past: say them now.
            for w in &lines {
                runtime::say(format_args!("{w}"));
            }
        } else {
            WARNINGS.publish(lines);
        }
    });
}

/// Start-up is under way in another thread (or was interrupted in this
/// one): waits for it only when it can finish, i.e. it runs in another
/// thread of this same process, and at most a second. A signal handler
/// that interrupted start-up, or a child forked while another thread was
/// starting up, never waits.
#[cold]
fn wait_for_loader() -> bool {
    if STALLED.load(Ordering::Relaxed) || LOADING_HERE.try_with(Cell::get).unwrap_or(true) {
        return STATE.load(Ordering::Acquire) == LOADED;
    }
    let pid = sys::getpid();
    let tid = sys::gettid();
    let start = std::time::Instant::now();
    loop {
        if STATE.load(Ordering::Acquire) == LOADED {
            return true;
        }
        let loader = LOADER.load(Ordering::Acquire);
        let (lpid, ltid) = ((loader >> 32) as u32, loader as u32);
        if loader != 0 && (lpid != pid || ltid == tid) {
            return false;
        }
        if start.elapsed() > std::time::Duration::from_secs(1) {
            STALLED.store(true, Ordering::Relaxed);
            return false;
        }
        std::thread::yield_now();
    }
}

/// A panic inside an interposed call is a bug of shmguard's, which
/// `fail_open` catches: it is told in one line that names shmguard instead
/// of Rust's two-line message, which a C program's user could not place.
/// Other panics (a Rust program or test that links the rlib) go to the
/// hook there was before.
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !runtime::busy() {
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
        runtime::say(format_args!(
            "internal error: {what} ({file}:{line}); a bug in shmguard, caught: \
             the call goes on and returns what the kernel returns (please report it)"
        ));
    }));
}

/// Makes sure the library is loaded and the option warnings printed; one
/// atomic load once done. The first call may come from another library's
/// constructor, before ours has run. Returns whether start-up is complete
/// (`false`: it runs elsewhere and cannot be waited for; the call goes to
/// the kernel without bookkeeping).
pub fn ensure_init() -> bool {
    runtime::active() || activate()
}

#[cold]
fn activate() -> bool {
    if !on_load() {
        return false;
    }
    // Exactly one thread prints, and nobody waits for it: a child forked
    // while the parent prints, or a signal handler that interrupts the
    // printing, goes on at once (and prints nothing).
    if !WARNED.swap(true, Ordering::AcqRel) {
        for w in WARNINGS.get().map(Vec::as_slice).unwrap_or_default() {
            runtime::say(format_args!("{w}"));
        }
    }
    runtime::set_active();
    true
}

/// Enters shmguard, or `None` when this thread is already inside (a signal
/// handler interrupted one of our calls) or is being torn down: the caller
/// then forwards to the kernel without bookkeeping.
///
/// The busy flag comes first: a signal handler that interrupts start-up
/// (or the printing of the warnings) must not run it again.
pub fn enter() -> Option<Entered> {
    let entered = runtime::mark_busy()?;
    ensure_init().then_some(entered)
}

/// Whether the policy rules need to run: strict enforces them; audit only
/// records, so it checks only when a log or stderr listens.
pub fn policy_active() -> bool {
    runtime::strict() || runtime::verbosity() >= 1 || audit::enabled()
}

// The fork handlers: every lock of every feature is taken before `fork`
// and let go on both sides, so a child of a threaded program never finds
// one held by a thread it does not have.

extern "C" fn fork_prepare() {
    runtime::fork_busy(true);
    audit::fork_prepare();
    stacks::lock_for_fork();
    REGISTRY.lock_all_for_fork();
}

extern "C" fn fork_parent() {
    REGISTRY.unlock_all_in_parent();
    stacks::unlock_in_parent();
    audit::fork_parent();
    runtime::fork_busy(false);
}

extern "C" fn fork_child() {
    REGISTRY.unlock_all_in_child();
    stacks::unlock_in_child();
    runtime::forked_child();
    fault::reset_after_fork();
    audit::fork_child();
    runtime::fork_busy(false);
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
}
