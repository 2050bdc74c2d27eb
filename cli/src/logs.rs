//! Reading the audit logs (docs/log-schema.md): one JSON Lines file per
//! process. Readers skip NUL bytes (a file cut short by SIGKILL ends in
//! preallocated, unused space) and blank lines, ignore fields they do not
//! know, and keep going past a line that does not parse (with a warning).
//!
//! A log set can hold millions of events, so they are not kept: each file is
//! read whole, its lines are parsed into borrowed, typed events, and what
//! the report needs is summarised per process as they go ([`CallSummary`]).
//! Files are read by a few threads at once.
#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// The schema version this reader was written for.
pub const SCHEMA_VERSION: u64 = 1;

/// One leak or note of an `exit` event.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ExitItem {
    pub kind: String,
    pub shmid: i32,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub addr: Option<String>,
    #[serde(default)]
    pub readonly: Option<bool>,
    #[serde(default)]
    pub others: Option<u64>,
    /// Where it was made (`stacks=1`): `"func (file:line:col)"` frames,
    /// the caller's first.
    #[serde(default)]
    pub stack: Vec<String>,
    /// The process's own `suppressions=FILE` suppressed it.
    #[serde(default)]
    pub suppressed: bool,
}

/// A string, borrowed from the line unless it has escapes.
#[derive(Debug, Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// A JSON value of which only integers (that fit an `i64`) and strings are
/// read; any other value is accepted and ignored.
#[derive(Debug, Default)]
enum Scalar<'a> {
    #[default]
    Other,
    Int(i64),
    Str(Cow<'a, str>),
}

impl<'a> Scalar<'a> {
    fn as_i64(&self) -> Option<i64> {
        match self {
            Scalar::Int(n) => Some(*n),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    fn into_str(self) -> Option<Cow<'a, str>> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(n))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(n).map_or(Scalar::Other, Scalar::Int))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(s)))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(s)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_seq(seq).map(|()| Scalar::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_key::<Text<'de>>()?.is_some() {
            map.next_value::<Scalar<'de>>()?;
        }
        Ok(Scalar::Other)
    }
}

/// Reads the elements of a sequence and drops them. (Not with
/// [`serde::de::IgnoredAny`]: for `args` and `ret` the first reader parsed
/// every value in full, numbers in range and nesting within serde_json's
/// recursion limit, and so does this one.)
fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<Scalar<'de>>()?.is_some() {}
    Ok(())
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

/// The arguments of a call that the report reads, each `None` when it is
/// missing or of another type. Any JSON value is accepted (`args` that is
/// not an object has none of them); of a repeated name, the last counts.
#[derive(Debug, Default)]
struct Args<'a> {
    key: Option<Cow<'a, str>>,
    size: Option<i64>,
    shmflg: Option<Cow<'a, str>>,
    shmid: Option<i64>,
    shmaddr: Option<Cow<'a, str>>,
    cmd: Option<Cow<'a, str>>,
}

const NO_ARGS: Args<'static> = Args {
    key: None,
    size: None,
    shmflg: None,
    shmid: None,
    shmaddr: None,
    cmd: None,
};

struct ArgsVisitor;

impl<'de> Visitor<'de> for ArgsVisitor {
    type Value = Args<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut args = Args::default();
        while let Some(name) = map.next_key::<Text<'de>>()? {
            let value = map.next_value::<Scalar<'de>>()?;
            match &*name.0 {
                "key" => args.key = value.into_str(),
                "size" => args.size = value.as_i64(),
                "shmflg" => args.shmflg = value.into_str(),
                "shmid" => args.shmid = value.as_i64(),
                "shmaddr" => args.shmaddr = value.into_str(),
                "cmd" => args.cmd = value.into_str(),
                _ => {}
            }
        }
        Ok(args)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_seq(seq).map(|()| Args::default())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Args::default())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Args::default())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Args::default())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Args::default())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Args::default())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Args::default())
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Args::default())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Args<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ArgsVisitor)
    }
}

/// Every field any event may carry; unknown ones are ignored. (The fields,
/// their order and what each accepts are those of the first reader, which
/// kept `args` and `ret` as any JSON value: the same lines parse, and the
/// same lines fail with the same message.)
#[derive(Debug, Deserialize)]
struct RawEvent<'a> {
    #[serde(default)]
    v: Option<u64>,
    #[serde(borrow)]
    event: Text<'a>,
    pid: u32,
    #[serde(default)]
    ppid: Option<u32>,
    #[serde(default)]
    ts_ns: Option<u64>,
    #[serde(default)]
    argv: Option<Vec<String>>,
    #[serde(default)]
    exe: Option<String>,
    #[serde(default)]
    uid: Option<u32>,
    #[serde(default)]
    euid: Option<u32>,
    #[serde(default)]
    ipc_ns: Option<u64>,
    #[serde(default)]
    forked: Option<bool>,
    #[serde(default, borrow)]
    call: Option<Text<'a>>,
    #[serde(default, borrow)]
    args: Option<Args<'a>>,
    #[serde(default, borrow)]
    ret: Option<Scalar<'a>>,
    #[serde(default, borrow)]
    errno: Option<Text<'a>>,
    #[serde(default, borrow)]
    detail: Option<Text<'a>>,
    #[serde(default)]
    created: Option<bool>,
    #[serde(default, borrow)]
    rule: Option<Text<'a>>,
    #[serde(default)]
    refused: Option<bool>,
    #[serde(default)]
    leaks: Option<Vec<ExitItem>>,
    #[serde(default)]
    notes: Option<Vec<ExitItem>>,
    #[serde(default)]
    leak_count: Option<u64>,
    #[serde(default)]
    truncated: Option<bool>,
    #[serde(default)]
    stack: Option<Vec<String>>,
    #[serde(default, borrow)]
    key: Option<Text<'a>>,
    #[serde(default)]
    suppressed: Option<bool>,
}

/// A segment a `shmget` of the log created.
#[derive(Clone, Debug, PartialEq)]
pub struct Created {
    pub shmid: i32,
    pub ts_ns: u64,
    /// The key as logged (`"0x00000000"` when it is missing).
    pub key: String,
    pub size: u64,
    /// The permission bits of `shmflg`.
    pub mode: Option<u32>,
}

/// What a process's calls did, summarised as they are read: the counts of
/// its row in the report, and the segments, removals and failures the
/// report puts together across processes.
#[derive(Clone, Debug, Default)]
pub struct CallSummary {
    /// Every `call` event.
    pub count: u64,
    /// Calls that failed (with an errno).
    pub failed: u64,
    /// Failed calls by errno name, then by call name.
    pub failures: BTreeMap<String, BTreeMap<String, u64>>,
    /// Successful `shmget`s that created their segment.
    pub segments_created: u64,
    /// Successful `shmctl(IPC_RMID)`s.
    pub segments_removed: u64,
    /// The most attachments (distinct addresses) the process held at once.
    pub peak_attachments: u64,
    /// The created segments whose shmid was logged, in the log's order.
    pub created: Vec<Created>,
    /// (shmid, time) of each successful `IPC_RMID` whose shmid was logged.
    pub removals: Vec<(i32, u64)>,
}

/// A policy finding.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub ts_ns: u64,
    pub rule: String,
    pub call: String,
    pub refused: bool,
    pub detail: String,
    /// The key of the segment the call named, when the log says.
    pub key: Option<String>,
    /// The call's stack (`stacks=1`).
    pub stack: Vec<String>,
    /// The process's own `suppressions=FILE` suppressed it.
    pub suppressed: bool,
}

/// The `exit` event.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exit {
    pub leaks: Vec<ExitItem>,
    pub notes: Vec<ExitItem>,
    /// The writer ran out of room and listed only this many leaks' count.
    pub truncated: Option<u64>,
}

/// Everything one log file says about one process that the report uses.
#[derive(Clone, Debug, Default)]
pub struct ProcessLog {
    pub file: PathBuf,
    pub pid: u32,
    pub ppid: u32,
    pub argv: Vec<String>,
    pub exe: Option<String>,
    pub uid: Option<u32>,
    pub euid: Option<u32>,
    pub ipc_ns: Option<u64>,
    pub forked: bool,
    /// Whether a `start` event was seen.
    pub started: bool,
    /// The time of the file's first event (ns since the epoch).
    pub first_ts: u64,
    pub calls: CallSummary,
    pub findings: Vec<Finding>,
    pub exit: Option<Exit>,
}

impl ProcessLog {
    /// The command line for people, shell-quoted (see [`shell_line`]):
    /// argv, or the exe when the log has no argv.
    pub fn command(&self) -> String {
        shell_line(&self.argv_or_exe())
    }

    /// The command line as an array: argv, or `[exe]` when the log has no
    /// argv, or nothing.
    pub fn argv_or_exe(&self) -> Vec<String> {
        if self.argv.is_empty() {
            self.exe.iter().cloned().collect()
        } else {
            self.argv.clone()
        }
    }
}

/// A command line for people: the words shell-quoted as `sh` would read
/// them back (`sh -c 'kill -9 $$'`), control characters then shown escaped
/// as `\n` (a newline in an argument would split a line of the report); `?`
/// for none.
pub fn shell_line(argv: &[String]) -> String {
    if argv.is_empty() {
        "?".to_owned()
    } else {
        printable(&shell_words::join(argv))
    }
}

/// `text` made safe for a line of text output: control characters (a
/// newline, ESC and every C0 and C1 control), the line and paragraph
/// separators and the bidirectional controls are shown escaped, as `\n`,
/// `\t`, `\u{1b}`, `\u{202e}`, so that nothing read from a log, /proc or
/// the kernel can start a line of its own, move the cursor, or reorder
/// what a terminal shows.
pub fn printable(text: &str) -> String {
    if !text.chars().any(needs_escape) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if needs_escape(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Whether [`printable`] escapes `c`.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' // line and paragraph separators
                | '\u{061c}' | '\u{200e}' | '\u{200f}' // bidi marks
                | '\u{202a}'..='\u{202e}' // bidi embeddings and overrides
                | '\u{2066}'..='\u{2069}' // bidi isolates
        )
}

/// The logs of a directory (or a single file) and what could not be read.
#[derive(Debug, Default)]
pub struct LogSet {
    pub processes: Vec<ProcessLog>,
    pub warnings: Vec<String>,
    /// Files ignored because their owner could not have been a process of
    /// the tree (see [`Trust`]).
    pub untrusted: Vec<PathBuf>,
}

/// Which files of a log directory are read. A log file is made by the
/// process that writes it, exclusively, mode 0600. So a directory entry is
/// read only when, opened without following a symbolic link, it is a
/// regular file with one link that no one but its owner may write; and,
/// in a directory that others may write (a sticky directory that `run`
/// made for a tree whose processes switch user), only when its owner is
/// the directory's owner, root, or one of `uids` (the users `run` saw the
/// tree run as). Everything else is ignored, with a warning.
#[derive(Clone, Debug)]
struct Trust<'a> {
    dir_uid: u32,
    /// Others (group or world) may create files in the directory.
    open_dir: bool,
    uids: &'a BTreeSet<u32>,
}

impl Trust<'_> {
    fn owner_ok(&self, uid: u32) -> bool {
        !self.open_dir || uid == self.dir_uid || uid == 0 || self.uids.contains(&uid)
    }
}

/// Reads every log of `path` (a directory), or `path` itself when it is a
/// file. In a directory that others may write, files of users other than
/// the directory's owner and root are ignored (see [`read_trusting`]).
///
/// The logs of a directory are every file the library can have written
/// there, whatever `log_path` named them (docs/log-schema.md): its
/// `*.jsonl` files, and every other regular file whose first line is a
/// `start` event (`log_path=DIR/app` writes `app.PID`, then `app.PID.1`
/// when that is taken; `log_path=DIR/%p` writes `PID`). Files that `run`
/// set aside (`*.untrusted`) are not read.
pub fn read(path: &Path) -> io::Result<LogSet> {
    read_trusting(path, &BTreeSet::new())
}

/// [`read`], also trusting files owned by `uids` in a directory that
/// others may write.
pub fn read_trusting(path: &Path, uids: &BTreeSet<u32>) -> io::Result<LogSet> {
    use std::os::unix::fs::MetadataExt;
    let mut files = Vec::new();
    let mut set = LogSet::default();
    let meta = fs::metadata(path)?;
    let trust = if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            let p = entry.path();
            let jsonl = p.extension().is_some_and(|e| e == "jsonl");
            if p.extension().is_some_and(|e| e == "untrusted") {
                continue;
            }
            if entry.file_type()?.is_file() {
                files.push(File {
                    path: p,
                    sniff: !jsonl,
                });
            } else if jsonl {
                set.warnings.push(format!(
                    "{}: not a regular file (a symbolic link?): ignored",
                    p.display()
                ));
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Some(Trust {
            dir_uid: meta.uid(),
            open_dir: meta.mode() & 0o022 != 0,
            uids,
        })
    } else {
        files.push(File {
            path: path.to_path_buf(),
            sniff: false,
        });
        None
    };
    for file in read_files(&files, trust.as_ref()) {
        set.warnings.extend(file.warnings);
        set.processes.extend(file.process);
        set.untrusted.extend(file.untrusted);
    }
    set.processes.sort_by_key(|p| (p.first_ts, p.pid));
    Ok(set)
}

/// A file of a log set to read.
struct File {
    path: PathBuf,
    /// Read only if it begins like a log (see [`looks_like_a_log`]), and
    /// skipped silently otherwise: a directory entry whose name is not
    /// `*.jsonl` (a directory may hold other files).
    sniff: bool,
}

/// The first bytes of every log file: `{"v":N,"event":"start",` (the
/// writer's fixed prefix of its first line, docs/log-schema.md).
fn looks_like_a_log(head: &[u8]) -> bool {
    let Some(rest) = head.strip_prefix(b"{\"v\":") else {
        return false;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    digits > 0 && rest[digits..].starts_with(b",\"event\":\"start\",")
}

/// How many bytes [`looks_like_a_log`] needs at most (a version of up to
/// 20 digits).
const HEAD_LEN: usize = 48;

/// What one file gave.
struct FileLog {
    process: Option<ProcessLog>,
    warnings: Vec<String>,
    /// The file, when its owner was not trusted.
    untrusted: Option<PathBuf>,
}

/// Files are read by one thread per CPU, at most this many (each holds the
/// file it reads in memory).
const MAX_READERS: usize = 4;

/// Reads and parses `files`, several at a time; the results come in the
/// order of `files`.
fn read_files(files: &[File], trust: Option<&Trust<'_>>) -> Vec<FileLog> {
    let readers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_READERS)
        .min(files.len());
    let next = AtomicUsize::new(0);
    // Each reader takes the next file not taken yet.
    let read = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(file) = files.get(i) else {
                return done;
            };
            done.push((i, read_file(&file.path, file.sniff, trust)));
        }
    };
    let mut done = std::thread::scope(|scope| {
        // This thread is one of the readers; a helper that cannot be
        // started leaves its share to the others.
        let helpers: Vec<_> = (1..readers)
            .filter_map(|_| std::thread::Builder::new().spawn_scoped(scope, read).ok())
            .collect();
        let mut done = read();
        for helper in helpers {
            done.extend(
                helper
                    .join()
                    .unwrap_or_else(|e| std::panic::resume_unwind(e)),
            );
        }
        done
    });
    done.sort_unstable_by_key(|&(i, _)| i);
    done.into_iter().map(|(_, file)| file).collect()
}

/// Reads and parses one file: an entry of a directory as `trust` says,
/// or the one file named (`trust` is `None`); with `sniff`, only if it
/// begins like a log.
fn read_file(file: &Path, sniff: bool, trust: Option<&Trust<'_>>) -> FileLog {
    let mut log = FileLog {
        process: None,
        warnings: Vec::new(),
        untrusted: None,
    };
    let bytes = match open_checked(file, sniff, trust) {
        Ok(Checked::Read(bytes)) => bytes,
        Ok(Checked::NotALog) => return log,
        Ok(Checked::Ignored(why)) => {
            log.warnings
                .push(format!("{}: {why}: ignored", file.display()));
            return log;
        }
        Ok(Checked::Untrusted(uid)) => {
            log.warnings.push(format!(
                "{}: owned by uid {uid}, who is neither the directory's owner, root, nor a user \
                 the tree ran as: ignored (another user may have put it there)",
                file.display()
            ));
            log.untrusted = Some(file.to_path_buf());
            return log;
        }
        // A file of another name that cannot even be opened (another
        // user's, mode 0600) is no log of ours to read, as far as can be
        // known: not worth a warning.
        Err(_) if sniff => return log,
        Err(e) => {
            log.warnings
                .push(format!("{}: cannot read: {e}", file.display()));
            return log;
        }
    };
    log.process = parse_file(file, &bytes, &mut log.warnings);
    log
}

/// What [`open_checked`] found.
enum Checked {
    Read(Vec<u8>),
    /// Asked to sniff, and it does not begin like a log.
    NotALog,
    /// Not a log file as the library makes them: why.
    Ignored(String),
    /// Owned by this uid, whom the directory's [`Trust`] does not trust.
    Untrusted(u32),
}

/// Opens a log file, never following a symbolic link in a directory (an
/// entry swapped for one after the listing fails with ELOOP), never
/// blocking (a FIFO), and checks what was opened, not what was listed.
fn open_checked(file: &Path, sniff: bool, trust: Option<&Trust<'_>>) -> io::Result<Checked> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY;
    if trust.is_some() {
        flags |= libc::O_NOFOLLOW;
    }
    let mut f = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(file)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) && trust.is_some() => {
            return Ok(if sniff {
                Checked::NotALog
            } else {
                Checked::Ignored("a symbolic link".to_owned())
            });
        }
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Ok(if sniff {
            Checked::NotALog
        } else {
            Checked::Ignored("not a regular file".to_owned())
        });
    }
    let mut bytes = Vec::new();
    if sniff {
        // Only the head first: a large file that is no log is not read.
        (&mut f).take(HEAD_LEN as u64).read_to_end(&mut bytes)?;
        if !looks_like_a_log(&bytes) {
            return Ok(Checked::NotALog);
        }
    }
    if let Some(trust) = trust {
        if meta.nlink() != 1 {
            return Ok(Checked::Ignored(format!(
                "{} hard links (a log has one)",
                meta.nlink()
            )));
        }
        if meta.mode() & 0o022 != 0 {
            return Ok(Checked::Ignored(format!(
                "writable by group or others (mode {:04o}): anyone could have written it",
                meta.mode() & 0o7777
            )));
        }
        if !trust.owner_ok(meta.uid()) {
            return Ok(Checked::Untrusted(meta.uid()));
        }
    }
    f.read_to_end(&mut bytes)?;
    Ok(Checked::Read(bytes))
}

/// The pid in a file name `shmguard.PID.jsonl`, or `shmguard.PID.N.jsonl`
/// (the library's next names when `shmguard.PID.jsonl` is taken, see
/// docs/log-schema.md), or `NAME.PID` / `NAME.PID.N`. Only a fallback: the
/// events name their pid.
fn pid_from_name(file: &Path) -> Option<u32> {
    let name = file.file_name()?.to_str()?;
    let name = name.strip_suffix(".jsonl").unwrap_or(name);
    let mut parts = name.rsplit('.');
    let last = parts.next()?;
    match parts.next().map(str::parse::<u32>) {
        // NAME.PID.N: a number before the last number.
        Some(Ok(pid)) if last.bytes().all(|b| b.is_ascii_digit()) => Some(pid),
        _ => last.parse().ok(),
    }
}

/// Parses one file. Returns `None` for a file with no event at all.
pub fn parse_file(file: &Path, bytes: &[u8], warnings: &mut Vec<String>) -> Option<ProcessLog> {
    let mut p = ProcessLog {
        file: file.to_path_buf(),
        pid: pid_from_name(file).unwrap_or(0),
        ..ProcessLog::default()
    };
    let mut attached = HashSet::new();
    let mut events = 0usize;
    let mut newer_schema = None;
    let mut bad = Vec::new();
    let mut bad_lines = 0usize;
    let mut without_nul = Vec::new();
    // A file that is valid UTF-8 is parsed as text, which spares serde_json
    // checking every string of every line again.
    let text = std::str::from_utf8(bytes).ok();
    for (n, Line { range, last, nul }) in lines(bytes).enumerate() {
        let raw = &bytes[range.clone()];
        let parsed: Result<RawEvent<'_>, _> = if nul {
            // NUL bytes are unused, preallocated space (or a write cut short).
            without_nul.clear();
            without_nul.extend(raw.iter().copied().filter(|&b| b != 0));
            if without_nul.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            serde_json::from_slice(&without_nul)
        } else if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        } else if let Some(text) = text {
            serde_json::from_str(&text[range])
        } else {
            serde_json::from_slice(raw)
        };
        let event = match parsed {
            Ok(e) => e,
            Err(e) => {
                bad_lines += 1;
                if bad.len() < MAX_LINE_WARNINGS {
                    // A last line without its newline is a write cut short.
                    bad.push(format!(
                        "{}: line {}: {} (skipped)",
                        file.display(),
                        n + 1,
                        if last {
                            "incomplete last line".to_owned()
                        } else {
                            // serde_json quotes the bad value: keep it short.
                            format!("not a log event: {}", clip(&e.to_string(), 160))
                        }
                    ));
                }
                continue;
            }
        };
        events += 1;
        if let Some(v) = event.v.filter(|&v| v > SCHEMA_VERSION) {
            newer_schema = Some(v);
        }
        apply(&mut p, &mut attached, event);
    }
    warnings.extend(bad);
    if bad_lines > MAX_LINE_WARNINGS {
        warnings.push(format!(
            "{}: {} more lines that are not log events (skipped)",
            file.display(),
            bad_lines - MAX_LINE_WARNINGS
        ));
    }
    if let Some(v) = newer_schema {
        warnings.push(format!(
            "{}: schema version {v} is newer than this reader's ({SCHEMA_VERSION}); reading the fields it knows",
            file.display()
        ));
    }
    (events > 0).then_some(p)
}

/// Warnings about unreadable lines, per file, before the rest are only
/// counted.
const MAX_LINE_WARNINGS: usize = 20;

/// `text` cut to at most `max` bytes (at a character boundary), with "..."
/// when cut.
fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// A line of a file.
struct Line {
    /// Where it is in the file, without its newline.
    range: Range<usize>,
    /// Whether it is what follows the last newline (a line without one).
    last: bool,
    /// Whether it holds a NUL byte.
    nul: bool,
}

/// The lines of a file: what lies between newlines, and what follows the
/// last one (empty when the file ends with a newline).
fn lines(bytes: &[u8]) -> impl Iterator<Item = Line> + '_ {
    let mut next = Some(0);
    std::iter::from_fn(move || {
        let start = next?;
        let rest = &bytes[start..];
        let (len, last) = match crate::os::memchr(b'\n', rest) {
            Some(len) => (len, false),
            None => (rest.len(), true),
        };
        next = (!last).then_some(start + len + 1);
        Some(Line {
            range: start..start + len,
            last,
            nul: crate::os::memchr(0, &rest[..len]).is_some(),
        })
    })
}

fn owned(text: Option<Text<'_>>) -> Option<String> {
    text.map(|t| t.0.into_owned())
}

/// Adds one event to what is known of its process. `attached` holds the
/// addresses the process has attached so far.
fn apply(p: &mut ProcessLog, attached: &mut HashSet<u64>, e: RawEvent<'_>) {
    p.pid = e.pid;
    if let Some(ppid) = e.ppid {
        p.ppid = ppid;
    }
    let ts_ns = e.ts_ns.unwrap_or(0);
    if p.first_ts == 0 || ts_ns < p.first_ts {
        p.first_ts = ts_ns;
    }
    match &*e.event.0 {
        "start" => {
            // A second start (exec in the same process) describes what the
            // process became.
            p.started = true;
            if let Some(argv) = e.argv {
                p.argv = argv;
            }
            p.exe = e.exe.or(p.exe.take());
            p.uid = e.uid.or(p.uid);
            p.euid = e.euid.or(p.euid);
            p.ipc_ns = e.ipc_ns.or(p.ipc_ns);
            p.forked = e.forked.unwrap_or(p.forked);
        }
        "call" => {
            let s = &mut p.calls;
            s.count += 1;
            let name = e.call.as_ref().map_or("", |c| &c.0);
            if let Some(errno) = &e.errno {
                s.failed += 1;
                let by_call = match s.failures.get_mut(&*errno.0) {
                    Some(m) => m,
                    None => s.failures.entry(errno.0.clone().into_owned()).or_default(),
                };
                match by_call.get_mut(name) {
                    Some(n) => *n += 1,
                    None => {
                        by_call.insert(name.to_owned(), 1);
                    }
                }
                return;
            }
            let args = e.args.as_ref().unwrap_or(&NO_ARGS);
            let ret = e.ret.as_ref().unwrap_or(&Scalar::Other);
            match name {
                "shmget" if e.created.unwrap_or(false) => {
                    s.segments_created += 1;
                    // A shmid is an int: any other number is no segment.
                    if let Some(shmid) = ret.as_i64().and_then(|r| i32::try_from(r).ok()) {
                        s.created.push(Created {
                            shmid,
                            ts_ns,
                            key: args.key.as_deref().unwrap_or("0x00000000").to_owned(),
                            size: args.size.and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                            mode: args.shmflg.as_deref().and_then(mode_in_flags),
                        });
                    }
                }
                "shmctl" if args.cmd.as_deref() == Some("IPC_RMID") => {
                    s.segments_removed += 1;
                    if let Some(shmid) = args.shmid.and_then(|id| i32::try_from(id).ok()) {
                        s.removals.push((shmid, ts_ns));
                    }
                }
                "shmat" => {
                    if let Some(addr) = ret.as_str().and_then(parse_addr) {
                        attached.insert(addr);
                        s.peak_attachments = s.peak_attachments.max(attached.len() as u64);
                    }
                }
                "shmdt" => {
                    if let Some(addr) = args.shmaddr.as_deref().and_then(parse_addr) {
                        attached.remove(&addr);
                    }
                }
                _ => {}
            }
        }
        "finding" => p.findings.push(Finding {
            ts_ns,
            rule: owned(e.rule).unwrap_or_default(),
            call: owned(e.call).unwrap_or_default(),
            refused: e.refused.unwrap_or(false),
            detail: owned(e.detail).unwrap_or_default(),
            key: owned(e.key),
            stack: e.stack.unwrap_or_default(),
            suppressed: e.suppressed.unwrap_or(false),
        }),
        "exit" => {
            p.exit = Some(Exit {
                leaks: e.leaks.unwrap_or_default(),
                notes: e.notes.unwrap_or_default(),
                truncated: e
                    .truncated
                    .unwrap_or(false)
                    .then_some(e.leak_count.unwrap_or(0)),
            })
        }
        // An event kind from a later schema: ignored.
        _ => {}
    }
}

/// Parses an address string (`"0x7f12a4c00000"`).
pub fn parse_addr(s: &str) -> Option<u64> {
    u64::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16).ok()
}

/// The permission bits in a flags string such as `"IPC_CREAT|IPC_EXCL|0600"`.
pub fn mode_in_flags(flags: &str) -> Option<u32> {
    flags
        .split('|')
        .filter(|t| t.starts_with('0'))
        .find_map(|t| u32::from_str_radix(t, 8).ok())
        .map(|m| m & 0o777)
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &str = r#"{"v":1,"event":"start","pid":4242,"ppid":4241,"tid":4242,"ts_ns":1,"argv":["./server","-p","80"],"exe":"/srv/server","uid":1000,"euid":1000,"ipc_ns":4026531839,"forked":false,"future":{"x":1}}"#;

    #[test]
    fn reads_a_file_cut_short_by_sigkill() {
        let mut text = String::from(START);
        text.push('\n');
        text.push_str(r#"{"v":1,"event":"call","pid":4242,"ppid":4241,"tid":4242,"ts_ns":2,"call":"shmget","args":{"key":"0x00000000","size":4096,"shmflg":"IPC_CREAT|0600"},"ret":32769,"errno":null,"created":true}"#);
        text.push('\n');
        text.push_str(r#"{"v":1,"event":"call","pid":42"#);
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(&[0; 300]);
        let mut warnings = Vec::new();
        let p = parse_file(Path::new("/x/shmguard.4242.jsonl"), &bytes, &mut warnings).unwrap();
        assert_eq!(p.pid, 4242);
        assert_eq!(p.argv, ["./server", "-p", "80"]);
        assert_eq!(p.command(), "./server -p 80");
        assert_eq!(p.argv_or_exe(), ["./server", "-p", "80"]);
        assert_eq!(p.ipc_ns, Some(4026531839));
        assert_eq!(p.calls.count, 1);
        assert_eq!(p.calls.segments_created, 1);
        assert_eq!(p.calls.created[0].shmid, 32769);
        assert!(p.exit.is_none());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("incomplete last line"));
    }

    #[test]
    fn numbers_out_of_range_are_no_segment() {
        let call = |ret: &str, args: &str| {
            format!(
                r#"{{"v":1,"event":"call","pid":4242,"ppid":4241,"tid":4242,"ts_ns":2,"call":"{}","args":{args},"ret":{ret},"errno":null,"created":true}}"#,
                if args.contains("IPC_RMID") {
                    "shmctl"
                } else {
                    "shmget"
                }
            )
        };
        let text = [
            START.to_owned(),
            call(
                "2147483648",
                r#"{"key":"0x00000000","size":-5,"shmflg":"0600"}"#,
            ),
            call(
                "-2147483649",
                r#"{"key":"0x00000000","size":1,"shmflg":"0600"}"#,
            ),
            call("5", r#"{"key":"0x00000000","size":-5,"shmflg":"0600"}"#),
            call("0", r#"{"shmid":4294967301,"cmd":"IPC_RMID","buf":null}"#),
        ]
        .join("\n");
        let mut w = Vec::new();
        let p = parse_file(Path::new("d.jsonl"), text.as_bytes(), &mut w).unwrap();
        assert_eq!(p.calls.count, 4);
        assert_eq!(p.calls.created.len(), 1, "{:?}", p.calls.created);
        assert_eq!((p.calls.created[0].shmid, p.calls.created[0].size), (5, 0));
        assert!(p.calls.removals.is_empty(), "{:?}", p.calls.removals);
    }

    #[test]
    fn nul_padding_alone_is_not_a_warning() {
        let mut bytes = format!("{START}\n").into_bytes();
        bytes.extend_from_slice(&[0; 4096]);
        let mut warnings = Vec::new();
        assert!(parse_file(Path::new("a.jsonl"), &bytes, &mut warnings).is_some());
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(parse_file(Path::new("b.jsonl"), &[0; 100], &mut warnings).is_none());
    }

    #[test]
    fn exit_event_and_findings() {
        let text = format!(
            "{START}\n{}\n{}\n",
            r#"{"v":1,"event":"finding","pid":4242,"ppid":4241,"tid":4242,"ts_ns":3,"rule":"wide-mode","call":"shmget","refused":false,"detail":"mode 0666"}"#,
            r#"{"v":1,"event":"exit","pid":4242,"ppid":4241,"tid":4242,"ts_ns":4,"leaks":[{"kind":"attachment","shmid":7,"addr":"0x7f0000000000","size":4096,"readonly":false}],"notes":[{"kind":"segment","shmid":8,"key":"0x00000001","size":10,"mode":"0600","others":2}]}"#
        );
        let mut w = Vec::new();
        let p = parse_file(Path::new("c.jsonl"), text.as_bytes(), &mut w).unwrap();
        assert_eq!(p.findings[0].rule, "wide-mode");
        let exit = p.exit.unwrap();
        assert_eq!(exit.leaks[0].shmid, 7);
        assert_eq!(exit.notes[0].others, Some(2));
    }

    #[test]
    fn lines_are_split_like_the_file() {
        let split = |bytes: &'static [u8]| -> Vec<(&'static [u8], bool, bool)> {
            lines(bytes)
                .map(|l| (&bytes[l.range], l.last, l.nul))
                .collect()
        };
        assert_eq!(
            split(b"a\n\nb\0c\n\0\0"),
            [
                (&b"a"[..], false, false),
                (b"", false, false),
                (b"b\0c", false, true),
                (b"\0\0", true, true),
            ]
        );
        assert_eq!(
            split(b"x\n"),
            [(&b"x"[..], false, false), (b"", true, false)]
        );
        assert_eq!(split(b""), [(&b""[..], true, false)]);
    }

    /// The library's names for one pid's files when the first is taken
    /// (two processes that are both pid 1 in different PID namespaces):
    /// both are read, each as its own process.
    #[test]
    fn reads_the_numbered_names_of_one_pid() {
        let dir = std::env::temp_dir().join(format!("shmguard-names-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap();
        let start = |ts: u32| {
            format!(
                "{{\"v\":1,\"event\":\"start\",\"pid\":1,\"ppid\":0,\"tid\":1,\"ts_ns\":{ts},\"argv\":[\"p{ts}\"]}}\n"
            )
        };
        fs::write(dir.join("shmguard.1.jsonl"), start(1)).unwrap();
        fs::write(dir.join("shmguard.1.1.jsonl"), start(2)).unwrap();
        fs::write(dir.join("shmguard.1.2.jsonl"), start(3)).unwrap();
        let set = read(&dir);
        fs::remove_dir_all(&dir).unwrap();
        let set = set.unwrap();
        let argv: Vec<_> = set.processes.iter().map(|p| (p.pid, p.command())).collect();
        assert_eq!(
            argv,
            [
                (1, "p1".to_owned()),
                (1, "p2".to_owned()),
                (1, "p3".to_owned())
            ]
        );
        assert!(set.warnings.is_empty(), "{:?}", set.warnings);
    }

    #[test]
    fn a_log_is_known_by_its_first_bytes() {
        let start = br#"{"v":1,"event":"start","pid":7,"ppid":1}"#;
        assert!(looks_like_a_log(start));
        assert!(looks_like_a_log(br#"{"v":12,"event":"start","#));
        assert!(HEAD_LEN >= br#"{"v":18446744073709551615,"event":"start","#.len());
        for not in [
            &br#"{"v":1,"event":"call","pid":7}"#[..],
            br#"{"v":,"event":"start","#,
            br#"{"event":"start","v":1}"#,
            br#"{"v":1,"event":"start""#,
            b"taken\n",
            b"",
        ] {
            assert!(!looks_like_a_log(not), "{}", String::from_utf8_lossy(not));
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(parse_addr("0x7f12a4c00000"), Some(0x7f12a4c00000));
        assert_eq!(mode_in_flags("IPC_CREAT|IPC_EXCL|0640"), Some(0o640));
        assert_eq!(mode_in_flags("0"), Some(0));
        assert_eq!(mode_in_flags("IPC_CREAT"), None);
        assert_eq!(pid_from_name(Path::new("/d/shmguard.99.jsonl")), Some(99));
        assert_eq!(pid_from_name(Path::new("/d/shmguard.99.1.jsonl")), Some(99));
        assert_eq!(pid_from_name(Path::new("/d/shmguard.1.12.jsonl")), Some(1));
        assert_eq!(pid_from_name(Path::new("/d/99.jsonl")), Some(99));
        assert_eq!(pid_from_name(Path::new("/d/99.3.jsonl")), Some(99));
        assert_eq!(pid_from_name(Path::new("/d/log.7")), Some(7));
        assert_eq!(pid_from_name(Path::new("/d/log.7.2")), Some(7));
    }

    #[test]
    fn commands_stay_on_one_line() {
        let p = ProcessLog {
            argv: vec!["./a".to_owned(), "x\ny".to_owned(), "\u{1b}[31m".to_owned()],
            ..ProcessLog::default()
        };
        assert_eq!(p.command(), "./a 'x\\ny' '\\u{1b}[31m'");
        let p = ProcessLog {
            exe: Some("/bin/\tx".to_owned()),
            ..ProcessLog::default()
        };
        assert_eq!(p.command(), "'/bin/\\tx'");
        assert_eq!(printable("plain é"), "plain é");
        let sh = ["sh", "-c", "kill -9 $$"].map(String::from);
        assert_eq!(shell_line(&sh), "sh -c 'kill -9 $$'");
        assert_eq!(shell_line(&[]), "?");
    }

    #[test]
    fn bad_lines_give_few_short_warnings() {
        let long = "x".repeat(100_000);
        let mut text = format!("{START}\n");
        for _ in 0..25 {
            text.push_str(&format!(
                "{{\"v\":1,\"event\":\"call\",\"call\":{{\"no\":\"{long}\"}}}}\n"
            ));
        }
        let mut w = Vec::new();
        assert!(parse_file(Path::new("e.jsonl"), text.as_bytes(), &mut w).is_some());
        assert_eq!(w.len(), MAX_LINE_WARNINGS + 1, "{w:?}");
        assert!(w.iter().all(|l| l.len() < 300), "{w:?}");
        assert!(
            w[0].starts_with("e.jsonl: line 2: not a log event: "),
            "{}",
            w[0]
        );
        assert_eq!(
            w[MAX_LINE_WARNINGS],
            "e.jsonl: 5 more lines that are not log events (skipped)"
        );
        assert_eq!(clip("héllo", 2), "h...");
    }
}
