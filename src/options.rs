//! `SHMGUARD_OPTIONS`: sanitizer-style `key=value` pairs separated by `:`.
//!
//! Parsing is pure: it returns the options and the warnings to print, so it
//! is tested without touching the environment.
#![forbid(unsafe_code)]

/// The policy mode (SPEC section 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Audit,
    Strict,
}

/// Every option, with its default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Print the leak report at exit.
    pub leak_check: bool,
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
}

impl Options {
    /// The defaults, as a constant (usable without allocating or waiting).
    pub const DEFAULT: Self = Self {
        leak_check: true,
        exitcode: 0,
        log_path: None,
        verbosity: 0,
        policy: Policy::Audit,
        guard_pages: false,
        stacks: false,
        fault: Vec::new(),
    };
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
        let bad =
            |what: &str| format!("bad value '{}' for {key}: {what} (ignored)", shorten(value));
        match key {
            "leak_check" => match flag(value) {
                Some(v) => options.leak_check = v,
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
            other => warnings.push(format!("unknown option '{}' (ignored)", shorten(other))),
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
/// escaped.
fn shorten(s: &str) -> String {
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
        let (o, w) = parse(b"leak_check=0:verbosity=2:log_path=/tmp/x.%p:guard_pages=1:stacks=1");
        assert!(w.is_empty(), "{w:?}");
        assert!(!o.leak_check);
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
