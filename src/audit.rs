//! The audit log: one JSON Lines file per process (docs/log-schema.md).
//!
//! Events are formatted into a stack buffer and appended to the process's
//! [`LogFile`] (a shared file mapping): no allocation and no system call per
//! event. The file is opened at the first event, so processes that never
//! touch shared memory leave no file; a forked child opens its own.
#![forbid(unsafe_code)]

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use crate::diagnose::{AtFlags, Cmd, GetFlags, Key};
use crate::error::{ErrnoName, Sentence};
use crate::leak::Finding;
use crate::lock::Locked;
use crate::logfile::{AppendError, LogFile};
use crate::runtime::{self, say};
use crate::sys::{self, Errno};

/// The schema version written in every event.
pub const SCHEMA_VERSION: u32 = 1;

static LOG: LogFile = LogFile::new();
/// `log_path` is set: events are wanted.
static ENABLED: AtomicBool = AtomicBool::new(false);
/// Opening or writing failed for good in this process: stay quiet.
static BROKEN: AtomicBool = AtomicBool::new(false);
/// This process was forked from one that had its log open.
static FORKED: AtomicBool = AtomicBool::new(false);
static OPENING: Locked<()> = Locked::new(());

/// Turns logging on (from `runtime` at start-up, when `log_path` is set).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether events are being written.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed) && !BROKEN.load(Ordering::Relaxed)
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

/// A JSON string literal, escaped.
struct Json<'a>(&'a [u8]);

impl fmt::Display for Json<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    '"' => f.write_str("\\\"")?,
                    '\\' => f.write_str("\\\\")?,
                    '\n' => f.write_str("\\n")?,
                    '\r' => f.write_str("\\r")?,
                    '\t' => f.write_str("\\t")?,
                    c if (c as u32) < 0x20 => write!(f, "\\u{:04x}", c as u32)?,
                    c => f.write_char(c)?,
                }
            }
            if !chunk.invalid().is_empty() {
                f.write_char('\u{fffd}')?;
            }
        }
        f.write_char('"')
    }
}

/// An address in JSON: `"0x7f.."`, or `null` for NULL.
struct JsonAddr(usize);

impl fmt::Display for JsonAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            f.write_str("null")
        } else {
            write!(f, "\"{:#x}\"", self.0)
        }
    }
}

/// Anything Display, as a JSON string.
struct JsonText<T>(T);

impl<T: fmt::Display> fmt::Display for JsonText<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Our own renderings (flags, keys, errno names) need no escaping.
        write!(f, "\"{}\"", self.0)
    }
}

/// One event in a stack buffer; an event that would not fit is dropped
/// whole rather than written cut (it would not parse).
struct Event {
    buf: [u8; 2048],
    len: usize,
    overflow: bool,
}

impl Event {
    fn new(kind: &str) -> Self {
        let mut e = Self {
            buf: [0; 2048],
            len: 0,
            overflow: false,
        };
        let _ = write!(
            e,
            "{{\"v\":{SCHEMA_VERSION},\"event\":\"{kind}\",\"pid\":{},\"ppid\":{},\"tid\":{},\"ts_ns\":{}",
            runtime::pid(),
            runtime::ppid(),
            runtime::tid(),
            sys::now_ns()
        );
        e
    }

    fn finish(mut self) -> Option<Self> {
        let _ = self.write_str("}\n");
        (!self.overflow).then_some(self)
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Write for Event {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.len + s.len() > self.buf.len() {
            self.overflow = true;
            return Err(fmt::Error);
        }
        self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
        self.len += s.len();
        Ok(())
    }
}

fn write_args(e: &mut Event, call: &Call<'_>) -> fmt::Result {
    match *call {
        Call::Shmget { key, size, flags } => write!(
            e,
            "\"args\":{{\"key\":\"{}\",\"size\":{size},\"shmflg\":{}}}",
            Key(key),
            JsonText(GetFlags(flags))
        ),
        Call::Shmat { shmid, addr, flags } => write!(
            e,
            "\"args\":{{\"shmid\":{shmid},\"shmaddr\":{},\"shmflg\":{}}}",
            JsonAddr(addr),
            JsonText(AtFlags(flags))
        ),
        Call::Shmdt { addr } => write!(e, "\"args\":{{\"shmaddr\":{}}}", JsonAddr(addr)),
        Call::Shmctl { shmid, cmd, buf } => {
            write!(e, "\"args\":{{\"shmid\":{shmid},\"cmd\":")?;
            match Cmd(cmd).name() {
                Some(name) => write!(e, "\"{name}\"")?,
                None => write!(e, "{cmd}")?,
            }
            write!(e, ",\"buf\":{}}}", JsonAddr(buf))
        }
        Call::Ftok { path, id } => write!(e, "\"args\":{{\"path\":{},\"id\":{id}}}", Json(path)),
    }
}

/// Logs one call. `outcome` is the return value, or the errno and sentence.
pub fn call(call: &Call<'_>, outcome: Result<(Ret, Extra), (Errno, &Sentence)>) {
    // Open first, so the start event's time precedes the first call's.
    if !enabled() || (!LOG.is_open() && !open()) {
        return;
    }
    let mut e = Event::new("call");
    let _ = write!(e, ",\"call\":\"{}\",", call.name());
    let _ = write_args(&mut e, call);
    let _ = match outcome {
        Ok((ret, extra)) => {
            let _ = match ret {
                Ret::Int(n) => write!(e, ",\"ret\":{n},\"errno\":null"),
                Ret::Addr(a) => write!(e, ",\"ret\":\"{a:#x}\",\"errno\":null"),
            };
            if let Some(created) = extra.created {
                let _ = write!(e, ",\"created\":{created}");
            }
            if let Some(size) = extra.size {
                let _ = write!(e, ",\"size\":{size}");
            }
            if let Some(shmid) = extra.shmid {
                let _ = write!(e, ",\"shmid\":{shmid}");
            }
            match extra.key {
                Some(key) => write!(e, ",\"key\":\"{}\"", Key(key)),
                None => Ok(()),
            }
        }
        Err((errno, detail)) => {
            let ret = match call {
                Call::Shmat { .. } => "\"0xffffffffffffffff\"",
                _ => "-1",
            };
            write!(
                e,
                ",\"ret\":{ret},\"errno\":{},\"detail\":{}",
                JsonText(ErrnoName(errno)),
                Json(detail.as_str().as_bytes())
            )
        }
    };
    if let Some(e) = e.finish() {
        append(e.bytes());
    }
}

/// Logs a policy finding.
pub fn finding(rule: &str, call: &str, refused: bool, detail: &Sentence, stack: &[String]) {
    if !enabled() || (!LOG.is_open() && !open()) {
        return;
    }
    let mut e = Event::new("finding");
    let _ = write!(
        e,
        ",\"rule\":\"{rule}\",\"call\":\"{call}\",\"refused\":{refused},\"detail\":{}",
        Json(detail.as_str().as_bytes())
    );
    let _ = write_stack(&mut e, stack);
    if let Some(e) = e.finish() {
        append(e.bytes());
    }
}

/// Logs the exit event with the leak check's findings, then closes the
/// file (trimming its preallocated tail).
pub fn exit(findings: &[Finding]) {
    if !enabled() || !LOG.is_open() {
        return;
    }
    let mut e = Event::new("exit");
    let list = |e: &mut Event, name: &str, leaks: bool| -> fmt::Result {
        write!(e, ",\"{name}\":[")?;
        let mut first = true;
        for f in findings.iter().filter(|f| f.is_leak() == leaks) {
            if !first {
                e.write_char(',')?;
            }
            first = false;
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
                } => write!(
                    e,
                    "{{\"kind\":\"segment\",\"shmid\":{shmid},\"key\":\"{}\",\"size\":{size},\"mode\":\"0{mode:03o}\"",
                    Key(key)
                )?,
                Finding::Attachment {
                    shmid,
                    addr,
                    size,
                    readonly,
                } => write!(
                    e,
                    "{{\"kind\":\"attachment\",\"shmid\":{shmid},\"addr\":\"{addr:#x}\",\"size\":{size},\"readonly\":{readonly}"
                )?,
            }
            if let Finding::Note { others, .. } = *f {
                write!(e, ",\"others\":{others}")?;
            }
            write_stack(e, &crate::stacks::frames(crate::leak::stack_owner(f)))?;
            e.write_char('}')?;
        }
        e.write_char(']')
    };
    let _ = list(&mut e, "leaks", true);
    let _ = list(&mut e, "notes", false);
    if let Some(e) = e.finish() {
        append(e.bytes());
    } else {
        // Too many findings for one line: say so rather than lose the event.
        let mut short = Event::new("exit");
        let leaks = findings.iter().filter(|f| f.is_leak()).count();
        let _ = write!(
            short,
            ",\"leaks\":[],\"notes\":[],\"leak_count\":{leaks},\"truncated\":true"
        );
        if let Some(short) = short.finish() {
            append(short.bytes());
        }
    }
    LOG.close();
}

/// `,"stack":[...]`, when there is a stack.
fn write_stack(e: &mut Event, stack: &[String]) -> fmt::Result {
    if stack.is_empty() {
        return Ok(());
    }
    e.write_str(",\"stack\":[")?;
    for (i, frame) in stack.iter().enumerate() {
        write!(
            e,
            "{}{}",
            if i > 0 { "," } else { "" },
            Json(frame.as_bytes())
        )?;
    }
    e.write_char(']')
}

fn append(bytes: &[u8]) {
    if !LOG.is_open() && !open() {
        return;
    }
    match LOG.append(bytes) {
        Ok(()) => {}
        Err(AppendError::NotOpen | AppendError::Closed) => {}
        Err(AppendError::Full) => stop(format_args!(
            "the log reached its {} MiB limit; logging stopped",
            crate::logfile::CAPACITY >> 20
        )),
        Err(AppendError::Grow(errno)) => stop(format_args!(
            "cannot grow the log: {} ({}); logging stopped",
            ErrnoName(errno),
            crate::error::errno_text(errno)
        )),
    }
}

/// Stops logging in this process with one warning line.
fn stop(why: fmt::Arguments<'_>) {
    if !BROKEN.swap(true, Ordering::Relaxed) {
        say(format_args!("warning: audit log: {why}"));
    }
}

/// The log path for this process: `%p` becomes the pid; without `%p`,
/// `.PID` is appended so processes never share a file. NUL-terminated.
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
    out.push(0);
}

/// The start event: who this process is.
fn start_event(out: &mut Vec<u8>) -> fmt::Result {
    let head = Event::new("start");
    out.extend_from_slice(head.bytes());
    let mut w = VecWriter(out);
    let mut cmdline = Vec::new();
    let _ = sys::read_file(c"/proc/self/cmdline", &mut cmdline);
    w.write_str(",\"argv\":[")?;
    for (i, arg) in cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .enumerate()
    {
        write!(w, "{}{}", if i > 0 { "," } else { "" }, Json(arg))?;
    }
    let mut exe = [0u8; 4096];
    let exe = sys::readlink(c"/proc/self/exe", &mut exe).unwrap_or(b"");
    let (uid, euid) = sys::uid_euid();
    write!(
        w,
        "],\"exe\":{},\"uid\":{uid},\"euid\":{euid},\"ipc_ns\":",
        Json(exe)
    )?;
    match sys::inode_of(c"/proc/self/ns/ipc") {
        Some(ino) => write!(w, "{ino}")?,
        None => w.write_str("null")?,
    }
    writeln!(w, ",\"forked\":{}}}", FORKED.load(Ordering::Relaxed))
}

struct VecWriter<'a>(&'a mut Vec<u8>);

impl fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.try_reserve(s.len()).map_err(|_| fmt::Error)?;
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cold]
fn open() -> bool {
    if BROKEN.load(Ordering::Relaxed) {
        return false;
    }
    let _guard = OPENING.lock();
    if LOG.is_open() {
        return true;
    }
    let Some(pattern) = runtime::options().log_path.as_deref() else {
        return false;
    };
    let mut path = Vec::new();
    let mut first = Vec::new();
    let built = crate::fail_open(false, || {
        expand_path(pattern, runtime::pid(), &mut path);
        start_event(&mut first).is_ok()
    });
    let Ok(cpath) = core::ffi::CStr::from_bytes_with_nul(&path) else {
        stop(format_args!(
            "log_path '{pattern}' is not a valid path; logging disabled"
        ));
        return false;
    };
    if !built {
        stop(format_args!("out of memory; logging disabled"));
        return false;
    }
    match LOG.open(cpath, &first) {
        Ok(()) => true,
        Err(errno) => {
            stop(format_args!(
                "cannot open '{}': {} ({}); logging disabled for this process",
                crate::diagnose::Lossy(cpath.to_bytes()),
                ErrnoName(errno),
                crate::error::errno_text(errno)
            ));
            false
        }
    }
}

/// Fork `prepare`: no append may be half-way through opening or growing.
pub fn fork_prepare() {
    OPENING.lock_for_fork();
    LOG.lock_for_fork();
}

/// Fork `parent`.
pub fn fork_parent() {
    LOG.unlock_in_parent();
    OPENING.unlock_after_fork_parent();
}

/// Fork `child`: the parent's file is not ours; open our own on the next
/// event.
pub fn fork_child() {
    if LOG.is_open() {
        FORKED.store(true, Ordering::Relaxed);
    }
    LOG.abandon_after_fork();
    OPENING.unlock_after_fork_child();
    BROKEN.store(false, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_substitute_the_pid() {
        let mut out = Vec::new();
        expand_path("/tmp/log.%p.jsonl", 42, &mut out);
        assert_eq!(out, b"/tmp/log.42.jsonl\0");
        out.clear();
        expand_path("/tmp/log", 7, &mut out);
        assert_eq!(out, b"/tmp/log.7\0");
        out.clear();
        expand_path("%p/%p", 1234567890, &mut out);
        assert_eq!(out, b"1234567890/1234567890\0");
    }

    #[test]
    fn json_strings_are_escaped() {
        let s = Json(b"a\"b\\c\nd\x01\xff").to_string();
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\u0001\u{fffd}\"");
    }

    #[test]
    fn call_events_are_json() {
        let mut e = Event::new("call");
        let c = Call::Shmctl {
            shmid: 3,
            cmd: 99,
            buf: 0x10,
        };
        e.write_str(",").unwrap();
        write_args(&mut e, &c).unwrap();
        let text = String::from_utf8(e.finish().unwrap().bytes().to_vec()).unwrap();
        assert!(
            text.starts_with("{\"v\":1,\"event\":\"call\",\"pid\":"),
            "{text}"
        );
        assert!(
            text.ends_with("\"args\":{\"shmid\":3,\"cmd\":99,\"buf\":\"0x10\"}}\n"),
            "{text}"
        );
    }

    #[test]
    fn oversized_events_are_dropped_whole() {
        let mut e = Event::new("call");
        let long = vec![b'x'; 4000];
        let _ = write!(e, ",{}", Json(&long));
        assert!(e.finish().is_none());
    }
}
