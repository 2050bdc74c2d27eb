//! The body of the `log_file` fuzz target (fuzz/parsers), kept here so
//! that the stable tests run it over the seed corpus too. Not part of the
//! command's interface.
#![forbid(unsafe_code)]

use std::path::Path;

use crate::logs::{ProcessLog, parse_file};

/// The name the fuzzed bytes are read under.
pub const FILE: &str = "/logs/shmguard.4242.jsonl";

/// One process's audit log may hold any bytes (torn lines, NUL padding,
/// invalid UTF-8, numbers out of range, fields of the wrong type). Reading
/// it must not panic, every warning must be one line about the file, the
/// summary must add up, and NUL padding at the end (the preallocated space
/// of a writer killed by SIGKILL) must change nothing.
pub fn log_file(data: &[u8]) {
    let file = Path::new(FILE);
    let mut warnings = Vec::new();
    let process = parse_file(file, data, &mut warnings);
    for w in &warnings {
        check_warning(w);
    }
    if let Some(p) = &process {
        check_summary(p);
    }

    let mut padded = data.to_vec();
    padded.extend_from_slice(&[0; 100]);
    let mut padded_warnings = Vec::new();
    let padded_process = parse_file(file, &padded, &mut padded_warnings);
    assert_eq!(
        padded_warnings, warnings,
        "NUL padding changed the warnings"
    );
    // ProcessLog has no PartialEq; its Debug form shows every field.
    assert_eq!(
        format!("{padded_process:?}"),
        format!("{process:?}"),
        "NUL padding changed what was read"
    );
}

/// A warning is one line that names the file.
pub fn check_warning(w: &str) {
    assert!(
        w.starts_with(&format!("{FILE}: ")),
        "warning without the file: {w:?}"
    );
    assert!(!w.contains(['\n', '\r']), "warning on several lines: {w:?}");
}

/// The counts of a process's row agree with each other.
pub fn check_summary(p: &ProcessLog) {
    let s = &p.calls;
    assert!(s.failed <= s.count, "more failed calls than calls: {s:?}");
    let by_errno: u64 = s.failures.values().flat_map(|m| m.values()).sum();
    assert_eq!(by_errno, s.failed, "failures by errno do not add up: {s:?}");
    // Creations, removals and attaches are successful calls, each counted once.
    let ok = s.count - s.failed;
    assert!(
        s.segments_created + s.segments_removed <= ok,
        "more creations and removals than successful calls: {s:?}"
    );
    assert!(
        s.peak_attachments <= ok,
        "more attachments than successful calls: {s:?}"
    );
    assert!(
        s.created.len() as u64 <= s.segments_created,
        "more segments listed than created: {s:?}"
    );
    assert!(
        s.removals.len() as u64 <= s.segments_removed,
        "more removals listed than made: {s:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every seed of the fuzz target passes (`make fuzz-parsers` starts
    /// from them; here they run on stable).
    #[test]
    fn seed_corpus() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fuzz/parsers/corpus-seeds/log_file"
        );
        let mut seeds = 0;
        let mut processes = 0;
        for entry in std::fs::read_dir(dir).expect("the seed corpus") {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            log_file(&bytes);
            seeds += 1;
            processes +=
                usize::from(parse_file(Path::new(FILE), &bytes, &mut Vec::new()).is_some());
        }
        assert!(seeds >= 4, "{seeds} seeds in {dir}");
        // Most seeds are real logs, not garbage.
        assert!(processes >= 3, "{processes} of {seeds} seeds read as logs");
    }

    #[test]
    #[should_panic(expected = "several lines")]
    fn a_warning_on_two_lines_fails_the_check() {
        check_warning(&format!("{FILE}: line 1: not a log event:\nexpected u32"));
    }

    #[test]
    #[should_panic(expected = "more failed calls than calls")]
    fn a_summary_that_does_not_add_up_fails_the_check() {
        let mut p = ProcessLog::default();
        p.calls.failed = 1;
        check_summary(&p);
    }
}
