//! `SHMGUARD_OPTIONS`: sanitizer-style `key=value` pairs separated by `:`.
//!
//! Parsing is pure: it returns the options and the warnings to print, so it
//! is tested without touching the environment.
#![forbid(unsafe_code)]

/// The policy mode (`policy=`: the README's security policy section).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Audit,
    Strict,
}

/// Every option, with its default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Check for leaks at exit (the report, the log's exit event's
    /// leaks, `exitcode`).
    pub leak_check: bool,
    /// Print that check's report on stderr (0: the check still runs, for
    /// the log and `exitcode`; `shmguard run` sets it, the tree's report
    /// being the one answer).
    pub leak_report: bool,
    /// Nonzero: a process that leaked exits with this status.
    pub exitcode: u8,
    /// The audit log path (`%p` is the pid).
    pub log_path: Option<String>,
    /// 0: quiet; 1: each failure's diagnostic; 2: every call.
    pub verbosity: u8,
    pub policy: Policy,
    pub guard_pages: bool,
    pub stacks: bool,
    /// Fault injection rules (`fault=`), in the order given.
    pub fault: Vec<FaultRule>,
    /// `help=1`: print every option on stderr (the program goes on).
    pub help: bool,
    /// The suppression file (`suppressions=FILE`), read at first need.
    pub suppressions: Option<String>,
}

impl Options {
    /// The defaults, as a constant (usable without allocating or waiting).
    pub const DEFAULT: Self = Self {
        leak_check: true,
        leak_report: true,
        exitcode: 0,
        log_path: None,
        verbosity: 0,
        policy: Policy::Audit,
        guard_pages: false,
        stacks: false,
        fault: Vec::new(),
        help: false,
        suppressions: None,
    };
}

/// One option as `help=1` lists it.
pub struct Doc {
    pub key: &'static str,
    pub values: &'static str,
    pub default: &'static str,
    pub meaning: &'static str,
}

/// Every option [`parse`] knows, with its default and meaning, in the
/// order `help=1` prints them.
pub const DOCS: &[Doc] = &[
    Doc {
        key: "leak_check",
        values: "0|1",
        default: "1",
        meaning: "report the segments and attachments a process leaves behind, at exit",
    },
    Doc {
        key: "leak_report",
        values: "0|1",
        default: "1",
        meaning: "print that report on stderr (0: the check still runs for the log's exit event and exitcode)",
    },
    Doc {
        key: "exitcode",
        values: "0-255",
        default: "0",
        meaning: "nonzero: a process that leaked exits with this status (0: the program's own status)",
    },
    Doc {
        key: "verbosity",
        values: "0|1|2",
        default: "0",
        meaning: "1: print each failed call with its diagnostic, and policy findings; 2: every call",
    },
    Doc {
        key: "log_path",
        values: "PATH",
        default: "unset",
        meaning: "write the audit log, one JSON Lines file per process (%p: the pid)",
    },
    Doc {
        key: "policy",
        values: "audit|strict",
        default: "audit",
        meaning: "strict: refuse calls that break a security rule with EACCES; audit: only report them",
    },
    Doc {
        key: "guard_pages",
        values: "0|1",
        default: "0",
        meaning: "a no-access page before and after each attachment whose address the kernel chooses",
    },
    Doc {
        key: "stacks",
        values: "0|1",
        default: "0",
        meaning: "record call stacks for leaks and policy findings",
    },
    Doc {
        key: "fault",
        values: "CALL@N=ERRNO[,...]",
        default: "unset",
        meaning: "the Nth call of CALL fails with ERRNO without reaching the kernel (CALL@N=panic: a self-test)",
    },
    Doc {
        key: "suppressions",
        values: "FILE",
        default: "unset",
        meaning: "leaks and policy findings not to report (leak:PATTERN, finding:RULE[:PATTERN] lines, as LSan's)",
    },
    Doc {
        key: "help",
        values: "0|1",
        default: "0",
        meaning: "print this list on stderr; the program goes on",
    },
];

/// The lines `help=1` prints: how the options are written, then one line
/// per option with its values, default and meaning.
pub fn help() -> Vec<String> {
    let mut lines = vec![
        "SHMGUARD_OPTIONS: key=value pairs separated by ':' (',' separates the entries of fault=), e.g. verbosity=1:exitcode=3".to_owned(),
    ];
    let width = DOCS
        .iter()
        .map(|d| d.key.len() + d.values.len() + 1)
        .max()
        .unwrap_or(0);
    for d in DOCS {
        let form = format!("{}={}", d.key, d.values);
        lines.push(format!(
            "  {form:<width$}  default {:<5}  {}",
            d.default, d.meaning
        ));
    }
    lines
}

/// The hint a warning gives when a pair holds a `,`: sanitizer users write
/// `verbosity=1,exitcode=3`, which is one pair here.
const COMMA_HINT: &str = "pairs are separated by ':' (',' separates the entries of fault=)";

/// Whether `value` holds `,KEY=` for a known key: pairs joined with `,`
/// instead of `:`.
fn comma_joined(value: &str) -> bool {
    value.split(',').skip(1).any(|part| {
        part.split_once('=')
            .is_some_and(|(k, _)| DOCS.iter().any(|d| d.key == k.trim()))
    })
}

impl Default for Options {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The calls that `fault=` may name, indexed by [`CallKind`].
pub const CALLS: [&str; 5] = ["shmget", "shmat", "shmdt", "shmctl", "ftok"];

/// One of the five calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    Shmget = 0,
    Shmat = 1,
    Shmdt = 2,
    Shmctl = 3,
    Ftok = 4,
}

impl CallKind {
    const ALL: [CallKind; 5] = [
        Self::Shmget,
        Self::Shmat,
        Self::Shmdt,
        Self::Shmctl,
        Self::Ftok,
    ];

    /// The C name.
    pub fn name(self) -> &'static str {
        CALLS[self as usize]
    }
}

/// `CALL@N=ERRNO`: the Nth call of CALL in a process fails with ERRNO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultRule {
    pub call: CallKind,
    pub nth: u64,
    pub action: FaultAction,
}

/// What a fault rule does to its call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// `=ERRNO`: fail with this errno without reaching the kernel.
    Fail(i32),
    /// `=panic`: panic inside shmguard's own code before the call goes on
    /// as usual; a self-test of the guard that keeps a bug of shmguard's
    /// from changing a result or aborting the program.
    Panic,
}

/// Parses an options string. Unknown keys and bad values are skipped, each
/// with one warning sentence.
pub fn parse(text: &[u8]) -> (Options, Vec<String>) {
    let mut options = Options::default();
    let mut warnings = Vec::new();
    let text = String::from_utf8_lossy(text);
    for pair in text.split(':').filter(|p| !p.trim().is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            warnings.push(format!("'{}' is not key=value (ignored)", shorten(pair)));
            continue;
        };
        // Matched and quoted trimmed: a warning names a known key as such.
        let key = key.trim();
        if DOCS.iter().any(|d| d.key == key) && comma_joined(value) {
            warnings.push(format!(
                "'{}' looks like several pairs joined by ',': {COMMA_HINT} (ignored)",
                shorten(pair.trim())
            ));
            continue;
        }
        let bad = |what: &str| {
            let hint = if value.contains(',') && key != "fault" {
                format!("; {COMMA_HINT}")
            } else {
                String::new()
            };
            format!(
                "bad value '{}' for {key}: {what}{hint} (ignored)",
                shorten(value)
            )
        };
        match key {
            "leak_check" => match flag(value) {
                Some(v) => options.leak_check = v,
                None => warnings.push(bad("expected 0 or 1")),
            },
            "leak_report" => match flag(value) {
                Some(v) => options.leak_report = v,
                None => warnings.push(bad("expected 0 or 1")),
            },
            "exitcode" => match value.parse::<u8>() {
                Ok(v) => options.exitcode = v,
                Err(_) => warnings.push(bad("expected 0-255")),
            },
            "verbosity" => match value.parse::<u8>() {
                Ok(v @ 0..=2) => options.verbosity = v,
                _ => warnings.push(bad("expected 0, 1 or 2")),
            },
            "policy" => match value {
                "audit" => options.policy = Policy::Audit,
                "strict" => options.policy = Policy::Strict,
                _ => warnings.push(bad("expected audit or strict")),
            },
            "log_path" => {
                if value.is_empty() {
                    warnings.push(bad("expected a path"));
                } else {
                    options.log_path = Some(value.to_owned());
                }
            }
            "guard_pages" => match flag(value) {
                Some(v) => options.guard_pages = v,
                None => warnings.push(bad("expected 0 or 1")),
            },
            "stacks" => match flag(value) {
                Some(v) => options.stacks = v,
                None => warnings.push(bad("expected 0 or 1")),
            },
            "fault" => match parse_fault(value) {
                Ok(rules) => options.fault = rules,
                Err(why) => warnings.push(bad(&why)),
            },
            "suppressions" => {
                if value.is_empty() {
                    warnings.push(bad("expected a file"));
                } else {
                    options.suppressions = Some(value.to_owned());
                }
            }
            "help" => match flag(value) {
                Some(v) => options.help = v,
                None => warnings.push(bad("expected 0 or 1")),
            },
            other => warnings.push(format!(
                "unknown option '{}' (ignored; help=1 lists them)",
                shorten(other)
            )),
        }
    }
    (options, warnings)
}

fn flag(value: &str) -> Option<bool> {
    match value {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

/// Parses `CALL@N=ERRNO[,CALL@N=ERRNO...]`; one bad rule rejects the whole
/// value (a half-applied fault plan would test the wrong thing).
fn parse_fault(spec: &str) -> Result<Vec<FaultRule>, String> {
    let mut rules = Vec::new();
    for rule in spec.split(',') {
        let form = || format!("'{}' is not CALL@N=ERRNO or CALL@N=panic", shorten(rule));
        let (call, rest) = rule.split_once('@').ok_or_else(form)?;
        let (n, errno) = rest.split_once('=').ok_or_else(form)?;
        let call = CallKind::ALL
            .into_iter()
            .find(|c| c.name() == call)
            .ok_or_else(|| {
                format!(
                    "unknown call '{}' (shmget, shmat, shmdt, shmctl, ftok)",
                    shorten(call)
                )
            })?;
        let nth = match n.parse::<u64>() {
            Ok(nth @ 1..) => nth,
            _ => return Err(format!("'{}' is not a call number (1, 2, ...)", shorten(n))),
        };
        let action = match errno {
            "panic" => FaultAction::Panic,
            name => FaultAction::Fail(crate::error::errno_from_name(name).ok_or_else(|| {
                format!(
                    "'{}' is not an errno name such as ENOSPC, nor panic",
                    shorten(name)
                )
            })?),
        };
        rules.push(FaultRule { call, nth, action });
    }
    Ok(rules)
}

/// Keeps warnings about garbage input to one readable line: at most 64
/// characters, control characters (a newline would break the line format)
/// escaped. Also for the suppression file's warnings.
pub fn shorten(s: &str) -> String {
    const MAX: usize = 64;
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_empty() {
        let (o, w) = parse(b"");
        assert_eq!(o, Options::default());
        assert!(w.is_empty());
        assert!(o.leak_check);
    }

    #[test]
    fn spec_example() {
        let (o, w) = parse(b"policy=strict:exitcode=23:fault=shmget@2=ENOSPC,shmat@1=ENOMEM");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(o.policy, Policy::Strict);
        assert_eq!(o.exitcode, 23);
        assert_eq!(
            o.fault,
            vec![
                FaultRule {
                    call: CallKind::Shmget,
                    nth: 2,
                    action: FaultAction::Fail(libc::ENOSPC)
                },
                FaultRule {
                    call: CallKind::Shmat,
                    nth: 1,
                    action: FaultAction::Fail(libc::ENOMEM)
                },
            ]
        );
    }

    #[test]
    fn fault_panic_is_a_self_test() {
        let (o, w) = parse(b"fault=ftok@3=panic,shmdt@1=EINVAL");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(o.fault[0].action, FaultAction::Panic);
        assert_eq!(o.fault[0].call, CallKind::Ftok);
        assert_eq!(o.fault[1].action, FaultAction::Fail(libc::EINVAL));
        let (o, w) = parse(b"fault=shmget@1=PANIC");
        assert!(o.fault.is_empty());
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("nor panic"), "{w:?}");
    }

    #[test]
    fn every_key() {
        let (o, w) = parse(
            b"leak_check=0:leak_report=0:verbosity=2:log_path=/tmp/x.%p:guard_pages=1:stacks=1",
        );
        assert!(w.is_empty(), "{w:?}");
        assert!(!o.leak_check);
        assert!(!o.leak_report);
        assert_eq!(o.verbosity, 2);
        assert_eq!(o.log_path.as_deref(), Some("/tmp/x.%p"));
        assert!(o.guard_pages && o.stacks);
    }

    #[test]
    fn one_warning_per_bad_pair_and_the_rest_applies() {
        let (o, w) = parse(b"bogus=1:exitcode=300:verbosity=9:leak_check=yes:noequals:exitcode=7");
        assert_eq!(w.len(), 5, "{w:?}");
        assert!(w[0].contains("bogus"));
        assert!(w[1].contains("exitcode"));
        assert_eq!(o.exitcode, 7);
        assert_eq!(o.verbosity, 0);
        assert!(o.leak_check);
    }

    #[test]
    fn warnings_stay_on_one_line() {
        let (_, w) = parse(b"bogus\nleak_check=1:x\ty=2");
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w.iter().all(|w| !w.contains('\n') && !w.contains('\t')),
            "{w:?}"
        );
        assert!(w[0].contains("bogus\\nleak_check"), "{w:?}");
    }

    /// Found by the `options` fuzz target: the key of a bad value was
    /// quoted as given, so whitespace around it that `trim` ignores (a
    /// newline, or thousands of spaces) went into the warning.
    #[test]
    fn whitespace_around_a_known_key_stays_out_of_the_warning() {
        let (_, w) = parse(b"exitcode\r=2?5:\nverbosity=9");
        assert_eq!(
            w,
            [
                "bad value '2?5' for exitcode: expected 0-255 (ignored)",
                "bad value '9' for verbosity: expected 0, 1 or 2 (ignored)",
            ]
        );
        let mut long = vec![b' '; 10_000];
        long.extend_from_slice(b"policy=lax");
        let (_, w) = parse(&long);
        assert_eq!(
            w,
            ["bad value 'lax' for policy: expected audit or strict (ignored)"]
        );
    }

    /// `verbosity=1,exitcode=3` (the `ASAN_OPTIONS` habit) is not taken
    /// for something else: the warning says how pairs are separated.
    #[test]
    fn pairs_joined_by_commas_are_not_misread() {
        for text in [
            "verbosity=1,exitcode=3",
            "exitcode=3,verbosity=1",
            "log_path=/tmp/x.%p,verbosity=2",
            "fault=shmget@1=ENOSPC,verbosity=1",
            "policy=strict, stacks=1",
        ] {
            let (o, w) = parse(text.as_bytes());
            assert_eq!(o, Options::default(), "{text}: applied {o:?}");
            assert_eq!(w.len(), 1, "{text}: {w:?}");
            assert!(
                w[0].contains("pairs are separated by ':' (',' separates the entries of fault=)"),
                "{text}: {w:?}"
            );
        }
        // A bad value with a comma gets the hint too.
        let (_, w) = parse(b"verbosity=1,2");
        assert!(w[0].contains("pairs are separated by ':'"), "{w:?}");
        // Commas inside fault= and in paths are theirs.
        let (o, w) = parse(b"fault=shmget@1=ENOSPC,shmat@2=EINVAL:log_path=/tmp/a,b.%p");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(o.fault.len(), 2);
        assert_eq!(o.log_path.as_deref(), Some("/tmp/a,b.%p"));
    }

    /// `help=1` lists every option `parse` knows, with its default, and
    /// each default is what `parse` gives without the option.
    #[test]
    fn help_lists_every_option_with_its_default() {
        let (o, w) = parse(b"help=1");
        assert!(w.is_empty(), "{w:?}");
        assert!(o.help);
        assert_eq!(Options { help: false, ..o }, Options::default());
        let lines = help();
        assert!(lines[0].contains("separated by ':'"), "{lines:?}");
        for d in DOCS {
            // Known to the parser.
            let (_, w) = parse(format!("{}=?", d.key).as_bytes());
            assert!(
                w.iter().all(|w| !w.contains("unknown option")),
                "{}: {w:?}",
                d.key
            );
            // The default is the default.
            if d.default != "unset" {
                let (o, w) = parse(format!("{}={}", d.key, d.default).as_bytes());
                assert!(w.is_empty(), "{}: {w:?}", d.key);
                assert_eq!(o, Options::default(), "{}", d.key);
            }
            let line = lines
                .iter()
                .find(|l| l.trim_start().starts_with(&format!("{}=", d.key)))
                .unwrap_or_else(|| panic!("no help line for {}", d.key));
            assert!(line.contains(&format!("default {}", d.default)), "{line}");
            assert!(line.contains(d.meaning), "{line}");
        }
        // Every key the canonical form has is documented.
        let every = "leak_check=1:leak_report=1:exitcode=0:verbosity=0:policy=audit:guard_pages=0:stacks=0:log_path=x:fault=ftok@1=EIO:suppressions=x:help=0";
        for pair in every.split(':') {
            let key = pair.split_once('=').unwrap().0;
            assert!(DOCS.iter().any(|d| d.key == key), "{key} has no help");
        }
        assert_eq!(DOCS.len(), every.split(':').count());
    }

    #[test]
    fn bad_fault_specs() {
        for spec in [
            "shmget",
            "shmget@0=EINVAL",
            "open@1=EINVAL",
            "shmat@1=22",
            "shmat@x=EINVAL",
        ] {
            let (o, w) = parse(format!("fault={spec}").as_bytes());
            assert_eq!(w.len(), 1, "{spec}: {w:?}");
            assert!(o.fault.is_empty());
        }
    }

    #[test]
    fn garbage_is_shortened_and_survives_invalid_utf8() {
        let mut long = vec![b'x'; 10_000];
        long.extend_from_slice(b"=1:\xff\xfe=2");
        let (_, w) = parse(&long);
        assert_eq!(w.len(), 2);
        assert!(w[0].len() < 120);
    }
}
