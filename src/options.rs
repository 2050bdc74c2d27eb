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
    /// The raw fault specification, validated.
    pub fault: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            leak_check: true,
            exitcode: 0,
            log_path: None,
            verbosity: 0,
            policy: Policy::Audit,
            guard_pages: false,
            stacks: false,
            fault: None,
        }
    }
}

/// The calls that `fault=` may name.
const CALLS: &[&str] = &["shmget", "shmat", "shmdt", "shmctl", "ftok"];

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
        let bad =
            |what: &str| format!("bad value '{}' for {key}: {what} (ignored)", shorten(value));
        match key.trim() {
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
            "fault" => match check_fault(value) {
                Ok(()) => options.fault = Some(value.to_owned()),
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

/// Validates `CALL@N=ERRNO[,CALL@N=ERRNO...]`.
fn check_fault(spec: &str) -> Result<(), String> {
    for rule in spec.split(',') {
        let (call, rest) = rule
            .split_once('@')
            .ok_or_else(|| format!("'{rule}' is not CALL@N=ERRNO"))?;
        let (n, errno) = rest
            .split_once('=')
            .ok_or_else(|| format!("'{rule}' is not CALL@N=ERRNO"))?;
        if !CALLS.contains(&call) {
            return Err(format!("unknown call '{call}'"));
        }
        if !matches!(n.parse::<u64>(), Ok(1..)) {
            return Err(format!("'{n}' is not a call number (1, 2, ...)"));
        }
        if !errno.starts_with('E') || errno.len() < 2 {
            return Err(format!("'{errno}' is not an errno name"));
        }
    }
    Ok(())
}

/// Keeps warnings about garbage input to one readable line.
fn shorten(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut cut = MAX;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &s[..cut])
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
        assert_eq!(o.fault.as_deref(), Some("shmget@2=ENOSPC,shmat@1=ENOMEM"));
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
            assert_eq!(o.fault, None);
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
