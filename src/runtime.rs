//! Process-wide state: initialisation, options, the cached pid, the
//! per-thread re-entry flag and last error, fork handlers, and stderr lines.
//!
//! Initialisation runs from the library's constructor and, lazily, from the
//! first call, whichever comes first: another library's constructor, or the
//! program's `.preinit_array` (before libc sets `environ`), may call
//! `shmget` before ours has run. It never blocks a thread that the thread
//! running it might never let go (a forked child, a signal handler), and in
//! a privileged process (`AT_SECURE`) it reads nothing from the environment.
#![forbid(unsafe_code)]

use core::cell::{Cell, RefCell};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};

use crate::error::{SENTENCE_CAP, Sentence};
use crate::lock::Published;
use crate::options::{self, Options};
use crate::registry::REGISTRY;
use crate::sys;

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
/// The options in force, set once by [`load`] (null: the defaults).
static OPTIONS: Published<Options> = Published::new();
/// Lines to print at the first call (see [`on_load`]), set once by [`load`].
static WARNINGS: Published<Vec<String>> = Published::new();
/// The warnings have been taken for printing (by exactly one thread).
static WARNED: AtomicBool = AtomicBool::new(false);
/// `SHMGUARD_OPTIONS` could not be read yet (a call from `.preinit_array`
/// before libc set `environ`, with no /proc): read at the next chance.
static REREAD: AtomicBool = AtomicBool::new(false);
/// A call has been made: warnings are out, the exit check has work.
static ACTIVE: AtomicBool = AtomicBool::new(false);
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
    /// This thread is running start-up (see [`on_load`]).
    static LOADING_HERE: Cell<bool> = const { Cell::new(false) };
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
    PID.store(pid, Ordering::Relaxed);
    PPID.store(sys::getppid(), Ordering::Relaxed);
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
    let arm = !options.fault.is_empty();
    // Replaced at most once (see `reread`); the earlier value stays
    // allocated, as a thread may still read it.
    OPTIONS.publish(options);
    if arm {
        crate::fault::arm();
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
                say(format_args!("{w}"));
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
/// constructor, before ours has run. Returns whether start-up is complete
/// (`false`: it runs elsewhere and cannot be waited for; the call goes to
/// the kernel without bookkeeping).
pub fn ensure_init() -> bool {
    ACTIVE.load(Ordering::Acquire) || activate()
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
            say(format_args!("{w}"));
        }
    }
    ACTIVE.store(true, Ordering::Release);
    true
}

/// The options in force (defaults until initialised).
pub fn options() -> &'static Options {
    static DEFAULT: Options = Options::DEFAULT;
    OPTIONS.get().unwrap_or(&DEFAULT)
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
///
/// The busy flag comes first: a signal handler that interrupts start-up
/// (or the printing of the warnings) must not run it again.
pub fn enter() -> Option<Entered> {
    let entered = BUSY
        .try_with(|b| {
            if b.replace(true) {
                None
            } else {
                Some(Entered(()))
            }
        })
        .ok()
        .flatten()?;
    ensure_init().then_some(entered)
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

impl Line {
    /// Appends `bytes` as far as they fit.
    fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }
}

/// Whether `c` is written escaped in a line: control characters (C0, DEL,
/// C1: a newline would start a forged line, ESC a terminal sequence), the
/// line and paragraph separators (which some log viewers break lines at),
/// the bidirectional marks, overrides and isolates (which reorder what a
/// terminal shows), and the backslash (so that an escape is never
/// ambiguous). The command escapes the same characters.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || c == '\\'
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' // line and paragraph separators
                | '\u{061c}' | '\u{200e}' | '\u{200f}' // bidi marks
                | '\u{202a}'..='\u{202e}' // bidi embeddings and overrides
                | '\u{2066}'..='\u{2069}' // bidi isolates
        )
}

/// Everything written to a line is escaped (see [`needs_escape`]): its
/// text may hold what a caller passed (an `ftok` path), an option value or
/// a symbol name, none of which may end the line or reach the terminal
/// as a control sequence.
impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(at) = rest.find(needs_escape) {
            self.push(&rest.as_bytes()[..at]);
            let c = rest[at..].chars().next().unwrap_or_default();
            let mut esc = Cursor([0; 12], 0);
            let _ = match c {
                '\n' => esc.write_str("\\n"),
                '\t' => esc.write_str("\\t"),
                '\r' => esc.write_str("\\r"),
                '\\' => esc.write_str("\\\\"),
                c if c.is_ascii() => write!(esc, "\\x{:02x}", c as u32),
                c => write!(esc, "\\u{{{:x}}}", c as u32),
            };
            self.push(&esc.0[..esc.1]);
            rest = &rest[at + c.len_utf8()..];
        }
        self.push(rest.as_bytes());
        Ok(())
    }
}

/// A `fmt::Write` into a small fixed buffer (cut when full).
struct Cursor([u8; 12], usize);

impl fmt::Write for Cursor {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.0.len() - self.1);
        self.0[self.1..self.1 + n].copy_from_slice(&s.as_bytes()[..n]);
        self.1 += n;
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

    fn line_of(text: &str) -> String {
        let mut line = Line::new();
        line.write_str(text).unwrap();
        let bytes = line.finish().to_vec();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn control_characters_cannot_forge_a_line_or_reach_the_terminal() {
        let prefix = format!("=={}== shmguard: ", pid());
        let got =
            line_of("a\n==1== shmguard: SUMMARY: no leaks\x1b[31m\r\t\\n\u{9b}2J\u{202e}x\x7f");
        assert_eq!(
            got,
            format!(
                "{prefix}a\\n==1== shmguard: SUMMARY: no leaks\\x1b[31m\\r\\t\\\\n\\u{{9b}}2J\\u{{202e}}x\\x7f\n"
            )
        );
        assert_eq!(got.matches('\n').count(), 1);
        assert!(!got.chars().any(|c| c.is_control() && c != '\n'));
        assert_eq!(line_of("plain é ✓"), format!("{prefix}plain é ✓\n"));
        // Separators that some viewers break lines at, and bidi marks.
        assert_eq!(
            line_of("a\u{2028}b\u{2029}c\u{200e}\u{200f}\u{61c}"),
            format!("{prefix}a\\u{{2028}}b\\u{{2029}}c\\u{{200e}}\\u{{200f}}\\u{{61c}}\n")
        );
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
