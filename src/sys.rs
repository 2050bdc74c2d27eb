//! The kernel layer: the only module that issues system calls.
//!
//! Everything here is a thin, typed wrapper around one system call (or one
//! libc primitive that is not a shared-memory function). Failures come back
//! as `Err(errno)`; nothing in this module touches the caller's `errno` in a
//! way the C boundary does not undo (see `ffi::finish`).
//!
//! shmguard replaces libc's `shmget`/`shmat`/`shmdt`/`shmctl`/`ftok`, so it
//! must never call them: the shm calls go straight to the kernel with
//! `syscall(2)`, exactly as glibc's wrappers do on x86_64 and aarch64
//! (glibc passes the arguments through unchanged; verified with strace).

use core::ffi::{c_char, c_int, c_void};

/// An errno value.
pub type Errno = c_int;

/// The kernel's `struct shmid_ds`, as filled by `IPC_STAT`.
pub type ShmidDs = libc::shmid_ds;

/// The `SHM_DEST` bit of `shm_perm.mode`: the segment is marked for removal.
pub const SHM_DEST: u32 = 0o1000;
/// `SHM_REMAP` (not exported by every libc crate version).
pub const SHM_REMAP: c_int = 0o40000;
/// `SHM_EXEC`.
pub const SHM_EXEC: c_int = 0o100000;
/// `SHM_STAT` (the libc crate does not export it as a constant).
pub const SHM_STAT: c_int = 13;
/// `SHM_INFO`.
pub const SHM_INFO: c_int = 14;
/// `SHM_STAT_ANY` (Linux 4.17).
pub const SHM_STAT_ANY: c_int = 15;

/// Reads this thread's `errno`.
pub fn errno() -> Errno {
    // SAFETY: __errno_location always returns a valid pointer to this
    // thread's errno.
    unsafe { *libc::__errno_location() }
}

/// The caller's `errno`, kept across a call: one lookup of the thread's
/// errno slot, then plain loads and stores.
pub struct SavedErrno {
    slot: *mut c_int,
    value: c_int,
}

impl SavedErrno {
    /// Remembers the current value.
    #[inline]
    pub fn save() -> Self {
        // SAFETY: __errno_location returns this thread's errno slot, valid
        // for the thread's lifetime (the value never leaves the thread).
        let slot = unsafe { libc::__errno_location() };
        // SAFETY: as above.
        Self {
            slot,
            value: unsafe { *slot },
        }
    }

    /// Puts the remembered value back (a successful call).
    #[inline]
    pub fn restore(&self) {
        // SAFETY: `slot` is this thread's errno (see `save`).
        unsafe { *self.slot = self.value }
    }

    /// Reports `errno` (a failed call).
    #[inline]
    pub fn fail(&self, errno: Errno) {
        // SAFETY: as in `restore`.
        unsafe { *self.slot = errno }
    }
}

/// Sets this thread's `errno`.
pub fn set_errno(value: Errno) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = value }
}

/// A raw system call with up to three arguments: the kernel's return value,
/// where -4095..=-1 is a negated errno. It never touches `errno`, so the
/// caller's value survives every successful call without a save/restore,
/// and it costs no call into libc's `syscall()` wrapper.
#[inline]
fn raw_syscall3(nr: libc::c_long, a1: usize, a2: usize, a3: usize) -> isize {
    #[cfg(target_arch = "x86_64")]
    {
        let ret: isize;
        // SAFETY: the x86_64 Linux system call convention: number in rax,
        // arguments in rdi/rsi/rdx, result in rax; the instruction clobbers
        // rcx and r11. The calls made here (shm*) take no pointer that we
        // own; the kernel validates the caller's pointers.
        unsafe {
            core::arch::asm!(
                "syscall",
                inlateout("rax") nr as isize => ret,
                in("rdi") a1,
                in("rsi") a2,
                in("rdx") a3,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }
    #[cfg(target_arch = "aarch64")]
    {
        let ret: isize;
        // SAFETY: the aarch64 Linux convention: number in x8, arguments and
        // result in x0..x2; see the x86_64 branch for the pointers.
        unsafe {
            core::arch::asm!(
                "svc 0",
                in("x8") nr,
                inlateout("x0") a1 as isize => ret,
                in("x1") a2,
                in("x2") a3,
                options(nostack),
            );
        }
        ret
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let saved = errno();
        // SAFETY: as above, through libc's generic wrapper.
        let ret = unsafe { libc::syscall(nr, a1, a2, a3) };
        let ret = if ret == -1 {
            -(errno() as isize)
        } else {
            ret as isize
        };
        set_errno(saved);
        ret
    }
}

/// Splits a raw return into the value or the errno.
#[inline]
fn check(ret: isize) -> Result<usize, Errno> {
    if (-4095..0).contains(&ret) {
        Err(-ret as Errno)
    } else {
        Ok(ret as usize)
    }
}

/// `shmget(2)`.
#[inline]
pub fn shmget(key: libc::key_t, size: usize, flags: c_int) -> Result<c_int, Errno> {
    // Arguments are passed as the kernel reads them: int key and flags.
    check(raw_syscall3(
        libc::SYS_shmget,
        key as usize,
        size,
        flags as usize,
    ))
    .map(|id| id as c_int)
}

/// `shmat(2)`. Returns the address of the attachment (which may be 0: a
/// segment attached at address 0 with `SHM_RND`).
#[inline]
pub fn shmat(shmid: c_int, addr: usize, flags: c_int) -> Result<usize, Errno> {
    check(raw_syscall3(
        libc::SYS_shmat,
        shmid as usize,
        addr,
        flags as usize,
    ))
}

/// `shmdt(2)`.
#[inline]
pub fn shmdt(addr: usize) -> Result<(), Errno> {
    check(raw_syscall3(libc::SYS_shmdt, addr, 0, 0)).map(drop)
}

/// `shmctl(2)` with the caller's buffer, passed through as an address.
///
/// `buf` is never dereferenced here: the kernel checks it and fails with
/// `EFAULT` when it is not accessible, exactly as for a plain libc call.
#[inline]
pub fn shmctl(shmid: c_int, cmd: c_int, buf: usize) -> Result<c_int, Errno> {
    check(raw_syscall3(
        libc::SYS_shmctl,
        shmid as usize,
        cmd as usize,
        buf,
    ))
    .map(|r| r as c_int)
}

/// `shmctl(shmid, IPC_STAT)` into a buffer of our own.
pub fn shm_stat(shmid: c_int) -> Result<ShmidDs, Errno> {
    // SAFETY: shmid_ds is plain old data; all-zero is a valid value.
    let mut ds: ShmidDs = unsafe { core::mem::zeroed() };
    let addr = &mut ds as *mut ShmidDs as usize;
    shmctl(shmid, libc::IPC_STAT, addr).map(|_| ds)
}

/// `shmctl(shmid, IPC_RMID)`, for tools and tests.
pub fn shm_rmid(shmid: c_int) -> Result<(), Errno> {
    shmctl(shmid, libc::IPC_RMID, 0).map(drop)
}

/// A path handed to us by C code, kept as an opaque pointer.
///
/// It is only ever given to the kernel, which checks it, or copied with
/// `process_vm_readv`, which fails instead of faulting (see
/// [`UserPath::prefix`]): shmguard never dereferences it.
#[derive(Clone, Copy)]
pub struct UserPath(*const c_char);

impl UserPath {
    /// Wraps a caller's pointer.
    ///
    /// # Safety
    /// `ptr` must be what a C caller passed as a path argument (it may be
    /// NULL or invalid: it is only dereferenced as described on the type).
    pub unsafe fn new(ptr: *const c_char) -> Self {
        Self(ptr)
    }

    /// `stat(2)` of the path, as glibc's `ftok` does it: `(st_ino, st_dev)`.
    pub fn stat(self) -> Result<(u64, u64), Errno> {
        // SAFETY: stat is plain old data; all-zero is valid.
        let mut st: libc::stat64 = unsafe { core::mem::zeroed() };
        // SAFETY: `self.0` goes to the kernel, which validates it (EFAULT);
        // `st` is a valid, writable buffer.
        let ret = unsafe { libc::fstatat64(libc::AT_FDCWD, self.0, &mut st, 0) };
        if ret == -1 {
            Err(errno())
        } else {
            Ok((st.st_ino, st.st_dev))
        }
    }

    /// Copies at most `buf.len()` (and `PATH_MAX`) bytes of the path,
    /// stopping at its NUL; empty for NULL or when `failure` is `EFAULT`.
    ///
    /// The bytes are copied with `process_vm_readv`, never read directly:
    /// that the kernel's call succeeded or failed with another errno does
    /// not prove that it read the path (a seccomp filter can make a system
    /// call fail with any errno, or a supervisor answer it, without the
    /// kernel touching its arguments), so an invalid pointer must end the
    /// copy, not the process. A page that cannot be read ends the copy.
    pub fn prefix(self, failure: Errno, buf: &mut [u8]) -> &[u8] {
        if self.0.is_null() || failure == libc::EFAULT {
            return &[];
        }
        let limit = buf.len().min(libc::PATH_MAX as usize);
        let page = page_size().max(1);
        let start = self.0.addr();
        let mut n = 0;
        while n < limit {
            // One page at a time: a transfer within a page is all or nothing.
            let at = start.wrapping_add(n);
            let chunk = (page - at % page).min(limit - n);
            if !read_own_memory(at, &mut buf[n..n + chunk]) {
                break;
            }
            if let Some(nul) = buf[n..n + chunk].iter().position(|&b| b == 0) {
                return &buf[..n + nul];
            }
            n += chunk;
        }
        &buf[..n]
    }
}

/// Copies `out.len()` bytes at `addr` of this process's memory into `out`
/// with `process_vm_readv`: `false` (and errno kept) if they cannot all be
/// read, where a plain read would fault.
fn read_own_memory(addr: usize, out: &mut [u8]) -> bool {
    if out.is_empty() {
        return true;
    }
    let local = libc::iovec {
        iov_base: out.as_mut_ptr().cast(),
        iov_len: out.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut c_void,
        iov_len: out.len(),
    };
    let saved = errno();
    // SAFETY: `local` describes our own writable `out`; the kernel checks
    // `remote` and fails instead of faulting.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    set_errno(saved);
    n == out.len() as isize
}

/// The process id, from the kernel (glibc does not cache it).
pub fn getpid() -> u32 {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() as u32 }
}

/// The parent process id.
pub fn getppid() -> u32 {
    // SAFETY: getppid cannot fail.
    unsafe { libc::getppid() as u32 }
}

/// The calling thread's id.
pub fn gettid() -> u32 {
    // SAFETY: gettid cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

/// The effective user and group ids.
pub fn euid_egid() -> (u32, u32) {
    // SAFETY: these cannot fail.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// Whether the caller is in group `gid` (effective or supplementary).
pub fn in_group(gid: u32) -> bool {
    let mut groups = [0 as libc::gid_t; 64];
    // SAFETY: `groups` has room for 64 entries, as we tell the kernel.
    let n = unsafe { libc::getgroups(groups.len() as c_int, groups.as_mut_ptr()) };
    let n = usize::try_from(n).unwrap_or(0);
    euid_egid().1 == gid || groups[..n].contains(&gid)
}

/// Writes all of `bytes` to `fd`, retrying on `EINTR` and short writes.
pub fn write_all(fd: c_int, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid slice for its length.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast::<c_void>(), bytes.len()) };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// Reads a whole (small, /proc) file into `out`, appending.
///
/// Grows `out` with `try_reserve`, so an exhausted heap is an error, never an
/// abort. `path` must be NUL-terminated.
pub fn read_file(path: &core::ffi::CStr, out: &mut Vec<u8>) -> Result<(), Errno> {
    // SAFETY: `path` is a valid C string.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(errno());
    }
    let result = (|| loop {
        if out.capacity() - out.len() < 4096 {
            out.try_reserve(out.capacity().max(16384))
                .map_err(|_| libc::ENOMEM)?;
        }
        let spare = out.spare_capacity_mut();
        // SAFETY: `spare` is writable for `spare.len()` bytes.
        let n = unsafe { libc::read(fd, spare.as_mut_ptr().cast::<c_void>(), spare.len()) };
        match n {
            0 => return Ok(()),
            n if n < 0 => {
                let e = errno();
                if e != libc::EINTR {
                    return Err(e);
                }
            }
            // SAFETY: the kernel initialised the first `n` spare bytes.
            n => unsafe { out.set_len(out.len() + n as usize) },
        }
    })();
    // SAFETY: `fd` is ours and open.
    unsafe { libc::close(fd) };
    result
}

/// The number of lines of a file such as /proc/self/maps, read through a
/// stack buffer (no allocation); `None` if it cannot be read.
pub fn count_lines(path: &core::ffi::CStr) -> Option<usize> {
    let saved = errno();
    // SAFETY: `path` is a valid C string.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        set_errno(saved);
        return None;
    }
    let mut buf = [0u8; 4096];
    let mut lines = 0;
    let result = loop {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast::<c_void>(), buf.len()) };
        match n {
            0 => break Some(lines),
            n if n < 0 => {
                if errno() != libc::EINTR {
                    break None;
                }
            }
            n => lines += buf[..n as usize].iter().filter(|&&b| b == b'\n').count(),
        }
    };
    // SAFETY: `fd` is ours and open.
    unsafe { libc::close(fd) };
    set_errno(saved);
    result
}

/// Reads a number from a one-line /proc file such as `/proc/sys/kernel/shmmax`.
pub fn read_number(path: &core::ffi::CStr) -> Option<u64> {
    let mut buf = Vec::new();
    read_file(path, &mut buf).ok()?;
    core::str::from_utf8(&buf).ok()?.trim().parse().ok()
}

/// The value of an environment variable, without allocating.
pub fn getenv(name: &core::ffi::CStr) -> Option<&'static [u8]> {
    // SAFETY: `name` is a valid C string. The returned pointer stays valid
    // unless the program modifies the environment, which it may not do
    // concurrently with getenv in any case; we read it once at start-up.
    let ptr = unsafe { libc::getenv(name.as_ptr()) };
    if ptr.is_null() {
        return None;
    }
    // SAFETY: getenv returns a NUL-terminated string.
    Some(unsafe { core::ffi::CStr::from_ptr(ptr) }.to_bytes())
}

/// What [`startup_env`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvLookup {
    /// The variable is set; its value was appended.
    Found,
    /// The variable is not set.
    Absent,
    /// The environment cannot be read yet: `environ` is not set (a call
    /// from `.preinit_array`) and /proc/self/environ cannot be read.
    Unavailable,
}

/// An environment variable at start-up, appended to `out`. Before libc has
/// set `environ` (a shm call from an executable's `.preinit_array`), the
/// process's initial environment is read from /proc/self/environ, the
/// strings the kernel put on the initial stack.
pub fn startup_env(name: &core::ffi::CStr, out: &mut Vec<u8>) -> EnvLookup {
    // SAFETY: reads the value of libc's `environ` pointer (no reference to
    // the static is kept); libc sets it before `main` and on `setenv`.
    let environ = unsafe { libc::environ };
    if !environ.is_null() {
        return match getenv(name) {
            Some(value) => {
                out.extend_from_slice(value);
                EnvLookup::Found
            }
            None => EnvLookup::Absent,
        };
    }
    let mut all = Vec::new();
    if read_file(c"/proc/self/environ", &mut all).is_err() {
        return EnvLookup::Unavailable;
    }
    match env_entry(&all, name.to_bytes()) {
        Some(value) => {
            out.extend_from_slice(value);
            EnvLookup::Found
        }
        None => EnvLookup::Absent,
    }
}

/// The value of `key` in NUL-separated `KEY=VALUE` entries (the first, as
/// `getenv` finds it).
fn env_entry<'a>(all: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    all.split(|&b| b == 0)
        .find(|e| e.len() > key.len() && e.starts_with(key) && e[key.len()] == b'=')
        .map(|e| &e[key.len() + 1..])
}

/// Whether the process is privileged by the way it was started
/// (set-user-ID, set-group-ID, file capabilities, an LSM's choice): the
/// kernel's `AT_SECURE`, the flag for which ld.so ignores `LD_PRELOAD`
/// paths and glibc `secure_getenv` returns NULL.
pub fn secure() -> bool {
    let saved = errno();
    // SAFETY: getauxval only reads the auxiliary vector ld.so saved; it
    // returns 0 (and sets errno, restored here) for a missing entry.
    let secure = unsafe { libc::getauxval(libc::AT_SECURE) } != 0;
    set_errno(saved);
    secure
}

unsafe extern "C" {
    /// glibc's registration of exit handlers (what `atexit` uses), here
    /// with no DSO handle so that no `__cxa_finalize` runs it early.
    fn __cxa_atexit(
        func: extern "C" fn(*mut c_void, c_int),
        arg: *mut c_void,
        dso: *mut c_void,
    ) -> c_int;
}

/// Registers `func` to run at exit after the handlers already registered
/// (exit runs them last in, first out, and starts over when a handler
/// registers a new one); false if glibc refused (exit already past its
/// handlers, or no memory).
pub fn register_exit_handler(func: extern "C" fn(*mut c_void, c_int)) -> bool {
    // SAFETY: `func` lives as long as the process (the library is never
    // unloaded: -z nodelete); a NULL argument and DSO handle are allowed.
    unsafe { __cxa_atexit(func, core::ptr::null_mut(), core::ptr::null_mut()) == 0 }
}

/// Flushes stdio and ends the process with `code` (the `exitcode` option,
/// from the exit check, which runs after every other exit handler).
pub fn flush_and_exit(code: c_int) -> ! {
    // SAFETY: fflush(NULL) flushes every stdio stream; _exit never returns.
    unsafe {
        libc::fflush(core::ptr::null_mut());
        libc::_exit(code)
    }
}

/// The system page size, asked once.
pub fn page_size() -> usize {
    static PAGE: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
    let cached = PAGE.load(core::sync::atomic::Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let n = usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096);
    PAGE.store(n, core::sync::atomic::Ordering::Relaxed);
    n
}

/// Registers fork handlers (see `runtime`).
pub fn register_atfork(
    prepare: unsafe extern "C" fn(),
    parent: unsafe extern "C" fn(),
    child: unsafe extern "C" fn(),
) {
    // SAFETY: the handlers are valid functions for the life of the process
    // (the library is never unloaded while the process can fork).
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
}

/// Wakes up to `n` waiters on `word` (futex).
pub fn futex_wake(word: &core::sync::atomic::AtomicU32, n: i32) {
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            n,
        )
    };
}

/// Sleeps while `*word == expected` (futex). Spurious wake-ups are allowed.
pub fn futex_wait(word: &core::sync::atomic::AtomicU32, expected: u32) {
    let saved = errno();
    // SAFETY: `word` is a valid, aligned u32; a NULL timeout waits forever.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            core::ptr::null::<libc::timespec>(),
        )
    };
    set_errno(saved);
}

/// The wall clock in nanoseconds since the Unix epoch (vDSO: no system call).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// The real and effective user ids.
pub fn uid_euid() -> (u32, u32) {
    // SAFETY: these cannot fail.
    unsafe { (libc::getuid(), libc::geteuid()) }
}

/// The inode number of `path` (`stat`), e.g. of /proc/self/ns/ipc.
pub fn inode_of(path: &core::ffi::CStr) -> Option<u64> {
    // SAFETY: stat is plain old data; all-zero is valid.
    let mut st: libc::stat64 = unsafe { core::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `st` a writable buffer.
    let ret = unsafe { libc::stat64(path.as_ptr(), &mut st) };
    (ret == 0).then_some(st.st_ino)
}

/// The target of the symbolic link `path`, into `buf`.
pub fn readlink<'a>(path: &core::ffi::CStr, buf: &'a mut [u8]) -> Option<&'a [u8]> {
    // SAFETY: `buf` is writable for its length; readlink does not NUL-terminate.
    let n = unsafe { libc::readlink(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).ok().map(|n| &buf[..n])
}

/// Copies the caller's `struct shmid_ds` at `addr` without trusting it:
/// `process_vm_readv` on ourselves fails with `EFAULT` instead of crashing,
/// so a bad pointer is left for the kernel's own `shmctl` to reject.
pub fn peek_shmid_ds(addr: usize) -> Option<ShmidDs> {
    if addr == 0 {
        return None;
    }
    // SAFETY: shmid_ds is plain old data; all-zero is valid.
    let mut ds: ShmidDs = unsafe { core::mem::zeroed() };
    let size = core::mem::size_of::<ShmidDs>();
    let local = libc::iovec {
        iov_base: (&mut ds as *mut ShmidDs).cast(),
        iov_len: size,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut c_void,
        iov_len: size,
    };
    let saved = errno();
    // SAFETY: `local` describes our own writable `ds`; the kernel checks
    // `remote` and fails instead of faulting.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    set_errno(saved);
    (n == size as isize).then_some(ds)
}

/// Reserves `len` bytes of address space with no access (guard pages).
pub fn reserve(len: usize) -> Result<usize, Errno> {
    // SAFETY: a new anonymous mapping at an address the kernel chooses
    // replaces nothing.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        Err(errno())
    } else {
        Ok(p as usize)
    }
}

/// Unmaps `[addr, addr + len)`, which must be a guard range shmguard made.
/// False if the kernel refused (`ENOMEM`: unmapping the middle of a
/// mapping needs one more map entry, and there is none left).
pub fn release(addr: usize, len: usize) -> bool {
    let saved = errno();
    // SAFETY: callers pass only ranges they reserved with `reserve` and
    // that hold no attachment (see guard.rs).
    let ok = unsafe { libc::munmap(addr as *mut c_void, len) } == 0;
    set_errno(saved);
    ok
}

/// The SIGSEGV disposition the program had before ours, stored before ours
/// is installed (a fault in between finds it).
static PREVIOUS_SEGV: std::sync::OnceLock<libc::sigaction> = std::sync::OnceLock::new();
/// The guard-page reporter: given the address of a kernel fault, reports it
/// if it lies in a guard page.
static ON_FAULT: std::sync::OnceLock<fn(usize)> = std::sync::OnceLock::new();

/// Installs a SIGSEGV handler for guard pages. `on_fault` sees the address
/// of every real fault (`si_code > 0`: raised by the kernel for an access,
/// not sent with `kill`, `raise` or `sigqueue`) and reports it if it lies in
/// a guard page. Then, and for every other SIGSEGV, the signal goes to the
/// disposition the program had before, exactly as without shmguard: its
/// handler runs (with its own mask and flags), `SIG_IGN` ignores a sent
/// signal, and `SIG_DFL` kills the process with SIGSEGV.
pub fn install_segv_handler(on_fault: fn(usize)) {
    if ON_FAULT.set(on_fault).is_err() {
        return;
    }
    // SAFETY: sigaction is plain old data; all-zero is a valid start.
    let mut previous: libc::sigaction = unsafe { core::mem::zeroed() };
    // SAFETY: a query only (no new action); `previous` is writable.
    if unsafe { libc::sigaction(libc::SIGSEGV, core::ptr::null(), &mut previous) } != 0 {
        return;
    }
    // Stored before ours is installed: our handler never runs without it.
    if PREVIOUS_SEGV.set(previous).is_err() {
        return;
    }
    // SAFETY: as above.
    let mut action: libc::sigaction = unsafe { core::mem::zeroed() };
    action.sa_sigaction = segv_handler as *const () as usize;
    action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
    // SAFETY: `action` is valid; the handler is async-signal-safe (it reads
    // siginfo, formats into stack buffers, writes to stderr, and calls
    // sigaction, pthread_sigmask, tgkill and the program's own handler).
    unsafe { libc::sigaction(libc::SIGSEGV, &action, core::ptr::null_mut()) };
}

extern "C" fn segv_handler(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    let saved = errno();
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler
    // (and a program that calls it by hand passes its own, or NULL).
    let (code, addr) = match unsafe { info.as_ref() } {
        // SAFETY: si_addr is meaningful for SIGSEGV; we only read it.
        Some(i) => (i.si_code, unsafe { i.si_addr() } as usize),
        None => (0, 0),
    };
    let fault = code > 0;
    if fault {
        if let Some(f) = ON_FAULT.get() {
            f(addr);
        }
    }
    forward_segv(sig, info, ctx, fault);
    set_errno(saved);
}

/// Sets SIGSEGV's disposition to `SIG_DFL`.
fn segv_default() {
    // SAFETY: sigaction is plain old data; all-zero is SIG_DFL, no flags.
    let dfl: libc::sigaction = unsafe { core::mem::zeroed() };
    // SAFETY: `dfl` is a valid action.
    unsafe { libc::sigaction(libc::SIGSEGV, &dfl, core::ptr::null_mut()) };
}

/// Hands a SIGSEGV to the disposition saved at installation, as the kernel
/// would have delivered it. `fault`: raised by the kernel for an access,
/// which repeats when the handler returns.
fn forward_segv(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void, fault: bool) {
    let previous = PREVIOUS_SEGV.get();
    let handler = previous.map_or(libc::SIG_DFL, |p| p.sa_sigaction);
    if handler == libc::SIG_DFL || (handler == libc::SIG_IGN && fault) {
        // The default action. A fault cannot be ignored either: the kernel
        // then kills with SIGSEGV. The fault repeats on return; a sent
        // signal is sent again, now to the default action.
        segv_default();
        if !fault {
            // SAFETY: tgkill to this very thread; SIGSEGV is not blocked
            // here (our handler runs with SA_NODEFER), so it kills now.
            unsafe {
                libc::syscall(
                    libc::SYS_tgkill,
                    libc::getpid(),
                    libc::syscall(libc::SYS_gettid),
                    sig,
                )
            };
        }
        return;
    }
    if handler == libc::SIG_IGN {
        return;
    }
    let Some(previous) = previous else { return };
    // Run the program's handler as the kernel would: its mask (and SIGSEGV
    // itself unless SA_NODEFER) blocked during the call, SA_RESETHAND
    // honoured.
    let mut mask = previous.sa_mask;
    // SAFETY: sigset_t is plain old data; all-zero is a valid start.
    let mut old: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: `mask` and `old` are valid signal sets.
    unsafe {
        if previous.sa_flags & libc::SA_NODEFER == 0 {
            libc::sigaddset(&mut mask, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &mask, &mut old);
    }
    if previous.sa_flags & libc::SA_RESETHAND != 0 {
        segv_default();
    }
    if previous.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the program installed this address as an SA_SIGINFO
        // handler, which takes (int, siginfo_t *, void *).
        let f = unsafe {
            core::mem::transmute::<usize, extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void)>(
                handler,
            )
        };
        f(sig, info, ctx);
    } else {
        // SAFETY: the program installed this address as a plain handler,
        // which takes (int).
        let f = unsafe { core::mem::transmute::<usize, extern "C" fn(c_int)>(handler) };
        f(sig);
    }
    // SAFETY: `old` is the mask this thread had on entry.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_entries_are_found_whole() {
        let all = b"A=1\0SHMGUARD_OPTIONS_X=no\0SHMGUARD_OPTIONS=a=b:c\0SHMGUARD_OPTIONS=second\0";
        assert_eq!(env_entry(all, b"SHMGUARD_OPTIONS"), Some(&b"a=b:c"[..]));
        assert_eq!(env_entry(all, b"A"), Some(&b"1"[..]));
        assert_eq!(env_entry(all, b"B"), None);
        assert_eq!(env_entry(b"SHMGUARD_OPTIONS\0", b"SHMGUARD_OPTIONS"), None);
    }

    #[test]
    #[cfg_attr(miri, ignore = "process_vm_readv is not emulated by Miri")]
    fn a_path_is_copied_without_ever_faulting() {
        let page = page_size();
        let base = reserve(2 * page).expect("mmap");
        // The first page readable, the second not: a path that runs off
        // the end of readable memory without a NUL.
        // SAFETY: `base` is our own fresh mapping of two pages.
        unsafe {
            assert_eq!(
                libc::mprotect(
                    base as *mut c_void,
                    page,
                    libc::PROT_READ | libc::PROT_WRITE
                ),
                0
            );
            core::ptr::write_bytes(base as *mut u8, b'a', page);
            *((base + page - 3) as *mut u8) = 0;
        }
        let mut buf = [0u8; 256];
        let at = |addr: usize| {
            // SAFETY: test pointers; prefix never dereferences them.
            unsafe { UserPath::new(addr as *const c_char) }
        };
        // A seccomp filter could fail stat with ENOENT on any of these.
        assert_eq!(at(base + page).prefix(libc::ENOENT, &mut buf), b"");
        assert_eq!(at(base + page - 5).prefix(0, &mut buf), b"aa");
        // Runs into the unreadable page before a NUL: what could be read.
        assert_eq!(at(base + page - 2).prefix(libc::ENOENT, &mut buf), b"aa");
        assert_eq!(
            at(base + page - 300).prefix(libc::ENOENT, &mut buf).len(),
            256
        );
        assert_eq!(at(0).prefix(0, &mut buf), b"");
        assert_eq!(at(base).prefix(libc::EFAULT, &mut buf), b"");
        release(base, 2 * page);
    }
}
