//! The bodies of the `options` and `suppressions` fuzz targets
//! (fuzz/parsers), kept here so that
//! the stable tests run it over the seed corpus too. Not part of the
//! library's interface.
#![forbid(unsafe_code)]

use crate::error::errno_name;
use crate::options::{self, FaultAction, Options, Policy};

/// The longest warning `options::parse` gives: at most two pieces of the
/// input, each shortened to 64 characters (a character is at most 6 bytes
/// once escaped) plus "...", in a sentence of under 100 bytes.
pub const MAX_WARNING: usize = 1024;

/// `SHMGUARD_OPTIONS` may hold any bytes. Parsing them must not panic,
/// every warning must be one short line, the result must not depend on
/// anything but the bytes, each pair must give its warning alone and
/// otherwise be ignored (the README's Options section), and the options must come back
/// unchanged from their canonical form.
pub fn options(data: &[u8]) {
    let (parsed, warnings) = options::parse(data);
    for w in &warnings {
        check_warning(w);
    }
    assert_eq!(
        options::parse(data),
        (parsed.clone(), warnings.clone()),
        "a second parse differs"
    );

    // Pair by pair: each gives at most one warning, the same as in the
    // whole string, and without the pairs that warn the options are the same.
    let text = String::from_utf8_lossy(data);
    let mut each = Vec::new();
    let mut kept = Vec::new();
    for pair in text.split(':') {
        let (_, w) = options::parse(pair.as_bytes());
        assert!(w.len() <= 1, "one pair, several warnings: {pair:?} {w:?}");
        if w.is_empty() {
            kept.push(pair);
        }
        each.extend(w);
    }
    assert_eq!(each, warnings, "warnings differ from the pairs' own");
    let kept = kept.join(":");
    assert_eq!(
        options::parse(kept.as_bytes()),
        (parsed.clone(), Vec::new()),
        "the pairs without a warning give other options: {kept:?}"
    );

    let canonical = render(&parsed);
    assert_eq!(
        options::parse(canonical.as_bytes()),
        (parsed, Vec::new()),
        "the canonical form parses differently: {canonical:?}"
    );
}

/// A warning is one line of text, not empty and not long.
pub fn check_warning(w: &str) {
    assert!(!w.trim().is_empty(), "empty warning");
    assert!(
        !w.chars().any(char::is_control),
        "warning with a control character: {w:?}"
    );
    assert!(
        w.len() <= MAX_WARNING,
        "warning of {} bytes: {w:?}",
        w.len()
    );
}

/// `o` as an options string: every key, in the order of the README's options table.
pub fn render(o: &Options) -> String {
    let policy = match o.policy {
        Policy::Audit => "audit",
        Policy::Strict => "strict",
    };
    let mut text = format!(
        "leak_check={}:leak_report={}:exitcode={}:verbosity={}:policy={policy}:guard_pages={}:stacks={}",
        u8::from(o.leak_check),
        u8::from(o.leak_report),
        o.exitcode,
        o.verbosity,
        u8::from(o.guard_pages),
        u8::from(o.stacks),
    );
    if let Some(path) = &o.log_path {
        text.push_str(":log_path=");
        text.push_str(path);
    }
    let rules: Vec<String> = o
        .fault
        .iter()
        .map(|r| {
            let action = match r.action {
                FaultAction::Fail(errno) => errno_name(errno).unwrap_or("(no name)"),
                FaultAction::Panic => "panic",
            };
            format!("{}@{}={action}", r.call.name(), r.nth)
        })
        .collect();
    if !rules.is_empty() {
        text.push_str(":fault=");
        text.push_str(&rules.join(","));
    }
    if let Some(path) = &o.suppressions {
        text.push_str(":suppressions=");
        text.push_str(path);
    }
    if o.help {
        text.push_str(":help=1");
    }
    text
}

/// A suppression file (`suppressions=FILE`, `--suppressions FILE`) may hold
/// any bytes: parsing and matching must not panic; every error is one
/// short line that names its line (`NAME:N: `, N a line of the text);
/// every line gives at most one suppression or one error, and a line that
/// gives neither is blank or a comment; and parsing twice gives the same.
pub fn suppressions(data: &[u8]) {
    use crate::suppress::{self, Subject};
    let text = String::from_utf8_lossy(data);
    let (parsed, errors) = suppress::parse(&text, "f");
    assert_eq!(
        suppress::parse(&text, "f"),
        (parsed.clone(), errors.clone()),
        "a second parse differs"
    );
    let lines: Vec<&str> = text.split('\n').collect();
    let mut used = vec![false; lines.len() + 1];
    for e in &errors {
        check_warning(e);
        let n: usize = e
            .strip_prefix("f:")
            .and_then(|rest| rest.split_once(": "))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or_else(|| panic!("an error without its line: {e:?}"));
        assert!(n >= 1 && n <= lines.len() && !used[n], "{e:?}");
        used[n] = true;
    }
    for item in &parsed.items {
        assert!(item.line >= 1 && item.line <= lines.len() && !used[item.line]);
        used[item.line] = true;
    }
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_matches([' ', '\t', '\r']);
        if !used[i + 1] {
            assert!(
                t.is_empty() || t.starts_with('#'),
                "line {} gave nothing: {line:?}",
                i + 1
            );
        }
    }
    // Matching: every pattern against pieces of the input itself.
    let argv = [text.to_string()];
    let stack = [lines.first().copied().unwrap_or_default().to_owned()];
    let subject = Subject {
        key: Some(0x5eed0001),
        argv: &argv,
        exe: lines.last().copied(),
        stack: &stack,
    };
    let _ = parsed.leak(&subject);
    for rule in suppress::RULES {
        let _ = parsed.finding(rule, &subject);
    }
    for pattern in lines.iter().take(64) {
        for s in lines.iter().take(64) {
            let _ = suppress::template_match(pattern, s);
        }
    }
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
            "/fuzz/parsers/corpus-seeds/options"
        );
        let mut seeds = 0;
        for entry in std::fs::read_dir(dir).expect("the seed corpus") {
            let path = entry.unwrap().path();
            options(&std::fs::read(&path).unwrap());
            seeds += 1;
        }
        assert!(seeds >= 5, "{seeds} seeds in {dir}");
    }

    #[test]
    fn render_gives_every_key() {
        let (o, w) = options::parse(
            b"log_path=/tmp/x.%p.jsonl:verbosity=1:policy=strict:fault=shmget@2=ENOSPC,ftok@9=EACCES",
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            render(&o),
            "leak_check=1:leak_report=1:exitcode=0:verbosity=1:policy=strict:guard_pages=0:stacks=0\
             :log_path=/tmp/x.%p.jsonl:fault=shmget@2=ENOSPC,ftok@9=EACCES"
        );
    }

    /// Every seed of the `suppressions` fuzz target passes.
    #[test]
    fn suppression_seed_corpus() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/parsers/corpus-seeds/suppressions"
        );
        let mut seeds = 0;
        for entry in std::fs::read_dir(dir).expect("the seed corpus") {
            let path = entry.unwrap().path();
            suppressions(&std::fs::read(&path).unwrap());
            seeds += 1;
        }
        assert!(seeds >= 3, "{seeds} seeds in {dir}");
    }

    #[test]
    fn render_keeps_suppressions() {
        let (o, w) = options::parse(b"suppressions=/etc/shm.supp:help=1");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(options::parse(render(&o).as_bytes()), (o, Vec::new()));
    }

    #[test]
    #[should_panic(expected = "control character")]
    fn a_warning_on_two_lines_fails_the_check() {
        check_warning("unknown option 'a\nb' (ignored)");
    }

    #[test]
    #[should_panic(expected = "warning of 1025 bytes")]
    fn a_long_warning_fails_the_check() {
        check_warning(&"x".repeat(MAX_WARNING + 1));
    }
}
