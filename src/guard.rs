//! Guard pages (`guard_pages=1`): a no-access page on each side of every
//! attachment whose address the kernel chooses, so an overrun or underrun
//! faults at once instead of corrupting a neighbour.
//!
//! The range is reserved whole (`PROT_NONE`), then the segment is attached
//! into its middle with `SHM_REMAP`. Any failure falls back to the plain
//! call, so results and errno stay the kernel's. `shmdt` releases the
//! guards, leaving /proc/self/maps as it was.
#![forbid(unsafe_code)]

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::registry::{Attachment, REGISTRY};
use crate::runtime::Line;
use crate::sys::{self, SHM_REMAP};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns guard pages on (from start-up, when `guard_pages=1`).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
    sys::install_segv_handler(on_fault);
}

/// Whether `shmat(shmid, addr, flags)` gets guard pages: only where the
/// kernel would choose the address.
pub fn applies(addr: usize, flags: i32) -> bool {
    ENABLED.load(Ordering::Relaxed) && addr == 0 && flags & SHM_REMAP == 0
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
    // The spare page is either the first or the last: give it back.
    let (spare, used_end) = if at == base + page {
        (base + total - page, base + total - page)
    } else {
        (base, base + total)
    };
    sys::release(spare, page);
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
/// still owns, except any inside that range.
pub fn release(addr: usize, a: &Attachment, keep_start: usize, keep_end: usize) {
    let page = sys::page_size();
    for (guard, bit) in a.guard_pages(addr, page) {
        if a.guards & bit != 0 && !(keep_start..keep_end).contains(&guard) {
            sys::release(guard, page);
        }
    }
}

/// The SIGSEGV hook: if `fault` lies in a guard page, name the segment.
/// Runs in a signal handler: no allocation, no blocking lock.
fn on_fault(fault: usize) {
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
            "guard page hit: access at {fault:#x} is {} bytes before",
            addr - fault
        )
    } else {
        write!(
            line,
            "guard page hit: access at {fault:#x} is {} bytes past the end of",
            fault - (addr + a.size)
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
}
