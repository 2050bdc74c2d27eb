//! Suppressions, in LeakSanitizer's format: one `leak:PATTERN`,
//! `finding:RULE` or `finding:RULE:PATTERN` per line, `#` comments and
//! blank lines. One parser and one matcher, for the library
//! (`suppressions=FILE`) and the `shmguard` command (`--suppressions FILE`).
//!
//! PATTERN is matched as sanitizer_common's `TemplateMatch` matches: a
//! substring match, where `*` stands for any run of characters, a leading
//! `^` anchors at the start and a `$` anchors at the end. A PATTERN matches
//! an item when it matches any of: the key in hex (`0x5eed0001`), the
//! creating command (its `argv[0]`, the base name of `argv[0]`, or its
//! executable; not its arguments), or a frame of the creation stack (the
//! whole frame `func (file:line:col)`, the function alone, or the file
//! alone).
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::io::Read;

use crate::lock::Published;
use crate::options::shorten;

/// The rule names a `finding:` line may name.
pub const RULES: [&str; 5] = [
    "wide-mode",
    "key-without-excl",
    "key-squatting",
    "widening-ipc-set",
    "shm-exec",
];

/// The largest suppression file read: a FIFO, `/dev/zero` or a huge file
/// must neither hang the process nor eat its memory.
pub const MAX_FILE: u64 = 1 << 20;

/// What one line suppresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum What {
    /// `leak:PATTERN`: leaks (and notes) whose item matches PATTERN.
    Leak,
    /// `finding:RULE[:PATTERN]`: policy findings of RULE (whose item
    /// matches PATTERN, when given).
    Finding(String),
}

/// One suppression line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suppression {
    pub what: What,
    /// `None` for `finding:RULE` without a pattern: every finding of RULE.
    pub pattern: Option<String>,
    /// The line number in the file (from 1).
    pub line: usize,
}

impl core::fmt::Display for Suppression {
    /// The line as the file gives it, without spaces around it:
    /// `leak:PATTERN`, `finding:RULE` or `finding:RULE:PATTERN`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.what {
            What::Leak => write!(f, "leak:{}", self.pattern.as_deref().unwrap_or_default()),
            What::Finding(rule) => match &self.pattern {
                Some(p) => write!(f, "finding:{rule}:{p}"),
                None => write!(f, "finding:{rule}"),
            },
        }
    }
}

/// A parsed suppression file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Suppressions {
    pub items: Vec<Suppression>,
}

/// What an item is matched on.
#[derive(Clone, Copy, Debug, Default)]
pub struct Subject<'a> {
    /// The segment's key, when known.
    pub key: Option<i32>,
    /// The creating (or calling) process's argv.
    pub argv: &'a [String],
    /// Its executable, when known.
    pub exe: Option<&'a str>,
    /// The creation stack (or the call's), frames `func (file:line:col)`.
    pub stack: &'a [String],
}

/// Parses a suppression file's text. Each bad line gives one error,
/// `NAME:LINE: why`, and is left out; the others apply.
pub fn parse(text: &str, name: &str) -> (Suppressions, Vec<String>) {
    let mut out = Suppressions::default();
    let mut errors = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw
            .trim_start_matches([' ', '\t'])
            .trim_end_matches([' ', '\t', '\r']);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let n = i + 1;
        let bad = |why: String| format!("{name}:{n}: {why}");
        if let Some(pattern) = line.strip_prefix("leak:") {
            out.items.push(Suppression {
                what: What::Leak,
                pattern: Some(pattern.to_owned()),
                line: n,
            });
        } else if let Some(rest) = line.strip_prefix("finding:") {
            let (rule, pattern) = match rest.split_once(':') {
                Some((rule, pattern)) => (rule, Some(pattern.to_owned())),
                None => (rest, None),
            };
            if !RULES.contains(&rule) {
                errors.push(bad(format!(
                    "unknown rule '{}' (one of {})",
                    shorten(rule),
                    RULES.join(", ")
                )));
                continue;
            }
            out.items.push(Suppression {
                what: What::Finding(rule.to_owned()),
                pattern,
                line: n,
            });
        } else {
            errors.push(bad(format!(
                "'{}' is not leak:PATTERN, finding:RULE or finding:RULE:PATTERN",
                shorten(line)
            )));
        }
    }
    (out, errors)
}

/// Reads a suppression file: a regular file of at most [`MAX_FILE`]
/// bytes, opened without following a FIFO's writer (`O_NONBLOCK`) and not
/// inherited across `exec` (`O_CLOEXEC`). The error is a sentence.
pub fn read_file(path: &std::path::Path) -> Result<String, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot open it: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat it: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".to_owned());
    }
    if meta.len() > MAX_FILE {
        return Err(format!("larger than {MAX_FILE} bytes"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(format!("larger than {MAX_FILE} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())
}

/// Reads and parses `path`: the suppressions, and one sentence per bad
/// line (`PATH:LINE: why`). `Err` when the file cannot be read at all.
pub fn load(path: &std::path::Path) -> Result<(Suppressions, Vec<String>), String> {
    let name = path.display().to_string();
    let text = read_file(path).map_err(|why| format!("{}: {why}", shorten(&name)))?;
    Ok(parse(&text, &name))
}

impl Suppressions {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether any line is `finding:`.
    pub fn has_findings(&self) -> bool {
        self.items
            .iter()
            .any(|s| matches!(s.what, What::Finding(_)))
    }

    /// Whether any line is `leak:`.
    pub fn has_leaks(&self) -> bool {
        self.items.iter().any(|s| s.what == What::Leak)
    }

    /// The first `leak:` line that suppresses an item, if any.
    pub fn leak(&self, subject: &Subject<'_>) -> Option<&Suppression> {
        self.items
            .iter()
            .find(|s| s.what == What::Leak && matches_pattern(s.pattern.as_deref(), subject))
    }

    /// The first `finding:` line that suppresses a finding of `rule`.
    pub fn finding(&self, rule: &str, subject: &Subject<'_>) -> Option<&Suppression> {
        self.items.iter().find(|s| {
            matches!(&s.what, What::Finding(r) if r == rule)
                && matches_pattern(s.pattern.as_deref(), subject)
        })
    }
}

/// Whether `pattern` (none: any) matches one of the subject's strings.
fn matches_pattern(pattern: Option<&str>, subject: &Subject<'_>) -> bool {
    let Some(pattern) = pattern else {
        return true;
    };
    let m = |s: &str| template_match(pattern, s);
    if let Some(key) = subject.key {
        if m(&format!("0x{:08x}", key as u32)) {
            return true;
        }
    }
    // The program, not its arguments (an argument may hold anything,
    // a key included).
    if let Some(first) = subject.argv.first() {
        if m(first) || m(first.rsplit('/').next().unwrap_or(first)) {
            return true;
        }
    }
    if subject.exe.is_some_and(m) {
        return true;
    }
    subject.stack.iter().any(|frame| {
        if m(frame) {
            return true;
        }
        // `func (file:line:col)`: the function alone, the file alone.
        match frame.split_once(" (") {
            Some((func, rest)) => {
                let location = rest.strip_suffix(')').unwrap_or(rest);
                let file = location.split(':').next().unwrap_or(location);
                m(func) || m(file)
            }
            None => false,
        }
    })
}

/// sanitizer_common's `TemplateMatch`: whether `templ` matches `s`. An
/// empty `s` never matches. Without anchors, the pattern's pieces (split
/// at `*`) must appear in `s` in order, each at its first occurrence after
/// the previous one; `^` at the start of `templ` anchors the first piece at
/// the start of `s`; a `$` ends the pattern and requires the end of `s`
/// (or follows a `*`, which then matches the rest).
pub fn template_match(templ: &str, s: &str) -> bool {
    let (mut t, mut s) = (templ.as_bytes(), s.as_bytes());
    if s.is_empty() {
        return false;
    }
    let mut start = false;
    if t.first() == Some(&b'^') {
        start = true;
        t = &t[1..];
    }
    let mut asterisk = false;
    while let Some(&c) = t.first() {
        if c == b'*' {
            t = &t[1..];
            start = false;
            asterisk = true;
            continue;
        }
        if c == b'$' {
            return s.is_empty() || asterisk;
        }
        if s.is_empty() {
            return false;
        }
        let end = t
            .iter()
            .position(|&b| b == b'*' || b == b'$')
            .unwrap_or(t.len());
        let piece = &t[..end];
        let Some(pos) = s.windows(piece.len()).position(|w| w == piece) else {
            return false;
        };
        if start && pos != 0 {
            return false;
        }
        s = &s[pos + piece.len()..];
        t = &t[end..];
        start = false;
        asterisk = false;
    }
    true
}

/// The suppressions of this process (`suppressions=FILE`), with what
/// items are matched on in it: its own argv and executable.
pub struct Active {
    pub rules: Suppressions,
    pub argv: Vec<String>,
    pub exe: Option<String>,
}

impl Active {
    /// A subject of this process.
    pub fn subject<'a>(&'a self, key: Option<i32>, stack: &'a [String]) -> Subject<'a> {
        Subject {
            key,
            argv: &self.argv,
            exe: self.exe.as_deref(),
            stack,
        }
    }
}

// Loaded at first need (the first policy finding, or the exit check), never
// at start-up, which may run from `.preinit_array`; and, like start-up, by
// an atomic state machine rather than a lock, so that a forked child or a
// signal handler never waits for a thread that cannot finish.
static STATE: AtomicU8 = AtomicU8::new(UNREAD);
const UNREAD: u8 = 0;
const READING: u8 = 1;
const READ: u8 = 2;
/// `pid << 32 | tid` of the thread reading the file.
static READER: AtomicU64 = AtomicU64::new(0);
static ACTIVE: Published<Active> = Published::new();

/// The suppressions in force, read from `suppressions=FILE` at the first
/// call of this function; `None` without the option, when the file could
/// not be read (one warning line), or while another thread that this one
/// cannot wait for reads it. Costs one atomic load once read.
pub fn active() -> Option<&'static Active> {
    if STATE.load(Ordering::Acquire) == READ {
        return ACTIVE.get();
    }
    read_once()
}

#[cold]
#[inline(never)]
fn read_once() -> Option<&'static Active> {
    let path = crate::runtime::options().suppressions.as_deref()?;
    let pid = crate::sys::getpid();
    let tid = crate::sys::gettid();
    match STATE.compare_exchange(UNREAD, READING, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {}
        Err(READ) => return ACTIVE.get(),
        Err(_) => {
            // Another thread reads it: wait (at most a second) only when
            // that thread is of this process and not this one.
            let start = std::time::Instant::now();
            loop {
                if STATE.load(Ordering::Acquire) == READ {
                    return ACTIVE.get();
                }
                let reader = READER.load(Ordering::Acquire);
                let (rpid, rtid) = ((reader >> 32) as u32, reader as u32);
                if (reader != 0 && (rpid != pid || rtid == tid))
                    || start.elapsed() > std::time::Duration::from_secs(1)
                {
                    return None;
                }
                std::thread::yield_now();
            }
        }
    }
    READER.store(u64::from(pid) << 32 | u64::from(tid), Ordering::Release);
    let saved = crate::sys::errno();
    crate::fail_open((), || match load(std::path::Path::new(path)) {
        Ok((rules, errors)) => {
            for e in &errors {
                crate::runtime::say(format_args!("warning: suppressions: {e} (line ignored)"));
            }
            let mut cmdline = Vec::new();
            let _ = crate::sys::read_file(c"/proc/self/cmdline", &mut cmdline);
            let argv = cmdline
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let mut buf = [0u8; 4096];
            let exe = crate::sys::readlink(c"/proc/self/exe", &mut buf)
                .map(|e| String::from_utf8_lossy(e).into_owned());
            ACTIVE.publish(Active { rules, argv, exe });
        }
        Err(why) => crate::runtime::say(format_args!(
            "warning: suppressions: {why} (nothing suppressed)"
        )),
    });
    crate::sys::set_errno(saved);
    STATE.store(READ, Ordering::Release);
    ACTIVE.get()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_match_follows_sanitizer_common() {
        // Substring by default.
        assert!(template_match("make_table", "make_table"));
        assert!(template_match("table", "make_table"));
        assert!(!template_match("tables", "make_table"));
        // Anchors.
        assert!(template_match("^make", "make_table"));
        assert!(!template_match("^table", "make_table"));
        assert!(template_match("table$", "make_table"));
        assert!(!template_match("make$", "make_table"));
        assert!(template_match("^make_table$", "make_table"));
        assert!(!template_match("^make_table$", "make_table2"));
        // Wildcards.
        assert!(template_match("m*e", "make_table"));
        assert!(template_match("^m*_t*e$", "make_table"));
        assert!(template_match("0x5eed*", "0x5eed0001"));
        assert!(template_match("^0x5eed*1$", "0x5eed0001"));
        assert!(!template_match("^0x5eed*2$", "0x5eed0001"));
        assert!(template_match("*", "anything"));
        assert!(template_match("*$", "anything"));
        assert!(template_match("a*$", "abc"));
        // Pieces in order.
        assert!(!template_match("table*make", "make_table"));
        // The first occurrence is taken (as TemplateMatch's strstr does).
        assert!(!template_match("a*b$", "abxb"));
        // An empty pattern matches any non-empty string; nothing matches
        // an empty string.
        assert!(template_match("", "x"));
        assert!(!template_match("", ""));
        assert!(!template_match("*", ""));
        // `^` only counts at the start; `$` ends the pattern.
        assert!(template_match("a^b", "xa^by"));
        assert!(template_match("ab$cd", "ab"));
    }

    #[test]
    fn parses_the_lsan_format() {
        let text = "# known leaks\n\
                    \n\
                    leak:0x5eed0001\n\
                    \t leak:^make_table$  \r\n\
                    finding:wide-mode\n\
                    finding:key-without-excl:legacy_server\n\
                    leak:\n";
        let (s, e) = parse(text, "supp.txt");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(s.items.len(), 5);
        assert_eq!(s.items[0].pattern.as_deref(), Some("0x5eed0001"));
        assert_eq!(s.items[0].line, 3);
        assert_eq!(s.items[1].pattern.as_deref(), Some("^make_table$"));
        assert_eq!(s.items[2].what, What::Finding("wide-mode".into()));
        assert_eq!(s.items[2].pattern, None);
        assert_eq!(s.items[3].pattern.as_deref(), Some("legacy_server"));
        assert_eq!(s.items[4].pattern.as_deref(), Some(""));
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let (s, e) = parse(
            "leak:a\nLeak:b\nfinding:no-such-rule\nfinding\nrace:x\n  # ok\n",
            "s.supp",
        );
        assert_eq!(s.items.len(), 1);
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(
            e[0].starts_with("s.supp:2: 'Leak:b' is not leak:PATTERN"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("s.supp:3: unknown rule 'no-such-rule'"),
            "{e:?}"
        );
        assert!(e[2].starts_with("s.supp:4: "), "{e:?}");
        assert!(e[3].starts_with("s.supp:5: "), "{e:?}");
        let (_, e) = parse("\x1b[2Jleak\n", "f");
        assert!(!e[0].contains('\x1b'), "{e:?}");
    }

    #[test]
    fn matches_key_command_and_frames() {
        let (s, e) = parse(
            "leak:0x5eed0001\nleak:^server$\nleak:^make_table$\nleak:helper.c\n\
             finding:wide-mode:legacy\nfinding:shm-exec\n",
            "f",
        );
        assert!(e.is_empty());
        let argv = ["/usr/bin/server".to_owned(), "--port".to_owned()];
        let none = Subject::default();
        assert!(s.leak(&none).is_none());
        let by_key = Subject {
            key: Some(0x5eed0001),
            ..none
        };
        assert_eq!(s.leak(&by_key).map(|s| s.line), Some(1));
        let other_key = Subject {
            key: Some(0x5eed0002),
            ..none
        };
        assert!(s.leak(&other_key).is_none());
        let by_command = Subject {
            argv: &argv,
            ..none
        };
        assert_eq!(s.leak(&by_command).map(|s| s.line), Some(2));
        // Arguments are not the command: an argument that holds a key
        // does not make the process's items that key's.
        let with_key = ["./tool".to_owned(), "0x5eed0001".to_owned()];
        assert!(
            s.leak(&Subject {
                argv: &with_key,
                ..none
            })
            .is_none()
        );
        let stack = [
            "make_table (/src/t.c:3:1)".to_owned(),
            "main (/src/t.c:9:5)".to_owned(),
        ];
        let by_frame = Subject {
            stack: &stack,
            ..none
        };
        assert_eq!(s.leak(&by_frame).map(|s| s.line), Some(3));
        let by_file = ["f (/src/helper.c:1:1)".to_owned()];
        assert_eq!(
            s.leak(&Subject {
                stack: &by_file,
                ..none
            })
            .map(|s| s.line),
            Some(4)
        );
        // finding lines never suppress leaks, and the other way round.
        assert!(s.finding("wide-mode", &by_key).is_none());
        let legacy = ["./legacy".to_owned()];
        let legacy = Subject {
            argv: &legacy,
            ..none
        };
        assert!(s.finding("wide-mode", &legacy).is_some());
        assert!(s.finding("key-squatting", &legacy).is_none());
        assert!(s.finding("shm-exec", &none).is_some());
        assert!(s.leak(&legacy).is_none());
    }

    #[test]
    fn reads_only_small_regular_files() {
        let dir = std::env::temp_dir().join(format!("shmguard-supp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        struct Gone(std::path::PathBuf);
        impl Drop for Gone {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let _gone = Gone(dir.clone());
        let ok = dir.join("ok.supp");
        std::fs::write(&ok, "leak:x\n").unwrap();
        let (s, e) = load(&ok).unwrap();
        assert!(e.is_empty() && s.items.len() == 1);
        let big = dir.join("big.supp");
        std::fs::write(&big, vec![b'#'; MAX_FILE as usize + 1]).unwrap();
        assert!(load(&big).unwrap_err().contains("larger than"));
        assert!(load(&dir).unwrap_err().contains("not a regular file"));
        assert!(
            load(std::path::Path::new("/dev/zero"))
                .unwrap_err()
                .contains("not a regular file")
        );
        assert!(
            load(&dir.join("missing"))
                .unwrap_err()
                .contains("cannot open")
        );
    }
}
