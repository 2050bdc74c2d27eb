//! Process-wide state that every feature reads: the options in force, the
//! cached pid, whether a call has been made, the per-thread re-entry flag
//! and last error, and stderr lines. It imports no feature; `start` (above
//! the features) fills it in at start-up and after `fork`.
#![forbid(unsafe_code)]

use core::cell::{Cell, RefCell};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};

use crate::error::{SENTENCE_CAP, Sentence};
use crate::lock::Published;
use crate::options::{self, Options};
use crate::sys;

/// The options in force, set once by start-up (null: the defaults).
static OPTIONS: Published<Options> = Published::new();
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
    /// This thread's last diagnostic, NUL-terminated, and whether it is set.
    static LAST_ERROR: RefCell<(bool, [u8; SENTENCE_CAP + 1])> =
        const { RefCell::new((false, [0; SENTENCE_CAP + 1])) };
}

/// Whether any call has been made (and so the exit check may have work).
pub fn active() -> bool {
    ACTIVE.load(Ordering::Acquire)
}

/// Marks that a call has been made (start-up is complete and its
/// warnings are out).
pub fn set_active() {
    ACTIVE.store(true, Ordering::Release);
}

/// Learns the process's pid and its parent's (start-up).
pub fn set_pids(pid: u32, ppid: u32) {
    PID.store(pid, Ordering::Relaxed);
    PPID.store(ppid, Ordering::Relaxed);
}

/// Puts `options` in force (start-up; at most twice, see `start`).
pub fn set_options(options: Options) {
    VERBOSITY.store(options.verbosity, Ordering::Relaxed);
    STRICT.store(options.policy == options::Policy::Strict, Ordering::Relaxed);
    // Replaced at most once; the earlier value stays allocated, as a
    // thread may still read it.
    OPTIONS.publish(options);
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

/// Marks this thread as inside shmguard, or `None` when it already is (a
/// signal handler interrupted one of our calls) or is being torn down.
/// `start::enter` adds start-up to it.
pub fn mark_busy() -> Option<Entered> {
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

/// Whether this thread is inside shmguard.
pub fn busy() -> bool {
    BUSY.try_with(Cell::get).unwrap_or(false)
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
pub fn fork_busy(on: bool) {
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

/// The fork handler's work on this state in the child: its pid, its
/// parent's, and its one thread's id.
pub fn forked_child() {
    PPID.store(PID.load(Ordering::Relaxed), Ordering::Relaxed);
    PID.store(sys::getpid(), Ordering::Relaxed);
    let _ = TID.try_with(|t| t.set(0));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reentry_is_refused_until_the_guard_drops() {
        let outer = mark_busy().expect("first entry");
        assert!(mark_busy().is_none());
        assert!(busy());
        drop(outer);
        assert!(mark_busy().is_some());
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
