//! The security policy: rules that catch System V shared
//! memory used unsafely. `policy=audit` (the default) records what the rules
//! find; `policy=strict` also refuses the call with `EACCES`.
//!
//! The rules are pure functions of the call's arguments and the segment's
//! state, so they are unit-tested here; `shm` gathers the state and applies
//! the verdict.
#![forbid(unsafe_code)]

use core::fmt::Write;

use crate::diagnose::Key;
use crate::error::Sentence;

/// A rule, by the name the log and the diagnostics use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Creating a segment that group or others may access.
    WideMode,
    /// Creating by a fixed key without `IPC_EXCL`: the caller cannot know
    /// whether it created the segment or opened someone else's.
    KeyWithoutExcl,
    /// Opening an existing keyed segment that another user owns or
    /// created, or that others may access (key squatting).
    KeySquatting,
    /// `IPC_SET` that widens the mode or hands the segment to another owner.
    WideningSet,
    /// Attaching with `SHM_EXEC`.
    ShmExec,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::WideMode => "wide-mode",
            Rule::KeyWithoutExcl => "key-without-excl",
            Rule::KeySquatting => "key-squatting",
            Rule::WideningSet => "widening-ipc-set",
            Rule::ShmExec => "shm-exec",
        }
    }
}

/// A rule that matched, and why.
#[derive(Clone, Debug)]
pub struct Finding {
    pub rule: Rule,
    pub detail: Sentence,
}

/// Every rule one call breaks (at most [`Findings::MAX`]), in the order
/// the rules are checked. Fixed-size: judging a call allocates nothing.
#[derive(Clone, Debug, Default)]
pub struct Findings {
    items: [Option<Finding>; Findings::MAX],
}

impl Findings {
    /// The most rules one call can break (`shmget`: `key-without-excl` and
    /// `wide-mode`).
    pub const MAX: usize = 2;

    fn push(&mut self, f: Finding) {
        if let Some(slot) = self.items.iter_mut().find(|s| s.is_none()) {
            *slot = Some(f);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.items[0].is_none()
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Finding> {
        self.items.iter().flatten()
    }
}

impl From<Option<Finding>> for Findings {
    fn from(f: Option<Finding>) -> Self {
        let mut all = Self::default();
        if let Some(f) = f {
            all.push(f);
        }
        all
    }
}

fn finding(rule: Rule, args: core::fmt::Arguments<'_>) -> Finding {
    let mut detail = Sentence::new();
    let _ = detail.write_fmt(args);
    Finding { rule, detail }
}

/// The ownership and mode of a segment (from `IPC_STAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    pub cuid: u32,
    pub mode: u32,
}

/// Rules checked before `shmget` reaches the kernel: a call may break
/// both (`shmget(0x4321, size, IPC_CREAT|0666)`), and both are reported.
pub fn shmget_request(key: i32, flags: i32) -> Findings {
    let mut all = Findings::default();
    let creates = key == libc::IPC_PRIVATE || flags & libc::IPC_CREAT != 0;
    if key != libc::IPC_PRIVATE && flags & libc::IPC_CREAT != 0 && flags & libc::IPC_EXCL == 0 {
        all.push(finding(
            Rule::KeyWithoutExcl,
            format_args!(
                "shmget(key={}) with IPC_CREAT but without IPC_EXCL cannot tell a segment it created from one another user created first under the same key; add IPC_EXCL and handle EEXIST",
                Key(key)
            ),
        ));
    }
    let wide = flags as u32 & 0o077;
    if creates && wide != 0 {
        all.push(finding(
            Rule::WideMode,
            format_args!(
                "shmget(key={}) creates a segment with mode 0{:03o}, which lets {} read or write it; use 0600 and share it deliberately",
                Key(key),
                flags & 0o777,
                if wide & 0o007 != 0 {
                    "every user"
                } else {
                    "the group"
                }
            ),
        ));
    }
    all
}

/// The rule checked after `shmget` opened (did not create) a keyed
/// segment. `owner` is `None` when the caller cannot even `IPC_STAT` it.
pub fn shmget_opened(key: i32, shmid: i32, owner: Option<Owner>, euid: u32) -> Option<Finding> {
    let Some(o) = owner else {
        return Some(finding(
            Rule::KeySquatting,
            format_args!(
                "shmget(key={}) opened shmid={shmid}, which the caller may not even IPC_STAT: another user owns it",
                Key(key)
            ),
        ));
    };
    let why = if o.uid != euid {
        "is owned by another user"
    } else if o.cuid != euid {
        "was created by another user"
    } else if o.mode & 0o007 != 0 {
        "is open to every user"
    } else {
        return None;
    };
    Some(finding(
        Rule::KeySquatting,
        format_args!(
            "shmget(key={}) opened shmid={shmid}, which {why} (owner uid {}, creator uid {}, mode 0{:03o}; caller euid {euid}): whoever created it first can read or change what this program shares",
            Key(key),
            o.uid,
            o.cuid,
            o.mode & 0o777
        ),
    ))
}

/// The rule checked before `shmat`.
pub fn shmat_request(shmid: i32, flags: i32) -> Option<Finding> {
    (flags & crate::sys::SHM_EXEC != 0).then(|| {
        finding(
            Rule::ShmExec,
            format_args!("shmat(shmid={shmid}) with SHM_EXEC maps shared memory executable: any process that can write the segment can inject code"),
        )
    })
}

/// The rule checked before `IPC_SET`: `current` is the segment now, `new`
/// what the caller's buffer asks for (uid, gid, mode). One finding that
/// gives every way the call widens access.
pub fn ipc_set(shmid: i32, current: Owner, new: Owner) -> Option<Finding> {
    let mut detail = Sentence::new();
    let mut reasons = 0;
    let mut reason = |args: core::fmt::Arguments<'_>| {
        let _ = detail.write_str(if reasons == 0 { "" } else { "; " });
        let _ = detail.write_fmt(args);
        reasons += 1;
    };
    let widened = new.mode & !current.mode & 0o777;
    if widened != 0 {
        reason(format_args!(
            "IPC_SET on shmid={shmid} widens its mode from 0{:03o} to 0{:03o}",
            current.mode & 0o777,
            new.mode & 0o777
        ));
    }
    if new.uid != current.uid {
        reason(format_args!(
            "IPC_SET on shmid={shmid} hands it from uid {} to uid {}",
            current.uid, new.uid
        ));
    }
    if new.gid != current.gid && new.mode & 0o070 != 0 {
        reason(format_args!(
            "IPC_SET on shmid={shmid} gives group access (mode 0{:03o}) to gid {} instead of gid {}",
            new.mode & 0o777,
            new.gid,
            current.gid
        ));
    }
    (reasons > 0).then_some(Finding {
        rule: Rule::WideningSet,
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREAT: i32 = libc::IPC_CREAT;
    const EXCL: i32 = libc::IPC_EXCL;

    fn rule(f: impl Into<Findings>) -> Option<Rule> {
        let all = f.into();
        assert!(all.len() <= 1, "several rules: {all:?}");
        all.iter().next().map(|f| f.rule)
    }

    fn rules(all: Findings) -> Vec<Rule> {
        all.iter().map(|f| f.rule).collect()
    }

    #[test]
    fn creating_wide_modes_is_found() {
        for mode in [0o640, 0o666, 0o777, 0o604, 0o620] {
            assert_eq!(
                rule(shmget_request(libc::IPC_PRIVATE, CREAT | mode)),
                Some(Rule::WideMode),
                "{mode:o}"
            );
            assert_eq!(
                rule(shmget_request(0x1234, CREAT | EXCL | mode)),
                Some(Rule::WideMode),
                "{mode:o}"
            );
        }
        // IPC_PRIVATE creates even without IPC_CREAT.
        assert_eq!(
            rule(shmget_request(libc::IPC_PRIVATE, 0o666)),
            Some(Rule::WideMode)
        );
    }

    #[test]
    fn safe_forms_pass() {
        assert!(shmget_request(libc::IPC_PRIVATE, CREAT | 0o600).is_empty());
        assert!(shmget_request(0x1234, CREAT | EXCL | 0o600).is_empty());
        assert!(shmget_request(0x1234, CREAT | EXCL | 0o400).is_empty());
        // Opening (no IPC_CREAT) asks for access, it does not grant it.
        assert!(shmget_request(0x1234, 0o666).is_empty());
        assert!(shmat_request(1, libc::SHM_RDONLY | libc::SHM_RND).is_none());
    }

    #[test]
    fn fixed_key_without_excl_is_found() {
        assert_eq!(
            rule(shmget_request(0x1234, CREAT | 0o600)),
            Some(Rule::KeyWithoutExcl)
        );
    }

    /// A call that breaks two rules gets both, in the order checked.
    #[test]
    fn every_rule_a_call_breaks_is_found() {
        assert_eq!(
            rules(shmget_request(0x4321, CREAT | 0o666)),
            [Rule::KeyWithoutExcl, Rule::WideMode]
        );
        assert_eq!(
            rules(shmget_request(0x4321, CREAT | 0o640)),
            [Rule::KeyWithoutExcl, Rule::WideMode]
        );
        assert_eq!(rules(shmget_request(0x4321, CREAT | EXCL | 0o600)), []);
    }

    #[test]
    fn ipc_set_gives_every_reason() {
        let cur = Owner {
            uid: 1,
            gid: 1,
            cuid: 1,
            mode: 0o600,
        };
        let f = ipc_set(
            3,
            cur,
            Owner {
                uid: 2,
                gid: 2,
                mode: 0o660,
                ..cur
            },
        )
        .expect("a finding");
        let d = f.detail.as_str();
        assert!(d.contains("widens its mode from 0600 to 0660"), "{d}");
        assert!(d.contains("hands it from uid 1 to uid 2"), "{d}");
        assert!(d.contains("to gid 2 instead of gid 1"), "{d}");
    }

    #[test]
    fn squatting() {
        let me = 1000;
        let own = Owner {
            uid: me,
            gid: me,
            cuid: me,
            mode: 0o600,
        };
        assert!(shmget_opened(0x1, 5, Some(own), me).is_none());
        assert!(shmget_opened(0x1, 5, Some(Owner { mode: 0o640, ..own }), me).is_none());
        for o in [
            Owner { uid: 0, ..own },
            Owner { cuid: 0, ..own },
            Owner { mode: 0o606, ..own },
        ] {
            assert_eq!(
                rule(shmget_opened(0x1, 5, Some(o), me)),
                Some(Rule::KeySquatting),
                "{o:?}"
            );
        }
        assert_eq!(
            rule(shmget_opened(0x1, 5, None, me)),
            Some(Rule::KeySquatting)
        );
    }

    #[test]
    fn ipc_set_widening() {
        let cur = Owner {
            uid: 1,
            gid: 1,
            cuid: 1,
            mode: 0o640,
        };
        assert!(ipc_set(3, cur, Owner { mode: 0o600, ..cur }).is_none());
        assert!(ipc_set(3, cur, cur).is_none());
        assert!(
            ipc_set(
                3,
                cur,
                Owner {
                    gid: 2,
                    mode: 0o600,
                    ..cur
                }
            )
            .is_none()
        );
        assert_eq!(
            rule(ipc_set(3, cur, Owner { mode: 0o660, ..cur })),
            Some(Rule::WideningSet)
        );
        assert_eq!(
            rule(ipc_set(3, cur, Owner { uid: 2, ..cur })),
            Some(Rule::WideningSet)
        );
        assert_eq!(
            rule(ipc_set(3, cur, Owner { gid: 2, ..cur })),
            Some(Rule::WideningSet)
        );
    }

    #[test]
    fn shm_exec() {
        assert_eq!(
            rule(shmat_request(1, crate::sys::SHM_EXEC)),
            Some(Rule::ShmExec)
        );
    }
}
