//! The audit log: one JSON Lines file per process (docs/log-schema.md).
//!
//! Events are formatted into a stack buffer and appended to the process's
//! [`LogFile`] with one `write(2)` each, before the call returns. The file
//! is opened at the first event, so processes that never touch shared
//! memory leave no file. Every event first asks the kernel for the pid
//! (`getpid`): a child made by `fork`, `_Fork` or a raw `clone` notices
//! that the inherited log is its parent's and opens its own.
#![forbid(unsafe_code)]

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use crate::diagnose::{AtFlags, Cmd, GetFlags, Key};
use crate::error::{ErrnoName, Sentence};
use crate::event::Buf;
use crate::leak::Finding;
use crate::logfile::{AppendError, Claim, Identity, LogFile, OpenError};
use crate::runtime::{self, say};
use crate::sys::{self, Errno};

/// The schema version written in every event.
pub const SCHEMA_VERSION: u32 = 1;

static LOG: LogFile = LogFile::new();
/// `log_path` is set: events are wanted.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns logging on (from `runtime` at start-up, when `log_path` is set).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether events are wanted (`log_path` is set). Whether this process's
/// log is open, or stopped after an error, is known only with its real
/// pid (see [`ready`]).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Who writes an event: the process and thread, asked of the kernel when
/// the runtime's cached pid is not this process's (a child of `_Fork` or
/// of a raw `clone`, which no fork handler told).
#[derive(Clone, Copy)]
struct Who {
    pid: u32,
    ppid: u32,
    tid: u32,
}

fn who(me: u32) -> Who {
    if runtime::pid() == me {
        Who {
            pid: me,
            ppid: runtime::ppid(),
            tid: runtime::tid(),
        }
    } else {
        Who {
            pid: me,
            ppid: sys::getppid(),
            tid: sys::gettid(),
        }
    }
}

/// This process's identity if its log is open (opened now if need be), or
/// `None` when nothing is to be logged.
fn ready() -> Option<Who> {
    if !ENABLED.load(Ordering::Relaxed) {
        return None;
    }
    let me = sys::getpid();
    match LOG.claim(me) {
        Claim::Ready => Some(who(me)),
        Claim::Off => None,
        Claim::Open { forked } => open(me, forked).then(|| who(me)),
    }
}

/// A call and its arguments, as traced and logged.
pub enum Call<'a> {
    Shmget { key: i32, size: usize, flags: i32 },
    Shmat { shmid: i32, addr: usize, flags: i32 },
    Shmdt { addr: usize },
    Shmctl { shmid: i32, cmd: i32, buf: usize },
    Ftok { path: &'a [u8], id: i32 },
}

impl Call<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            Call::Shmget { .. } => "shmget",
            Call::Shmat { .. } => "shmat",
            Call::Shmdt { .. } => "shmdt",
            Call::Shmctl { .. } => "shmctl",
            Call::Ftok { .. } => "ftok",
        }
    }
}

/// An address as C prints it, NULL for 0.
pub struct Addr(pub usize);

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            f.write_str("NULL")
        } else {
            write!(f, "{:#x}", self.0)
        }
    }
}

impl fmt::Display for Call<'_> {
    /// The C-like form used by the verbosity trace.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Call::Shmget { key, size, flags } => {
                write!(
                    f,
                    "shmget(key={}, size={size}, shmflg={})",
                    Key(key),
                    GetFlags(flags)
                )
            }
            Call::Shmat { shmid, addr, flags } => {
                write!(
                    f,
                    "shmat(shmid={shmid}, shmaddr={}, shmflg={})",
                    Addr(addr),
                    AtFlags(flags)
                )
            }
            Call::Shmdt { addr } => write!(f, "shmdt(shmaddr={})", Addr(addr)),
            Call::Shmctl { shmid, cmd, buf } => {
                write!(
                    f,
                    "shmctl(shmid={shmid}, cmd={}, buf={})",
                    Cmd(cmd),
                    Addr(buf)
                )
            }
            Call::Ftok { path, id } => {
                write!(
                    f,
                    "ftok(path=\"{}\", id={id})",
                    crate::diagnose::Lossy(path)
                )
            }
        }
    }
}

/// A successful call's return value.
#[derive(Clone, Copy)]
pub enum Ret {
    Int(i64),
    Addr(usize),
}

impl fmt::Display for Ret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Ret::Int(n) => write!(f, "{n}"),
            Ret::Addr(a) => write!(f, "{a:#x}"),
        }
    }
}

/// What a successful call adds to its event (docs/log-schema.md).
#[derive(Clone, Copy, Default)]
pub struct Extra {
    pub created: Option<bool>,
    pub size: Option<usize>,
    pub shmid: Option<i32>,
    pub key: Option<i32>,
}

/// The fields every event starts with.
fn header(o: &mut Buf, kind: &str, who: &Who) {
    let now = sys::now_ns();
    let (sec, nsec) = (now / 1_000_000_000, (now % 1_000_000_000) as u32);
    if kind == "call" && sec > 0 && cached_call_prefix(o, sec, who) {
        o.fixed(9, u64::from(nsec));
        return;
    }
    render_prefix(o, kind, who);
    o.dec(now);
}

/// `{"v":1,"event":KIND,"pid":P,`
fn render_kind_and_pid(o: &mut Buf, kind: &str, pid: u32) {
    o.raw(b"{\"v\":");
    o.dec(u64::from(SCHEMA_VERSION));
    o.raw(b",\"event\":\"");
    o.raw(kind.as_bytes());
    o.raw(b"\",\"pid\":");
    o.dec(u64::from(pid));
    o.raw(b",");
}

/// `{"v":1,"event":KIND,"pid":P,"ppid":Q,"tid":T,"ts_ns":`
fn render_prefix(o: &mut Buf, kind: &str, who: &Who) {
    render_kind_and_pid(o, kind, who.pid);
    o.raw(b"\"ppid\":");
    o.dec(u64::from(who.ppid));
    o.raw(b",\"tid\":");
    o.dec(u64::from(who.tid));
    o.raw(b",\"ts_ns\":");
}

/// The start of a call event up to the seconds of `ts_ns`, the same for
/// all of a thread's calls within one second: rendered once per thread and
/// second (and again after fork, when the pid changes) instead of four
/// number conversions per event. False if it cannot be used (re-entered
/// from a signal handler, or too long), and the caller renders it.
fn cached_call_prefix(o: &mut Buf, sec: u64, who: &Who) -> bool {
    struct Prefix {
        pid: u32,
        sec: u64,
        len: usize,
        bytes: [u8; PREFIX],
    }
    const PREFIX: usize = 128;
    thread_local! {
        static CACHE: core::cell::RefCell<Prefix> = const {
            core::cell::RefCell::new(Prefix { pid: 0, sec: 0, len: 0, bytes: [0; PREFIX] })
        };
    }
    let pid = who.pid;
    CACHE
        .try_with(|cell| {
            let Ok(mut cache) = cell.try_borrow_mut() else {
                return false;
            };
            if cache.pid != pid || cache.sec != sec {
                let mut fresh = Buf::new();
                render_prefix(&mut fresh, "call", who);
                fresh.dec(sec);
                match fresh.bytes() {
                    Some(b) if b.len() <= PREFIX => {
                        cache.bytes[..b.len()].copy_from_slice(b);
                        cache.len = b.len();
                        cache.pid = pid;
                        cache.sec = sec;
                    }
                    _ => return false,
                }
            }
            o.block(&cache.bytes, cache.len);
            true
        })
        .unwrap_or(false)
}

fn write_args(o: &mut Buf, call: &Call<'_>) {
    match *call {
        Call::Shmget { key, size, flags } => {
            o.raw(b"\"args\":{\"key\":\"");
            o.hex(u64::from(key as u32), 8);
            o.raw(b"\",\"size\":");
            o.dec(size as u64);
            o.raw(b",\"shmflg\":\"");
            let _ = GetFlags(flags).write_to(o);
            o.raw(b"\"}");
        }
        Call::Shmat { shmid, addr, flags } => {
            o.raw(b"\"args\":{\"shmid\":");
            o.int(shmid.into());
            o.raw(b",\"shmaddr\":");
            o.addr(addr);
            if flags == 0 {
                o.raw(b",\"shmflg\":\"0\"}");
            } else {
                o.raw(b",\"shmflg\":\"");
                let _ = AtFlags(flags).write_to(o);
                o.raw(b"\"}");
            }
        }
        Call::Shmdt { addr } => {
            o.raw(b"\"args\":{\"shmaddr\":");
            o.addr(addr);
            o.raw(b"}");
        }
        Call::Shmctl { shmid, cmd, buf } => {
            o.raw(b"\"args\":{\"shmid\":");
            o.int(shmid.into());
            o.raw(b",\"cmd\":");
            match Cmd(cmd).name() {
                Some(name) => {
                    o.raw(b"\"");
                    o.raw(name.as_bytes());
                    o.raw(b"\"");
                }
                None => o.int(cmd.into()),
            }
            o.raw(b",\"buf\":");
            o.addr(buf);
            o.raw(b"}");
        }
        Call::Ftok { path, id } => {
            o.raw(b"\"args\":{\"path\":");
            o.string(path);
            o.raw(b",\"id\":");
            o.int(id.into());
            o.raw(b"}");
        }
    }
}

fn call_event(
    o: &mut Buf,
    who: &Who,
    call: &Call<'_>,
    outcome: &Result<(Ret, Extra), (Errno, &Sentence)>,
) {
    header(o, "call", who);
    o.raw(b",\"call\":\"");
    o.raw(call.name().as_bytes());
    o.raw(b"\",");
    write_args(o, call);
    match *outcome {
        Ok((ret, extra)) => {
            o.raw(b",\"ret\":");
            match ret {
                Ret::Int(n) => o.int(n),
                Ret::Addr(a) => {
                    o.raw(b"\"");
                    o.hex(a as u64, 1);
                    o.raw(b"\"");
                }
            }
            o.raw(b",\"errno\":null");
            if let Some(created) = extra.created {
                o.raw(if created {
                    b",\"created\":true"
                } else {
                    b",\"created\":false"
                });
            }
            if let Some(size) = extra.size {
                o.raw(b",\"size\":");
                o.dec(size as u64);
            }
            if let Some(shmid) = extra.shmid {
                o.raw(b",\"shmid\":");
                o.int(shmid.into());
            }
            if let Some(key) = extra.key {
                o.raw(b",\"key\":\"");
                o.hex(u64::from(key as u32), 8);
                o.raw(b"\"");
            }
        }
        Err((errno, detail)) => {
            o.raw(match call {
                Call::Shmat { .. } => b",\"ret\":\"0xffffffffffffffff\"",
                _ => b",\"ret\":-1",
            });
            let _ = write!(o, ",\"errno\":\"{}\",\"detail\":", ErrnoName(errno));
            o.string(detail.as_str().as_bytes());
        }
    }
    o.raw(b"}\n");
}

/// Logs one call. `outcome` is the return value, or the errno and sentence.
pub fn call(call: &Call<'_>, outcome: Result<(Ret, Extra), (Errno, &Sentence)>) {
    // Open first, so the start event's time precedes the first call's.
    let Some(who) = ready() else {
        return;
    };
    let mut o = Buf::new();
    call_event(&mut o, &who, call, &outcome);
    if let Some(bytes) = o.bytes() {
        append(who.pid, bytes);
    }
}

/// Logs a policy finding.
pub fn finding(
    rule: &str,
    call: &str,
    refused: bool,
    suppressed: bool,
    key: Option<i32>,
    detail: &Sentence,
    stack: &[String],
) {
    let Some(who) = ready() else {
        return;
    };
    let o = &mut Buf::new();
    header(o, "finding", &who);
    o.raw(b",\"rule\":\"");
    o.raw(rule.as_bytes());
    o.raw(b"\",\"call\":\"");
    o.raw(call.as_bytes());
    o.raw(if refused {
        b"\",\"refused\":true"
    } else {
        b"\",\"refused\":false"
    });
    if let Some(key) = key {
        o.raw(b",\"key\":\"");
        o.hex(u64::from(key as u32), 8);
        o.raw(b"\"");
    }
    if suppressed {
        o.raw(b",\"suppressed\":true");
    }
    o.raw(b",\"detail\":");
    o.string(detail.as_str().as_bytes());
    write_stack(o, stack);
    o.raw(b"}\n");
    if let Some(bytes) = o.bytes() {
        append(who.pid, bytes);
    }
}

fn write_finding(o: &mut Buf, f: &Finding, suppressed: bool) {
    match *f {
        Finding::Segment {
            shmid,
            key,
            size,
            mode,
        }
        | Finding::Note {
            shmid,
            key,
            size,
            mode,
            ..
        } => {
            o.raw(b"{\"kind\":\"segment\",\"shmid\":");
            o.int(shmid.into());
            o.raw(b",\"key\":\"");
            o.hex(u64::from(key as u32), 8);
            o.raw(b"\",\"size\":");
            o.dec(size as u64);
            let _ = write!(o, ",\"mode\":\"0{mode:03o}\"");
        }
        Finding::Attachment {
            shmid,
            addr,
            size,
            readonly,
        } => {
            o.raw(b"{\"kind\":\"attachment\",\"shmid\":");
            o.int(shmid.into());
            o.raw(b",\"addr\":\"");
            o.hex(addr as u64, 1);
            o.raw(b"\",\"size\":");
            o.dec(size as u64);
            o.raw(if readonly {
                b",\"readonly\":true"
            } else {
                b",\"readonly\":false"
            });
        }
    }
    if let Finding::Note { others, .. } = *f {
        o.raw(b",\"others\":");
        o.dec(others);
    }
    if suppressed {
        o.raw(b",\"suppressed\":true");
    }
    write_stack(o, &crate::stacks::frames(crate::leak::stack_owner(f)));
    o.raw(b"}");
}

/// Logs the exit event with the leak check's findings, then closes the
/// log (later events are dropped). Only a process whose own log is open
/// writes one: never into a file its parent opened.
pub fn exit(findings: &[Finding], suppressed: &[bool]) {
    if !enabled() {
        return;
    }
    let me = sys::getpid();
    if !LOG.is_open(me) {
        return;
    }
    let who = who(me);
    let o = &mut Buf::new();
    header(o, "exit", &who);
    for (name, leaks) in [(&b",\"leaks\":["[..], true), (&b"],\"notes\":["[..], false)] {
        o.raw(name);
        let mut first = true;
        for (i, f) in findings.iter().enumerate() {
            if f.is_leak() != leaks {
                continue;
            }
            if !first {
                o.raw(b",");
            }
            first = false;
            write_finding(o, f, suppressed.get(i).copied().unwrap_or(false));
        }
    }
    o.raw(b"]}\n");
    match o.bytes() {
        Some(bytes) => append(me, bytes),
        None => {
            // Out of memory for so many findings: say so rather than lose it.
            let o = &mut Buf::new();
            header(o, "exit", &who);
            o.raw(b",\"leaks\":[],\"notes\":[],\"leak_count\":");
            o.dec(findings.iter().filter(|f| f.is_leak()).count() as u64);
            o.raw(b",\"truncated\":true}\n");
            if let Some(bytes) = o.bytes() {
                append(me, bytes);
            }
        }
    }
    LOG.close(me);
}

/// `,"stack":[...]`, when there is a stack.
fn write_stack(o: &mut Buf, stack: &[String]) {
    if stack.is_empty() {
        return;
    }
    o.raw(b",\"stack\":[");
    for (i, frame) in stack.iter().enumerate() {
        if i > 0 {
            o.raw(b",");
        }
        o.string(frame.as_bytes());
    }
    o.raw(b"]");
}

fn append(me: u32, bytes: &[u8]) {
    match LOG.append(me, bytes) {
        Ok(()) | Err(AppendError::NotOpen | AppendError::Off) => {}
        Err(AppendError::TooBig(limit)) => stop(
            me,
            format_args!(
                "the log reached the file size limit (RLIMIT_FSIZE, ulimit -f: {limit} bytes); \
                 logging stopped"
            ),
        ),
        Err(AppendError::Lost(errno)) => stop(
            me,
            format_args!(
                "the log's descriptor was closed and the file cannot be opened again: {} ({}); \
                 logging stopped",
                ErrnoName(errno),
                crate::error::errno_text(errno)
            ),
        ),
        Err(AppendError::Write(errno)) => stop(
            me,
            format_args!(
                "cannot write the log: {} ({}); logging stopped",
                ErrnoName(errno),
                crate::error::errno_text(errno)
            ),
        ),
    }
}

/// Stops logging in this process with one warning line.
fn stop(me: u32, why: fmt::Arguments<'_>) {
    if LOG.stop(me) {
        say(format_args!("warning: audit log: {why}"));
    }
}

/// The log path for this process: `%p` becomes the pid; without `%p`,
/// `.PID` is appended so processes never share a file. (When that name is
/// taken, `logfile::candidate` makes the next ones.)
fn expand_path(pattern: &str, pid: u32, out: &mut Vec<u8>) {
    let mut pid_text = [0u8; 10];
    let mut n = pid;
    let mut i = pid_text.len();
    loop {
        i -= 1;
        pid_text[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let pid_text = &pid_text[i..];
    let mut rest = pattern.as_bytes();
    let mut substituted = false;
    while let Some(at) = rest.windows(2).position(|w| w == b"%p") {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(pid_text);
        rest = &rest[at + 2..];
        substituted = true;
    }
    out.extend_from_slice(rest);
    if !substituted {
        out.push(b'.');
        out.extend_from_slice(pid_text);
    }
}

/// The process's start time in clock ticks after boot: field 22 of
/// `/proc/self/stat` (after the command name, which may hold spaces and
/// parentheses, so counted from the last `)`).
fn start_time() -> Option<u64> {
    let mut stat = Vec::new();
    sys::read_file(c"/proc/self/stat", &mut stat).ok()?;
    start_time_of(&stat)
}

fn start_time_of(stat: &[u8]) -> Option<u64> {
    let after = stat.iter().rposition(|&b| b == b')')?;
    let rest = core::str::from_utf8(&stat[after + 1..]).ok()?;
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// The boot's id (`/proc/sys/kernel/random/boot_id`), if it looks like one.
fn boot_id(out: &mut Vec<u8>) -> bool {
    if sys::read_file(c"/proc/sys/kernel/random/boot_id", out).is_err() {
        return false;
    }
    while out.last().is_some_and(u8::is_ascii_whitespace) {
        out.pop();
    }
    !out.is_empty() && out.iter().all(|&b| b.is_ascii_hexdigit() || b == b'-')
}

fn number_or_null(o: &mut Buf, n: Option<u64>) {
    match n {
        Some(n) => o.dec(n),
        None => o.raw(b"null"),
    }
}

/// `,"boot_id":...,"pid_ns":...,"start_time":...,"pidfd_ino":...`: what
/// tells this process from every other one (docs/log-schema.md), the same
/// in every image of it. False when it proves nothing (no start time and
/// no pidfd inode: /proc missing and an old kernel).
fn identity_fields(o: &mut Buf) -> bool {
    let mut boot = Vec::new();
    o.raw(b",\"boot_id\":");
    if boot_id(&mut boot) {
        o.string(&boot);
    } else {
        o.raw(b"null");
    }
    o.raw(b",\"pid_ns\":");
    number_or_null(o, sys::inode_of(c"/proc/self/ns/pid"));
    let start = start_time();
    o.raw(b",\"start_time\":");
    number_or_null(o, start);
    let pidfd = crate::logfile::pidfd_inode();
    o.raw(b",\"pidfd_ino\":");
    number_or_null(o, pidfd);
    start.is_some() || pidfd.is_some()
}

/// The start event: who this process is; `fields` from [`identity_fields`].
fn start_event(o: &mut Buf, who: &Who, fields: &[u8], forked: bool) {
    header(o, "start", who);
    o.raw(fields);
    let mut cmdline = Vec::new();
    let _ = sys::read_file(c"/proc/self/cmdline", &mut cmdline);
    o.raw(b",\"argv\":[");
    for (i, arg) in cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .enumerate()
    {
        if i > 0 {
            o.raw(b",");
        }
        o.string(arg);
    }
    let mut exe = [0u8; 4096];
    let exe = sys::readlink(c"/proc/self/exe", &mut exe).unwrap_or(b"");
    let (uid, euid) = sys::uid_euid();
    o.raw(b"],\"exe\":");
    o.string(exe);
    o.raw(b",\"uid\":");
    o.dec(uid.into());
    o.raw(b",\"euid\":");
    o.dec(euid.into());
    o.raw(b",\"ipc_ns\":");
    match sys::inode_of(c"/proc/self/ns/ipc") {
        Some(ino) => o.dec(ino),
        None => o.raw(b"null"),
    }
    o.raw(if forked {
        b",\"forked\":true}\n"
    } else {
        b",\"forked\":false}\n"
    });
}

/// Opens process `me`'s log (it holds the claim: every path ends in
/// `LOG.open`, or in `give_up` if something panicked).
#[cold]
fn open(me: u32, forked: bool) -> bool {
    crate::fail_open(None, || Some(try_open(me, forked))).unwrap_or_else(|| {
        LOG.give_up(me);
        false
    })
}

fn try_open(me: u32, forked: bool) -> bool {
    let Some(pattern) = runtime::options().log_path.as_deref() else {
        LOG.give_up(me);
        return false;
    };
    let who = who(me);
    let mut path = Vec::new();
    expand_path(pattern, me, &mut path);
    let mut fields = Buf::new();
    let proves = identity_fields(&mut fields);
    let mut prefix = Buf::new();
    render_kind_and_pid(&mut prefix, "start", me);
    let mut first = Buf::new();
    start_event(&mut first, &who, fields.bytes().unwrap_or_default(), forked);
    let (Some(fields), Some(prefix), Some(first)) = (fields.bytes(), prefix.bytes(), first.bytes())
    else {
        LOG.give_up(me);
        say(format_args!(
            "warning: audit log: out of memory; logging disabled"
        ));
        return false;
    };
    let identity = Identity {
        // An identity that proves nothing never claims an existing file.
        prefix: if proves { prefix } else { b"" },
        fields,
    };
    let error = match LOG.open(me, &path, &identity, first) {
        Ok(()) => return true,
        Err(e) => e,
    };
    let path = crate::diagnose::Lossy(&path);
    match error {
        OpenError::Io(errno) => say(format_args!(
            "warning: audit log: cannot create '{path}': {} ({}); logging disabled for this process",
            ErrnoName(errno),
            crate::error::errno_text(errno)
        )),
        OpenError::Taken => say(format_args!(
            "warning: audit log: '{path}' and the next {} names are taken by files of other \
             processes; logging disabled for this process",
            crate::logfile::MAX_NAMES - 1
        )),
        OpenError::Append(AppendError::TooBig(limit)) => say(format_args!(
            "warning: audit log: the start event would exceed the file size limit \
             (RLIMIT_FSIZE, ulimit -f: {limit} bytes); logging disabled for this process"
        )),
        OpenError::Append(AppendError::Write(errno) | AppendError::Lost(errno)) => {
            say(format_args!(
                "warning: audit log: cannot write '{path}': {} ({}); logging disabled for this \
                 process",
                ErrnoName(errno),
                crate::error::errno_text(errno)
            ))
        }
        OpenError::Append(AppendError::NotOpen | AppendError::Off) => {}
    }
    false
}

/// Fork `prepare`: nothing to hold (the log takes no lock).
pub fn fork_prepare() {}

/// Fork `parent`.
pub fn fork_parent() {}

/// Fork `child`: close the child's copy of the parent's descriptor. The
/// child opens its own file at its first event (as a child of `_Fork` or of
/// a raw `clone`, which skip this handler, does when it sees that the
/// state is another pid's).
pub fn fork_child() {
    LOG.leave_after_fork(sys::getpid());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Buf;

    #[test]
    fn paths_substitute_the_pid() {
        let mut out = Vec::new();
        expand_path("/tmp/log.%p.jsonl", 42, &mut out);
        assert_eq!(out, b"/tmp/log.42.jsonl");
        out.clear();
        expand_path("/tmp/log", 7, &mut out);
        assert_eq!(out, b"/tmp/log.7");
        out.clear();
        expand_path("%p/%p", 1234567890, &mut out);
        assert_eq!(out, b"1234567890/1234567890");
    }

    #[test]
    fn the_start_time_is_field_22_whatever_the_command_name() {
        let stat =
            b"42 (a) b ) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 8812345 1000 10";
        assert_eq!(start_time_of(stat), Some(8_812_345));
        assert_eq!(start_time_of(b"42 (x) S 1"), None);
    }

    #[test]
    #[cfg_attr(miri, ignore = "reads /proc and makes a pidfd")]
    fn the_identity_fields_name_this_process() {
        let mut o = Buf::new();
        assert!(identity_fields(&mut o));
        let text = String::from_utf8(o.bytes().unwrap().to_vec()).unwrap();
        assert!(text.starts_with(",\"boot_id\":\""), "{text}");
        assert!(!text.contains("\"pid_ns\":null"), "{text}");
        let start = start_time().unwrap();
        assert!(
            text.contains(&format!(",\"start_time\":{start},\"pidfd_ino\":")),
            "{text}"
        );
        // The same process gives the same fields every time (exec keeps
        // them; the test cannot exec, but nothing in them is per image).
        let mut again = Buf::new();
        identity_fields(&mut again);
        assert_eq!(o.bytes(), again.bytes());
    }

    fn event(call: &Call<'_>, outcome: Result<(Ret, Extra), (Errno, &Sentence)>) -> String {
        let mut h = Buf::new();
        call_event(&mut h, &who(sys::getpid()), call, &outcome);
        String::from_utf8(h.bytes().unwrap().to_vec()).unwrap()
    }

    #[test]
    fn call_events_are_json() {
        let text = event(
            &Call::Shmctl {
                shmid: 3,
                cmd: 99,
                buf: 0x10,
            },
            Ok((Ret::Int(0), Extra::default())),
        );
        assert!(
            text.starts_with("{\"v\":1,\"event\":\"call\",\"pid\":"),
            "{text}"
        );
        assert!(
            text.ends_with(",\"call\":\"shmctl\",\"args\":{\"shmid\":3,\"cmd\":99,\"buf\":\"0x10\"},\"ret\":0,\"errno\":null}\n"),
            "{text}"
        );
        let extra = Extra {
            created: Some(true),
            ..Extra::default()
        };
        let text = event(
            &Call::Shmget {
                key: -1,
                size: 10,
                flags: libc::IPC_CREAT | 0o600,
            },
            Ok((Ret::Int(7), extra)),
        );
        assert!(
            text.ends_with("\"args\":{\"key\":\"0xffffffff\",\"size\":10,\"shmflg\":\"IPC_CREAT|0600\"},\"ret\":7,\"errno\":null,\"created\":true}\n"),
            "{text}"
        );
        let mut detail = Sentence::new();
        write!(detail, "a \"quoted\" reason").unwrap();
        let text = event(
            &Call::Shmat {
                shmid: -1,
                addr: 0,
                flags: 0,
            },
            Err((libc::EINVAL, &detail)),
        );
        assert!(
            text.ends_with("\"args\":{\"shmid\":-1,\"shmaddr\":null,\"shmflg\":\"0\"},\"ret\":\"0xffffffffffffffff\",\"errno\":\"EINVAL\",\"detail\":\"a \\\"quoted\\\" reason\"}\n"),
            "{text}"
        );
    }

    #[test]
    fn exit_findings_are_json() {
        let mut h = Buf::new();
        write_finding(
            &mut h,
            &Finding::Attachment {
                shmid: 1,
                addr: 0x7f00,
                size: 10,
                readonly: true,
            },
            false,
        );
        assert_eq!(
            String::from_utf8(h.bytes().unwrap().to_vec()).unwrap(),
            "{\"kind\":\"attachment\",\"shmid\":1,\"addr\":\"0x7f00\",\"size\":10,\"readonly\":true}"
        );
        let mut h = Buf::new();
        write_finding(
            &mut h,
            &Finding::Segment {
                shmid: 2,
                key: 0x5eed0001,
                size: 10,
                mode: 0o600,
            },
            true,
        );
        assert_eq!(
            String::from_utf8(h.bytes().unwrap().to_vec()).unwrap(),
            "{\"kind\":\"segment\",\"shmid\":2,\"key\":\"0x5eed0001\",\"size\":10,\"mode\":\"0600\",\"suppressed\":true}"
        );
    }
}
