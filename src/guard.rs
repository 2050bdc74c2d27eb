//! Guard pages (`guard_pages=1`): a no-access page on each side of every
//! attachment whose address the kernel chooses, so an overrun or underrun
//! faults at once instead of corrupting a neighbour.
//!
//! The range is reserved whole (`PROT_NONE`), then the segment is attached
//! into its middle with `SHM_REMAP`. Any failure falls back to the plain
//! call, so results and errno stay the kernel's. `shmdt` releases the
//! guards, leaving /proc/self/maps as it was.
//!
//! Guards never cost the program a mapping: they hold at most a quarter of
//! `vm.max_map_count` (beyond that, attachments get none), and when `shmat`
//! fails with `ENOMEM` while guards exist, they are all given up and the
//! call retried. The guards of an attachment that went away behind our
//! back (`munmap`, a raw `shmdt`) are released when its stale record is
//! found: at a failed `shmdt` of it, when its address is attached again,
//! or when the records are pruned.
#![forbid(unsafe_code)]

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::leak::{self, Maps};
use crate::registry::{Attachment, REGISTRY};
use crate::runtime::{Line, say};
use crate::sys::{self, SHM_REMAP};

static ENABLED: AtomicBool = AtomicBool::new(false);
/// `vm.max_map_count`, read once.
static MAX_MAP_COUNT: AtomicUsize = AtomicUsize::new(0);
/// The warning about giving guards up is printed once.
static GAVE_UP: AtomicBool = AtomicBool::new(false);

/// The most guard pages held at once, read once: a quarter of
/// `vm.max_map_count` (the kernel's default 65530 if unreadable), so that
/// the program's own `mmap`, `malloc` and threads keep their room.
pub fn budget() -> usize {
    (max_map_count() / 4).max(2)
}

/// `vm.max_map_count`, read once (the kernel's default if unreadable).
fn max_map_count() -> usize {
    let cached = MAX_MAP_COUNT.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    let max = sys::read_number(c"/proc/sys/vm/max_map_count")
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n > 0)
        .unwrap_or(65_530);
    MAX_MAP_COUNT.store(max, Ordering::Relaxed);
    max
}

/// Whether this process has used (nearly) all its map entries: a failed
/// `shmat`'s `ENOMEM` is then theirs to lift (not a segment too big for
/// the address space, which guards do not change).
fn out_of_map_entries() -> bool {
    // A few lines of /proc/self/maps (vsyscall) are not map entries; an
    // unreadable file counts as out, guards being the cheaper loss.
    sys::count_lines(c"/proc/self/maps").is_none_or(|n| n + 8 >= max_map_count())
}

/// Turns guard pages on (from start-up, when `guard_pages=1`).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
    sys::install_segv_handler(on_fault);
}

/// Whether `shmat(shmid, addr, flags)` gets guard pages: only where the
/// kernel would choose the address.
pub fn applies(addr: usize, flags: i32) -> bool {
    ENABLED.load(Ordering::Relaxed)
        && addr == 0
        && flags & SHM_REMAP == 0
        && REGISTRY.guard_pages() + 2 <= budget()
}

/// Attaches with a guard page on each side: the address and the segment's
/// size, or `None` to fall back to the plain call.
///
/// `IPC_STAT` cannot tell a `SHM_HUGETLB` segment, which the kernel maps in
/// whole huge pages (2 MiB or more) however small `shm_segsz` is: attached
/// into a few reserved pages it would replace whatever follows them. So the
/// address chosen is never aligned to 64 KiB (the smallest huge page size
/// of any architecture), where a huge-page mapping must start: the kernel
/// then refuses a hugetlb segment (`EINVAL`) and we fall back to the plain
/// call, which it places itself. Found by the differential fuzzer.
pub fn attach(shmid: i32, flags: i32) -> Option<(usize, usize)> {
    const SMALLEST_HUGE_PAGE: usize = 64 << 10;
    let size = sys::shm_stat(shmid).ok()?.shm_segsz;
    let page = sys::page_size();
    let span = size.div_ceil(page).checked_mul(page)?;
    // One spare page, to move off a huge-page boundary if need be.
    let total = span.checked_add(3 * page)?;
    let base = sys::reserve(total).ok()?;
    let mut at = base + page;
    if at % SMALLEST_HUGE_PAGE == 0 {
        at += page;
    }
    // The spare page is either the first or the last: give it back. The
    // reservation may have merged with a neighbour (the kernel places it
    // next to the last one), so this may split a mapping, which fails when
    // every map entry is used: then give it all back (a mapping shrinks,
    // no split) and fall back to the plain call.
    let (spare, used_end) = if at == base + page {
        (base + total - page, base + total - page)
    } else {
        (base, base + total)
    };
    if !sys::release(spare, page) {
        sys::release(base, total);
        return None;
    }
    let used_start = at - page;
    match sys::shmat(shmid, at, flags | SHM_REMAP) {
        Ok(got) if got == at => Some((at, size)),
        Ok(got) => {
            // Not where we asked: cannot happen with SHM_REMAP; be safe.
            let _ = sys::shmdt(got);
            sys::release(used_start, used_end - used_start);
            None
        }
        Err(_) => {
            sys::release(used_start, used_end - used_start);
            None
        }
    }
}

/// After `shmdt` of the attachment `a` at `addr`, or its replacement by a
/// `SHM_REMAP` over `[keep_start, keep_end)`: release the guard pages it
/// still owns, except any inside that range. Returns the guards that the
/// kernel refused to unmap (out of map entries).
pub fn release(addr: usize, a: &Attachment, keep_start: usize, keep_end: usize) -> u8 {
    let page = sys::page_size();
    let mut kept = 0;
    for (guard, bit) in a.guard_pages(addr, page) {
        if a.guards & bit != 0
            && !(keep_start..keep_end).contains(&guard)
            && !sys::release(guard, page)
        {
            kept |= bit;
        }
    }
    kept
}

/// /proc/self/maps, parsed; `None` if it cannot be read.
pub fn read_maps() -> Option<Maps> {
    let mut text = Vec::new();
    sys::read_file(c"/proc/self/maps", &mut text).ok()?;
    leak::parse_maps(&text)
}

/// Releases the guard pages of a stale record (its attachment went away
/// behind our back), each only if `maps` (read now if `None`) still shows
/// it as an anonymous no-access page, as we left it (never a mapping that
/// someone else made there since), and not inside `[keep.0, keep.1)` (the
/// new attachment that replaced the record, with its guards).
pub fn release_stale(addr: usize, a: &Attachment, maps: Option<&Maps>, keep: (usize, usize)) {
    if a.guards == 0 {
        return;
    }
    let read;
    let maps = match maps {
        Some(m) => m,
        None => match read_maps() {
            Some(m) => {
                read = m;
                &read
            }
            None => return,
        },
    };
    let page = sys::page_size();
    for (guard, bit) in a.guard_pages(addr, page) {
        if a.guards & bit != 0 && !(keep.0..keep.1).contains(&guard) && maps.no_access_at(guard) {
            sys::release(guard, page);
        }
    }
}

/// `shmat` failed with `ENOMEM`: if map entries ran out, gives up the
/// guard pages of every attachment (one warning per process), so that the
/// retried call finds the entries they held. Returns whether any were
/// given up.
pub fn give_up() -> bool {
    if !out_of_map_entries() {
        return false;
    }
    // A guard that cannot be unmapped yet (it would split a mapping) may
    // be once others are: a few passes.
    let mut n = 0;
    for _ in 0..4 {
        let given = REGISTRY.give_up_guards(|addr, a| release(addr, a, 0, 0));
        if given == 0 {
            break;
        }
        n += given;
    }
    if n > 0 && !GAVE_UP.swap(true, Ordering::Relaxed) {
        say(format_args!(
            "warning: guard_pages: out of memory mappings (vm.max_map_count): {n} guard page{} given up so that shmat succeeds as it would without shmguard",
            if n == 1 { " was" } else { "s were" }
        ));
    }
    n > 0
}

/// The SIGSEGV hook: if `fault` lies in a guard page, name the segment,
/// and with `stacks=1` where it was attached (its frames, resolved when it
/// was attached). Runs in a signal handler: no allocation, no blocking
/// lock (the registry and the stacks are only tried).
fn on_fault(fault: usize) {
    if !crate::runtime::active() {
        return; // no call yet: no guard page either
    }
    // Marks the thread busy: a signal handler that interrupts this one and
    // calls an extension function gets EAGAIN instead of waiting for a
    // shard this one holds.
    let _inside = crate::runtime::mark_busy();
    let page = sys::page_size();
    let mut hit = None;
    REGISTRY.try_for_each_attachment(|addr, a| {
        for (guard, bit) in a.guard_pages(addr, page) {
            if a.guards & bit != 0 && (guard..guard + page).contains(&fault) {
                hit = Some((addr, *a));
            }
        }
    });
    let Some((addr, a)) = hit else { return };
    let mut line = Line::new();
    let _ = if fault < addr {
        write!(
            line,
            "guard page hit: access at {fault:#x} is {} byte{} before",
            addr - fault,
            if addr - fault == 1 { "" } else { "s" }
        )
    } else {
        write!(
            line,
            "guard page hit: access at {fault:#x} is {} byte{} past the end of",
            fault - (addr + a.size),
            if fault - (addr + a.size) == 1 {
                ""
            } else {
                "s"
            }
        )
    };
    let _ = write!(
        line,
        " the attachment of shmid={} (size {}) at {addr:#x} (offset {})",
        a.shmid,
        a.size,
        fault as isize - addr as isize
    );
    let _ = line.write_to(2);
    // Where it was attached (`stacks=1`): frames resolved at attach time,
    // each written from a stack buffer (see stacks::record_resolved).
    crate::stacks::each_resolved_frame(crate::stacks::Owner::Attachment(addr), |frame| {
        let mut line = Line::new();
        let _ = write!(line, "    at {frame}");
        let _ = line.write_to(2);
    });
}
