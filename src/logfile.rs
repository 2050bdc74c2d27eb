//! An append-only file written through a shared file mapping.
//!
//! The audit log must survive `SIGKILL` without a system call per event:
//! events are copied into a `MAP_SHARED` mapping of the file, which the
//! kernel keeps (page cache) when the process dies. Space is reserved with
//! one atomic `fetch_add`; the file grows in steps with `fallocate`, so a
//! full disk is an error at growth time (logging stops with a warning)
//! instead of a `SIGBUS` when a page is first touched.
//!
//! The whole capacity is reserved as address space once (`PROT_NONE`, no
//! memory), so the mapping never moves: a writer can never copy into memory
//! that another thread has unmapped. The file is mapped over the front of
//! the reservation only as far as it is backed, one `MAP_FIXED` piece per
//! growth step (the kernel merges the pieces into one mapping): no page of
//! the range ever raises `SIGBUS`, which matters to tools that read every
//! readable page of a process (Valgrind's leak search, core dumps). Growth
//! and closing take a lock; appending does not.

use core::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};

use crate::lock::Locked;
use crate::sys::{self, Errno};

/// Address space reserved for one process's log.
pub const CAPACITY: usize = 1 << 30;
const FIRST_STEP: usize = 64 << 10;
const MAX_STEP: usize = 8 << 20;
/// `MADV_POPULATE_WRITE` (Linux 5.14), not in every libc crate version.
const MADV_POPULATE_WRITE: libc::c_int = 23;
/// `pos` after closing: every later reservation lands past `CAPACITY`.
const CLOSED: usize = usize::MAX / 2;

/// Why an append did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendError {
    /// No file is open (never opened, closed, or abandoned after fork).
    NotOpen,
    /// `CAPACITY` is used up.
    Full,
    /// The file was closed (at exit); later events are dropped quietly.
    Closed,
    /// Growing the file failed (`ENOSPC`, `EDQUOT`, ...).
    Grow(Errno),
}

/// The log file of this process.
pub struct LogFile {
    base: AtomicUsize,
    fd: AtomicI32,
    /// The file's identity, to notice a program that closed our descriptor
    /// (daemons close every fd) and reused its number for a file of its own.
    dev: AtomicU64,
    ino: AtomicU64,
    /// The path, NUL-terminated, to reopen the file in that case.
    path: Locked<Vec<u8>>,
    /// Bytes reserved so far (the end of the last reservation).
    pos: AtomicUsize,
    /// The file's current length: every reserved byte below it is backed.
    len: AtomicUsize,
    /// How much of the reservation maps the file (page-aligned, >= `len`
    /// while open); the rest is `PROT_NONE`. Changed under `grow`.
    mapped: AtomicUsize,
    grow: Locked<()>,
}

impl LogFile {
    pub const fn new() -> Self {
        Self {
            base: AtomicUsize::new(0),
            fd: AtomicI32::new(-1),
            dev: AtomicU64::new(0),
            ino: AtomicU64::new(0),
            path: Locked::new(Vec::new()),
            pos: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            mapped: AtomicUsize::new(0),
            grow: Locked::new(()),
        }
    }

    /// Whether a file is open.
    pub fn is_open(&self) -> bool {
        self.base.load(Ordering::Acquire) != 0
    }

    /// Opens or creates `path` (mode 0600), maps it and appends `first` (the
    /// start event) before any other append can see the file.
    ///
    /// An existing file is appended to, never truncated: after `exec` the
    /// new program image has the same pid, hence the same path, and the old
    /// image's events (which it had no chance to trim) must stay.
    pub fn open(&self, path: &core::ffi::CStr, first: &[u8]) -> Result<(), Errno> {
        let _guard = self.grow.lock();
        if self.is_open() {
            return Ok(());
        }
        // SAFETY: `path` is a valid C string.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                0o600,
            )
        };
        if fd < 0 {
            return Err(sys::errno());
        }
        let fd = move_high(fd);
        let Some((dev, ino, size)) = sys::fd_stat(fd) else {
            // SAFETY: `fd` is ours.
            unsafe { libc::close(fd) };
            return Err(libc::EBADF);
        };
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size >= CAPACITY {
            // SAFETY: `fd` is ours.
            unsafe { libc::close(fd) };
            return Err(libc::EFBIG);
        }
        {
            let mut saved = self.path.lock();
            saved.clear();
            if saved.try_reserve(path.to_bytes_with_nul().len()).is_ok() {
                saved.extend_from_slice(path.to_bytes_with_nul());
            }
        }
        self.dev.store(dev, Ordering::Relaxed);
        self.ino.store(ino, Ordering::Relaxed);
        let base = match sys::reserve(CAPACITY) {
            Ok(base) => base,
            Err(e) => {
                // SAFETY: `fd` is ours.
                unsafe { libc::close(fd) };
                return Err(e);
            }
        };
        let existing = size.next_multiple_of(sys::page_size());
        if let Err(e) = map_file(base, fd, 0, existing) {
            sys::release(base, CAPACITY);
            // SAFETY: `fd` is ours.
            unsafe { libc::close(fd) };
            return Err(e);
        }
        self.mapped.store(existing, Ordering::Relaxed);
        // What an earlier image of this process left: its last event ends
        // at the last byte that is not preallocated padding.
        // SAFETY: [base, base + size) maps the file's existing bytes.
        let old = unsafe { core::slice::from_raw_parts(base as *const u8, size) };
        let start = old.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        // A torn last line (killed mid-copy): end it before ours.
        let torn = start > 0 && old[start - 1] != b'\n';
        let lead = usize::from(torn);
        // `first` is reserved before the file is published, and with `len`
        // not covering it every other append waits in `grow_to` for our
        // lock, so the start event comes before this image's other events.
        let end = start + lead + first.len();
        self.fd.store(fd, Ordering::Relaxed);
        self.pos.store(end, Ordering::Relaxed);
        self.len.store(size.min(start), Ordering::Relaxed);
        self.base.store(base, Ordering::Release);
        if let Err(e) = self.grow_locked(end) {
            self.pos.store(CLOSED, Ordering::Relaxed);
            return Err(match e {
                AppendError::Grow(errno) => errno,
                _ => libc::ENOSPC,
            });
        }
        // SAFETY: [base + start, base + end) is mapped, backed (grown just
        // now) and reserved for us (pos was set past it before publishing).
        unsafe {
            let at = (base as *mut u8).add(start);
            if torn {
                *at = b'\n';
            }
            core::ptr::copy_nonoverlapping(first.as_ptr(), at.add(lead), first.len());
        }
        Ok(())
    }

    /// Appends `bytes` as one unit; concurrent appends never interleave.
    pub fn append(&self, bytes: &[u8]) -> Result<(), AppendError> {
        let base = self.base.load(Ordering::Acquire);
        if base == 0 {
            return Err(AppendError::NotOpen);
        }
        let off = self.pos.fetch_add(bytes.len(), Ordering::Relaxed);
        if off >= CLOSED {
            return Err(AppendError::Closed);
        }
        let end = off.checked_add(bytes.len()).ok_or(AppendError::Full)?;
        if end > CAPACITY {
            return Err(AppendError::Full);
        }
        if end > self.len.load(Ordering::Acquire) {
            self.grow_to(end)?;
        }
        // SAFETY: [base + off, base + end) lies inside our mapping (end <=
        // CAPACITY), is backed by the file (end <= len, and the file never
        // shrinks below a reserved byte: `close` truncates to `pos` only
        // after closing reservations), and belongs to this reservation
        // alone (fetch_add hands out disjoint ranges).
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), (base + off) as *mut u8, bytes.len());
        }
        Ok(())
    }

    #[cold]
    fn grow_to(&self, end: usize) -> Result<(), AppendError> {
        let _guard = self.grow.lock();
        self.grow_locked(end)
    }

    fn grow_locked(&self, end: usize) -> Result<(), AppendError> {
        let len = self.len.load(Ordering::Acquire);
        if end <= len {
            return Ok(());
        }
        let step = len.clamp(FIRST_STEP, MAX_STEP);
        let new_len = end.next_multiple_of(step).min(CAPACITY);
        let fd = self.our_fd().ok_or(AppendError::Grow(libc::EBADF))?;
        // SAFETY: plain system calls on our own fd.
        let mut ret =
            unsafe { libc::fallocate(fd, 0, len as libc::off_t, (new_len - len) as libc::off_t) };
        if ret != 0 && sys::errno() == libc::EOPNOTSUPP {
            // SAFETY: as above; this file system cannot reserve blocks.
            ret = unsafe { libc::ftruncate(fd, new_len as libc::off_t) };
        }
        if ret != 0 {
            return Err(AppendError::Grow(sys::errno()));
        }
        let base = self.base.load(Ordering::Relaxed);
        if base != 0 {
            // Map the new part (`new_len` is a multiple of the step, hence
            // of the page size, or CAPACITY).
            let mapped = self.mapped.load(Ordering::Relaxed);
            if new_len > mapped {
                map_file(base, fd, mapped, new_len - mapped).map_err(AppendError::Grow)?;
                self.mapped.store(new_len, Ordering::Relaxed);
            }
            // Fault the new pages in now, in one system call, rather than
            // one page fault per 4 KiB of events on the hot path (Linux
            // 5.14+; an older kernel's EINVAL leaves them to fault lazily).
            // SAFETY: [base + len, base + new_len) lies in our mapping and
            // is backed by the file (just grown); populating writes nothing.
            unsafe {
                libc::madvise(
                    (base + len) as *mut libc::c_void,
                    new_len - len,
                    MADV_POPULATE_WRITE,
                );
            }
        }
        self.len.store(new_len, Ordering::Release);
        Ok(())
    }

    /// Stops appending and trims the file to what was written.
    pub fn close(&self) {
        let _guard = self.grow.lock();
        if !self.is_open() {
            return;
        }
        // Reservations made before this swap end at or below `end`; later
        // ones land past CAPACITY and are refused. Growth is serialised with
        // us, so the file is never cut below a byte still being copied.
        let end = self
            .pos
            .swap(CLOSED, Ordering::AcqRel)
            .min(self.len.load(Ordering::Acquire));
        if let Some(fd) = self.our_fd() {
            // SAFETY: our own fd; bytes past `end` were never handed out.
            unsafe { libc::ftruncate(fd, end as libc::off_t) };
        }
        // The pages past the new end would raise SIGBUS if read: give them
        // back to the PROT_NONE reservation.
        let base = self.base.load(Ordering::Relaxed);
        let keep = end.next_multiple_of(sys::page_size());
        let mapped = self.mapped.load(Ordering::Relaxed);
        if mapped > keep && unmap_file(base, keep, mapped - keep).is_ok() {
            self.mapped.store(keep, Ordering::Relaxed);
        }
        self.len.store(end, Ordering::Release);
    }

    /// Our descriptor, checked to still be our file; reopened by path if the
    /// program closed it or put another file under its number. Called with
    /// the growth lock held.
    fn our_fd(&self) -> Option<i32> {
        let fd = self.fd.load(Ordering::Relaxed);
        let ours = (
            self.dev.load(Ordering::Relaxed),
            self.ino.load(Ordering::Relaxed),
        );
        if sys::fd_identity(fd) == Some(ours) {
            return Some(fd);
        }
        let path = self.path.lock();
        let path = core::ffi::CStr::from_bytes_with_nul(&path).ok()?;
        // SAFETY: `path` is a valid C string; no O_CREAT: only our file.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            )
        };
        if fd < 0 {
            return None;
        }
        let fd = move_high(fd);
        if sys::fd_identity(fd) != Some(ours) {
            // SAFETY: `fd` was just opened by us.
            unsafe { libc::close(fd) };
            return None;
        }
        // The old number is the program's now: never close it.
        self.fd.store(fd, Ordering::Relaxed);
        Some(fd)
    }

    /// In a fork child: drop the parent's mapping and fd without touching
    /// the parent's file, so the child can open its own.
    pub fn abandon_after_fork(&self) {
        let base = self.base.swap(0, Ordering::AcqRel);
        if base != 0 {
            // SAFETY: only the forking thread exists in the child; nothing
            // else can be copying into the mapping.
            unsafe { libc::munmap(base as *mut libc::c_void, CAPACITY) };
        }
        let fd = self.fd.swap(-1, Ordering::Relaxed);
        let ours = (
            self.dev.load(Ordering::Relaxed),
            self.ino.load(Ordering::Relaxed),
        );
        if fd >= 0 && sys::fd_identity(fd) == Some(ours) {
            // SAFETY: the child's copy of our fd (checked: not the program's).
            unsafe { libc::close(fd) };
        }
        self.pos.store(0, Ordering::Relaxed);
        self.len.store(0, Ordering::Relaxed);
        self.mapped.store(0, Ordering::Relaxed);
        self.grow.unlock_after_fork_child();
    }

    /// Fork `prepare`: hold the growth lock across fork.
    pub fn lock_for_fork(&self) {
        self.grow.lock_for_fork();
    }

    /// Fork `parent`.
    pub fn unlock_in_parent(&self) {
        self.grow.unlock_after_fork_parent();
    }
}

/// Maps `[offset, offset + len)` of the file `fd` read-write and shared at
/// `base + offset`, inside the log's reservation (nothing to do for 0).
fn map_file(base: usize, fd: i32, offset: usize, len: usize) -> Result<(), Errno> {
    if len == 0 {
        return Ok(());
    }
    // SAFETY: [base + offset, base + offset + len) lies inside the log's own
    // reservation (offset + len <= CAPACITY), which holds nothing of anyone
    // else's, so MAP_FIXED replaces only our PROT_NONE placeholder.
    let p = unsafe {
        libc::mmap(
            (base + offset) as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_FIXED,
            fd,
            offset as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED {
        Err(sys::errno())
    } else {
        Ok(())
    }
}

/// Puts `[base + offset, base + offset + len)` back to the `PROT_NONE`
/// placeholder of the log's reservation.
fn unmap_file(base: usize, offset: usize, len: usize) -> Result<(), Errno> {
    // SAFETY: the range lies inside the log's own reservation and maps only
    // our file, which nobody copies into any more (closed, under `grow`).
    let p = unsafe {
        libc::mmap(
            (base + offset) as *mut libc::c_void,
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        Err(sys::errno())
    } else {
        Ok(())
    }
}

/// Moves `fd` to a number of 512 or more, out of the way of programs that
/// assume small descriptors are theirs (or keeps it if that fails).
fn move_high(fd: i32) -> i32 {
    // SAFETY: plain fcntl/close on a descriptor we own.
    unsafe {
        let high = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 512);
        if high < 0 {
            return fd;
        }
        libc::close(fd);
        high
    }
}

impl Default for LogFile {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn temp(name: &str) -> (std::path::PathBuf, CString) {
        let path =
            std::env::temp_dir().join(format!("shmguard-logfile-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let c = CString::new(path.to_str().unwrap()).unwrap();
        (path, c)
    }

    #[test]
    #[cfg_attr(miri, ignore = "file mappings are not emulated by Miri")]
    fn appends_grow_and_close_trims() {
        let (path, c) = temp("grow");
        let log = LogFile::new();
        assert_eq!(log.append(b"x"), Err(AppendError::NotOpen));
        log.open(&c, b"start\n").unwrap();
        let line = [b'a'; 1000];
        for _ in 0..300 {
            log.append(&line).unwrap();
        }
        log.close();
        assert_eq!(log.append(b"late"), Err(AppendError::Closed));
        let data = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(data.len(), 300_006);
        assert!(data.starts_with(b"start\n"));
        assert!(data[6..].iter().all(|&b| b == b'a'));
    }

    /// The mappings of /proc/self/maps within [lo, hi), clipped to it: (start, end,
    /// permissions, inode).
    fn maps_within(lo: usize, hi: usize) -> Vec<(usize, usize, String, u64)> {
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let (a, b) = f[0].split_once('-')?;
                let (a, b) = (
                    usize::from_str_radix(a, 16).ok()?,
                    usize::from_str_radix(b, 16).ok()?,
                );
                // Clipped: a PROT_NONE rest may merge with a neighbour.
                (a < hi && b > lo).then(|| {
                    (
                        a.max(lo),
                        b.min(hi),
                        f[1].to_string(),
                        f[4].parse().unwrap(),
                    )
                })
            })
            .collect()
    }

    #[test]
    #[cfg_attr(miri, ignore = "file mappings are not emulated by Miri")]
    fn only_what_the_file_holds_is_mapped() {
        use std::os::unix::fs::MetadataExt;
        let (path, c) = temp("mapped");
        let log = LogFile::new();
        log.open(&c, b"start\n").unwrap();
        let line = [b'c'; 1000];
        for _ in 0..200 {
            log.append(&line).unwrap();
        }
        let base = log.base.load(Ordering::Relaxed);
        let ino = std::fs::metadata(&path).unwrap().ino();
        let check = |file_len: usize| {
            let maps = maps_within(base, base + CAPACITY);
            let file: Vec<_> = maps.iter().filter(|m| m.3 == ino).collect();
            assert_eq!(file.len(), 1, "one merged file mapping: {maps:x?}");
            assert_eq!((file[0].0, file[0].1), (base, base + file_len), "{maps:x?}");
            assert_eq!(file[0].2, "rw-s");
            let rest: usize = maps
                .iter()
                .filter(|m| m.3 != ino)
                .inspect(|m| assert_eq!(m.2, "---p", "{maps:x?}"))
                .map(|m| m.1 - m.0)
                .sum();
            assert_eq!(rest, CAPACITY - file_len, "{maps:x?}");
        };
        // Grown in steps: 64 KiB, then the file's length (the step doubles).
        let len = log.len.load(Ordering::Relaxed);
        assert!((200_006..CAPACITY).contains(&len), "{len}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len as u64);
        check(len);
        log.close();
        let page = sys::page_size();
        check(200_006usize.next_multiple_of(page));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    #[cfg_attr(miri, ignore = "file mappings are not emulated by Miri")]
    fn survives_a_program_that_reuses_our_descriptor() {
        let (path, c) = temp("reuse");
        let (other, _) = temp("other");
        let log = LogFile::new();
        log.open(&c, b"").unwrap();
        // The program closes our descriptor and opens a file of its own
        // under the same number.
        let fd = log.fd.load(Ordering::Relaxed);
        let victim = std::fs::File::create(&other).unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: test-only descriptor juggling on our own files.
        unsafe { libc::dup2(victim.as_raw_fd(), fd) };
        let line = [b'b'; 4096];
        for _ in 0..100 {
            log.append(&line).unwrap();
        }
        log.close();
        assert_eq!(
            std::fs::metadata(&other).unwrap().len(),
            0,
            "the program's file was touched"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 409_600);
        // SAFETY: closing the duplicate we made.
        unsafe { libc::close(fd) };
        std::fs::remove_file(&path).unwrap();
        std::fs::remove_file(&other).unwrap();
    }

    #[test]
    #[cfg_attr(miri, ignore = "file mappings are not emulated by Miri")]
    fn a_new_image_appends_after_the_old_ones_events() {
        let (path, c) = temp("exec");
        // The image before exec: it never closes (exec skips the exit
        // check), so its file ends in preallocated NULs, and its last line
        // was torn by a kill.
        let before = LogFile::new();
        before.open(&c, b"start 1\n").unwrap();
        before.append(b"call 1\n").unwrap();
        before.append(b"cut").unwrap();
        let after = LogFile::new();
        after.open(&c, b"start 2\n").unwrap();
        after.append(b"call 2\n").unwrap();
        after.close();
        let data = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(data, b"start 1\ncall 1\ncut\nstart 2\ncall 2\n");
    }

    #[test]
    #[cfg_attr(miri, ignore = "file mappings are not emulated by Miri")]
    fn concurrent_appends_do_not_interleave() {
        let (path, c) = temp("threads");
        let log = std::sync::Arc::new(LogFile::new());
        log.open(&c, b"").unwrap();
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let log = std::sync::Arc::clone(&log);
                std::thread::spawn(move || {
                    let mut line = vec![b'0' + t; 99];
                    line.push(b'\n');
                    for _ in 0..5_000 {
                        log.append(&line).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        log.close();
        let data = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let lines: Vec<&str> = data.lines().collect();
        assert_eq!(lines.len(), 20_000);
        assert!(
            lines
                .iter()
                .all(|l| l.len() == 99 && l.bytes().all(|b| b == l.as_bytes()[0]))
        );
    }
}
