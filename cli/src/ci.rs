//! What the CI formats (JUnit XML, SARIF) share: the rules a report's
//! items belong to, one-line messages for them, and which logged process
//! each item belongs to.
#![forbid(unsafe_code)]

use crate::logs::printable;
use crate::report::{self, AttachmentLeak, FindingRow, ProcessRow, Report, SegmentLeak};

/// A kind of item a report can hold: a leak kind, a note, or a policy
/// rule of the library.
pub struct Rule {
    /// The rule's id: a leak kind, or the policy rule's name as the log
    /// and the library's diagnostics spell it.
    pub id: &'static str,
    /// A title in PascalCase (SARIF's `name`).
    pub name: &'static str,
    pub short: &'static str,
    pub full: &'static str,
    pub help: &'static str,
    /// SARIF level: `error`, `warning` or `note`.
    pub level: &'static str,
}

pub const LEAKED_SEGMENT: &str = "leaked-segment";
pub const LEAKED_ATTACHMENT: &str = "leaked-attachment";
pub const HELD_SEGMENT: &str = "segment-held-outside-tree";

/// The leak kinds, then the library's policy rules (README, *The security
/// policy*). A finding of a rule not listed here (a newer library) gets a
/// rule of its own, described generically.
pub const RULES: &[Rule] = &[
    Rule {
        id: LEAKED_SEGMENT,
        name: "LeakedSegment",
        short: "A System V shared-memory segment was left in the kernel",
        full: "The process tree created a segment and never marked it with shmctl(IPC_RMID): \
               it stays in the kernel, holding its memory, until it is removed or the machine reboots.",
        help: "Mark the segment with shmctl(shmid, IPC_RMID, NULL) once every process has \
               attached it (it is freed at the last detach); remove a leftover with ipcrm -m SHMID \
               or shmguard clean --orphans.",
        level: "error",
    },
    Rule {
        id: LEAKED_ATTACHMENT,
        name: "LeakedAttachment",
        short: "A shared-memory attachment was never detached",
        full: "A process attached a segment with shmat and exited without shmdt: the kernel \
               detaches it at exit, but code that never detaches keeps segments alive for as long \
               as it runs.",
        help: "Call shmdt(addr) when the process is done with the segment.",
        level: "error",
    },
    Rule {
        id: HELD_SEGMENT,
        name: "SegmentHeldOutsideTree",
        short: "A segment the tree created is still attached by processes outside it",
        full: "The process tree created a segment and never marked it with IPC_RMID; processes \
               outside the tree still attach it, so it is not a leak yet, but nothing will remove it \
               once they detach.",
        help: "Mark the segment with IPC_RMID once every process has attached it.",
        level: "note",
    },
    Rule {
        id: "wide-mode",
        name: "WideMode",
        short: "A segment was created that group or others may access",
        full: "Creating a segment whose mode gives group or others any access (0640, 0666, ...) \
               lets any process of that class read or corrupt its data.",
        help: "Create segments with mode 0600 (IPC_PRIVATE or IPC_CREAT|IPC_EXCL|0600).",
        level: "warning",
    },
    Rule {
        id: "key-without-excl",
        name: "KeyWithoutExcl",
        short: "IPC_CREAT with a fixed key but without IPC_EXCL",
        full: "shmget with a fixed key, IPC_CREAT and no IPC_EXCL cannot tell a segment it created \
               from one another user planted under the same key first.",
        help: "Add IPC_EXCL and handle EEXIST, or use IPC_PRIVATE.",
        level: "warning",
    },
    Rule {
        id: "key-squatting",
        name: "KeySquatting",
        short: "An existing keyed segment of another user, or open to others, was opened",
        full: "Opening an existing keyed segment that another user owns or created, or that others \
               may access, is the classic attack on predictable ftok keys: pre-create the segment, \
               wait for the victim to use it.",
        help: "Create keyed segments with IPC_EXCL and mode 0600, and check the owner (IPC_STAT) \
               of a segment you open.",
        level: "warning",
    },
    Rule {
        id: "widening-ipc-set",
        name: "WideningIpcSet",
        short: "IPC_SET widened a segment's mode or handed it to another owner",
        full: "Access granted after the fact with shmctl(IPC_SET) is as dangerous as access granted \
               at creation.",
        help: "Only narrow a segment's mode with IPC_SET; keep its owner.",
        level: "warning",
    },
    Rule {
        id: "shm-exec",
        name: "ShmExec",
        short: "A segment was attached with SHM_EXEC",
        full: "Whoever can write an executable shared-memory attachment can inject code.",
        help: "Attach without SHM_EXEC.",
        level: "warning",
    },
];

/// The rule `id`, if known.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

/// A process's command as text (argv shell-quoted).
pub fn command_text(p: &ProcessRow) -> String {
    shell_words::join(&p.argv)
}

/// How much of a command the CI formats' messages show.
const COMMAND_WIDTH: usize = 120;

/// One line about a leaked (or held) segment: the text report's.
pub fn segment_message(s: &SegmentLeak) -> String {
    format!(
        "{}{}",
        report::segment_text(s, COMMAND_WIDTH),
        report::removal_hint(s)
    )
}

/// One line about an attachment never detached: the text report's.
pub fn attachment_message(a: &AttachmentLeak) -> String {
    report::attachment_text(a, COMMAND_WIDTH)
}

/// One line about a policy finding: the text report's, for one process.
pub fn finding_message(f: &FindingRow) -> String {
    report::finding_text(f, &report::finding_who(f, COMMAND_WIDTH), "")
}

/// What belongs to one logged process.
#[derive(Default)]
pub struct Items<'a> {
    pub segments: Vec<&'a SegmentLeak>,
    pub attachments: Vec<&'a AttachmentLeak>,
    pub findings: Vec<&'a FindingRow>,
    pub notes: Vec<&'a SegmentLeak>,
}

impl Items<'_> {
    /// Leaks and findings: what fails.
    pub fn failures(&self) -> usize {
        self.segments.len() + self.attachments.len() + self.findings.len()
    }
}

/// The report's items by logged process (the index of its row in
/// `processes`: the first row with the item's pid), and what belongs to
/// no logged process: segments found only through the kernel's table.
pub fn by_process(r: &Report) -> (Vec<Items<'_>>, Items<'_>) {
    let mut per: Vec<Items<'_>> = r.processes.iter().map(|_| Items::default()).collect();
    let mut rest = Items::default();
    let index = |pid: u32| r.processes.iter().position(|p| p.pid == pid);
    for s in &r.leaked_segments {
        match index(s.cpid).filter(|_| s.source == "log") {
            Some(i) => per[i].segments.push(s),
            None => rest.segments.push(s),
        }
    }
    for s in &r.notes {
        match index(s.cpid).filter(|_| s.source == "log") {
            Some(i) => per[i].notes.push(s),
            None => rest.notes.push(s),
        }
    }
    for a in &r.leaked_attachments {
        match index(a.pid) {
            Some(i) => per[i].attachments.push(a),
            None => rest.attachments.push(a),
        }
    }
    for f in &r.findings {
        match index(f.pid) {
            Some(i) => per[i].findings.push(f),
            None => rest.findings.push(f),
        }
    }
    (per, rest)
}

/// How a process's log ended, as the report's table says it.
pub fn end_text(p: &ProcessRow) -> String {
    match (&p.status, p.exit_event) {
        (Some(s), _) => printable(s),
        (None, true) => "exit".to_owned(),
        (None, false) => "no-exit".to_owned(),
    }
}
