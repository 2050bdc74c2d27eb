//! The report of a process tree: what it leaked, which calls failed, what
//! the policy found, and a row per process. Built from the audit logs and,
//! for `run`, from the kernel's segment table before and after the tree.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;

use serde::Serialize;

use crate::kernel::{self, SHM_DEST, SegmentRow};
use crate::logs::{self, LogSet, ProcessLog};

/// A process `run` reaped, as it was when reaped.
#[derive(Clone, Debug)]
pub struct Reaped {
    /// /proc/PID/comm of the zombie.
    pub comm: Option<String>,
    /// Its raw wait status.
    pub status: i32,
}

/// What `run` knows beyond the logs.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    pub before: Vec<SegmentRow>,
    pub after: Vec<SegmentRow>,
    /// Every process shmguard reaped: the command and every descendant
    /// reparented to it.
    pub reaped: BTreeMap<u32, Reaped>,
    /// Pids allocated during the run: (last pid before, last pid after,
    /// pid_max); `None` when unknown.
    pub pid_window: Option<(u32, u32, u32)>,
    /// Our IPC namespace (the inode of /proc/self/ns/ipc).
    pub ipc_ns: Option<u64>,
    /// The user ids the tree started with (run's uid and euid).
    pub uids: BTreeSet<u32>,
}

impl Tree {
    /// Whether `pid` was allocated after the run began (pids are handed out
    /// in increasing order, wrapping at pid_max).
    fn allocated_during_run(&self, pid: u32) -> bool {
        match self.pid_window {
            None => true,
            Some((before, after, max)) if before <= after => pid > before && pid <= after.min(max),
            Some((before, after, _)) => pid > before || pid <= after,
        }
    }
}

/// The kernel's side of a report.
pub enum KernelView<'a> {
    /// `report`: the segment table now, for a hint per leak, and the IPC
    /// namespace it belongs to.
    Now(&'a [SegmentRow], Option<u64>),
    /// `run`: the table before and after the tree, and the tree's pids.
    Run(&'a Tree),
}

#[derive(Clone, Debug, Serialize)]
pub struct ProcessRow {
    pub pid: u32,
    pub ppid: u32,
    pub command: String,
    pub calls: u64,
    pub failures: u64,
    pub segments_created: u64,
    pub segments_removed: u64,
    pub peak_attachments: u64,
    /// Whether the log ends with an `exit` event (a normal exit).
    pub exit_event: bool,
    /// How it ended, when `run` reaped it: `exit 0`, `SIGKILL`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    pub forked: bool,
    pub log: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct SegmentLeak {
    pub shmid: i32,
    pub key: String,
    pub size: u64,
    pub mode: String,
    /// The creator's pid.
    pub cpid: u32,
    pub command: Option<String>,
    /// `log`: the logs record its creation; `kernel`: found by comparing
    /// the kernel's table before and after (the creator was not preloaded).
    pub source: &'static str,
    /// Why it is attributed to the tree and why it is a leak.
    pub why: String,
    /// Whether it is in the kernel (after the tree for `run`, now for
    /// `report`), unmarked, with the same creator.
    pub in_kernel: bool,
    /// Processes attached to it (when in the kernel).
    pub nattch: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AttachmentLeak {
    pub pid: u32,
    pub command: String,
    pub shmid: i32,
    pub addr: String,
    pub size: Option<u64>,
    pub readonly: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct ErrnoCount {
    pub errno: String,
    pub count: u64,
    /// Failures of this errno by call name.
    pub calls: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FindingRow {
    pub pid: u32,
    pub command: String,
    pub rule: String,
    pub call: String,
    pub refused: bool,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct UnloggedProcess {
    pub pid: u32,
    pub command: Option<String>,
    pub status: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub leaks: u64,
    pub leaked_segments: u64,
    pub leaked_segment_bytes: u64,
    pub leaked_attachments: u64,
    pub notes: u64,
    pub failed_calls: u64,
    pub findings: u64,
    pub processes_logged: u64,
    /// With suppressions (`--suppressions`, or marks in the logs): the
    /// leaks, notes and findings they took out of the report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed_leaks: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed_notes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed_findings: Option<u64>,
}

/// What suppressions took out of the report, as the report would have
/// shown it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SuppressedItems {
    pub leaked_segments: Vec<SegmentLeak>,
    pub leaked_attachments: Vec<AttachmentLeak>,
    pub notes: Vec<SegmentLeak>,
    pub findings: Vec<FindingRow>,
}

/// How `run`'s command ended, and what it ran.
#[derive(Clone, Debug, Serialize)]
pub struct RunInfo {
    pub command: Vec<String>,
    pub lib: String,
    /// `exit N` or the signal's name.
    pub status: String,
    /// The exit code, when it exited.
    pub exit_code: Option<i32>,
    /// The signal number, when a signal killed it.
    pub signal: Option<i32>,
    /// What `run` exits with.
    pub exit_status: i32,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<RunInfo>,
    /// Where the logs are; `None` when `run` kept none (nothing was
    /// logged, so it removed the directory it had made).
    pub log_dir: Option<String>,
    pub processes: Vec<ProcessRow>,
    pub leaked_segments: Vec<SegmentLeak>,
    pub leaked_attachments: Vec<AttachmentLeak>,
    /// Segments the tree created and never marked that processes outside
    /// the tree still attach: not leaks yet.
    pub notes: Vec<SegmentLeak>,
    pub failures: Vec<ErrnoCount>,
    pub findings: Vec<FindingRow>,
    /// `run`: processes of the tree that left no log (they made no shm
    /// call, or could not be preloaded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unlogged: Option<Vec<UnloggedProcess>>,
    pub warnings: Vec<String>,
    /// With suppressions: the items they took out of the report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<SuppressedItems>,
    pub summary: Summary,
}

impl Report {
    /// Whether the tree leaked a segment or an attachment.
    pub fn leaked(&self) -> bool {
        self.summary.leaks > 0
    }

    /// Whether the policy found something (not suppressed).
    pub fn found(&self) -> bool {
        self.summary.findings > 0
    }
}

/// A wait status in words: `exit 7`, `SIGKILL`.
pub fn status_text(status: i32) -> String {
    use std::os::unix::process::ExitStatusExt;
    let s = std::process::ExitStatus::from_raw(status);
    match (s.code(), s.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(sig)) => {
            let core = if s.core_dumped() {
                " (core dumped)"
            } else {
                ""
            };
            format!("{}{core}", crate::os::signal_name(sig))
        }
        _ => format!("status {status:#x}"),
    }
}

/// A segment the logs say a process created.
struct Created<'a> {
    segment: &'a logs::Created,
    creator: &'a ProcessLog,
    /// The creator's index in the log set.
    index: usize,
}

/// Builds the report. `alive(cpid, ctime)` tells whether a segment's creator
/// still lives (see [`kernel::Clock::creator_alive`]).
pub fn analyze(
    logs: &LogSet,
    log_dir: &str,
    view: KernelView<'_>,
    alive: &dyn Fn(u32, i64) -> bool,
) -> Report {
    let tree = match view {
        KernelView::Run(t) => Some(t),
        KernelView::Now(..) => None,
    };
    let mut warnings = logs.warnings.clone();
    let by_pid: HashMap<u32, &ProcessLog> = logs.processes.iter().map(|p| (p.pid, p)).collect();
    let command_of = |pid: u32| -> Option<String> {
        by_pid.get(&pid).map(|p| p.command()).or_else(|| {
            tree.and_then(|t| t.reaped.get(&pid))
                .and_then(|r| r.comm.clone())
        })
    };

    // Every row of the table, and what the calls did.
    let mut processes = Vec::new();
    let mut created: Vec<Created<'_>> = Vec::new();
    // The time of the last IPC_RMID of each shmid.
    let mut last_removal: HashMap<i32, u64> = HashMap::new();
    let mut failures: BTreeMap<String, ErrnoCount> = BTreeMap::new();
    let mut findings = Vec::new();
    let mut leaked_attachments = Vec::new();
    for (index, p) in logs.processes.iter().enumerate() {
        let row = ProcessRow {
            pid: p.pid,
            ppid: p.ppid,
            command: p.command(),
            calls: p.calls.count,
            failures: p.calls.failed,
            segments_created: p.calls.segments_created,
            segments_removed: p.calls.segments_removed,
            peak_attachments: p.calls.peak_attachments,
            exit_event: p.exit.is_some(),
            status: tree
                .and_then(|t| t.reaped.get(&p.pid))
                .map(|r| status_text(r.status)),
            forked: p.forked,
            log: p.file.display().to_string(),
        };
        for (errno, by_call) in &p.calls.failures {
            let e = failures.entry(errno.clone()).or_insert_with(|| ErrnoCount {
                errno: errno.clone(),
                count: 0,
                calls: BTreeMap::new(),
            });
            for (call, &n) in by_call {
                e.count += n;
                *e.calls.entry(call.clone()).or_default() += n;
            }
        }
        created.extend(p.calls.created.iter().map(|segment| Created {
            segment,
            creator: p,
            index,
        }));
        for &(shmid, ts) in &p.calls.removals {
            let last = last_removal.entry(shmid).or_insert(ts);
            *last = (*last).max(ts);
        }
        for f in &p.findings {
            findings.push(FindingRow {
                pid: p.pid,
                command: p.command(),
                rule: f.rule.clone(),
                call: f.call.clone(),
                refused: f.refused,
                detail: f.detail.clone(),
            });
        }
        if let Some(exit) = &p.exit {
            for item in exit.leaks.iter().filter(|i| i.kind == "attachment") {
                leaked_attachments.push(AttachmentLeak {
                    pid: p.pid,
                    command: p.command(),
                    shmid: item.shmid,
                    addr: item.addr.clone().unwrap_or_default(),
                    size: item.size,
                    readonly: item.readonly.unwrap_or(false),
                });
            }
            if let Some(n) = exit.truncated {
                warnings.push(format!(
                    "pid {}: its exit event counts {n} leak(s) but lists none (too many for one event)",
                    p.pid
                ));
            }
        }
        if tree.is_some_and(|t| t.ipc_ns.is_some() && p.ipc_ns.is_some() && p.ipc_ns != t.ipc_ns) {
            warnings.push(format!(
                "pid {} ({}) ran in another IPC namespace: its segments were not checked against the kernel",
                p.pid,
                p.command()
            ));
        }
        processes.push(row);
    }

    let mut leaked_segments = Vec::new();
    let mut notes = Vec::new();
    match view {
        KernelView::Now(rows, ipc_ns) => {
            let rows = first_rows(rows.iter());
            // The segments each creator's exit event lists, by its index.
            let mut listed: HashMap<usize, HashSet<i32>> = HashMap::new();
            for c in &created {
                let s = c.segment;
                // Marked with IPC_RMID (by anyone) at or after its creation.
                if last_removal.get(&s.shmid).is_some_and(|&ts| ts >= s.ts_ns) {
                    continue;
                }
                // The creator's exit check verifies against the kernel: a
                // created segment it does not list was removed (by someone
                // the logs do not show) before it exited.
                if let Some(exit) = &c.creator.exit {
                    let listed = listed
                        .entry(c.index)
                        .or_insert_with(|| {
                            exit.leaks
                                .iter()
                                .chain(&exit.notes)
                                .filter(|i| i.kind == "segment")
                                .map(|i| i.shmid)
                                .collect()
                        })
                        .contains(&s.shmid);
                    if exit.truncated.is_none() && !listed {
                        continue;
                    }
                }
                let elsewhere =
                    ipc_ns.is_some() && c.creator.ipc_ns.is_some() && c.creator.ipc_ns != ipc_ns;
                let row = if elsewhere {
                    None
                } else {
                    rows.get(&(s.shmid, c.creator.pid)).copied()
                };
                let in_kernel = row.is_some_and(|r| r.mode & SHM_DEST == 0);
                let now = match row {
                    Some(r) if r.mode & SHM_DEST != 0 => {
                        "marked for removal now (by a process the logs do not show)".to_owned()
                    }
                    Some(r) if r.nattch == 0 => "still in the kernel now, unattached".to_owned(),
                    Some(r) => format!(
                        "still in the kernel now, attached by {} process(es)",
                        r.nattch
                    ),
                    None if elsewhere => {
                        "it belongs to another IPC namespace (not checked)".to_owned()
                    }
                    None => "no longer in the kernel now".to_owned(),
                };
                leaked_segments.push(SegmentLeak {
                    shmid: s.shmid,
                    key: s.key.clone(),
                    size: row.map_or(s.size, |r| r.size),
                    mode: kernel::mode_octal(row.map_or(s.mode.unwrap_or(0), |r| r.mode)),
                    cpid: c.creator.pid,
                    command: Some(c.creator.command()),
                    source: "log",
                    why: format!("created and never marked with IPC_RMID in the logs; {now}"),
                    in_kernel,
                    nattch: row.map(|r| r.nattch),
                });
            }
        }
        KernelView::Run(t) => {
            let before: BTreeSet<(i32, u32)> = t.before.iter().map(|r| (r.shmid, r.cpid)).collect();
            let new_rows: Vec<&SegmentRow> = t
                .after
                .iter()
                .filter(|r| !before.contains(&(r.shmid, r.cpid)) && r.mode & SHM_DEST == 0)
                .collect();
            let new_by_id = first_rows(new_rows.iter().copied());
            // Who the tree's processes were: unseen creators must have
            // been one of them (another user's leftovers are not ours).
            let tree_uids: BTreeSet<u32> = t
                .uids
                .iter()
                .copied()
                .chain(
                    logs.processes
                        .iter()
                        .flat_map(|p| p.uid.into_iter().chain(p.euid)),
                )
                .collect();
            let mut seen = BTreeSet::new();
            let mut push = |leak: SegmentLeak, nattch: u64| {
                if nattch == 0 {
                    leaked_segments.push(leak);
                } else {
                    notes.push(leak);
                }
            };
            for c in &created {
                if t.ipc_ns.is_some() && c.creator.ipc_ns.is_some() && c.creator.ipc_ns != t.ipc_ns
                {
                    continue;
                }
                let Some(&row) = new_by_id.get(&(c.segment.shmid, c.creator.pid)) else {
                    continue;
                };
                if !seen.insert(row.shmid) {
                    continue;
                }
                let why = if row.nattch == 0 {
                    "still in the kernel after the tree exited, never marked with IPC_RMID"
                        .to_owned()
                } else {
                    format!(
                        "never marked with IPC_RMID; {} process(es) outside the tree still attach it",
                        row.nattch
                    )
                };
                push(
                    segment_from_row(row, "log", why, Some(c.creator.command())),
                    row.nattch,
                );
            }
            for row in &new_rows {
                if seen.contains(&row.shmid) {
                    continue;
                }
                let cpid = row.cpid;
                // Every process of the tree is gone by now: a creator that
                // still runs is someone else (perhaps reusing a tree pid).
                if alive(cpid, row.ctime) {
                    continue;
                }
                let logged = by_pid.contains_key(&cpid);
                let how = if t.reaped.contains_key(&cpid) || logged {
                    format!("created by pid {cpid} of the tree")
                } else if t.allocated_during_run(cpid) && tree_uids.contains(&row.cuid) {
                    format!(
                        "created by pid {cpid}, which started during the run and exited unseen \
                         (e.g. a static binary waited for by a shell)"
                    )
                } else {
                    continue;
                };
                seen.insert(row.shmid);
                let missing = if logged {
                    // Its log exists but lacks the creation: lost to exec,
                    // which starts the process's log afresh.
                    "its creation is not in its log (made before an exec?)"
                } else {
                    "not in the logs (creator not preloaded: static or setuid)"
                };
                let tail = if row.nattch == 0 {
                    "still in the kernel after the tree exited".to_owned()
                } else {
                    format!(
                        "{} process(es) outside the tree still attach it",
                        row.nattch
                    )
                };
                let why = format!("{missing}; new in the kernel's table: {how}; {tail}");
                push(
                    segment_from_row(row, "kernel", why, command_of(cpid)),
                    row.nattch,
                );
            }
        }
    }

    let unlogged = tree.map(|t| {
        t.reaped
            .iter()
            .filter(|(pid, _)| !by_pid.contains_key(pid))
            .map(|(&pid, r)| UnloggedProcess {
                pid,
                command: r.comm.clone(),
                status: status_text(r.status),
            })
            .collect()
    });

    let failures: Vec<ErrnoCount> = {
        let mut v: Vec<ErrnoCount> = failures.into_values().collect();
        v.sort_by(|a, b| b.count.cmp(&a.count).then(a.errno.cmp(&b.errno)));
        v
    };
    let summary = Summary {
        leaks: (leaked_segments.len() + leaked_attachments.len()) as u64,
        leaked_segments: leaked_segments.len() as u64,
        leaked_segment_bytes: leaked_segments.iter().map(|s| s.size).sum(),
        leaked_attachments: leaked_attachments.len() as u64,
        notes: notes.len() as u64,
        failed_calls: failures.iter().map(|f| f.count).sum(),
        findings: findings.len() as u64,
        processes_logged: logs.processes.len() as u64,
        suppressed_leaks: None,
        suppressed_notes: None,
        suppressed_findings: None,
    };
    Report {
        run: None,
        log_dir: Some(log_dir.to_owned()),
        processes,
        leaked_segments,
        leaked_attachments,
        notes,
        failures,
        findings,
        unlogged,
        warnings,
        suppressed: None,
        summary,
    }
}

/// The rows by (shmid, creator pid); the first of rows that share both.
fn first_rows<'a>(
    rows: impl Iterator<Item = &'a SegmentRow>,
) -> HashMap<(i32, u32), &'a SegmentRow> {
    let mut by_id = HashMap::new();
    for r in rows {
        by_id.entry((r.shmid, r.cpid)).or_insert(r);
    }
    by_id
}

fn segment_from_row(
    row: &SegmentRow,
    source: &'static str,
    why: String,
    command: Option<String>,
) -> SegmentLeak {
    SegmentLeak {
        shmid: row.shmid,
        key: kernel::key_hex(row.key),
        size: row.size,
        mode: kernel::mode_octal(row.mode),
        cpid: row.cpid,
        command,
        source,
        why,
        in_kernel: true,
        nattch: Some(row.nattch),
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn with_command(pid: u32, command: Option<&str>) -> String {
    match command {
        Some(c) if !c.is_empty() => format!("pid {pid} ({})", shorten(&esc(c), 60)),
        _ => format!("pid {pid}"),
    }
}

/// A field for a line of text output: see [`logs::printable`]. Every
/// string of the report goes through it, ours (which it leaves as they
/// are) and those read from logs, /proc or the kernel alike.
fn esc(text: &str) -> String {
    logs::printable(text)
}

/// `text` cut to `max` characters, with an ellipsis.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// The report's findings as lines, each beginning with `prefix`.
pub fn render_body(r: &Report, prefix: &str) -> String {
    let mut out = String::new();
    for s in &r.leaked_segments {
        let _ = writeln!(
            out,
            "{prefix}leak: segment shmid={} key={} size={} mode={} created by {}: {}{}",
            s.shmid,
            esc(&s.key),
            s.size,
            esc(&s.mode),
            with_command(s.cpid, s.command.as_deref()),
            esc(&s.why),
            if s.in_kernel {
                format!(" (remove it: ipcrm -m {})", s.shmid)
            } else {
                String::new()
            }
        );
    }
    for a in &r.leaked_attachments {
        let _ = writeln!(
            out,
            "{prefix}leak: attachment shmid={} addr={}{} {} in {}: attached and never detached",
            a.shmid,
            esc(&a.addr),
            a.size.map(|s| format!(" size={s}")).unwrap_or_default(),
            if a.readonly {
                "read-only"
            } else {
                "read-write"
            },
            with_command(a.pid, Some(&a.command)),
        );
    }
    for s in &r.notes {
        let _ = writeln!(
            out,
            "{prefix}note: segment shmid={} key={} size={} mode={} created by {}: {}",
            s.shmid,
            esc(&s.key),
            s.size,
            esc(&s.mode),
            with_command(s.cpid, s.command.as_deref()),
            esc(&s.why)
        );
    }
    if !r.failures.is_empty() {
        let parts: Vec<String> = r
            .failures
            .iter()
            .map(|f| {
                let calls: Vec<String> = f
                    .calls
                    .iter()
                    .map(|(c, n)| format!("{} {n}", esc(c)))
                    .collect();
                format!("{} {} ({})", esc(&f.errno), f.count, calls.join(", "))
            })
            .collect();
        let _ = writeln!(out, "{prefix}failed calls: {}", parts.join("; "));
    }
    for f in &r.findings {
        let _ = writeln!(
            out,
            "{prefix}finding: {} in {} by {}{}: {}",
            esc(&f.rule),
            esc(&f.call),
            with_command(f.pid, Some(&f.command)),
            if f.refused { ", refused" } else { "" },
            esc(&f.detail)
        );
    }
    for w in &r.warnings {
        let _ = writeln!(out, "{prefix}warning: {}", esc(w));
    }
    let s = &r.summary;
    let leaks = if s.leaks == 0 {
        "no leaks".to_owned()
    } else {
        format!(
            "{} ({} holding {} bytes, {})",
            plural(s.leaks, "leak", "leaks"),
            plural(s.leaked_segments, "segment", "segments"),
            s.leaked_segment_bytes,
            plural(s.leaked_attachments, "attachment", "attachments")
        )
    };
    let suppressed = match (
        s.suppressed_leaks,
        s.suppressed_notes,
        s.suppressed_findings,
    ) {
        (None, None, None) => String::new(),
        (leaks, notes, findings) => {
            let (leaks, notes, findings) = (
                leaks.unwrap_or(0),
                notes.unwrap_or(0),
                findings.unwrap_or(0),
            );
            let parts: Vec<String> = [
                (leaks, "leak", "leaks"),
                (notes, "note", "notes"),
                (findings, "finding", "findings"),
            ]
            .into_iter()
            .filter(|&(n, _, _)| n > 0)
            .map(|(n, one, many)| plural(n, one, many))
            .collect();
            if parts.is_empty() {
                "; 0 suppressed".to_owned()
            } else {
                format!(
                    "; {} suppressed ({})",
                    leaks + notes + findings,
                    parts.join(", ")
                )
            }
        }
    };
    let _ = writeln!(
        out,
        "{prefix}SUMMARY: {leaks}; {}; {}; {} logged{suppressed}",
        plural(s.failed_calls, "failed call", "failed calls"),
        plural(s.findings, "finding", "findings"),
        plural(s.processes_logged, "process", "processes"),
    );
    out
}

/// The per-process table.
pub fn render_table(r: &Report) -> String {
    let header = [
        "PID", "PPID", "CALLS", "FAILED", "CREATED", "REMOVED", "PEAK-ATT", "END", "COMMAND",
    ];
    let rows: Vec<[String; 9]> = r
        .processes
        .iter()
        .map(|p| {
            [
                p.pid.to_string(),
                p.ppid.to_string(),
                p.calls.to_string(),
                p.failures.to_string(),
                p.segments_created.to_string(),
                p.segments_removed.to_string(),
                p.peak_attachments.to_string(),
                match (&p.status, p.exit_event) {
                    (Some(s), _) => esc(s),
                    (None, true) => "exit".to_owned(),
                    (None, false) => "no-exit".to_owned(),
                },
                shorten(&esc(&p.command), 60),
            ]
        })
        .collect();
    crate::table::render(&header, &rows, 7)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::parse_file;
    use std::path::Path;

    fn ev(pid: u32, ts: u64, rest: &str) -> String {
        format!(r#"{{"v":1,"pid":{pid},"ppid":1,"tid":{pid},"ts_ns":{ts},{rest}}}"#)
    }

    fn start(pid: u32) -> String {
        ev(
            pid,
            1,
            &format!(
                r#""event":"start","argv":["p{pid}"],"exe":"/p","uid":0,"euid":0,"ipc_ns":7,"forked":false"#
            ),
        )
    }

    fn get(pid: u32, ts: u64, shmid: i32, created: bool) -> String {
        ev(
            pid,
            ts,
            &format!(
                r#""event":"call","call":"shmget","args":{{"key":"0x00000000","size":4096,"shmflg":"IPC_CREAT|0600"}},"ret":{shmid},"errno":null,"created":{created}"#
            ),
        )
    }

    fn rmid(pid: u32, ts: u64, shmid: i32) -> String {
        ev(
            pid,
            ts,
            &format!(
                r#""event":"call","call":"shmctl","args":{{"shmid":{shmid},"cmd":"IPC_RMID","buf":null}},"ret":0,"errno":null"#
            ),
        )
    }

    fn set(files: &[(u32, Vec<String>)]) -> LogSet {
        let mut s = LogSet::default();
        for (pid, lines) in files {
            let text = lines.join("\n") + "\n";
            let name = format!("shmguard.{pid}.jsonl");
            s.processes
                .push(parse_file(Path::new(&name), text.as_bytes(), &mut s.warnings).unwrap());
        }
        s
    }

    fn row(shmid: i32, cpid: u32, nattch: u64, mode: u32) -> SegmentRow {
        SegmentRow {
            shmid,
            cpid,
            nattch,
            mode,
            size: 4096,
            ctime: 100,
            ..SegmentRow::default()
        }
    }

    #[test]
    fn removed_by_another_process_is_not_a_leak() {
        let logs = set(&[
            (
                10,
                vec![start(10), get(10, 2, 5, true), get(10, 3, 6, true)],
            ),
            (11, vec![start(11), rmid(11, 4, 5)]),
        ]);
        let r = analyze(
            &logs,
            "d",
            KernelView::Now(&[row(6, 10, 0, 0o600)], Some(7)),
            &|_, _| false,
        );
        let ids: Vec<i32> = r.leaked_segments.iter().map(|s| s.shmid).collect();
        assert_eq!(ids, [6]);
        assert!(r.leaked_segments[0].in_kernel);
        assert_eq!(r.processes[0].segments_created, 2);
        assert_eq!(r.processes[1].segments_removed, 1);
    }

    #[test]
    fn run_attributes_by_log_reaped_pid_and_dead_creator() {
        let logs = set(&[(
            10,
            vec![start(10), get(10, 2, 5, true), get(10, 3, 9, false)],
        )]);
        let mut tree = Tree {
            before: vec![row(1, 3, 0, 0o600), row(9, 3, 1, 0o600)],
            after: vec![
                row(1, 3, 0, 0o600),              // older than the run
                row(5, 10, 0, 0o600),             // logged creation
                row(9, 3, 1, 0o600),              // opened, not created
                row(20, 77, 0, 0o600),            // reaped static child
                row(21, 150, 0, 0o600),           // dead creator, pid of the run
                row(22, 151, 0, 0o600),           // live creator outside the tree
                row(23, 20, 0, 0o600),            // dead creator, pid older than the run
                row(24, 77, 0, 0o600 | SHM_DEST), // marked
                row(25, 77, 2, 0o600),            // attached by others: a note
            ],
            pid_window: Some((100, 200, 32768)),
            ipc_ns: Some(7),
            uids: [0].into(),
            ..Tree::default()
        };
        tree.reaped.insert(
            78,
            Reaped {
                comm: None,
                status: 0,
            },
        );
        tree.reaped.insert(
            77,
            Reaped {
                comm: Some("static".into()),
                status: 0,
            },
        );
        let r = analyze(&logs, "d", KernelView::Run(&tree), &|pid, _| {
            pid == 151 || pid == 78
        });
        let ids: Vec<(i32, &str)> = r
            .leaked_segments
            .iter()
            .map(|s| (s.shmid, s.source))
            .collect();
        assert_eq!(ids, [(5, "log"), (20, "kernel"), (21, "kernel")]);
        assert_eq!(r.leaked_segments[1].command.as_deref(), Some("static"));
        assert_eq!(r.notes.len(), 1);
        assert_eq!(r.notes[0].shmid, 25);
        assert!(r.leaked());
        let text = render_body(&r, "shmguard: ");
        assert!(text.contains("leak: segment shmid=20 "), "{text}");
        assert!(
            text.contains("SUMMARY: 3 leaks (3 segments holding 12288 bytes, 0 attachments)"),
            "{text}"
        );
    }

    #[test]
    fn pid_window_wraps() {
        let t = Tree {
            pid_window: Some((32000, 50, 32768)),
            ..Tree::default()
        };
        assert!(t.allocated_during_run(32001));
        assert!(t.allocated_during_run(10));
        assert!(!t.allocated_during_run(100));
        assert!(!t.allocated_during_run(32000));
    }

    #[test]
    fn status_words() {
        assert_eq!(status_text(7 << 8), "exit 7");
        assert_eq!(status_text(9), "SIGKILL");
    }
}
