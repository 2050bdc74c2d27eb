//! Reading the audit logs (docs/log-schema.md): one JSON Lines file per
//! process. Readers skip NUL bytes (a file cut short by SIGKILL ends in
//! preallocated, unused space) and blank lines, ignore fields they do not
//! know, and keep going past a line that does not parse (with a warning).
#![forbid(unsafe_code)]

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

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
}

/// Every field any event may carry; unknown ones are ignored.
#[derive(Debug, Deserialize)]
struct RawEvent {
    #[serde(default)]
    v: Option<u64>,
    event: String,
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
    #[serde(default)]
    call: Option<String>,
    #[serde(default)]
    args: Option<Value>,
    #[serde(default)]
    ret: Option<Value>,
    #[serde(default)]
    errno: Option<String>,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    created: Option<bool>,
    #[serde(default)]
    rule: Option<String>,
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
}

/// One shm call as logged.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub ts_ns: u64,
    pub name: String,
    pub args: Value,
    pub ret: Value,
    /// The errno name on failure; `None` on success.
    pub errno: Option<String>,
    pub detail: Option<String>,
    /// `shmget` only: this call created the segment.
    pub created: bool,
}

impl Call {
    /// A numeric argument.
    pub fn arg_i64(&self, name: &str) -> Option<i64> {
        self.args.get(name)?.as_i64()
    }

    /// A string argument (flags, keys, addresses, commands).
    pub fn arg_str(&self, name: &str) -> Option<&str> {
        self.args.get(name)?.as_str()
    }

    /// The return value as a number (every call but `shmat`).
    pub fn ret_i64(&self) -> Option<i64> {
        self.ret.as_i64()
    }

    /// The return value as a string (`shmat`'s address).
    pub fn ret_str(&self) -> Option<&str> {
        self.ret.as_str()
    }

    /// `shmctl`'s command name (`"IPC_RMID"`), or the number as text.
    pub fn cmd(&self) -> Option<String> {
        match self.args.get("cmd")? {
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }
}

/// A policy finding.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub ts_ns: u64,
    pub rule: String,
    pub call: String,
    pub refused: bool,
    pub detail: String,
}

/// The `exit` event.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exit {
    pub leaks: Vec<ExitItem>,
    pub notes: Vec<ExitItem>,
    /// The writer ran out of room and listed only this many leaks' count.
    pub truncated: Option<u64>,
}

/// Everything one log file says about one process.
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
    pub calls: Vec<Call>,
    pub findings: Vec<Finding>,
    pub exit: Option<Exit>,
}

impl ProcessLog {
    /// The command line for people: argv joined by spaces, or the exe.
    pub fn command(&self) -> String {
        if self.argv.is_empty() {
            self.exe.clone().unwrap_or_else(|| "?".to_owned())
        } else {
            self.argv.join(" ")
        }
    }
}

/// The logs of a directory (or a single file) and what could not be read.
#[derive(Debug, Default)]
pub struct LogSet {
    pub processes: Vec<ProcessLog>,
    pub warnings: Vec<String>,
}

/// Reads every `*.jsonl` file of `path` (a directory), or `path` itself
/// when it is a file.
pub fn read(path: &Path) -> io::Result<LogSet> {
    let mut files = Vec::new();
    if fs::metadata(path)?.is_dir() {
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "jsonl") && entry.file_type()?.is_file() {
                files.push(p);
            }
        }
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut set = LogSet::default();
    for file in files {
        match fs::read(&file) {
            Ok(bytes) => {
                if let Some(p) = parse_file(&file, &bytes, &mut set.warnings) {
                    set.processes.push(p);
                }
            }
            Err(e) => set
                .warnings
                .push(format!("{}: cannot read: {e}", file.display())),
        }
    }
    set.processes.sort_by_key(|p| (p.first_ts, p.pid));
    Ok(set)
}

/// The pid in a file name `shmguard.PID.jsonl` (or `NAME.PID`).
fn pid_from_name(file: &Path) -> Option<u32> {
    let name = file.file_name()?.to_str()?;
    let name = name.strip_suffix(".jsonl").unwrap_or(name);
    name.rsplit('.').next()?.parse().ok()
}

/// Parses one file. Returns `None` for a file with no event at all.
pub fn parse_file(file: &Path, bytes: &[u8], warnings: &mut Vec<String>) -> Option<ProcessLog> {
    let mut p = ProcessLog {
        file: file.to_path_buf(),
        pid: pid_from_name(file).unwrap_or(0),
        ..ProcessLog::default()
    };
    let mut events = 0usize;
    let mut newer_schema = None;
    let mut bad = Vec::new();
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    let last = lines.len().saturating_sub(1);
    for (n, raw) in lines.iter().enumerate() {
        // NUL bytes are unused, preallocated space (or a write cut short).
        let line: Vec<u8> = raw.iter().copied().filter(|&b| b != 0).collect();
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let event: RawEvent = match serde_json::from_slice(&line) {
            Ok(e) => e,
            Err(e) => {
                // A last line without its newline is a write cut short.
                let cut = n == last;
                bad.push(format!(
                    "{}: line {}: {} (skipped)",
                    file.display(),
                    n + 1,
                    if cut {
                        "incomplete last line".to_owned()
                    } else {
                        format!("not a log event: {e}")
                    }
                ));
                continue;
            }
        };
        events += 1;
        if let Some(v) = event.v.filter(|&v| v > SCHEMA_VERSION) {
            newer_schema = Some(v);
        }
        apply(&mut p, event);
    }
    warnings.extend(bad);
    if let Some(v) = newer_schema {
        warnings.push(format!(
            "{}: schema version {v} is newer than this reader's ({SCHEMA_VERSION}); reading the fields it knows",
            file.display()
        ));
    }
    (events > 0).then_some(p)
}

fn apply(p: &mut ProcessLog, e: RawEvent) {
    p.pid = e.pid;
    if let Some(ppid) = e.ppid {
        p.ppid = ppid;
    }
    let ts_ns = e.ts_ns.unwrap_or(0);
    if p.first_ts == 0 || ts_ns < p.first_ts {
        p.first_ts = ts_ns;
    }
    match e.event.as_str() {
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
        "call" => p.calls.push(Call {
            ts_ns,
            name: e.call.unwrap_or_default(),
            args: e.args.unwrap_or(Value::Null),
            ret: e.ret.unwrap_or(Value::Null),
            errno: e.errno,
            detail: e.detail,
            created: e.created.unwrap_or(false),
        }),
        "finding" => p.findings.push(Finding {
            ts_ns,
            rule: e.rule.unwrap_or_default(),
            call: e.call.unwrap_or_default(),
            refused: e.refused.unwrap_or(false),
            detail: e.detail.unwrap_or_default(),
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
        assert_eq!(p.ipc_ns, Some(4026531839));
        assert_eq!(p.calls.len(), 1);
        assert!(p.calls[0].created);
        assert_eq!(p.calls[0].ret_i64(), Some(32769));
        assert!(p.exit.is_none());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("incomplete last line"));
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
    fn helpers() {
        assert_eq!(parse_addr("0x7f12a4c00000"), Some(0x7f12a4c00000));
        assert_eq!(mode_in_flags("IPC_CREAT|IPC_EXCL|0640"), Some(0o640));
        assert_eq!(mode_in_flags("0"), Some(0));
        assert_eq!(mode_in_flags("IPC_CREAT"), None);
        assert_eq!(pid_from_name(Path::new("/d/shmguard.99.jsonl")), Some(99));
    }
}
