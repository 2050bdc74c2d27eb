//! The leak check: what this process would leave behind if it exited now.
//!
//! Every candidate from the registry is verified against the kernel first,
//! so a segment that someone else removed, or an attachment unmapped behind
//! our back (a raw `shmdt`, `munmap`), is never reported:
//! - an attachment counts only if /proc/self/maps still has a System V
//!   mapping of that shmid starting at its address;
//! - a created segment counts only if `IPC_STAT` still finds it, unmarked,
//!   with this process as its creator (shmids are reused).
#![forbid(unsafe_code)]

use core::fmt::Write;
use core::hash::BuildHasherDefault;
use std::collections::HashMap;

use crate::diagnose::Key;
use crate::registry::{Attachment, Created, Registry};
use crate::runtime::Line;

type IdMap<V> = HashMap<i32, V, BuildHasherDefault<crate::registry::IdHasher>>;

/// What `IPC_STAT` says of a segment, as far as the check needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentState {
    pub key: i32,
    pub size: usize,
    pub mode: u32,
    pub cpid: u32,
    pub nattch: u64,
}

/// The kernel's side of the check.
pub trait Kernel {
    /// The System V mappings of this process: (start address, shmid).
    fn sysv_mappings(&self) -> Vec<(usize, i32)>;
    /// `IPC_STAT` of `shmid`, or `None` when it no longer exists.
    fn stat(&self, shmid: i32) -> Option<SegmentState>;
}

/// One thing the report names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finding {
    /// A segment created here, never marked, attached by no other process.
    Segment {
        shmid: i32,
        key: i32,
        size: usize,
        mode: u32,
    },
    /// An attachment made here and never detached.
    Attachment {
        shmid: i32,
        addr: usize,
        size: usize,
        readonly: bool,
    },
    /// A segment created here, never marked, still attached by others.
    Note {
        shmid: i32,
        key: i32,
        size: usize,
        mode: u32,
        others: u64,
    },
}

impl Finding {
    pub fn is_leak(&self) -> bool {
        !matches!(self, Finding::Note { .. })
    }
}

/// Parses /proc/self/maps for System V mappings: their path is
/// `/SYSV<key>` and their inode is the shmid.
pub fn parse_sysv_mappings(maps: &[u8]) -> Vec<(usize, i32)> {
    let mut out = Vec::new();
    let mut rest = maps;
    while !rest.is_empty() {
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        if let Some(mapping) = parse_sysv_line(&rest[..end]) {
            if out.try_reserve(1).is_ok() {
                out.push(mapping);
            }
        }
        rest = rest.get(end + 1..).unwrap_or_default();
    }
    // The kernel lists mappings by address already.
    if !out.is_sorted() {
        out.sort_unstable();
    }
    out
}

/// What /proc/self/maps says, as far as pruning stale records needs it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Maps {
    /// System V mappings: (start, shmid), sorted.
    pub sysv: Vec<(usize, i32)>,
    /// Anonymous private mappings with no access (as guard pages are):
    /// (start, end), sorted.
    pub no_access: Vec<(usize, usize)>,
}

impl Maps {
    /// Whether a System V mapping of `shmid` starts at `addr`.
    pub fn has_sysv(&self, addr: usize, shmid: i32) -> bool {
        self.sysv.binary_search(&(addr, shmid)).is_ok()
    }

    /// Whether `addr` lies in an anonymous mapping with no access.
    pub fn no_access_at(&self, addr: usize) -> bool {
        let i = self.no_access.partition_point(|&(start, _)| start <= addr);
        i > 0 && addr < self.no_access[i - 1].1
    }
}

/// Parses /proc/self/maps into a [`Maps`]; `None` if memory runs out.
pub fn parse_maps(maps: &[u8]) -> Option<Maps> {
    let mut out = Maps::default();
    for line in maps.split(|&b| b == b'\n') {
        if let Some(m) = parse_sysv_line(line) {
            out.sysv.try_reserve(1).ok()?;
            out.sysv.push(m);
        } else if let Some(range) = parse_no_access_line(line) {
            out.no_access.try_reserve(1).ok()?;
            out.no_access.push(range);
        }
    }
    if !out.sysv.is_sorted() {
        out.sysv.sort_unstable();
    }
    if !out.no_access.is_sorted() {
        out.no_access.sort_unstable();
    }
    Some(out)
}

/// (START, END) of a maps line `START-END ---p 00000000 00:00 0` with no
/// path: an anonymous private mapping with no access.
fn parse_no_access_line(line: &[u8]) -> Option<(usize, usize)> {
    let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
    let range = fields.next()?;
    if fields.next()? != b"---p" {
        return None;
    }
    let _offset = fields.next()?;
    let _dev = fields.next()?;
    if fields.next()? != b"0" || fields.next().is_some() {
        return None;
    }
    let dash = range.iter().position(|&b| b == b'-')?;
    let hex = |s: &[u8]| usize::from_str_radix(core::str::from_utf8(s).ok()?, 16).ok();
    Some((hex(&range[..dash])?, hex(&range[dash + 1..])?))
}

/// One line of /proc/PID/maps, `START-END PERMS OFFSET DEV INODE   PATH`:
/// (START, INODE) if PATH is a System V segment's (`/SYSV...`). A process
/// with 60,000 attachments has 60,000 such lines to read at exit, so this
/// walks each byte once and allocates nothing.
fn parse_sysv_line(line: &[u8]) -> Option<(usize, i32)> {
    let mut i = 0;
    let mut start: usize = 0;
    while let Some(&b) = line.get(i) {
        if b == b'-' {
            break;
        }
        start = start
            .checked_mul(16)?
            .checked_add((b as char).to_digit(16)? as usize)?;
        i += 1;
    }
    // Skip the rest of the range, PERMS, OFFSET and DEV: four spaces.
    for _ in 0..4 {
        i += line.get(i..)?.iter().position(|&b| b == b' ')? + 1;
    }
    let mut shmid: i32 = 0;
    while let Some(&b) = line.get(i) {
        if b == b' ' {
            break;
        }
        shmid = shmid
            .checked_mul(10)?
            .checked_add((b as char).to_digit(10)? as i32)?;
        i += 1;
    }
    let path = line.get(i..)?.trim_ascii_start();
    path.starts_with(b"/SYSV").then_some((start, shmid))
}

/// Computes the findings of process `pid` (leaks first, then notes).
pub fn findings(registry: &Registry, pid: u32, kernel: &dyn Kernel) -> Vec<Finding> {
    let mut own: Vec<(usize, Attachment)> = Vec::new();
    registry.for_each_attachment(|addr, a| {
        if a.pid == pid && own.try_reserve(1).is_ok() {
            own.push((addr, *a));
        }
    });
    let mut created: Vec<(i32, Created)> = Vec::new();
    registry.for_each_created(|shmid, c| {
        if c.pid == pid && created.try_reserve(1).is_ok() {
            created.push((shmid, *c));
        }
    });
    if own.is_empty() && created.is_empty() {
        // Most processes under a preloaded shmguard never touch shm: their
        // exit costs no read of /proc.
        return Vec::new();
    }
    let mappings = kernel.sysv_mappings();
    let mapped = |addr: usize, shmid: i32| mappings.binary_search(&(addr, shmid)).is_ok();
    own.sort_unstable_by_key(|(addr, _)| *addr);
    created.sort_unstable_by_key(|(shmid, _)| *shmid);
    // Per segment, asked once: a process may hold 60,000 attachments of
    // a handful of segments. Every allocation here is fallible (the heap
    // may be exhausted at exit): without the tables, the same answers come
    // slower.
    let mut mapped_per_segment: IdMap<u64> = IdMap::default();
    let mut counted = true;
    for &(_, shmid) in &mappings {
        if mapped_per_segment.try_reserve(1).is_err() {
            counted = false;
            break;
        }
        *mapped_per_segment.entry(shmid).or_default() += 1;
    }
    let ours_of = |shmid: i32| -> u64 {
        if counted {
            mapped_per_segment.get(&shmid).copied().unwrap_or(0)
        } else {
            mappings.iter().filter(|&&(_, id)| id == shmid).count() as u64
        }
    };
    let mut states: IdMap<Option<SegmentState>> = IdMap::default();
    let mut stat = |shmid: i32| {
        if let Some(&state) = states.get(&shmid) {
            return state;
        }
        let state = kernel.stat(shmid);
        if states.try_reserve(1).is_ok() {
            states.insert(shmid, state);
        }
        state
    };

    let mut out = Vec::new();
    let mut notes = Vec::new();
    for (shmid, _) in created {
        let Some(state) = stat(shmid) else {
            continue;
        };
        if state.mode & crate::sys::SHM_DEST != 0 || state.cpid != pid {
            continue;
        }
        // Our own mappings go away when we exit; anyone else's keep it alive.
        let others = state.nattch.saturating_sub(ours_of(shmid));
        let (key, size, mode) = (state.key, state.size, state.mode & 0o777);
        if others > 0 {
            if notes.try_reserve(1).is_ok() {
                notes.push(Finding::Note {
                    shmid,
                    key,
                    size,
                    mode,
                    others,
                });
            }
        } else if out.try_reserve(1).is_ok() {
            out.push(Finding::Segment {
                shmid,
                key,
                size,
                mode,
            });
        }
    }
    for (addr, a) in own {
        if !mapped(addr, a.shmid) {
            continue;
        }
        let size = if a.size != 0 {
            a.size
        } else {
            stat(a.shmid).map_or(0, |s| s.size)
        };
        let finding = Finding::Attachment {
            shmid: a.shmid,
            addr,
            size,
            readonly: a.readonly,
        };
        if out.try_reserve(1).is_ok() {
            out.push(finding);
        }
    }
    // Leaks first, then notes (a sort would allocate).
    if out.try_reserve(notes.len()).is_ok() {
        out.append(&mut notes);
    }
    out
}

/// The number of leaks among `findings`.
pub fn leak_count(findings: &[Finding]) -> usize {
    findings.iter().filter(|f| f.is_leak()).count()
}

/// Where a finding's record was made: the key of its call stack.
pub fn stack_owner(f: &Finding) -> crate::stacks::Owner {
    match *f {
        Finding::Segment { shmid, .. } | Finding::Note { shmid, .. } => {
            crate::stacks::Owner::Segment(shmid)
        }
        Finding::Attachment { addr, .. } => crate::stacks::Owner::Attachment(addr),
    }
}

/// Writes the report lines for `findings` through `emit`, ending with the
/// SUMMARY line. `lost` is the number of records the registry could not
/// keep (out of memory); `suppressed` the number of leaks and notes that
/// `suppressions=FILE` left out (counted in the SUMMARY line); `stack`
/// gives a finding's call stack (`stacks=1`).
pub fn report(
    findings: &[Finding],
    lost: usize,
    suppressed: usize,
    stack: impl Fn(&Finding) -> Vec<String>,
    mut emit: impl FnMut(Line),
) {
    for f in findings {
        let mut line = Line::new();
        let _ = match *f {
            Finding::Segment {
                shmid,
                key,
                size,
                mode,
            } => write!(
                line,
                "leak: segment shmid={shmid} key={} size={size} mode=0{mode:03o}: created by this process and never marked with IPC_RMID; it stays in the kernel until removed (ipcrm -m {shmid})",
                Key(key)
            ),
            Finding::Attachment {
                shmid,
                addr,
                size,
                readonly,
            } => write!(
                line,
                "leak: attachment shmid={shmid} addr={addr:#x} size={size} {}: attached by this process and never detached",
                if readonly { "read-only" } else { "read-write" }
            ),
            Finding::Note {
                shmid,
                key,
                size,
                mode,
                others,
            } => write!(
                line,
                "note: segment shmid={shmid} key={} size={size} mode=0{mode:03o}: created by this process and not marked with IPC_RMID; {others} other process{} still attach{} it, so it is not counted as a leak",
                Key(key),
                if others == 1 { "" } else { "es" },
                if others == 1 { "es" } else { "" }
            ),
        };
        emit(line);
        for frame in stack(f) {
            let mut line = Line::new();
            let _ = write!(line, "    at {frame}");
            emit(line);
        }
    }
    if lost > 0 {
        let mut line = Line::new();
        let _ = write!(
            line,
            "note: {lost} record{} could not be kept (out of memory); this report may be incomplete",
            plural(lost)
        );
        emit(line);
    }
    let segments = findings
        .iter()
        .filter(|f| matches!(f, Finding::Segment { .. }))
        .count();
    let attachments = findings
        .iter()
        .filter(|f| matches!(f, Finding::Attachment { .. }))
        .count();
    let bytes: usize = findings
        .iter()
        .map(|f| match *f {
            Finding::Segment { size, .. } => size,
            _ => 0,
        })
        .sum();
    let mut line = Line::new();
    let leaks = segments + attachments;
    let notes = findings.len() - leaks;
    let _ = if leaks == 0 {
        write!(line, "SUMMARY: no leaks")
    } else {
        write!(
            line,
            "SUMMARY: {leaks} leak{} ({segments} segment{} holding {bytes} byte{}, {attachments} attachment{})",
            plural(leaks),
            plural(segments),
            plural(bytes),
            plural(attachments)
        )
    };
    if notes > 0 {
        let _ = write!(line, "; {notes} note{}", plural(notes));
    }
    if suppressed > 0 {
        let _ = write!(line, "; {suppressed} suppressed");
    }
    emit(line);
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Fake {
        maps: Vec<(usize, i32)>,
        segments: HashMap<i32, SegmentState>,
    }

    impl Kernel for Fake {
        fn sysv_mappings(&self) -> Vec<(usize, i32)> {
            let mut m = self.maps.clone();
            m.sort_unstable();
            m
        }
        fn stat(&self, shmid: i32) -> Option<SegmentState> {
            self.segments.get(&shmid).copied()
        }
    }

    fn seg(cpid: u32, nattch: u64, mode: u32) -> SegmentState {
        SegmentState {
            key: 0x42,
            size: 100,
            mode,
            cpid,
            nattch,
        }
    }

    fn att(shmid: i32, pid: u32) -> Attachment {
        Attachment {
            shmid,
            pid,
            readonly: false,
            size: 0,
            guards: 0,
        }
    }

    fn created(pid: u32) -> Created {
        Created {
            key: 0x42,
            size: 100,
            mode: 0o600,
            pid,
        }
    }

    #[test]
    fn skips_lines_without_a_sysv_path() {
        assert_eq!(parse_sysv_line(b"7f00-7f10 r--p 00000000 00:00 0 "), None);
        assert_eq!(parse_sysv_line(b"7f00-7f10 r--p 00000000 00:00 0"), None);
        assert_eq!(
            parse_sysv_line(b"7f00-7f10 r--p 00000000 08:01 12 /usr/lib/x.so"),
            None
        );
        assert_eq!(parse_sysv_line(b""), None);
        assert_eq!(
            parse_sysv_line(b"zz-7f10 rw-s 00000000 00:01 5 /SYSV00000000"),
            None
        );
        assert_eq!(
            parse_sysv_line(b"7f00-7f10 rw-s 00000000 00:01 5 /SYSV00000000"),
            Some((0x7f00, 5))
        );
    }

    #[test]
    fn parses_no_access_ranges() {
        let maps = b"7f0000000000-7f0000001000 ---p 00000000 00:00 0 \n\
                     7f0000001000-7f0000003000 rw-s 00000000 00:01 32769                      /SYSV00000000 (deleted)\n\
                     7f0000003000-7f0000004000 ---p 00000000 00:00 0\n\
                     7f0000005000-7f0000006000 ---p 00001000 08:01 1234                       /usr/lib/libc.so.6\n\
                     7f0000007000-7f0000008000 r--p 00000000 00:00 0 \n";
        let m = parse_maps(maps).unwrap();
        assert_eq!(m.sysv, vec![(0x7f00_0000_1000, 32769)]);
        assert_eq!(
            m.no_access,
            vec![
                (0x7f00_0000_0000, 0x7f00_0000_1000),
                (0x7f00_0000_3000, 0x7f00_0000_4000)
            ]
        );
        assert!(m.has_sysv(0x7f00_0000_1000, 32769));
        assert!(!m.has_sysv(0x7f00_0000_1000, 5));
        assert!(m.no_access_at(0x7f00_0000_0fff));
        assert!(m.no_access_at(0x7f00_0000_3000));
        assert!(!m.no_access_at(0x7f00_0000_1000));
        assert!(!m.no_access_at(0x7f00_0000_5000));
        assert!(!m.no_access_at(0x7f00_0000_7000));
        assert!(!m.no_access_at(0x1000));
    }

    #[test]
    fn parses_maps() {
        let maps = b"7f0000000000-7f0000001000 rw-s 00000000 00:01 32769                      /SYSV00000000 (deleted)\n\
                     7f0000002000-7f0000003000 r--p 00000000 08:01 1234                       /usr/lib/libc.so.6\n\
                     00000000-00001000 rw-s 00000000 00:01 5                      /SYSV00001234 (deleted)\n";
        assert_eq!(
            parse_sysv_mappings(maps),
            vec![(0, 5), (0x7f00_0000_0000, 32769)]
        );
    }

    #[test]
    fn verified_leaks_only() {
        let r = Registry::new();
        let me = 100;
        r.attach(0x1000, att(1, me)); // live: leak
        r.attach(0x2000, att(2, me)); // unmapped behind our back: not reported
        r.attach(0x3000, att(1, 99)); // inherited: not ours
        r.created(1, created(me)); // attached only by us: leak
        r.created(3, created(me)); // removed by someone else
        r.created(4, created(me)); // marked for destruction
        r.created(5, created(me)); // shmid reused by another creator
        r.created(6, created(me)); // others attach it: note
        r.created(7, created(99)); // the parent's
        let kernel = Fake {
            maps: vec![(0x1000, 1), (0x3000, 1)],
            segments: HashMap::from([
                (1, seg(me, 2, 0o600)),
                (4, seg(me, 0, 0o1600)),
                (5, seg(77, 0, 0o600)),
                (6, seg(me, 3, 0o600)),
                (7, seg(99, 0, 0o600)),
            ]),
        };
        let f = findings(&r, me, &kernel);
        assert_eq!(
            f,
            vec![
                Finding::Segment {
                    shmid: 1,
                    key: 0x42,
                    size: 100,
                    mode: 0o600
                },
                Finding::Attachment {
                    shmid: 1,
                    addr: 0x1000,
                    size: 100,
                    readonly: false
                },
                Finding::Note {
                    shmid: 6,
                    key: 0x42,
                    size: 100,
                    mode: 0o600,
                    others: 3
                },
            ]
        );
        assert_eq!(leak_count(&f), 2);
    }

    struct Unreadable;
    impl Kernel for Unreadable {
        fn sysv_mappings(&self) -> Vec<(usize, i32)> {
            panic!("an empty registry must not read /proc/self/maps")
        }
        fn stat(&self, _: i32) -> Option<SegmentState> {
            panic!("an empty registry must not stat")
        }
    }

    #[test]
    fn nothing_recorded_asks_the_kernel_nothing() {
        let r = Registry::new();
        r.attach(0x1000, att(1, 99)); // inherited only
        assert!(findings(&r, 100, &Unreadable).is_empty());
    }

    #[test]
    #[cfg_attr(miri, ignore = "socketpair is not emulated by Miri")]
    fn report_format() {
        let f = [
            Finding::Segment {
                shmid: 1,
                key: 0x42,
                size: 100,
                mode: 0o600,
            },
            Finding::Attachment {
                shmid: 1,
                addr: 0x1000,
                size: 100,
                readonly: true,
            },
        ];
        let mut lines = Vec::new();
        report(
            &f,
            0,
            2,
            |_| vec!["make_table (./t.c:3:1)".to_owned()],
            |l| {
                let mut v = Vec::new();
                let (r, w) = std::os::unix::net::UnixStream::pair().unwrap();
                use std::os::fd::AsRawFd;
                l.write_to(w.as_raw_fd()).unwrap();
                drop(w);
                use std::io::Read;
                (&r).read_to_end(&mut v).unwrap();
                lines.push(String::from_utf8(v).unwrap());
            },
        );
        assert_eq!(lines.len(), 5);
        assert!(
            lines[1].ends_with("shmguard:     at make_table (./t.c:3:1)\n"),
            "{}",
            lines[1]
        );
        lines.retain(|l| !l.contains("    at "));
        let prefix = format!("=={}== shmguard: ", crate::runtime::pid());
        assert!(
            lines
                .iter()
                .all(|l| l.starts_with(&prefix) && l.ends_with('\n'))
        );
        assert!(lines[0].contains("leak: segment shmid=1 key=0x00000042 size=100 mode=0600"));
        assert!(lines[1].contains("leak: attachment shmid=1 addr=0x1000 size=100 read-only"));
        assert!(lines[2].contains(
            "SUMMARY: 2 leaks (1 segment holding 100 bytes, 1 attachment); 2 suppressed\n"
        ));
    }
}
