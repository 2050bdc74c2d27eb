//! Call stacks for leaks and findings (`stacks=1`).
//!
//! A stack is captured when a segment is created or attached, and
//! symbolized only if it is reported: capturing costs an unwind, resolving
//! costs a DWARF lookup, and most records are removed long before exit.
//! std's backtrace resolves frames of every loaded object, so C functions
//! show with file:line when the program has debug info.
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicBool, Ordering};
use std::backtrace::Backtrace;
use std::hash::RandomState;

use hashbrown::HashMap;

use crate::lock::{Anchored, Locked};

/// What a stack belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    Segment(i32),
    Attachment(usize),
}

static ENABLED: AtomicBool = AtomicBool::new(false);
/// A stored stack: the capture, and for a guarded attachment its frames
/// resolved at once (see [`record_resolved`]).
struct Stored {
    trace: Backtrace,
    frames: Vec<String>,
}

/// The stored stacks (a table whose memory stays reachable: see
/// [`Anchored`]).
static STACKS: Locked<Option<HashMap<Owner, Stored, RandomState, Anchored>>> = Locked::new(None);
/// Held while std captures or resolves a backtrace. std does both under a
/// global lock of its own, which a fork child would inherit locked if
/// another thread was capturing at that moment; fork `prepare` takes this
/// lock first, so no capture is ever half-way through a fork. Lock order:
/// `CAPTURE`, then `STACKS`.
static CAPTURE: Locked<()> = Locked::new(());

/// At most this many frames are shown per stack.
pub const MAX_FRAMES: usize = 16;

/// Turns capture on (from start-up, when `stacks=1`).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether stacks are captured.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Captures the current stack for `owner` (nothing unless `stacks=1`).
#[inline]
pub fn record(owner: Owner) {
    if enabled() {
        record_now(owner);
    }
}

/// Whether the heap can give `bytes` now. std's backtraces allocate
/// without a fallible path (an exhausted heap aborts the process), so a
/// capture or a resolution is skipped when this much cannot be had: the
/// report then lacks that stack. A heuristic, not a guarantee.
fn heap_has(bytes: usize) -> bool {
    let mut probe: Vec<u8> = Vec::new();
    probe.try_reserve_exact(bytes).is_ok()
}

/// Room for capturing a stack (a few hundred bytes per frame).
const CAPTURE_ROOM: usize = 256 << 10;
/// Room for resolving one (std loads the debug info of each object).
const RESOLVE_ROOM: usize = 64 << 20;

/// Captures the current stack for a guarded attachment and resolves its
/// frames at once (nothing unless `stacks=1`): a guard-page hit prints
/// them from the SIGSEGV handler, which may neither allocate nor wait (the
/// fault may come from inside malloc, or while a lock is held), so they
/// must be ready as text before. This costs a DWARF lookup per guarded
/// `shmat`, paid only with both `guard_pages=1` and `stacks=1`.
#[inline]
pub fn record_resolved(owner: Owner) {
    if enabled() {
        record_now_resolved(owner);
    }
}

#[cold]
#[inline(never)]
fn record_now(owner: Owner) {
    store(owner, false);
}

#[cold]
#[inline(never)]
fn record_now_resolved(owner: Owner) {
    store(owner, true);
}

fn store(owner: Owner, resolve: bool) {
    // Short of room to resolve now: the capture alone, resolved at exit
    // if there is room then (a guard-page hit then shows no frames).
    let resolve = resolve && heap_has(RESOLVE_ROOM);
    if !resolve && !heap_has(CAPTURE_ROOM) {
        return;
    }
    let (trace, frames) = {
        let _capturing = CAPTURE.lock();
        let trace = Backtrace::force_capture();
        let frames = if resolve {
            caller_frames(&trace.to_string())
        } else {
            Vec::new()
        };
        (trace, frames)
    };
    let mut map = STACKS.lock();
    let map =
        map.get_or_insert_with(|| HashMap::with_hasher_in(RandomState::new(), Anchored::new()));
    if map.try_reserve(1).is_ok() {
        map.insert(owner, Stored { trace, frames });
    }
}

/// From a signal handler: calls `each` with every resolved frame of
/// `owner`'s stack (those of [`record_resolved`]), if the table is free.
/// Neither allocates nor waits: a table held by anyone (this very thread,
/// interrupted) gives nothing.
pub fn each_resolved_frame(owner: Owner, mut each: impl FnMut(&str)) {
    if !enabled() {
        return;
    }
    let Some(map) = STACKS.try_lock() else {
        return;
    };
    if let Some(stored) = map.as_ref().and_then(|m| m.get(&owner)) {
        for frame in &stored.frames {
            each(frame);
        }
    }
}

/// A stack for an event that is not stored (a policy finding): its
/// resolved frames, now.
pub fn here() -> Vec<String> {
    if !enabled() || !heap_has(RESOLVE_ROOM) {
        return Vec::new();
    }
    let text = {
        let _capturing = CAPTURE.lock();
        Backtrace::force_capture().to_string()
    };
    caller_frames(&text)
}

/// Frees every stored stack, once the exit check is done. The table is
/// left alone if another thread holds it: exit never waits.
pub fn release() {
    if let Some(mut map) = STACKS.try_lock() {
        *map = None;
    }
}

/// Drops the stack of `owner` (detached, or marked with IPC_RMID).
#[inline]
pub fn forget(owner: Owner) {
    if enabled() {
        forget_now(owner);
    }
}

#[cold]
#[inline(never)]
fn forget_now(owner: Owner) {
    if let Some(map) = STACKS.lock().as_mut() {
        map.remove(&owner);
    }
}

/// The resolved frames of `owner`'s stack, the caller's first.
pub fn frames(owner: Owner) -> Vec<String> {
    if !enabled() || !heap_has(RESOLVE_ROOM) {
        return Vec::new();
    }
    let text = {
        let _capturing = CAPTURE.lock();
        match STACKS.lock().as_ref().and_then(|m| m.get(&owner)) {
            Some(stored) if !stored.frames.is_empty() => return stored.frames.clone(),
            Some(stored) => stored.trace.to_string(),
            None => return Vec::new(),
        }
    };
    caller_frames(&text)
}

/// The names that mark where the caller's code ends and shmguard begins.
const ENTRY_POINTS: &[&str] = &[
    "shmget",
    "shmat",
    "shmdt",
    "shmctl",
    "ftok",
    "shmguard_shmget",
    "shmguard_shmat",
    "shmguard_shmdt",
    "shmguard_shmctl",
    "shmguard_ftok",
];

/// Turns std's rendering of a backtrace into `function (file:line)` lines,
/// starting at the frame that called into shmguard and stopping at libc's
/// start-up code.
pub fn caller_frames(text: &str) -> Vec<String> {
    // std prints "  N: symbol" lines, each maybe followed by "at file:line".
    let mut frames: Vec<(String, Option<String>)> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(at) = line.strip_prefix("at ") {
            if let Some(last) = frames.last_mut() {
                last.1.get_or_insert_with(|| at.to_owned());
            }
        } else if let Some((index, symbol)) = line.split_once(": ") {
            if index.chars().all(|c| c.is_ascii_digit()) {
                frames.push((symbol.to_owned(), None));
            }
        }
    }
    let first_caller = frames
        .iter()
        .rposition(|(symbol, _)| {
            ENTRY_POINTS.contains(&symbol.as_str()) || symbol.starts_with("shmguard::")
        })
        .map_or(0, |i| i + 1);
    frames
        .into_iter()
        .skip(first_caller)
        .take_while(|(symbol, _)| !symbol.starts_with("__libc_start") && symbol != "_start")
        .take(MAX_FRAMES)
        .map(|(symbol, at)| match at {
            Some(at) => format!("{symbol} ({at})"),
            None => symbol,
        })
        .collect()
}

/// Fork `prepare`.
pub fn lock_for_fork() {
    CAPTURE.lock_for_fork();
    STACKS.lock_for_fork();
}

/// Fork `parent`.
pub fn unlock_in_parent() {
    STACKS.unlock_after_fork_parent();
    CAPTURE.unlock_after_fork_parent();
}

/// Fork `child`.
pub fn unlock_in_child() {
    STACKS.unlock_after_fork_child();
    CAPTURE.unlock_after_fork_child();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_callers_frames_only() {
        let text = "   0: std::backtrace::Backtrace::force_capture\n\
                    \x20            at /rustc/library/std/src/backtrace.rs:312:9\n\
                    \x20  1: shmguard::stacks::record\n\
                    \x20  2: shmguard_shmget\n\
                    \x20            at /work/src/ffi.rs:40:5\n\
                    \x20  3: shmget\n\
                    \x20  4: make_table\n\
                    \x20            at ./server.c:12:14\n\
                    \x20  5: main\n\
                    \x20            at ./server.c:30:5\n\
                    \x20  6: __libc_start_call_main\n\
                    \x20  7: _start\n";
        assert_eq!(
            caller_frames(text),
            vec!["make_table (./server.c:12:14)", "main (./server.c:30:5)"]
        );
    }

    #[test]
    fn a_trace_without_entry_points_is_kept_whole() {
        let text = "   0: f\n   1: g\n";
        assert_eq!(caller_frames(text), vec!["f", "g"]);
    }
}
