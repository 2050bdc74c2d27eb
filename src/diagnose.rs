//! Explaining failures: one precise sentence for each failed call.
//!
//! Runs only after the kernel has answered, and only on failure. It looks up
//! what it needs (limits under /proc/sys/kernel, the segment table in
//! /proc/sysvipc/shm, the caller's ids) through [`Facts`], so the sentences
//! are unit-tested against a fake kernel. Nothing here dereferences a
//! caller's pointer.
#![forbid(unsafe_code)]

use core::fmt::{self, Write};

use crate::error::{ErrnoName, Sentence, errno_text};
use crate::registry::Attachment;
use crate::sys::{self, Errno, SHM_DEST, SHM_EXEC, SHM_INFO, SHM_REMAP, SHM_STAT, SHM_STAT_ANY};

/// One row of /proc/sysvipc/shm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentRow {
    pub key: i32,
    pub shmid: i32,
    /// `shm_perm.mode`, including `SHM_DEST` and `SHM_LOCKED`.
    pub mode: u32,
    pub size: u64,
    pub cpid: u32,
    pub lpid: u32,
    pub nattch: u64,
    pub uid: u32,
    pub gid: u32,
    pub cuid: u32,
    pub cgid: u32,
    pub ctime: i64,
}

/// Parses the text of /proc/sysvipc/shm (header line first). Rows that do
/// not fit in memory are dropped rather than aborting (fail open).
pub fn parse_segments(text: &[u8]) -> Vec<SegmentRow> {
    let mut rows = Vec::new();
    for line in text.split(|&b| b == b'\n').skip(1) {
        let Ok(line) = core::str::from_utf8(line) else {
            continue;
        };
        if let Some(row) = parse_row(line) {
            if rows.try_reserve(1).is_ok() {
                rows.push(row);
            }
        }
    }
    rows
}

fn parse_row(line: &str) -> Option<SegmentRow> {
    let mut f = [""; 14];
    let mut fields = line.split_ascii_whitespace();
    for slot in &mut f {
        *slot = fields.next()?;
    }
    Some(SegmentRow {
        key: f[0].parse().ok()?,
        shmid: f[1].parse().ok()?,
        mode: u32::from_str_radix(f[2], 8).ok()?,
        size: f[3].parse().ok()?,
        cpid: f[4].parse().ok()?,
        lpid: f[5].parse().ok()?,
        nattch: f[6].parse().ok()?,
        uid: f[7].parse().ok()?,
        gid: f[8].parse().ok()?,
        cuid: f[9].parse().ok()?,
        cgid: f[10].parse().ok()?,
        ctime: f[13].parse().ok()?,
    })
}

/// The caller's credentials.
#[derive(Clone, Copy, Debug, Default)]
pub struct Caller {
    pub euid: u32,
    pub egid: u32,
}

/// One limit under /proc/sys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Shmmax,
    Shmall,
    Shmmni,
    MaxMapCount,
    MmapMinAddr,
}

/// A segment to look up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    Id(i32),
    /// The live (not removed) segment of a key.
    Key(i32),
}

/// What a diagnosis may look up. Each question costs a read or a system
/// call, so a diagnosis asks only the ones its sentence needs: a program
/// that fails thousands of calls on purpose (stress-ng does) must not pay
/// for the whole of /proc on each.
pub trait Facts {
    fn limit(&self, which: Limit) -> Option<u64>;
    fn page_size(&self) -> usize;
    /// The whole segment table (for ENOSPC: how many, how big).
    fn segments(&self) -> Vec<SegmentRow>;
    /// One segment.
    fn segment(&self, which: Lookup) -> Option<SegmentRow> {
        self.segments().into_iter().find(|r| match which {
            Lookup::Id(id) => r.shmid == id,
            Lookup::Key(key) => r.key == key && r.mode & SHM_DEST == 0,
        })
    }
    fn caller(&self) -> Caller;
    fn in_group(&self, gid: u32) -> bool;
}

/// The live system.
pub struct Live;

impl Facts for Live {
    fn limit(&self, which: Limit) -> Option<u64> {
        sys::read_number(match which {
            Limit::Shmmax => c"/proc/sys/kernel/shmmax",
            Limit::Shmall => c"/proc/sys/kernel/shmall",
            Limit::Shmmni => c"/proc/sys/kernel/shmmni",
            Limit::MaxMapCount => c"/proc/sys/vm/max_map_count",
            Limit::MmapMinAddr => c"/proc/sys/vm/mmap_min_addr",
        })
    }
    fn page_size(&self) -> usize {
        sys::page_size()
    }
    /// `IPC_STAT` (after `shmget(key, 0, 0)` for a key), falling back to
    /// the table when the caller may not stat the segment.
    fn segment(&self, which: Lookup) -> Option<SegmentRow> {
        let shmid = match which {
            Lookup::Id(id) => id,
            Lookup::Key(key) => sys::shmget(key, 0, 0).ok()?,
        };
        match sys::shm_stat(shmid) {
            Ok(ds) => Some(SegmentRow {
                key: ds.shm_perm.__key,
                shmid,
                mode: u32::from(ds.shm_perm.mode),
                size: ds.shm_segsz as u64,
                cpid: ds.shm_cpid as u32,
                lpid: ds.shm_lpid as u32,
                nattch: ds.shm_nattch,
                uid: ds.shm_perm.uid,
                gid: ds.shm_perm.gid,
                cuid: ds.shm_perm.cuid,
                cgid: ds.shm_perm.cgid,
                ctime: ds.shm_ctime,
            }),
            Err(libc::EACCES) => self.segments().into_iter().find(|r| r.shmid == shmid),
            Err(_) => None,
        }
    }
    fn segments(&self) -> Vec<SegmentRow> {
        let mut buf = Vec::new();
        if sys::read_file(c"/proc/sysvipc/shm", &mut buf).is_err() {
            return Vec::new();
        }
        parse_segments(&buf)
    }
    fn caller(&self) -> Caller {
        let (euid, egid) = sys::euid_egid();
        Caller { euid, egid }
    }
    fn in_group(&self, gid: u32) -> bool {
        sys::in_group(gid)
    }
}

/// `0x0000abcd`, as `ipcs` prints keys.
pub struct Key(pub i32);

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:08x}", self.0 as u32)
    }
}

/// `shmget` flags as C would spell them: `IPC_CREAT|IPC_EXCL|0600`.
pub struct GetFlags(pub i32);

impl GetFlags {
    const NAMES: &[(i32, &str)] = &[
        (libc::IPC_CREAT, "IPC_CREAT"),
        (libc::IPC_EXCL, "IPC_EXCL"),
        (libc::SHM_HUGETLB, "SHM_HUGETLB"),
        (libc::SHM_NORESERVE, "SHM_NORESERVE"),
    ];

    /// Writes the flags to `w` (what `Display` shows).
    pub fn write_to<W: fmt::Write>(&self, w: &mut W) -> fmt::Result {
        write_flags(w, self.0, Self::NAMES, 0o777)
    }
}

impl fmt::Display for GetFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

/// `shmat` flags: `SHM_RDONLY|SHM_RND`.
pub struct AtFlags(pub i32);

impl AtFlags {
    const NAMES: &[(i32, &str)] = &[
        (libc::SHM_RDONLY, "SHM_RDONLY"),
        (libc::SHM_RND, "SHM_RND"),
        (SHM_REMAP, "SHM_REMAP"),
        (SHM_EXEC, "SHM_EXEC"),
    ];

    /// Writes the flags to `w` (what `Display` shows).
    pub fn write_to<W: fmt::Write>(&self, w: &mut W) -> fmt::Result {
        write_flags(w, self.0, Self::NAMES, 0)
    }
}

impl fmt::Display for AtFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

/// Writes `value` as `NAME|NAME|0x...|0600` (`mode_mask`: the mode bits,
/// always shown in octal) or `0`. Generic and without `core::fmt`
/// machinery: the audit log writes it for every `shmget`.
pub fn write_flags<W: fmt::Write>(
    w: &mut W,
    value: i32,
    names: &[(i32, &str)],
    mode_mask: i32,
) -> fmt::Result {
    let mut first = true;
    let mut part = |w: &mut W, text: &str| {
        if !first {
            w.write_str("|")?;
        }
        first = false;
        w.write_str(text)
    };
    let mut rest = value;
    for &(bit, name) in names {
        if value & bit != 0 {
            part(w, name)?;
            rest &= !bit;
        }
    }
    let mode = rest & mode_mask;
    rest &= !mode_mask;
    if rest != 0 {
        // `{:#x}` of the unknown bits.
        let mut hex = [0u8; 10];
        let digits = (32 - (rest as u32).leading_zeros() as usize).div_ceil(4);
        hex[..2].copy_from_slice(b"0x");
        for i in 0..digits {
            let nibble = (rest as u32 >> (4 * (digits - 1 - i))) & 15;
            hex[2 + i] = b"0123456789abcdef"[nibble as usize];
        }
        part(w, core::str::from_utf8(&hex[..2 + digits]).unwrap_or("0x?"))?;
    }
    // shmget flags always show their mode, as C code writes it (0600).
    if mode_mask != 0 {
        let octal = [
            b'0',
            b'0' + ((mode >> 6) & 7) as u8,
            b'0' + ((mode >> 3) & 7) as u8,
            b'0' + (mode & 7) as u8,
        ];
        part(w, core::str::from_utf8(&octal).unwrap_or("0?"))?;
    } else if value == 0 {
        part(w, "0")?;
    }
    Ok(())
}

/// A `shmctl` command by name: `IPC_STAT`, or the number if unknown.
pub struct Cmd(pub i32);

impl Cmd {
    pub fn name(&self) -> Option<&'static str> {
        Some(match self.0 {
            libc::IPC_RMID => "IPC_RMID",
            libc::IPC_SET => "IPC_SET",
            libc::IPC_STAT => "IPC_STAT",
            libc::IPC_INFO => "IPC_INFO",
            libc::SHM_LOCK => "SHM_LOCK",
            libc::SHM_UNLOCK => "SHM_UNLOCK",
            SHM_STAT => "SHM_STAT",
            SHM_INFO => "SHM_INFO",
            SHM_STAT_ANY => "SHM_STAT_ANY",
            _ => return None,
        })
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "{}", self.0),
        }
    }
}

/// `rw-` for the three permission bits `bits` (0..=7).
struct Rwx(u32);

impl fmt::Display for Rwx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        let c = |bit: u32, ch: char| if b & bit != 0 { ch } else { '-' };
        write!(f, "{}{}{}", c(4, 'r'), c(2, 'w'), c(1, 'x'))
    }
}

/// Which permissions `want` (rwx bits 0..=7) names, in words.
struct Wanted(u32);

impl fmt::Display for Wanted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (bit, word) in [(4, "read"), (2, "write"), (1, "execute")] {
            if self.0 & bit != 0 {
                f.write_str(if first { "" } else { " and " })?;
                f.write_str(word)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// A number from /proc that may be missing: the number, or `?`.
struct Known(Option<u64>);

impl fmt::Display for Known {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("?"),
        }
    }
}

/// Bytes shown as text, invalid UTF-8 replaced, without allocating.
pub struct Lossy<'a>(pub &'a [u8]);

impl fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_str("\u{fffd}")?;
            }
        }
        Ok(())
    }
}

/// Explains an `EACCES` from the kernel's `ipcperms()`: which class the
/// caller falls in and which requested bits that class lacks.
fn explain_access(
    s: &mut Sentence,
    facts: &dyn Facts,
    row: &SegmentRow,
    want: u32,
    asked_by: fmt::Arguments<'_>,
) {
    let caller = facts.caller();
    let mode = row.mode & 0o777;
    let (class, granted) = if caller.euid == row.uid || caller.euid == row.cuid {
        ("owner", mode >> 6)
    } else if facts.in_group(row.gid) || facts.in_group(row.cgid) {
        ("group", (mode >> 3) & 7)
    } else {
        ("other", mode & 7)
    };
    let missing = want & !granted & 7;
    let _ = write!(
        s,
        "segment shmid={} key={} has mode 0{:03o} (owner uid {}, group gid {}); the caller (euid {}, egid {}) falls in its {} class, which grants {}, but {} asks for {}",
        row.shmid,
        Key(row.key),
        mode,
        row.uid,
        row.gid,
        caller.euid,
        caller.egid,
        class,
        Rwx(granted),
        asked_by,
        Wanted(if missing != 0 { missing } else { want }),
    );
}

fn find_key(facts: &dyn Facts, key: i32) -> Option<SegmentRow> {
    if key == libc::IPC_PRIVATE {
        return None;
    }
    facts.segment(Lookup::Key(key))
}

fn find_id(facts: &dyn Facts, shmid: i32) -> Option<SegmentRow> {
    if shmid < 0 {
        return None;
    }
    facts.segment(Lookup::Id(shmid))
}

fn generic(s: &mut Sentence, call: &str, errno: Errno) {
    let _ = write!(
        s,
        "{call} failed: {} ({})",
        ErrnoName(errno),
        errno_text(errno)
    );
}

fn pages(size: u64, page: usize) -> u64 {
    size.div_ceil(page.max(1) as u64)
}

/// Why `shmget(key, size, flags)` failed with `errno`.
pub fn shmget(facts: &dyn Facts, errno: Errno, key: i32, size: usize, flags: i32) -> Sentence {
    let mut s = Sentence::new();
    // Only the errnos whose sentence names the existing segment look it up.
    let existing = match errno {
        libc::EINVAL | libc::EEXIST | libc::EACCES => find_key(facts, key),
        _ => None,
    };
    match errno {
        libc::EINVAL => {
            if let Some(row) = existing.filter(|r| (size as u64) > r.size) {
                let _ = write!(
                    s,
                    "segment key={} (shmid={}) exists with size {} bytes; asking it for {} bytes is EINVAL (ask for at most {}, or 0)",
                    Key(key),
                    row.shmid,
                    row.size,
                    size,
                    row.size
                );
            } else if size == 0 {
                let _ = write!(
                    s,
                    "size 0 is below SHMMIN (1 byte): a new segment needs at least one byte (size 0 only opens an existing one)"
                );
            } else if let Some(max) = facts.limit(Limit::Shmmax).filter(|&max| size as u64 > max) {
                let _ = write!(
                    s,
                    "size {size} exceeds the largest segment allowed, {max} bytes (/proc/sys/kernel/shmmax)"
                );
            } else {
                let _ = write!(
                    s,
                    "the kernel rejected size {size} with shmflg {}",
                    GetFlags(flags)
                );
            }
        }
        libc::EEXIST => {
            let _ = write!(s, "a segment with key={} already exists", Key(key));
            if let Some(row) = existing {
                let _ = write!(
                    s,
                    " (shmid={}, size {}, mode 0{:03o})",
                    row.shmid,
                    row.size,
                    row.mode & 0o777
                );
            }
            let _ = write!(s, " and IPC_CREAT|IPC_EXCL demands a new one");
        }
        libc::ENOENT => {
            let _ = write!(
                s,
                "no segment has key={} and shmflg {} lacks IPC_CREAT to create one",
                Key(key),
                GetFlags(flags)
            );
        }
        libc::ENOSPC => {
            let page = facts.page_size();
            let rows = facts.segments();
            let used_pages: u64 = rows.iter().map(|r| pages(r.size, page)).sum();
            match facts.limit(Limit::Shmmni) {
                Some(mni) if rows.len() as u64 >= mni => {
                    let _ = write!(
                        s,
                        "all {mni} segment ids allowed by /proc/sys/kernel/shmmni are in use ({} segments exist)",
                        rows.len()
                    );
                }
                _ => {
                    let _ = write!(
                        s,
                        "{size} bytes ({} pages) would take shared memory past /proc/sys/kernel/shmall ({} pages in all, {used_pages} in use)",
                        pages(size as u64, page),
                        Known(facts.limit(Limit::Shmall)),
                    );
                }
            }
        }
        libc::ENOMEM => {
            let _ = write!(
                s,
                "the kernel could not reserve {size} bytes for a new segment (memory or overcommit limit, see /proc/sys/vm/overcommit_memory; SHM_NORESERVE skips the reservation)"
            );
        }
        libc::EACCES => match existing {
            Some(row) => explain_access(
                &mut s,
                facts,
                &row,
                (flags as u32 & 0o777) >> 6 | (flags as u32 & 0o777) >> 3 | flags as u32 & 7,
                format_args!("shmflg 0{:03o}", flags & 0o777),
            ),
            None => generic(&mut s, "shmget", errno),
        },
        libc::EPERM if flags & libc::SHM_HUGETLB != 0 => {
            let _ = write!(
                s,
                "SHM_HUGETLB needs CAP_IPC_LOCK or membership of the group in /proc/sys/vm/hugetlb_shm_group"
            );
        }
        _ => generic(&mut s, "shmget", errno),
    }
    s
}

/// Why `shmat(shmid, addr, flags)` failed.
pub fn shmat(facts: &dyn Facts, errno: Errno, shmid: i32, addr: usize, flags: i32) -> Sentence {
    let mut s = Sentence::new();
    let shmlba = facts.page_size();
    match errno {
        libc::EINVAL => {
            let row = if shmid >= 0 {
                find_id(facts, shmid)
            } else {
                None
            };
            if row.is_none() {
                let _ = write!(
                    s,
                    "no segment has shmid={shmid} (never created, or destroyed after IPC_RMID and the last detach)"
                );
            } else if addr % shmlba != 0 && flags & libc::SHM_RND == 0 {
                let _ = write!(
                    s,
                    "address {addr:#x} is not a multiple of SHMLBA ({shmlba}); pass SHM_RND to round it down, or NULL to let the kernel choose"
                );
            } else if flags & SHM_REMAP != 0 && addr / shmlba == 0 {
                let _ = write!(
                    s,
                    "SHM_REMAP needs an address: it replaces the mapping there, and NULL (or an address rounded down to 0) names none"
                );
            } else if addr != 0 {
                let _ = write!(
                    s,
                    "the kernel refused to map shmid={shmid} at {addr:#x}: the range overlaps an existing mapping (SHM_REMAP replaces it) or lies outside the address space"
                );
            } else {
                generic(&mut s, "shmat", errno);
            }
        }
        libc::EACCES => match find_id(facts, shmid) {
            Some(row) => {
                let want = if flags & libc::SHM_RDONLY != 0 { 4 } else { 6 }
                    | if flags & SHM_EXEC != 0 { 1 } else { 0 };
                explain_access(
                    &mut s,
                    facts,
                    &row,
                    want,
                    format_args!("shmat with {}", AtFlags(flags)),
                );
            }
            None => generic(&mut s, "shmat", errno),
        },
        libc::EIDRM => {
            let _ = write!(
                s,
                "segment shmid={shmid} was removed (IPC_RMID) while it was being attached"
            );
        }
        libc::ENOMEM => {
            let _ = write!(
                s,
                "no room to map shmid={shmid}: the address space is full or the process reached /proc/sys/vm/max_map_count ({} mappings)",
                Known(facts.limit(Limit::MaxMapCount))
            );
        }
        libc::EPERM => {
            let min = facts.limit(Limit::MmapMinAddr).unwrap_or(0);
            let _ = write!(
                s,
                "mapping at {addr:#x} is not permitted: addresses below /proc/sys/vm/mmap_min_addr ({min:#x}) need CAP_SYS_RAWIO"
            );
        }
        _ => generic(&mut s, "shmat", errno),
    }
    s
}

/// Why `shmdt(addr)` failed; `inside` is the attachment containing `addr`,
/// if the registry knows one.
pub fn shmdt(errno: Errno, addr: usize, inside: Option<(usize, Attachment)>) -> Sentence {
    let mut s = Sentence::new();
    match (errno, inside) {
        (libc::EINVAL, Some((start, a))) if start == addr => {
            let _ = write!(
                s,
                "shmdt({addr:#x}): shmat returned this address (shmid={}), but it is no longer a shared-memory mapping of this process: it was unmapped another way (munmap, a raw shmdt), replaced by a MAP_FIXED mapping, or not inherited through fork (MADV_DONTFORK)",
                a.shmid
            );
        }
        (libc::EINVAL, Some((start, a))) => {
            let _ = write!(
                s,
                "shmdt({addr:#x}): the address lies {} bytes inside the attachment at {start:#x} (shmid={}); shmdt needs the address shmat returned",
                addr - start,
                a.shmid
            );
        }
        (libc::EINVAL, None) => {
            let _ = write!(
                s,
                "shmdt({addr:#x}): no shared-memory attachment starts at this address; shmdt needs the address shmat returned"
            );
        }
        _ => generic(&mut s, "shmdt", errno),
    }
    s
}

/// Why `shmctl(shmid, cmd, buf)` failed.
pub fn shmctl(facts: &dyn Facts, errno: Errno, shmid: i32, cmd: i32, buf: usize) -> Sentence {
    let mut s = Sentence::new();
    let command = Cmd(cmd);
    let by_index = matches!(cmd, SHM_STAT | SHM_STAT_ANY);
    match errno {
        libc::EINVAL if command.name().is_none() => {
            let _ = write!(
                s,
                "{cmd} is not a shmctl command (IPC_STAT, IPC_SET, IPC_RMID, IPC_INFO, SHM_INFO, SHM_STAT, SHM_STAT_ANY, SHM_LOCK, SHM_UNLOCK)"
            );
        }
        libc::EINVAL if by_index => {
            let _ = write!(
                s,
                "{command} takes an index into the kernel's table, and {shmid} is not a used index (IPC_INFO and SHM_INFO return the highest one)"
            );
        }
        libc::EINVAL => {
            let _ = write!(
                s,
                "no segment has shmid={shmid} (never created, or already destroyed)"
            );
        }
        libc::EFAULT => {
            let _ = write!(
                s,
                "{command}: buf {buf:#x} is not a valid, {} struct shmid_ds (the kernel could not copy it)",
                if cmd == libc::IPC_SET {
                    "readable"
                } else {
                    "writable"
                }
            );
        }
        libc::EPERM if matches!(cmd, libc::IPC_SET | libc::IPC_RMID) => {
            let caller = facts.caller();
            match find_id(facts, shmid) {
                Some(row) => {
                    let _ = write!(
                        s,
                        "{command} on shmid={shmid} is reserved to its owner (uid {}), its creator (uid {}) and CAP_SYS_ADMIN; the caller's euid is {}",
                        row.uid, row.cuid, caller.euid
                    );
                }
                None => generic(&mut s, "shmctl", errno),
            }
        }
        libc::EPERM if matches!(cmd, libc::SHM_LOCK | libc::SHM_UNLOCK) => {
            let _ = write!(
                s,
                "{command} needs CAP_IPC_LOCK, or ownership of the segment and a large enough RLIMIT_MEMLOCK"
            );
        }
        libc::ENOMEM if cmd == libc::SHM_LOCK => {
            let _ = write!(s, "SHM_LOCK would take locked memory past RLIMIT_MEMLOCK");
        }
        libc::EACCES => {
            let row = if by_index {
                facts.segments().get(shmid.max(0) as usize).copied()
            } else {
                find_id(facts, shmid)
            };
            match row {
                Some(row) => explain_access(&mut s, facts, &row, 4, format_args!("{command}")),
                None => generic(&mut s, "shmctl", errno),
            }
        }
        libc::EIDRM => {
            let _ = write!(s, "segment shmid={shmid} has been removed");
        }
        _ => generic(&mut s, "shmctl", errno),
    }
    s
}

/// Why `ftok(path, id)` failed: the `stat` of `path`.
pub fn ftok(errno: Errno, path: &[u8]) -> Sentence {
    let mut s = Sentence::new();
    if errno == libc::EFAULT {
        let _ = write!(
            s,
            "ftok: the path pointer is not valid memory (NULL?); ftok needs the path of an existing file"
        );
    } else {
        let _ = write!(
            s,
            "ftok: cannot stat '{}': {} ({}); ftok needs the path of an existing file",
            Lossy(path),
            errno_text(errno),
            ErrnoName(errno)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's limits a fake kernel answers with.
    #[derive(Clone, Copy, Debug, Default)]
    struct Limits {
        shmmax: Option<u64>,
        shmall: Option<u64>,
        shmmni: Option<u64>,
        max_map_count: Option<u64>,
        mmap_min_addr: Option<u64>,
        page_size: usize,
    }

    struct Fake {
        limits: Limits,
        rows: Vec<SegmentRow>,
        caller: Caller,
        groups: Vec<u32>,
    }

    impl Facts for Fake {
        fn limit(&self, which: Limit) -> Option<u64> {
            match which {
                Limit::Shmmax => self.limits.shmmax,
                Limit::Shmall => self.limits.shmall,
                Limit::Shmmni => self.limits.shmmni,
                Limit::MaxMapCount => self.limits.max_map_count,
                Limit::MmapMinAddr => self.limits.mmap_min_addr,
            }
        }
        fn page_size(&self) -> usize {
            self.limits.page_size
        }
        fn segments(&self) -> Vec<SegmentRow> {
            self.rows.clone()
        }
        fn caller(&self) -> Caller {
            self.caller
        }
        fn in_group(&self, gid: u32) -> bool {
            self.groups.contains(&gid)
        }
    }

    fn fake() -> Fake {
        Fake {
            limits: Limits {
                shmmax: Some(1 << 20),
                shmall: Some(1000),
                shmmni: Some(4),
                max_map_count: Some(65530),
                mmap_min_addr: Some(65536),
                page_size: 4096,
            },
            rows: vec![SegmentRow {
                key: 0x1234,
                shmid: 7,
                mode: 0o600,
                size: 4096,
                uid: 0,
                gid: 0,
                cuid: 0,
                cgid: 0,
                ..Default::default()
            }],
            caller: Caller {
                euid: 65534,
                egid: 65534,
            },
            groups: vec![],
        }
    }

    #[test]
    fn parses_proc_sysvipc_shm() {
        let text = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n\
                    4660          3  1600                 10000  1234  1235      2     0     0     0     0 1700000000 1700000001 1700000002                 12288                     0\n";
        let rows = parse_segments(text.as_bytes());
        assert_eq!(rows.len(), 1);
        let r = rows[0];
        assert_eq!(
            (r.key, r.shmid, r.mode, r.size, r.cpid, r.nattch),
            (0x1234, 3, 0o1600, 10000, 1234, 2)
        );
        assert_eq!(r.ctime, 1700000002);
    }

    #[test]
    fn shmget_sentences() {
        let f = fake();
        let s = shmget(&f, libc::EINVAL, 0x1234, 8192, 0);
        assert!(
            s.as_str().contains("4096") && s.as_str().contains("shmid=7"),
            "{s}"
        );
        let s = shmget(&f, libc::EINVAL, 0, 0, libc::IPC_CREAT);
        assert!(s.as_str().contains("size 0"), "{s}");
        let s = shmget(&f, libc::EINVAL, 0, 2 << 20, libc::IPC_CREAT);
        assert!(
            s.as_str().contains("/proc/sys/kernel/shmmax") && s.as_str().contains("1048576"),
            "{s}"
        );
        let s = shmget(
            &f,
            libc::EEXIST,
            0x1234,
            1,
            libc::IPC_CREAT | libc::IPC_EXCL,
        );
        assert!(
            s.as_str().contains("IPC_EXCL") && s.as_str().contains("shmid=7"),
            "{s}"
        );
        let s = shmget(&f, libc::ENOENT, 0x99, 1, 0o600);
        assert!(
            s.as_str().contains("IPC_CREAT") && s.as_str().contains("0x00000099"),
            "{s}"
        );
    }

    #[test]
    fn enospc_names_the_limit_that_was_hit() {
        let mut f = fake();
        let s = shmget(&f, libc::ENOSPC, 0, 1 << 22, libc::IPC_CREAT);
        assert!(s.as_str().contains("shmall"), "{s}");
        f.rows = vec![f.rows[0]; 4];
        let s = shmget(&f, libc::ENOSPC, 0, 1, libc::IPC_CREAT);
        assert!(
            s.as_str().contains("shmmni") && s.as_str().contains("4 segments"),
            "{s}"
        );
    }

    #[test]
    fn eacces_names_class_and_bits() {
        let mut f = fake();
        let s = shmget(&f, libc::EACCES, 0x1234, 0, 0o666);
        assert!(
            s.as_str().contains("0600")
                && s.as_str().contains("other class")
                && s.as_str().contains("read and write"),
            "{s}"
        );
        f.groups = vec![0];
        f.rows[0].mode = 0o640;
        let s = shmat(&f, libc::EACCES, 7, 0, 0);
        assert!(
            s.as_str().contains("group class")
                && s.as_str().contains("grants r--")
                && s.as_str().contains("write"),
            "{s}"
        );
    }

    #[test]
    fn shmat_sentences() {
        let f = fake();
        assert!(
            shmat(&f, libc::EINVAL, 99, 0, 0)
                .as_str()
                .contains("no segment has shmid=99")
        );
        let s = shmat(&f, libc::EINVAL, 7, 0x1001, 0);
        assert!(
            s.as_str().contains("SHMLBA") && s.as_str().contains("SHM_RND"),
            "{s}"
        );
        let s = shmat(&f, libc::EINVAL, 7, 0, SHM_REMAP);
        assert!(s.as_str().contains("SHM_REMAP"), "{s}");
    }

    #[test]
    fn shmdt_and_shmctl_sentences() {
        let a = Attachment {
            shmid: 3,
            pid: 1,
            readonly: false,
            size: 8192,
            guards: 0,
        };
        let s = shmdt(libc::EINVAL, 0x5000, Some((0x4000, a)));
        assert!(
            s.as_str().contains("4096 bytes inside") && s.as_str().contains("shmdt"),
            "{s}"
        );
        assert!(shmdt(libc::EINVAL, 0x5000, None).as_str().contains("shmdt"));
        let s = shmdt(libc::EINVAL, 0x4000, Some((0x4000, a)));
        assert!(
            s.as_str().contains("no longer a shared-memory mapping")
                && s.as_str().contains("MADV_DONTFORK"),
            "{s}"
        );
        let f = fake();
        assert!(
            shmctl(&f, libc::EINVAL, 7, 99, 0)
                .as_str()
                .contains("not a shmctl command")
        );
        assert!(
            shmctl(&f, libc::EFAULT, 7, libc::IPC_STAT, 0)
                .as_str()
                .contains("writable")
        );
        let s = shmctl(&f, libc::EPERM, 7, libc::IPC_RMID, 0);
        assert!(
            s.as_str().contains("owner (uid 0)") && s.as_str().contains("65534"),
            "{s}"
        );
    }

    #[test]
    fn ftok_names_the_path() {
        let s = ftok(libc::ENOENT, b"/no/such/file");
        assert!(
            s.as_str().contains("'/no/such/file'") && s.as_str().contains("No such file"),
            "{s}"
        );
    }

    #[test]
    fn flags_are_spelled_like_c() {
        assert_eq!(
            GetFlags(libc::IPC_CREAT | libc::IPC_EXCL | 0o600).to_string(),
            "IPC_CREAT|IPC_EXCL|0600"
        );
        assert_eq!(GetFlags(0).to_string(), "0000");
        assert_eq!(GetFlags(0x4000_0000 | 0o644).to_string(), "0x40000000|0644");
        assert_eq!(AtFlags(0).to_string(), "0");
        assert_eq!(
            AtFlags(libc::SHM_RDONLY | libc::SHM_RND).to_string(),
            "SHM_RDONLY|SHM_RND"
        );
        assert_eq!(
            GetFlags(i32::MIN | libc::IPC_CREAT | 0o7).to_string(),
            "IPC_CREAT|0x80000000|0007"
        );
        assert_eq!(
            AtFlags(libc::SHM_RDONLY | 0x10).to_string(),
            "SHM_RDONLY|0x10"
        );
        assert_eq!(AtFlags(0x0fff_0000).to_string(), "0xfff0000");
        assert_eq!(Cmd(libc::IPC_RMID).to_string(), "IPC_RMID");
        assert_eq!(Cmd(99).to_string(), "99");
        assert_eq!(Key(-1).to_string(), "0xffffffff");
    }
}
