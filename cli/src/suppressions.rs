//! `--suppressions FILE` for `run` and `report`: the library's parser and
//! matcher (LSan's format, see src/suppress.rs) applied to the tree's
//! report. Items the processes' own `suppressions=FILE` marked in their
//! logs (`"suppressed":true`) count as suppressed too.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use shmguard::support::{Subject, Suppression, Suppressions};
use shmguard_cli::logs::{self, LogSet, ProcessLog};

use crate::Failure;
use crate::kernel::SegmentRow;
use crate::report::{FindingRow, Report, SuppressedItems, UsedSuppression};

/// Reads and parses FILE: any line that is not a suppression, or a file
/// that cannot be read (not a regular file, larger than 1 MiB), is an
/// error (exit 2), naming FILE:LINE.
pub fn read(path: &Path) -> Result<Suppressions, Failure> {
    let bad = |why: String| Failure::new(2, format!("--suppressions: {why}"));
    let (rules, errors) = shmguard::support::load_suppressions(path).map_err(bad)?;
    if !errors.is_empty() {
        return Err(bad(errors.join("; ")));
    }
    Ok(rules)
}

/// The policy findings [`take_findings`] took out, and the lines of the
/// file that suppressed them.
pub struct TakenFindings {
    rows: Vec<FindingRow>,
    used: Used,
}

/// Items suppressed, by line of the file: (the line's text, count).
type Used = BTreeMap<usize, (String, u64)>;

fn count_use(used: &mut Used, by: &Suppression) {
    used.entry(by.line).or_insert_with(|| (by.to_string(), 0)).1 += 1;
}

/// Takes out of `logs` the policy findings that are suppressed (by
/// `rules`, or marked by the process itself), as rows of the report.
pub fn take_findings(logs: &mut LogSet, rules: Option<&Suppressions>) -> TakenFindings {
    let mut out = Vec::new();
    let mut used = Used::new();
    for p in &mut logs.processes {
        let shown = p.argv_or_exe();
        let (argv, exe) = (p.argv.clone(), p.exe.clone());
        p.findings.retain(|f| {
            let key = f.key.as_deref().and_then(parse_key);
            let subject = Subject {
                key,
                argv: &argv,
                exe: exe.as_deref(),
                stack: &f.stack,
            };
            let by = rules.and_then(|r| r.finding(&f.rule, &subject));
            if let Some(by) = by {
                count_use(&mut used, by);
            }
            let gone = f.suppressed || by.is_some();
            if gone {
                out.push(FindingRow {
                    pid: p.pid,
                    argv: shown.clone(),
                    rule: f.rule.clone(),
                    call: f.call.clone(),
                    refused: f.refused,
                    detail: f.detail.clone(),
                    stack: f.stack.clone(),
                });
            }
            !gone
        });
    }
    TakenFindings { rows: out, used }
}

/// Moves the suppressed leaks and notes of `report` into
/// `report.suppressed` (with `findings`, from [`take_findings`]) and
/// counts them in the summary. `rows`: segment tables that may name the
/// key of an attached segment.
pub fn apply(
    report: &mut Report,
    logs: &LogSet,
    rules: Option<&Suppressions>,
    findings: TakenFindings,
    rows: &[&[SegmentRow]],
) {
    let TakenFindings {
        rows: findings,
        mut used,
    } = findings;
    let by_pid: HashMap<u32, &ProcessLog> = logs.processes.iter().map(|p| (p.pid, p)).collect();
    let mut keys: HashMap<i32, i32> = HashMap::new();
    for table in rows {
        for r in table.iter() {
            keys.entry(r.shmid).or_insert(r.key);
        }
    }
    for p in &logs.processes {
        for c in &p.calls.created {
            if let Some(k) = parse_key(&c.key) {
                keys.insert(c.shmid, k);
            }
        }
    }
    let marked_any = !findings.is_empty()
        || logs.processes.iter().any(|p| {
            p.exit
                .as_ref()
                .is_some_and(|e| e.leaks.iter().chain(&e.notes).any(|i| i.suppressed))
        });
    if rules.is_none() && !marked_any {
        return;
    }
    let mut gone = SuppressedItems {
        findings,
        ..SuppressedItems::default()
    };
    // A segment: its key, its creator's command, and the stack its
    // creator's exit event gives it.
    let mut segment_gone = |shmid: i32, key: &str, cpid: u32, shown: Option<&[String]>| {
        let creator = by_pid.get(&cpid).copied();
        let item = creator.and_then(|p| p.exit.as_ref()).and_then(|e| {
            e.leaks
                .iter()
                .chain(&e.notes)
                .find(|i| i.kind == "segment" && i.shmid == shmid)
        });
        // Matched with the file first, so that its lines are counted as
        // used also where the process's own suppressions (the same file,
        // under run) marked the item already.
        let marked = item.is_some_and(|i| i.suppressed);
        let Some(rules) = rules else {
            return marked;
        };
        let subject = Subject {
            key: parse_key(key),
            argv: creator.map_or(shown.unwrap_or_default(), |p| &p.argv[..]),
            exe: creator.and_then(|p| p.exe.as_deref()),
            stack: item.map_or(&[][..], |i| &i.stack[..]),
        };
        let by = rules.leak(&subject);
        if let Some(by) = by {
            count_use(&mut used, by);
        }
        by.is_some() || marked
    };
    let (kept, out): (Vec<_>, Vec<_>) = std::mem::take(&mut report.leaked_segments)
        .into_iter()
        .partition(|s| !segment_gone(s.shmid, &s.key, s.cpid, s.argv.as_deref()));
    report.leaked_segments = kept;
    gone.leaked_segments = out;
    let (kept, out): (Vec<_>, Vec<_>) = std::mem::take(&mut report.notes)
        .into_iter()
        .partition(|s| !segment_gone(s.shmid, &s.key, s.cpid, s.argv.as_deref()));
    report.notes = kept;
    gone.notes = out;
    let (kept, out): (Vec<_>, Vec<_>) = std::mem::take(&mut report.leaked_attachments)
        .into_iter()
        .partition(|a| {
            let process = by_pid.get(&a.pid).copied();
            let item = process.and_then(|p| p.exit.as_ref()).and_then(|e| {
                e.leaks.iter().find(|i| {
                    i.kind == "attachment"
                        && i.shmid == a.shmid
                        && i.addr.as_deref() == Some(a.addr.as_str())
                })
            });
            let marked = item.is_some_and(|i| i.suppressed);
            let Some(rules) = rules else {
                return !marked;
            };
            let subject = Subject {
                key: keys.get(&a.shmid).copied(),
                argv: process.map_or(&[][..], |p| &p.argv[..]),
                exe: process.and_then(|p| p.exe.as_deref()),
                stack: item.map_or(&[][..], |i| &i.stack[..]),
            };
            let by = rules.leak(&subject);
            if let Some(by) = by {
                count_use(&mut used, by);
            }
            by.is_none() && !marked
        });
    report.leaked_attachments = kept;
    gone.leaked_attachments = out;

    let s = &mut report.summary;
    s.leaked_segments = report.leaked_segments.len() as u64;
    s.leaked_segment_bytes = report.leaked_segments.iter().map(|l| l.size).sum();
    s.leaked_attachments = report.leaked_attachments.len() as u64;
    s.leaks = s.leaked_segments + s.leaked_attachments;
    s.notes = report.notes.len() as u64;
    s.suppressed_leaks = Some((gone.leaked_segments.len() + gone.leaked_attachments.len()) as u64);
    s.suppressed_notes = Some(gone.notes.len() as u64);
    s.suppressed_findings = Some(gone.findings.len() as u64);
    gone.used = used
        .into_iter()
        .map(|(line, (suppression, count))| UsedSuppression {
            line,
            suppression,
            count,
        })
        .collect();
    report.suppressed = Some(gone);
}

/// `0x5eed0001` as the key.
fn parse_key(text: &str) -> Option<i32> {
    let hex = text.strip_prefix("0x")?;
    u32::from_str_radix(hex, 16).ok().map(|k| k as i32)
}

/// The ABSPATH of `suppressions=ABSPATH` for the tree's options: refused
/// when it holds the options' separator `:`.
pub fn for_tree(path: &Path) -> Result<String, Failure> {
    let abs = std::path::absolute(path).map_err(|e| {
        Failure::new(
            2,
            format!(
                "--suppressions: {}: {e}",
                logs::printable(&path.display().to_string())
            ),
        )
    })?;
    let text = abs.to_str().map(str::to_owned).ok_or_else(|| {
        Failure::new(
            2,
            "--suppressions: the path is not UTF-8 text, so it cannot be passed to the tree's SHMGUARD_OPTIONS".to_owned(),
        )
    })?;
    if text.contains(':') {
        return Err(Failure::new(
            2,
            format!(
                "--suppressions: {} holds ':', which separates SHMGUARD_OPTIONS pairs, so it cannot be passed to the tree; move or link the file elsewhere",
                logs::printable(&text)
            ),
        ));
    }
    Ok(text)
}
