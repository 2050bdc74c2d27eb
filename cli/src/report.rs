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

/// The `schema` of every report document (`run`'s and `report`'s).
pub const SCHEMA: &str = "shmguard-report/1";

#[derive(Clone, Debug, Serialize)]
pub struct ProcessRow {
    pub pid: u32,
    pub ppid: u32,
    /// Its command line (the log's argv; `[exe]` when the log has none).
    pub argv: Vec<String>,
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
    /// The creator's command line (from its log), or `[name]` when only
    /// the kernel knew it (`/proc/PID/comm` of a reaped process).
    pub argv: Option<Vec<String>>,
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
    /// Where it was created (`stacks=1`; from the creator's exit event).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub stack: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AttachmentLeak {
    pub pid: u32,
    pub argv: Vec<String>,
    pub shmid: i32,
    pub addr: String,
    pub size: Option<u64>,
    pub readonly: bool,
    /// Where it was attached (`stacks=1`; from the exit event).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub stack: Vec<String>,
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
    pub argv: Vec<String>,
    pub rule: String,
    pub call: String,
    pub refused: bool,
    pub detail: String,
    /// The call's stack (`stacks=1`; from the finding event).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub stack: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct UnloggedProcess {
    pub pid: u32,
    /// `[name]`: its `/proc/PID/comm`, read before it was reaped.
    pub argv: Option<Vec<String>>,
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
    /// The lines of `--suppressions` that suppressed something, in the
    /// file's order (items a process's own `suppressions=` marked in its
    /// log are not among them).
    pub used: Vec<UsedSuppression>,
}

/// A line of `--suppressions` and how many items it suppressed.
#[derive(Clone, Debug, Serialize)]
pub struct UsedSuppression {
    /// The line number in the file (from 1).
    pub line: usize,
    /// The line: `leak:PATTERN`, `finding:RULE[:PATTERN]`.
    pub suppression: String,
    pub count: u64,
}

/// How `run`'s command ended, and what it ran.
#[derive(Clone, Debug, Serialize)]
pub struct RunInfo {
    pub argv: Vec<String>,
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
    /// [`SCHEMA`].
    pub schema: &'static str,
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

/// Builds the report, in four steps: [`collect_processes`] reads each
/// process's log into its row and what its calls did;
/// [`unremoved_creations`] (`report`) or [`compare_with_kernel_table`]
/// (`run`) finds the segments left behind; [`unlogged_processes`] lists
/// what `run` reaped without a log; [`build_summary`] counts it all.
/// `alive(cpid, ctime)` tells whether a segment's creator still lives (see
/// [`kernel::Clock::creator_alive`]).
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
    let collected = collect_processes(logs, tree);
    let (leaked_segments, notes) = match view {
        KernelView::Now(rows, ipc_ns) => {
            (unremoved_creations(&collected, rows, ipc_ns), Vec::new())
        }
        KernelView::Run(t) => compare_with_kernel_table(t, logs, &collected.created, alive),
    };
    let unlogged = tree.map(|t| unlogged_processes(t, logs));
    let summary = build_summary(&collected, &leaked_segments, &notes, logs);
    let Collected {
        processes,
        failures,
        findings,
        leaked_attachments,
        warnings,
        ..
    } = collected;
    Report {
        schema: SCHEMA,
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

/// What the logs say, process by process.
struct Collected<'a> {
    /// A row per log.
    processes: Vec<ProcessRow>,
    /// Every segment a logged call created, with its creator.
    created: Vec<Created<'a>>,
    /// The time of the last `IPC_RMID` of each shmid, by any process.
    last_removal: HashMap<i32, u64>,
    /// Failed calls by errno, the most frequent first.
    failures: Vec<ErrnoCount>,
    findings: Vec<FindingRow>,
    /// The attachments the exit events list as never detached.
    leaked_attachments: Vec<AttachmentLeak>,
    /// The logs' warnings, and one per exit event cut short or per
    /// process of another IPC namespace (under `run`).
    warnings: Vec<String>,
}

/// Step 1: each process's row, and what its calls did: the segments it
/// created and removed, its failed calls, its findings, and the
/// attachments its exit event lists.
fn collect_processes<'a>(logs: &'a LogSet, tree: Option<&Tree>) -> Collected<'a> {
    let mut c = Collected {
        processes: Vec::new(),
        created: Vec::new(),
        last_removal: HashMap::new(),
        failures: Vec::new(),
        findings: Vec::new(),
        leaked_attachments: Vec::new(),
        warnings: logs.warnings.clone(),
    };
    let mut failures: BTreeMap<String, ErrnoCount> = BTreeMap::new();
    for (index, p) in logs.processes.iter().enumerate() {
        let row = ProcessRow {
            pid: p.pid,
            ppid: p.ppid,
            argv: p.argv_or_exe(),
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
        c.created
            .extend(p.calls.created.iter().map(|segment| Created {
                segment,
                creator: p,
                index,
            }));
        for &(shmid, ts) in &p.calls.removals {
            let last = c.last_removal.entry(shmid).or_insert(ts);
            *last = (*last).max(ts);
        }
        for f in &p.findings {
            c.findings.push(FindingRow {
                pid: p.pid,
                argv: p.argv_or_exe(),
                rule: f.rule.clone(),
                call: f.call.clone(),
                refused: f.refused,
                detail: f.detail.clone(),
                stack: f.stack.clone(),
            });
        }
        if let Some(exit) = &p.exit {
            for item in exit.leaks.iter().filter(|i| i.kind == "attachment") {
                c.leaked_attachments.push(AttachmentLeak {
                    pid: p.pid,
                    argv: p.argv_or_exe(),
                    shmid: item.shmid,
                    addr: item.addr.clone().unwrap_or_default(),
                    size: item.size,
                    readonly: item.readonly.unwrap_or(false),
                    stack: item.stack.clone(),
                });
            }
            if let Some(n) = exit.truncated {
                c.warnings.push(format!(
                    "pid {}: its exit event counts {} but lists none (too many for one event)",
                    p.pid,
                    plural(n, "leak", "leaks")
                ));
            }
        }
        if tree.is_some_and(|t| t.ipc_ns.is_some() && p.ipc_ns.is_some() && p.ipc_ns != t.ipc_ns) {
            c.warnings.push(format!(
                "pid {} ({}) ran in another IPC namespace: its segments were not checked against the kernel",
                p.pid,
                p.command()
            ));
        }
        c.processes.push(row);
    }
    c.failures = failures.into_values().collect();
    c.failures
        .sort_by(|a, b| b.count.cmp(&a.count).then(a.errno.cmp(&b.errno)));
    c
}

/// Step 2, for `report`: matches each logged creation with the removals
/// the logs show and with its creator's exit check. A segment created and
/// never marked with `IPC_RMID` at or after its creation, that the
/// creator's exit event does not show removed, is a leak; the kernel's
/// table now says whether it is still there (`rows`, of the IPC namespace
/// `ipc_ns`).
fn unremoved_creations(
    collected: &Collected<'_>,
    rows: &[SegmentRow],
    ipc_ns: Option<u64>,
) -> Vec<SegmentLeak> {
    let mut leaked_segments = Vec::new();
    let created = &collected.created;
    let last_removal = &collected.last_removal;
    let rows = first_rows(rows.iter());
    // The segments each creator's exit event lists, by its index.
    let mut listed: HashMap<usize, HashSet<i32>> = HashMap::new();
    for c in created {
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
                "still in the kernel now, attached by {}",
                plural(r.nattch, "process", "processes")
            ),
            None if elsewhere => "it belongs to another IPC namespace (not checked)".to_owned(),
            None => "no longer in the kernel now".to_owned(),
        };
        leaked_segments.push(SegmentLeak {
            shmid: s.shmid,
            key: s.key.clone(),
            size: row.map_or(s.size, |r| r.size),
            mode: kernel::mode_octal(row.map_or(s.mode.unwrap_or(0), |r| r.mode)),
            cpid: c.creator.pid,
            argv: Some(c.creator.argv_or_exe()),
            source: "log",
            why: format!("created and never marked with IPC_RMID in the logs; {now}"),
            in_kernel,
            nattch: row.map(|r| r.nattch),
            stack: exit_stack(c.creator, s.shmid),
        });
    }
    leaked_segments
}

/// Step 2, for `run`: compares the kernel's table before and after the
/// tree. A segment new in it and not marked is the tree's when a log shows
/// its creation, or when its creator was a process of the tree (reaped by
/// `run`, logged, or started during the run by one of the tree's users)
/// that is gone: a leak if nothing attaches it, else a note (processes
/// outside the tree still attach it). Returns (leaks, notes).
fn compare_with_kernel_table(
    t: &Tree,
    logs: &LogSet,
    created: &[Created<'_>],
    alive: &dyn Fn(u32, i64) -> bool,
) -> (Vec<SegmentLeak>, Vec<SegmentLeak>) {
    let mut leaked_segments = Vec::new();
    let mut notes = Vec::new();
    let by_pid: HashMap<u32, &ProcessLog> = logs.processes.iter().map(|p| (p.pid, p)).collect();
    let argv_of = |pid: u32| -> Option<Vec<String>> {
        by_pid.get(&pid).map(|p| p.argv_or_exe()).or_else(|| {
            t.reaped
                .get(&pid)
                .and_then(|r| r.comm.clone())
                .map(|c| vec![c])
        })
    };
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
    for c in created {
        if t.ipc_ns.is_some() && c.creator.ipc_ns.is_some() && c.creator.ipc_ns != t.ipc_ns {
            continue;
        }
        let Some(&row) = new_by_id.get(&(c.segment.shmid, c.creator.pid)) else {
            continue;
        };
        if !seen.insert(row.shmid) {
            continue;
        }
        let why = if row.nattch == 0 {
            "still in the kernel after the tree exited, never marked with IPC_RMID".to_owned()
        } else {
            format!(
                "never marked with IPC_RMID; {} outside the tree still {} it",
                plural(row.nattch, "process", "processes"),
                if row.nattch == 1 {
                    "attaches"
                } else {
                    "attach"
                }
            )
        };
        let mut leak = segment_from_row(row, "log", why, Some(c.creator.argv_or_exe()));
        leak.stack = exit_stack(c.creator, row.shmid);
        push(leak, row.nattch);
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
                "{} outside the tree still {} it",
                plural(row.nattch, "process", "processes"),
                if row.nattch == 1 {
                    "attaches"
                } else {
                    "attach"
                }
            )
        };
        let why = format!("{missing}; new in the kernel's table: {how}; {tail}");
        push(
            segment_from_row(row, "kernel", why, argv_of(cpid)),
            row.nattch,
        );
    }
    (leaked_segments, notes)
}

/// Step 3, for `run`: the processes it reaped that left no log (they made
/// no shm call, or could not be preloaded).
fn unlogged_processes(t: &Tree, logs: &LogSet) -> Vec<UnloggedProcess> {
    let logged: HashSet<u32> = logs.processes.iter().map(|p| p.pid).collect();
    t.reaped
        .iter()
        .filter(|(pid, _)| !logged.contains(pid))
        .map(|(&pid, r)| UnloggedProcess {
            pid,
            argv: r.comm.clone().map(|c| vec![c]),
            status: status_text(r.status),
        })
        .collect()
}

/// Step 4: the counts of the SUMMARY line.
fn build_summary(
    collected: &Collected<'_>,
    leaked_segments: &[SegmentLeak],
    notes: &[SegmentLeak],
    logs: &LogSet,
) -> Summary {
    let leaked_attachments = collected.leaked_attachments.len() as u64;
    Summary {
        leaks: leaked_segments.len() as u64 + leaked_attachments,
        leaked_segments: leaked_segments.len() as u64,
        leaked_segment_bytes: leaked_segments.iter().map(|s| s.size).sum(),
        leaked_attachments,
        notes: notes.len() as u64,
        failed_calls: collected.failures.iter().map(|f| f.count).sum(),
        findings: collected.findings.len() as u64,
        processes_logged: logs.processes.len() as u64,
        suppressed_leaks: None,
        suppressed_notes: None,
        suppressed_findings: None,
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

/// The stack the creator's exit event gives segment `shmid` (a leak or a
/// note), if any.
fn exit_stack(creator: &ProcessLog, shmid: i32) -> Vec<String> {
    creator
        .exit
        .iter()
        .flat_map(|e| e.leaks.iter().chain(&e.notes))
        .find(|i| i.kind == "segment" && i.shmid == shmid && !i.stack.is_empty())
        .map(|i| i.stack.clone())
        .unwrap_or_default()
}

fn segment_from_row(
    row: &SegmentRow,
    source: &'static str,
    why: String,
    argv: Option<Vec<String>>,
) -> SegmentLeak {
    SegmentLeak {
        shmid: row.shmid,
        key: kernel::key_hex(row.key),
        size: row.size,
        mode: kernel::mode_octal(row.mode),
        cpid: row.cpid,
        argv,
        source,
        why,
        in_kernel: true,
        nattch: Some(row.nattch),
        stack: Vec::new(),
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The prefix of every line of the text report, `run`'s (on standard
/// error) and `report`'s (on standard output) alike.
pub const PREFIX: &str = "shmguard: ";

/// `pid N (COMMAND)`, the command shell-quoted and shortened.
fn with_command(pid: u32, argv: Option<&[String]>, width: usize) -> String {
    match argv {
        Some(a) if !a.is_empty() => format!("pid {pid} ({})", shorten(&logs::shell_line(a), width)),
        _ => format!("pid {pid}"),
    }
}

/// How the text report and the CI formats name a segment: `segment
/// shmid=N key=K size=S mode=M created by pid P (CMD): WHY`, the command
/// cut to `width` characters.
pub fn segment_text(s: &SegmentLeak, width: usize) -> String {
    format!(
        "segment shmid={} key={} size={} mode={} created by {}: {}",
        s.shmid,
        esc(&s.key),
        s.size,
        esc(&s.mode),
        with_command(s.cpid, s.argv.as_deref(), width),
        esc(&s.why)
    )
}

/// ` (remove it: ipcrm -m N)` after a segment still in the kernel.
pub fn removal_hint(s: &SegmentLeak) -> String {
    if s.in_kernel {
        format!(" (remove it: ipcrm -m {})", s.shmid)
    } else {
        String::new()
    }
}

/// How the text report and the CI formats name an attachment never
/// detached.
pub fn attachment_text(a: &AttachmentLeak, width: usize) -> String {
    format!(
        "attachment shmid={} addr={}{} {} in {}: attached and never detached",
        a.shmid,
        esc(&a.addr),
        a.size.map(|s| format!(" size={s}")).unwrap_or_default(),
        if a.readonly {
            "read-only"
        } else {
            "read-write"
        },
        with_command(a.pid, Some(&a.argv), width),
    )
}

/// How the text report and the CI formats name a finding: `RULE in CALL
/// by WHO[, refused]COUNT: DETAIL`, where `who` names the process(es) and
/// `count` is empty or ` (N times)`.
pub fn finding_text(f: &FindingRow, who: &str, count: &str) -> String {
    format!(
        "{} in {} by {who}{}{count}: {}",
        esc(&f.rule),
        esc(&f.call),
        if f.refused { ", refused" } else { "" },
        esc(&f.detail)
    )
}

/// A finding's process as the CI formats name it (one process each).
pub fn finding_who(f: &FindingRow, width: usize) -> String {
    with_command(f.pid, Some(&f.argv), width)
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

/// The lines of a stack under the line it belongs to, as the library's
/// per-process report writes them: `    at FUNC (file:line:col)`.
fn render_stack(out: &mut String, prefix: &str, stack: &[String]) {
    for frame in stack {
        let _ = writeln!(out, "{prefix}    at {}", esc(frame));
    }
}

/// Findings that say the same (rule, call, refusal, detail, command and
/// stack), in the order of their first: one line of text each, with a
/// count. (The JSON keeps a row per event.)
struct FindingGroup<'a> {
    first: &'a FindingRow,
    pids: Vec<u32>,
    count: u64,
}

fn group_findings(findings: &[FindingRow]) -> Vec<FindingGroup<'_>> {
    type Key<'a> = (&'a str, &'a str, bool, &'a str, &'a [String], &'a [String]);
    let mut index: HashMap<Key<'_>, usize> = HashMap::new();
    let mut groups: Vec<FindingGroup<'_>> = Vec::new();
    for f in findings {
        let key = (
            f.rule.as_str(),
            f.call.as_str(),
            f.refused,
            f.detail.as_str(),
            f.argv.as_slice(),
            f.stack.as_slice(),
        );
        match index.get(&key) {
            Some(&i) => {
                let g = &mut groups[i];
                g.count += 1;
                if !g.pids.contains(&f.pid) {
                    g.pids.push(f.pid);
                }
            }
            None => {
                index.insert(key, groups.len());
                groups.push(FindingGroup {
                    first: f,
                    pids: vec![f.pid],
                    count: 1,
                });
            }
        }
    }
    groups
}

/// Who made a group's calls: `pid N (COMMAND)`, or `pids N, M (COMMAND)`
/// (the first few).
fn group_who(g: &FindingGroup<'_>) -> String {
    const SHOWN: usize = 5;
    if g.pids.len() == 1 {
        return with_command(g.pids[0], Some(&g.first.argv), 60);
    }
    let pids: Vec<String> = g.pids.iter().take(SHOWN).map(u32::to_string).collect();
    let mut pids = pids.join(", ");
    if g.pids.len() > SHOWN {
        pids.push_str(&format!(" and {} more", g.pids.len() - SHOWN));
    }
    let command = if g.first.argv.is_empty() {
        String::new()
    } else {
        format!(" ({})", shorten(&logs::shell_line(&g.first.argv), 60))
    };
    format!("pids {pids}{command}")
}

/// The report's findings as lines, each beginning with `prefix`.
pub fn render_body(r: &Report, prefix: &str) -> String {
    let mut out = String::new();
    for s in &r.leaked_segments {
        let _ = writeln!(
            out,
            "{prefix}leak: {}{}",
            segment_text(s, 60),
            removal_hint(s)
        );
        render_stack(&mut out, prefix, &s.stack);
    }
    for a in &r.leaked_attachments {
        let _ = writeln!(out, "{prefix}leak: {}", attachment_text(a, 60));
        render_stack(&mut out, prefix, &a.stack);
    }
    for s in &r.notes {
        let _ = writeln!(out, "{prefix}note: {}", segment_text(s, 60));
        render_stack(&mut out, prefix, &s.stack);
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
    for g in group_findings(&r.findings) {
        let f = g.first;
        let count = if g.count > 1 {
            format!(" ({} times)", g.count)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{prefix}finding: {}",
            finding_text(f, &group_who(&g), &count)
        );
        render_stack(&mut out, prefix, &f.stack);
    }
    for w in &r.warnings {
        let _ = writeln!(out, "{prefix}warning: {}", esc(w));
    }
    let s = &r.summary;
    let leaks = if s.leaks == 0 {
        "no leaks".to_owned()
    } else {
        format!(
            "{} ({} holding {}, {})",
            plural(s.leaks, "leak", "leaks"),
            plural(s.leaked_segments, "segment", "segments"),
            plural(s.leaked_segment_bytes, "byte", "bytes"),
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
    // As LSan's "Suppressions used:", the lines that did something.
    for u in r.suppressed.iter().flat_map(|g| &g.used) {
        let _ = writeln!(
            out,
            "{prefix}suppression used: line {} {}: {}",
            u.line,
            esc(&u.suppression),
            plural(u.count, "item", "items")
        );
    }
    let _ = writeln!(
        out,
        "{prefix}SUMMARY: {leaks}; {}; {}; {} logged{suppressed}",
        plural(s.failed_calls, "failed call", "failed calls"),
        plural(s.findings, "finding", "findings"),
        plural(s.processes_logged, "process", "processes"),
    );
    out
}

/// The per-process table, each line beginning with `prefix`: numbers
/// right-aligned, words left-aligned.
pub fn render_table(r: &Report, prefix: &str) -> String {
    use crate::table::Align::{Left, Right};
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
                shorten(&logs::shell_line(&p.argv), 60),
            ]
        })
        .collect();
    let align = [Right, Right, Right, Right, Right, Right, Right, Left, Left];
    crate::table::render(&header, &rows, &align)
        .lines()
        .map(|l| format!("{prefix}{l}\n"))
        .collect()
}

/// The whole text report, `run`'s and `report`'s: the table (when a
/// process was logged), then the leaks, failed calls, findings, warnings
/// and the SUMMARY line, every line beginning with [`PREFIX`].
pub fn render_report(r: &Report) -> String {
    let mut out = String::new();
    if !r.processes.is_empty() {
        out.push_str(&render_table(r, PREFIX));
    }
    out.push_str(&render_body(r, PREFIX));
    out
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
        assert_eq!(
            r.leaked_segments[1].argv.as_deref(),
            Some(&["static".to_owned()][..])
        );
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
    fn plurals_are_right() {
        let logs = set(&[(10, vec![start(10), get(10, 2, 5, true)])]);
        let mut one_byte = row(5, 10, 0, 0o600);
        one_byte.size = 1;
        let mut tree = Tree {
            after: vec![one_byte],
            pid_window: Some((1, 200, 32768)),
            ipc_ns: Some(7),
            uids: [0].into(),
            ..Tree::default()
        };
        let r = analyze(&logs, "d", KernelView::Run(&tree), &|_, _| false);
        let text = render_body(&r, "");
        assert!(
            text.contains(
                "SUMMARY: 1 leak (1 segment holding 1 byte, 0 attachments); 0 failed calls; \
                 0 findings; 1 process logged"
            ),
            "{text}"
        );
        tree.after = vec![row(5, 10, 1, 0o600)];
        let r = analyze(&logs, "d", KernelView::Run(&tree), &|_, _| false);
        assert!(
            r.notes[0]
                .why
                .ends_with("1 process outside the tree still attaches it"),
            "{}",
            r.notes[0].why
        );
        let r = analyze(
            &logs,
            "d",
            KernelView::Now(&[row(5, 10, 1, 0o600)], Some(7)),
            &|_, _| false,
        );
        assert!(
            r.leaked_segments[0]
                .why
                .ends_with("still in the kernel now, attached by 1 process"),
            "{}",
            r.leaked_segments[0].why
        );
    }

    #[test]
    fn identical_findings_are_one_line_with_a_count() {
        let finding = |pid: u32, ts: u64, detail: &str| {
            ev(
                pid,
                ts,
                &format!(
                    r#""event":"finding","rule":"wide-mode","call":"shmget","refused":false,"detail":"{detail}","stack":["f (a.c:1:2)","main (a.c:9:1)"]"#
                ),
            )
        };
        let mut lines = vec![start(10)];
        lines.extend((0..8).map(|i| finding(10, 2 + i, "mode 0666")));
        lines.push(finding(10, 20, "mode 0644"));
        let logs = set(&[
            (10, lines),
            (11, vec![start(11), finding(11, 3, "mode 0666")]),
        ]);
        let r = analyze(&logs, "d", KernelView::Now(&[], Some(7)), &|_, _| false);
        assert_eq!(r.findings.len(), 10);
        assert_eq!(r.findings[0].stack, ["f (a.c:1:2)", "main (a.c:9:1)"]);
        let text = render_body(&r, "shmguard: ");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            &lines[..6],
            [
                "shmguard: finding: wide-mode in shmget by pid 10 (p10) (8 times): mode 0666",
                "shmguard:     at f (a.c:1:2)",
                "shmguard:     at main (a.c:9:1)",
                "shmguard: finding: wide-mode in shmget by pid 10 (p10): mode 0644",
                "shmguard:     at f (a.c:1:2)",
                "shmguard:     at main (a.c:9:1)",
            ],
            "{text}"
        );
        assert!(
            text.contains("shmguard: finding: wide-mode in shmget by pid 11 (p11): mode 0666\n"),
            "{text}"
        );
    }

    #[test]
    fn findings_of_one_command_in_several_processes_name_their_pids() {
        let finding = |pid: u32| {
            ev(
                pid,
                5,
                r#""event":"finding","rule":"wide-mode","call":"shmget","refused":true,"detail":"d""#,
            )
        };
        let start_sh = |pid: u32| {
            ev(
                pid,
                1,
                r#""event":"start","argv":["sh","-c","kill -9 $$"],"exe":"/bin/sh","uid":0,"euid":0,"ipc_ns":7,"forked":false"#,
            )
        };
        let files: Vec<(u32, Vec<String>)> = (1..=7)
            .map(|pid| (pid, vec![start_sh(pid), finding(pid)]))
            .collect();
        let r = analyze(&set(&files), "d", KernelView::Now(&[], Some(7)), &|_, _| {
            false
        });
        let text = render_body(&r, "");
        assert!(
            text.contains(
                "finding: wide-mode in shmget by pids 1, 2, 3, 4, 5 and 2 more (sh -c 'kill -9 $$'), \
                 refused (7 times): d\n"
            ),
            "{text}"
        );
        assert_eq!(r.findings.len(), 7);
        assert_eq!(r.findings[0].argv, ["sh", "-c", "kill -9 $$"]);
    }

    /// The logs of `cli/tests/fixtures/report` (the golden report's).
    fn fixture_logs() -> LogSet {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/report");
        crate::logs::read(Path::new(dir)).expect("read the fixture logs")
    }

    #[test]
    fn step_collect_processes_on_the_fixtures() {
        let logs = fixture_logs();
        let c = collect_processes(&logs, None);
        assert_eq!(c.processes.len(), logs.processes.len());
        assert_eq!(c.processes.len(), 8);
        assert_eq!(c.failures.iter().map(|f| f.count).sum::<u64>(), 8);
        // The most frequent errno first.
        assert!(c.failures.windows(2).all(|w| w[0].count >= w[1].count));
        assert_eq!(c.findings.len(), 3);
        assert_eq!(c.leaked_attachments.len(), 3);
        // Every creation is kept with its creator's log.
        assert!(!c.created.is_empty());
        assert!(
            c.created
                .iter()
                .all(|k| std::ptr::eq(k.creator, &logs.processes[k.index]))
        );
    }

    #[test]
    fn step_unremoved_creations_on_the_fixtures() {
        let logs = fixture_logs();
        let c = collect_processes(&logs, None);
        // No table: none of them is in the kernel.
        let leaks = unremoved_creations(&c, &[], None);
        assert_eq!(leaks.len(), 9);
        assert_eq!(leaks.iter().map(|s| s.size).sum::<u64>(), 87016);
        assert!(leaks.iter().all(|s| s.source == "log" && !s.in_kernel));
        // One of them still in the kernel, unattached: said so, with its
        // creator's row.
        let first = &leaks[0];
        let now = [SegmentRow {
            shmid: first.shmid,
            cpid: first.cpid,
            size: first.size,
            mode: 0o600,
            ..SegmentRow::default()
        }];
        let again = unremoved_creations(&c, &now, None);
        assert!(again[0].in_kernel);
        assert!(
            again[0]
                .why
                .ends_with("still in the kernel now, unattached")
        );
        // A removal the logs show, at or after the creation, is no leak.
        let logs = set(&[
            (10, vec![start(10), get(10, 2, 5, true)]),
            (11, vec![start(11), rmid(11, 4, 5)]),
        ]);
        let c = collect_processes(&logs, None);
        assert!(unremoved_creations(&c, &[], None).is_empty());
        let logs = set(&[
            (10, vec![start(10), get(10, 5, 5, true)]),
            (11, vec![start(11), rmid(11, 4, 5)]),
        ]);
        let c = collect_processes(&logs, None);
        assert_eq!(unremoved_creations(&c, &[], None).len(), 1);
    }

    #[test]
    fn step_compare_with_kernel_table() {
        let logs = set(&[(10, vec![start(10), get(10, 2, 5, true)])]);
        let c = collect_processes(&logs, None);
        let tree = Tree {
            before: vec![row(1, 3, 0, 0o600)],
            after: vec![
                row(1, 3, 0, 0o600),  // there before
                row(5, 10, 0, 0o600), // the logged creation
                row(6, 10, 1, 0o600), // the logged process's, still attached
                row(7, 99, 0, 0o600), // a stranger's
            ],
            pid_window: Some((100, 200, 32768)),
            uids: [0].into(),
            ..Tree::default()
        };
        let (leaks, notes) = compare_with_kernel_table(&tree, &logs, &c.created, &|_, _| false);
        let ids: Vec<(i32, &str)> = leaks.iter().map(|s| (s.shmid, s.source)).collect();
        assert_eq!(ids, [(5, "log")]);
        let ids: Vec<(i32, &str)> = notes.iter().map(|s| (s.shmid, s.source)).collect();
        assert_eq!(ids, [(6, "kernel")]);
    }

    #[test]
    fn step_unlogged_processes() {
        let logs = set(&[(10, vec![start(10)])]);
        let mut tree = Tree::default();
        for pid in [10, 77] {
            tree.reaped.insert(
                pid,
                Reaped {
                    comm: Some("sh".into()),
                    status: 9,
                },
            );
        }
        let u = unlogged_processes(&tree, &logs);
        assert_eq!(u.len(), 1);
        assert_eq!((u[0].pid, u[0].status.as_str()), (77, "SIGKILL"));
    }

    #[test]
    fn step_build_summary_on_the_fixtures() {
        let logs = fixture_logs();
        let c = collect_processes(&logs, None);
        let leaks = unremoved_creations(&c, &[], None);
        let s = build_summary(&c, &leaks, &[], &logs);
        assert_eq!(
            (s.leaks, s.leaked_segments, s.leaked_segment_bytes),
            (12, 9, 87016)
        );
        assert_eq!((s.leaked_attachments, s.notes), (3, 0));
        assert_eq!((s.failed_calls, s.findings, s.processes_logged), (8, 3, 8));
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
