//! The log file of this process: one `write(2)` per event.
//!
//! Each event goes to the file in one `write` on a descriptor opened with
//! `O_APPEND`: the kernel appends it whole at the file's end, so events of
//! concurrent threads never interleave, and once `write` has returned the
//! event is the kernel's (page cache): a process killed with `SIGKILL`
//! loses no event of a call that had returned. Nothing is mapped, so
//! nothing done to the file from outside (truncated, unlinked, renamed,
//! replaced) can raise `SIGBUS`, and the log holds no address space.
//!
//! The file is always one this process made: created with
//! `O_CREAT|O_EXCL|O_NOFOLLOW` (mode 0600) under the first free name of a
//! sequence (`NAME`, then `.1`, `.2`, ... inserted before a `.jsonl`
//! extension, see [`candidate`]); a name that is taken is never written
//! into, unless the file proves to be this very process's, written by its
//! image before `exec` ([`Identity`]).
//!
//! Before each write the descriptor is checked (one `statx`) to still be
//! the file: a program that closed it and reused its number for a file of
//! its own never receives an event (the file is reopened by name instead).
//! The file's size, from the same `statx`, keeps the log under the soft
//! `RLIMIT_FSIZE` (a write past it would raise `SIGXFSZ`): the limit is
//! read before every write, since the program (`setrlimit`) or another
//! process (`prlimit`) may lower it at any time. An event cut
//! short by a full disk is taken back ([`take_back`]), so the file ends in
//! a whole line.
//!
//! The state is one atomic word holding the pid of the process it belongs
//! to: a child made by `fork`, `_Fork` or a raw `clone` inherits its
//! parent's word, sees another pid than its own, and opens a file of its
//! own; it never writes into its parent's.

use core::ffi::{CStr, c_int, c_void};
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

use crate::sys::{self, Errno};

/// The low half of the state: a descriptor, or one of these.
const OPENING: u32 = u32::MAX;
/// Logging stopped in this process (an error, said once).
const STOPPED: u32 = u32::MAX - 1;
/// Closed at exit: later events are dropped quietly.
const CLOSED: u32 = u32::MAX - 2;
/// The parent's file, its descriptor closed by the fork handler.
const LEFT: u32 = u32::MAX - 3;

/// How many names [`open_file`] tries before it gives up.
pub const MAX_NAMES: u32 = 1000;

fn pack(pid: u32, tag: u32) -> u64 {
    (u64::from(pid) << 32) | u64::from(tag)
}

fn unpack(state: u64) -> (u32, u32) {
    ((state >> 32) as u32, state as u32)
}

/// Why an append did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendError {
    /// No file of this process is open (never opened, or another
    /// process's state: the caller opens one first).
    NotOpen,
    /// Stopped or closed: dropped quietly.
    Off,
    /// The event would take the file past `RLIMIT_FSIZE` (the soft limit).
    TooBig(u64),
    /// The descriptor is no longer the file and the file cannot be opened
    /// again by its name (unlinked, renamed, replaced).
    Lost(Errno),
    /// `write` failed (`ENOSPC`, `EDQUOT`, `EFBIG`, `EIO`, ...).
    Write(Errno),
}

/// What [`LogFile::claim`] found for this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Its file is open.
    Ready,
    /// Logging stopped or closed in this process.
    Off,
    /// No file yet: the caller must open it ([`LogFile::open`]), then
    /// nobody else in this process will. `forked`: the state was another
    /// process's (this one was forked from a process that logs).
    Open { forked: bool },
}

/// How an earlier image of this process (before `exec`) is recognised:
/// its file begins with a start event that begins with `prefix` and holds
/// `fields` before its first newline.
pub struct Identity<'a> {
    pub prefix: &'a [u8],
    pub fields: &'a [u8],
}

/// The log file of this process.
pub struct LogFile {
    state: AtomicU64,
    /// Bumped (and waited on) when an open finishes.
    opened: AtomicU32,
    /// The file's identity, to notice a program that closed our descriptor
    /// (daemons close every fd) and reused its number for a file of its own.
    dev: AtomicU64,
    ino: AtomicU64,
    /// The file's name, NUL-terminated, to reopen it in that case: set by
    /// the opener before it publishes the state, never changed after in
    /// this process (a child frees its parent's copy when it sets its own).
    path: AtomicPtr<Vec<u8>>,
    /// Bytes being written now (reserved against `RLIMIT_FSIZE`).
    pending: AtomicU64,
}

impl LogFile {
    pub const fn new() -> Self {
        Self {
            state: AtomicU64::new(0),
            opened: AtomicU32::new(0),
            dev: AtomicU64::new(0),
            ino: AtomicU64::new(0),
            path: AtomicPtr::new(core::ptr::null_mut()),
            pending: AtomicU64::new(0),
        }
    }

    /// Whether the file of process `me` is open.
    pub fn is_open(&self, me: u32) -> bool {
        let (pid, tag) = unpack(self.state.load(Ordering::Acquire));
        pid == me && tag < LEFT
    }

    /// What process `me` may do now; waits while another of its threads is
    /// opening the file. A state that belongs to another pid (inherited
    /// through `fork`, `_Fork` or `clone`) is taken over: the caller then
    /// opens a file of this process's own.
    pub fn claim(&self, me: u32) -> Claim {
        loop {
            let state = self.state.load(Ordering::Acquire);
            let (pid, tag) = unpack(state);
            if pid == me {
                match tag {
                    OPENING => {
                        let seen = self.opened.load(Ordering::Acquire);
                        if self.state.load(Ordering::Acquire) == state {
                            sys::futex_wait(&self.opened, seen);
                        }
                        continue;
                    }
                    STOPPED | CLOSED | LEFT => return Claim::Off,
                    _ => return Claim::Ready,
                }
            }
            if self
                .state
                .compare_exchange(
                    state,
                    pack(me, OPENING),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                return Claim::Open {
                    forked: pid != 0 && tag != STOPPED,
                };
            }
        }
    }

    /// Opens the file of process `me` (after [`Claim::Open`]): a new file
    /// under the first free name made from `base` (no NUL), or the file an
    /// earlier image of this process left (`identity`); then writes
    /// `first` (the start event) before any other event can be written.
    /// On failure logging is stopped in this process and the caller says
    /// why, once.
    pub fn open(
        &self,
        me: u32,
        base: &[u8],
        identity: &Identity<'_>,
        first: &[u8],
    ) -> Result<(), OpenError> {
        let result = self.open_inner(base, identity, first);
        match result {
            Ok(fd) => self.publish(pack(me, fd as u32)),
            Err(_) => self.publish(pack(me, STOPPED)),
        }
        result.map(|_| ())
    }

    fn open_inner(
        &self,
        base: &[u8],
        identity: &Identity<'_>,
        first: &[u8],
    ) -> Result<i32, OpenError> {
        let (fd, name, opened) = open_file(base, identity)?;
        let result = self.start(fd, name, opened, first);
        if result.is_err() {
            close(fd);
        }
        result.map(|()| fd)
    }

    fn start(&self, fd: i32, name: Vec<u8>, opened: Opened, first: &[u8]) -> Result<(), OpenError> {
        let stat = identity(fd).ok_or(OpenError::Io(libc::EBADF))?;
        self.dev.store(stat.dev, Ordering::Relaxed);
        self.ino.store(stat.ino, Ordering::Relaxed);
        self.pending.store(0, Ordering::Relaxed);
        let old = self
            .path
            .swap(Box::into_raw(Box::new(name)), Ordering::AcqRel);
        if !old.is_null() {
            // SAFETY: a name is published once per process, so `old` is a
            // copy of the parent's (this is a child of fork, _Fork or
            // clone): no thread of this process can hold it.
            drop(unsafe { Box::from_raw(old) });
        }
        if opened == Opened::Torn {
            // The earlier image's last line was cut short: end it first.
            self.write_checked(fd, stat.size, b"\n")
                .map_err(OpenError::Append)?;
        }
        let size = stat.size + u64::from(opened == Opened::Torn);
        self.write_checked(fd, size, first)
            .map_err(OpenError::Append)
    }

    /// Ends a claim without opening (no path, no memory, a caught panic):
    /// logging is stopped in process `me` and its other threads go on.
    pub fn give_up(&self, me: u32) {
        if self
            .state
            .compare_exchange(
                pack(me, OPENING),
                pack(me, STOPPED),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            self.publish(pack(me, STOPPED));
        }
    }

    fn publish(&self, state: u64) {
        self.state.store(state, Ordering::Release);
        self.opened.fetch_add(1, Ordering::Release);
        sys::futex_wake(&self.opened, i32::MAX);
    }

    /// Appends `bytes` (one event) as one unit for process `me`.
    pub fn append(&self, me: u32, bytes: &[u8]) -> Result<(), AppendError> {
        let (pid, tag) = unpack(self.state.load(Ordering::Acquire));
        if pid != me {
            return Err(AppendError::NotOpen);
        }
        if tag >= LEFT {
            return Err(AppendError::Off);
        }
        let saved = sys::errno();
        let result = self
            .checked_fd(me, tag as i32)
            .and_then(|(fd, size)| self.write_checked(fd, size, bytes));
        sys::set_errno(saved);
        result
    }

    /// Our descriptor and the file's size, the descriptor checked to still
    /// be our file; reopened by name if the program closed it or put
    /// another file under its number (which is then left alone).
    fn checked_fd(&self, me: u32, fd: i32) -> Result<(i32, u64), AppendError> {
        let ours = (
            self.dev.load(Ordering::Relaxed),
            self.ino.load(Ordering::Relaxed),
        );
        match identity(fd) {
            Some(id) if (id.dev, id.ino) == ours => Ok((fd, id.size)),
            _ => self.reopen(me, fd, ours),
        }
    }

    #[cold]
    fn reopen(&self, me: u32, old: i32, ours: (u64, u64)) -> Result<(i32, u64), AppendError> {
        let path = self.path.load(Ordering::Acquire);
        if path.is_null() {
            return Err(AppendError::Lost(libc::EBADF));
        }
        // SAFETY: `path` was published by this process's opener before the
        // state we read (Acquire), and is never freed or changed after in
        // this process.
        let path = unsafe { &*path };
        let Ok(path) = CStr::from_bytes_with_nul(path) else {
            return Err(AppendError::Lost(libc::EINVAL));
        };
        // No O_CREAT: only an existing file, checked below to be ours.
        let fd = open(path, libc::O_WRONLY | libc::O_APPEND | libc::O_NONBLOCK)
            .map_err(AppendError::Lost)?;
        let size = match identity(fd) {
            Some(id) if (id.dev, id.ino) == ours => id.size,
            _ => {
                close(fd);
                return Err(AppendError::Lost(libc::ESTALE));
            }
        };
        // The old number is the program's now: never close it.
        match self.state.compare_exchange(
            pack(me, old as u32),
            pack(me, fd as u32),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Ok((fd, size)),
            Err(now) => {
                // Another thread reopened it first, or logging stopped.
                close(fd);
                let (pid, tag) = unpack(now);
                if pid != me || tag >= LEFT {
                    return Err(AppendError::Off);
                }
                let fd = tag as i32;
                match identity(fd) {
                    Some(id) if (id.dev, id.ino) == ours => Ok((fd, id.size)),
                    _ => Err(AppendError::Lost(libc::ESTALE)),
                }
            }
        }
    }

    /// Writes `bytes` to `fd` (our file, `size` bytes long a moment ago)
    /// unless that could take it past `RLIMIT_FSIZE`.
    ///
    /// Every writer adds its length to `pending` before it reads the size
    /// and removes it after its write, so the size plus `pending` seen by
    /// any writer covers every write that can land before its own: the
    /// file never reaches the limit, and no write can raise `SIGXFSZ`
    /// (which the kernel sends only to a write that starts at or past it).
    /// The limit is read each time (one `prlimit64`, about 0.3 us): a
    /// cached value would miss a limit lowered while the program runs.
    fn write_checked(&self, fd: i32, size: u64, bytes: &[u8]) -> Result<(), AppendError> {
        let len = bytes.len() as u64;
        let pending = self.pending.fetch_add(len, Ordering::AcqRel) + len;
        let end = size.saturating_add(pending);
        let limit = file_size_limit();
        if end > limit {
            self.pending.fetch_sub(len, Ordering::AcqRel);
            return Err(AppendError::TooBig(limit));
        }
        let result = write_whole(fd, bytes).map_err(AppendError::Write);
        self.pending.fetch_sub(len, Ordering::AcqRel);
        result
    }

    /// Stops logging in process `me` after an error; true for the one
    /// caller that stopped it (who says why, once).
    pub fn stop(&self, me: u32) -> bool {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            let (pid, tag) = unpack(state);
            if pid != me || tag >= LEFT {
                return false;
            }
            match self.state.compare_exchange(
                state,
                pack(me, STOPPED),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => state = now,
            }
        }
    }

    /// Closes the log of process `me` (at exit, after its exit event):
    /// later events are dropped. The descriptor stays open (another thread
    /// may be about to write to it; the kernel closes it at exit).
    pub fn close(&self, me: u32) {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            let (pid, tag) = unpack(state);
            if pid != me || tag >= LEFT {
                return;
            }
            match self.state.compare_exchange(
                state,
                pack(me, CLOSED),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(now) => state = now,
            }
        }
    }

    /// In a child of `fork` (the fork handler): closes the child's copy of
    /// the parent's descriptor, without touching the parent's file. The
    /// child opens its own at its first event ([`claim`](Self::claim)).
    pub fn leave_after_fork(&self, me: u32) {
        let (pid, tag) = unpack(self.state.load(Ordering::Acquire));
        if pid == me || pid == 0 || tag >= LEFT {
            return;
        }
        let ours = (
            self.dev.load(Ordering::Relaxed),
            self.ino.load(Ordering::Relaxed),
        );
        let fd = tag as i32;
        if identity(fd).is_some_and(|id| (id.dev, id.ino) == ours) {
            // Only the forking thread exists in the child; the number is
            // still our file (not one of the program's).
            close(fd);
        }
        self.state.store(pack(pid, LEFT), Ordering::Release);
    }
}

impl Default for LogFile {
    fn default() -> Self {
        Self::new()
    }
}

/// Why the file could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Creating (or checking) a name failed with this errno.
    Io(Errno),
    /// Every name of the sequence is taken by files not ours.
    Taken,
    /// Writing the start event failed.
    Append(AppendError),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Opened {
    /// A new, empty file.
    Created,
    /// An earlier image's file, ending in a newline.
    Continued,
    /// An earlier image's file whose last line was cut short.
    Torn,
}

/// The `n`th name made from `base` (NUL-terminated): `base` itself, then
/// `.n` inserted before a final `.jsonl`, or appended when `base` does not
/// end in `.jsonl` (`log.42.jsonl`, `log.42.1.jsonl`, ...; `log.42`,
/// `log.42.1`, ...).
pub fn candidate(base: &[u8], n: u32, out: &mut Vec<u8>) -> bool {
    out.clear();
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if out.try_reserve(base.len() + 12).is_err() {
        return false;
    }
    if n == 0 {
        out.extend_from_slice(base);
    } else {
        let (stem, ext) = match base.strip_suffix(b".jsonl") {
            // Not a bare ".jsonl" in a directory: keep the name non-empty.
            Some(stem) if !stem.is_empty() && !stem.ends_with(b"/") => (stem, &b".jsonl"[..]),
            _ => (base, &b""[..]),
        };
        out.extend_from_slice(stem);
        out.push(b'.');
        out.extend_from_slice(&digits[at..]);
        out.extend_from_slice(ext);
    }
    out.push(0);
    true
}

/// Creates the first free name of `base`'s sequence, or finds the file an
/// earlier image of this process made. Returns the descriptor (moved to
/// 512 or above), the name, and how the file was found.
fn open_file(base: &[u8], identity: &Identity<'_>) -> Result<(i32, Vec<u8>, Opened), OpenError> {
    let mut name = Vec::new();
    for n in 0..MAX_NAMES {
        if !candidate(base, n, &mut name) {
            return Err(OpenError::Io(libc::ENOMEM));
        }
        let Ok(path) = CStr::from_bytes_with_nul(&name) else {
            return Err(OpenError::Io(libc::EINVAL));
        };
        match open(
            path,
            libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_EXCL,
        ) {
            Ok(fd) => return Ok((fd, name, Opened::Created)),
            Err(libc::EEXIST) => {}
            Err(e) => return Err(OpenError::Io(e)),
        }
        if let Some((fd, opened)) = continue_own(path, identity) {
            return Ok((fd, name, opened));
        }
    }
    Err(OpenError::Taken)
}

/// The file at `path` if it is this process's own, written by an image
/// before `exec`: a regular file (not a symlink: `O_NOFOLLOW`), owned by
/// our effective uid, with one link, whose first line is our start event
/// (`identity`). Opened for appending.
fn continue_own(path: &CStr, identity: &Identity<'_>) -> Option<(i32, Opened)> {
    let fd = open(path, libc::O_RDWR | libc::O_APPEND | libc::O_NONBLOCK).ok()?;
    let ours = (|| {
        let st = stat(fd)?;
        // SAFETY: geteuid cannot fail.
        let euid = unsafe { libc::geteuid() };
        if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_uid != euid || st.st_nlink != 1 {
            return None;
        }
        let mut head = [0u8; 4096];
        let n = pread(fd, &mut head, 0)?;
        let head = &head[..n];
        let line = head
            .iter()
            .position(|&b| b == b'\n')
            .map_or(head, |end| &head[..end]);
        if !line.starts_with(identity.prefix) || !contains(line, identity.fields) {
            return None;
        }
        let size = st.st_size as u64;
        let mut last = [0u8; 1];
        let torn = size > 0 && pread(fd, &mut last, size - 1) == Some(1) && last[0] != b'\n';
        Some(if torn {
            Opened::Torn
        } else {
            Opened::Continued
        })
    })();
    match ours {
        Some(opened) => Some((fd, opened)),
        None => {
            close(fd);
            None
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// `open(path, flags | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600)`, the
/// descriptor moved to 512 or above.
fn open(path: &CStr, flags: c_int) -> Result<i32, Errno> {
    let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY;
    loop {
        // SAFETY: `path` is a valid C string.
        let fd = unsafe { libc::open(path.as_ptr(), flags, 0o600 as libc::c_uint) };
        if fd >= 0 {
            return Ok(move_high(fd));
        }
        let e = sys::errno();
        if e != libc::EINTR {
            return Err(e);
        }
    }
}

fn close(fd: i32) {
    // SAFETY: callers pass only descriptors this module opened.
    unsafe { libc::close(fd) };
}

fn stat(fd: i32) -> Option<libc::stat64> {
    // SAFETY: stat64 is plain old data; all-zero is valid.
    let mut st: libc::stat64 = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is a writable buffer; a bad fd is EBADF.
    (unsafe { libc::fstat64(fd, &mut st) } == 0).then_some(st)
}

/// What a write needs to know of the file under a descriptor.
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
}

/// The file's device, inode and size: `statx` asking for no more than
/// that (on ext4 a third of what a full `fstat` costs next to writes),
/// or `fstat` where `statx` is missing or refused.
fn identity(fd: i32) -> Option<FileId> {
    // SAFETY: statx is plain old data; all-zero is valid.
    let mut sx: libc::statx = unsafe { core::mem::zeroed() };
    // SAFETY: `sx` is writable; the empty path with AT_EMPTY_PATH names
    // the descriptor itself.
    let ret = unsafe {
        libc::statx(
            fd,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_STATX_DONT_SYNC,
            libc::STATX_INO | libc::STATX_SIZE,
            &mut sx,
        )
    };
    let wanted = libc::STATX_INO | libc::STATX_SIZE;
    if ret == 0 && sx.stx_mask & wanted == wanted {
        return Some(FileId {
            dev: libc::makedev(sx.stx_dev_major, sx.stx_dev_minor),
            ino: sx.stx_ino,
            size: sx.stx_size,
        });
    }
    if ret != 0 && sys::errno() == libc::EBADF {
        return None;
    }
    // No statx (an old kernel, a seccomp filter): the full fstat.
    stat(fd).map(|st| FileId {
        dev: st.st_dev,
        ino: st.st_ino,
        size: st.st_size as u64,
    })
}

fn pread(fd: i32, buf: &mut [u8], offset: u64) -> Option<usize> {
    loop {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe {
            libc::pread64(
                fd,
                buf.as_mut_ptr().cast::<c_void>(),
                buf.len(),
                offset as libc::off64_t,
            )
        };
        if n >= 0 {
            return Some(n as usize);
        }
        if sys::errno() != libc::EINTR {
            return None;
        }
    }
}

/// Writes all of `bytes` (one event), retrying on `EINTR` and after a
/// short write. When the rest cannot be written (a full disk cut the event
/// short), the part written is taken back if nothing followed it, so the
/// file ends in a whole line.
fn write_whole(fd: i32, bytes: &[u8]) -> Result<(), Errno> {
    let mut done = 0;
    while done < bytes.len() {
        let rest = &bytes[done..];
        // SAFETY: `rest` is a valid slice for its length.
        let n = unsafe { libc::write(fd, rest.as_ptr().cast::<c_void>(), rest.len()) };
        if n > 0 {
            done += n as usize;
            continue;
        }
        let e = if n == 0 { libc::EIO } else { sys::errno() };
        if e == libc::EINTR {
            continue;
        }
        if done > 0 {
            take_back(fd, done);
        }
        return Err(e);
    }
    Ok(())
}

/// Removes the last `written` bytes of the file (the start of an event
/// that could not be finished) if they are still its last bytes: the
/// descriptor's offset (`O_APPEND` leaves it after our bytes) is the file's
/// size, so no other write landed after them.
#[cold]
fn take_back(fd: i32, written: usize) {
    // SAFETY: plain system calls on our own descriptor; shrinking a file
    // never raises SIGXFSZ.
    unsafe {
        let end = libc::lseek64(fd, 0, libc::SEEK_CUR);
        if end >= written as libc::off64_t && identity(fd).is_some_and(|id| id.size == end as u64) {
            libc::ftruncate64(fd, end - written as libc::off64_t);
        }
    }
}

/// The soft `RLIMIT_FSIZE` in bytes (`u64::MAX` when unlimited or unknown).
pub fn file_size_limit() -> u64 {
    let mut limit = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a writable rlimit64.
    if unsafe { libc::getrlimit64(libc::RLIMIT_FSIZE, &mut limit) } != 0
        || limit.rlim_cur == libc::RLIM64_INFINITY
    {
        return u64::MAX;
    }
    limit.rlim_cur
}

/// The inode of a pidfd of this process, when pidfds live in pidfs (Linux
/// 6.9+): unique for each process until reboot, and the same across exec.
pub fn pidfd_inode() -> Option<u64> {
    const PIDFS_MAGIC: i64 = 0x5049_4446;
    let saved = sys::errno();
    // SAFETY: plain system calls; the descriptor is ours and closed here.
    let ino = unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) as c_int;
        if fd < 0 {
            None
        } else {
            let mut fs: libc::statfs64 = core::mem::zeroed();
            let ino = if libc::fstatfs64(fd, &mut fs) == 0 && fs.f_type as i64 == PIDFS_MAGIC {
                stat(fd).map(|st| st.st_ino)
            } else {
                None
            };
            libc::close(fd);
            ino
        }
    };
    sys::set_errno(saved);
    ino
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

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("shmguard-logfile-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        dir
    }

    const ME: Identity<'static> = Identity {
        prefix: b"start 1",
        fields: b"id=7",
    };

    fn open_in(log: &LogFile, me: u32, base: &std::path::Path, first: &[u8]) {
        assert!(matches!(log.claim(me), Claim::Open { .. }));
        log.open(me, base.to_str().unwrap().as_bytes(), &ME, first)
            .unwrap();
    }

    #[test]
    #[cfg_attr(miri, ignore = "file system calls are not emulated by Miri")]
    fn appends_and_closes() {
        let dir = temp("append");
        let base = dir.join("l.jsonl");
        let log = LogFile::new();
        assert_eq!(log.append(1, b"x"), Err(AppendError::NotOpen));
        open_in(&log, 1, &base, b"start 1 id=7\n");
        assert_eq!(log.claim(1), Claim::Ready);
        let line = [b'a'; 1000];
        for _ in 0..300 {
            log.append(1, &line).unwrap();
        }
        log.close(1);
        assert_eq!(log.append(1, b"late"), Err(AppendError::Off));
        assert_eq!(log.claim(1), Claim::Off);
        let data = std::fs::read(&base).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(data.len(), 300_013);
        assert!(data.starts_with(b"start 1 id=7\n"));
    }

    #[test]
    fn names_insert_the_number_before_the_extension() {
        let mut out = Vec::new();
        let name = |base: &[u8], n, out: &mut Vec<u8>| {
            assert!(candidate(base, n, out));
            String::from_utf8(out.clone()).unwrap()
        };
        assert_eq!(name(b"/d/l.42.jsonl", 0, &mut out), "/d/l.42.jsonl\0");
        assert_eq!(name(b"/d/l.42.jsonl", 1, &mut out), "/d/l.42.1.jsonl\0");
        assert_eq!(name(b"/d/l.42.jsonl", 999, &mut out), "/d/l.42.999.jsonl\0");
        assert_eq!(name(b"/d/log.7", 2, &mut out), "/d/log.7.2\0");
        assert_eq!(name(b"/d/.jsonl", 3, &mut out), "/d/.jsonl.3\0");
    }

    #[test]
    #[cfg_attr(miri, ignore = "file system calls are not emulated by Miri")]
    fn a_taken_name_is_never_written_into() {
        use std::os::unix::fs::{PermissionsExt, symlink};
        let dir = temp("taken");
        let base = dir.join("l.5.jsonl");
        // A stale file, a planted symlink, a file of another "process".
        std::fs::write(&base, b"someone else's\n").unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o666)).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, b"victim\n").unwrap();
        symlink(&victim, dir.join("l.5.1.jsonl")).unwrap();
        std::fs::write(dir.join("l.5.2.jsonl"), b"start 2 id=7\n").unwrap();
        let log = LogFile::new();
        open_in(&log, 5, &base, b"start 1 id=7\n");
        log.append(5, b"event\n").unwrap();
        assert_eq!(std::fs::read(&base).unwrap(), b"someone else's\n");
        assert_eq!(std::fs::read(&victim).unwrap(), b"victim\n");
        assert_eq!(
            std::fs::read(dir.join("l.5.2.jsonl")).unwrap(),
            b"start 2 id=7\n"
        );
        let ours = dir.join("l.5.3.jsonl");
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(&ours).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&ours).unwrap(), b"start 1 id=7\nevent\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    #[cfg_attr(miri, ignore = "file system calls are not emulated by Miri")]
    fn survives_a_program_that_reuses_our_descriptor() {
        let dir = temp("reuse");
        let base = dir.join("l.jsonl");
        let other = dir.join("other");
        let log = LogFile::new();
        open_in(&log, 1, &base, b"");
        // The program closes our descriptor and opens a file of its own
        // under the same number.
        let (_, fd) = unpack(log.state.load(Ordering::Relaxed));
        let victim = std::fs::File::create(&other).unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: test-only descriptor juggling on our own files.
        unsafe { libc::dup2(victim.as_raw_fd(), fd as i32) };
        let line = [b'b'; 4096];
        for _ in 0..100 {
            log.append(1, &line).unwrap();
        }
        log.close(1);
        assert_eq!(
            std::fs::metadata(&other).unwrap().len(),
            0,
            "the program's file was touched"
        );
        assert_eq!(std::fs::metadata(&base).unwrap().len(), 409_600);
        // SAFETY: closing the duplicate we made.
        unsafe { libc::close(fd as i32) };
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    #[cfg_attr(miri, ignore = "file system calls are not emulated by Miri")]
    fn a_new_image_appends_after_the_old_ones_events() {
        let dir = temp("exec");
        let base = dir.join("l.jsonl");
        // The image before exec: its last line was torn (a full disk).
        let before = LogFile::new();
        open_in(&before, 3, &base, b"start 1 id=7\n");
        before.append(3, b"call 1\n").unwrap();
        before.append(3, b"cut").unwrap();
        let after = LogFile::new();
        open_in(&after, 3, &base, b"start 1 id=7 again\n");
        after.append(3, b"call 2\n").unwrap();
        after.close(3);
        let data = std::fs::read(&base).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            data,
            b"start 1 id=7\ncall 1\ncut\nstart 1 id=7 again\ncall 2\n"
        );
    }

    #[test]
    #[cfg_attr(miri, ignore = "file system calls are not emulated by Miri")]
    fn another_pid_takes_over_without_touching_the_file() {
        let dir = temp("fork");
        let base = dir.join("l.jsonl");
        let log = LogFile::new();
        open_in(&log, 10, &base, b"start 1 id=7\n");
        // Seen from a child that inherited this state: not its file.
        assert_eq!(log.append(11, b"child\n"), Err(AppendError::NotOpen));
        log.close(11);
        assert!(!log.stop(11));
        assert_eq!(log.claim(11), Claim::Open { forked: true });
        let child = dir.join("c.jsonl");
        log.open(11, child.to_str().unwrap().as_bytes(), &ME, b"start 2\n")
            .unwrap();
        log.append(11, b"child\n").unwrap();
        assert_eq!(std::fs::read(&base).unwrap(), b"start 1 id=7\n");
        assert_eq!(std::fs::read(&child).unwrap(), b"start 2\nchild\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    #[cfg_attr(miri, ignore = "file system calls are not emulated by Miri")]
    fn concurrent_appends_do_not_interleave() {
        let dir = temp("threads");
        let base = dir.join("l.jsonl");
        let log = std::sync::Arc::new(LogFile::new());
        open_in(&log, 1, &base, b"");
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let log = std::sync::Arc::clone(&log);
                std::thread::spawn(move || {
                    let mut line = vec![b'0' + t; 99];
                    line.push(b'\n');
                    for _ in 0..5_000 {
                        log.append(1, &line).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        log.close(1);
        let data = std::fs::read_to_string(&base).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let lines: Vec<&str> = data.lines().collect();
        assert_eq!(lines.len(), 20_000);
        assert!(
            lines
                .iter()
                .all(|l| l.len() == 99 && l.bytes().all(|b| b == l.as_bytes()[0]))
        );
    }
}
