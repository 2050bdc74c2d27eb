//! The C boundary: every exported symbol.
//!
//! Each export is a few lines: keep the caller's errno, call the safe core in
//! `shm`, and turn its `Result` into the C convention with [`finish`], the one
//! place that sets errno and records the thread's last error. The drop-in
//! names (`shmget`, ...) are the `shmguard_` mirrors under libc's names.

use core::ffi::{c_char, c_int, c_void};
use core::ptr;

use libc::{key_t, size_t, ssize_t};

use crate::error::Error;
use crate::runtime;
use crate::shm;
use crate::start;
use crate::sys::{SavedErrno, UserPath};

/// The C convention: on success the value and errno as the caller had it;
/// on failure `failure`, errno set, and the sentence kept for the thread.
#[inline]
fn finish<T>(saved: SavedErrno, result: Result<T, Error>, failure: T) -> T {
    match result {
        Ok(value) => {
            saved.restore();
            value
        }
        Err(e) => failed(saved, &e, failure),
    }
}

#[cold]
#[inline(never)]
fn failed<T>(saved: SavedErrno, e: &Error, failure: T) -> T {
    if !e.detail.is_empty() {
        runtime::set_last_error(&e.detail);
    }
    saved.fail(e.errno);
    failure
}

/// `shmat`'s failure value.
const MAP_FAILED: *mut c_void = usize::MAX as *mut c_void;

/// Creates or opens the System V shared-memory segment of `key`.
///
/// Same arguments, result and errno as `shmget(2)`. Returns the segment id,
/// or -1 with errno set; `shmguard_last_error()` then explains the failure.
#[unsafe(no_mangle)]
pub extern "C" fn shmguard_shmget(key: key_t, size: size_t, shmflg: c_int) -> c_int {
    let saved = SavedErrno::save();
    finish(saved, shm::shmget(key, size, shmflg), -1)
}

/// Attaches segment `shmid` at `shmaddr` (NULL: the kernel chooses).
///
/// Same arguments, result and errno as `shmat(2)`. On failure returns
/// `(void *)-1`, never NULL (NULL is a valid result when a segment is
/// attached at address 0).
///
/// # Safety
/// `SHM_REMAP` replaces whatever `shmaddr` maps, and the new mapping may be
/// shared with other processes: the caller must own the range it names.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmguard_shmat(
    shmid: c_int,
    shmaddr: *const c_void,
    shmflg: c_int,
) -> *mut c_void {
    let saved = SavedErrno::save();
    let result = shm::shmat(shmid, shmaddr.expose_provenance(), shmflg);
    finish(
        saved,
        result.map(ptr::with_exposed_provenance_mut),
        MAP_FAILED,
    )
}

/// Detaches the attachment that starts at `shmaddr`.
///
/// Same result and errno as `shmdt(2)`: 0, or -1 with errno set.
///
/// # Safety
/// The attachment's memory is unmapped: nothing may still refer to it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmguard_shmdt(shmaddr: *const c_void) -> c_int {
    let saved = SavedErrno::save();
    finish(
        saved,
        shm::shmdt(shmaddr.expose_provenance()).map(|()| 0),
        -1,
    )
}

/// Controls segment `shmid` (or, for `SHM_STAT`/`SHM_STAT_ANY`, the index).
///
/// Same arguments, result and errno as `shmctl(2)`; `buf` goes to the kernel
/// untouched, so an invalid buffer fails with `EFAULT` as with libc.
///
/// # Safety
/// The kernel writes through `buf` for the commands that return data
/// (`IPC_STAT`, `SHM_STAT`, `IPC_INFO`, ...): it must be NULL or point to
/// memory the caller owns, large enough for what `cmd` returns.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmguard_shmctl(
    shmid: c_int,
    cmd: c_int,
    buf: *mut libc::shmid_ds,
) -> c_int {
    let saved = SavedErrno::save();
    finish(saved, shm::shmctl(shmid, cmd, buf.expose_provenance()), -1)
}

/// Builds a System V key from the file at `pathname` and the low 8 bits of
/// `proj_id`, exactly as glibc does.
///
/// Returns the key, or `(key_t)-1` with errno set when `pathname` cannot be
/// `stat`ed.
///
/// # Safety
/// `pathname` is passed to the kernel, which rejects an invalid pointer with
/// `EFAULT`; it must otherwise point to a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmguard_ftok(pathname: *const c_char, proj_id: c_int) -> key_t {
    let saved = SavedErrno::save();
    // SAFETY: the pointer is the caller's path argument, as UserPath expects.
    let path = unsafe { UserPath::new(pathname) };
    finish(saved, shm::ftok(path, proj_id), -1)
}

/// Drop-in `shmget`, the same as [`shmguard_shmget`].
#[unsafe(no_mangle)]
pub extern "C" fn shmget(key: key_t, size: size_t, shmflg: c_int) -> c_int {
    shmguard_shmget(key, size, shmflg)
}

/// Drop-in `shmat`, the same as [`shmguard_shmat`].
///
/// # Safety
/// As for [`shmguard_shmat`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmat(shmid: c_int, shmaddr: *const c_void, shmflg: c_int) -> *mut c_void {
    // SAFETY: the caller upholds shmguard_shmat's contract.
    unsafe { shmguard_shmat(shmid, shmaddr, shmflg) }
}

/// Drop-in `shmdt`, the same as [`shmguard_shmdt`].
///
/// # Safety
/// As for [`shmguard_shmdt`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmdt(shmaddr: *const c_void) -> c_int {
    // SAFETY: the caller upholds shmguard_shmdt's contract.
    unsafe { shmguard_shmdt(shmaddr) }
}

/// Drop-in `shmctl`, the same as [`shmguard_shmctl`].
///
/// # Safety
/// As for [`shmguard_shmctl`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmctl(shmid: c_int, cmd: c_int, buf: *mut libc::shmid_ds) -> c_int {
    // SAFETY: the caller upholds shmguard_shmctl's contract.
    unsafe { shmguard_shmctl(shmid, cmd, buf) }
}

/// Drop-in `ftok`, the same as [`shmguard_ftok`].
///
/// # Safety
/// As for [`shmguard_ftok`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ftok(pathname: *const c_char, proj_id: c_int) -> key_t {
    // SAFETY: the caller upholds shmguard_ftok's contract.
    unsafe { shmguard_ftok(pathname, proj_id) }
}

/// The sentence explaining this thread's last failed call, or NULL if no
/// call has failed on this thread.
///
/// A later successful call does not clear it (like errno). The string
/// belongs to shmguard and stays valid until the thread's next failed call.
/// Async-signal-safe.
#[unsafe(no_mangle)]
pub extern "C" fn shmguard_last_error() -> *const c_char {
    runtime::last_error_ptr()
}

/// The size of the segment (`shm_segsz`, as asked at creation) attached at
/// exactly `addr`, or -1 with errno `EINVAL` if no attachment starts there.
///
/// Async-signal-safe: called from a signal handler that interrupted
/// shmguard (any shmguard function) in the same thread, it returns -1 with
/// errno `EAGAIN` instead of waiting for records the interrupted call may
/// hold.
#[unsafe(no_mangle)]
pub extern "C" fn shmguard_attachment_size(addr: *const c_void) -> ssize_t {
    let saved = SavedErrno::save();
    let result = shm::attachment_size(addr.expose_provenance());
    finish(saved, result.map(|n| n as ssize_t), -1)
}

/// Copies `len` bytes from `src` to offset `off` of the attachment that
/// starts at `shmaddr`, after checking the bounds.
///
/// Returns 0, or -1 with errno: `ERANGE` if the range runs past the end of
/// the segment, `EINVAL` if `shmaddr` is not the start of an attachment,
/// `EACCES` if the attachment is read-only, `EFAULT` if `src` is NULL and
/// `len` is not 0; `EAGAIN` when called from a signal handler that
/// interrupted shmguard in the same thread. Async-signal-safe.
///
/// # Safety
/// `src` must be readable for `len` bytes (or NULL), and the attachment must
/// not be detached by another thread during the copy.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmguard_copy_to(
    shmaddr: *mut c_void,
    off: size_t,
    src: *const c_void,
    len: size_t,
) -> c_int {
    let saved = SavedErrno::save();
    let result = shm::checked_range(shmaddr.expose_provenance(), off, len, true, src.is_null())
        .map(|dst| {
            if len > 0 {
                // SAFETY: the range [dst, dst + len) lies inside a live,
                // writable attachment (checked above); `src` is readable for
                // `len` bytes by the caller's contract. `copy` allows overlap.
                unsafe {
                    ptr::copy(
                        src.cast::<u8>(),
                        ptr::with_exposed_provenance_mut::<u8>(dst),
                        len,
                    )
                };
            }
            0
        });
    finish(saved, result, -1)
}

/// Copies `len` bytes from offset `off` of the attachment that starts at
/// `shmaddr` to `dst`, after checking the bounds.
///
/// Returns 0, or -1 with errno: `ERANGE` past the end of the segment,
/// `EINVAL` if `shmaddr` is not the start of an attachment, `EFAULT` if
/// `dst` is NULL and `len` is not 0, `EAGAIN` when called from a signal
/// handler that interrupted shmguard in the same thread. Async-signal-safe.
///
/// # Safety
/// `dst` must be writable for `len` bytes (or NULL), and the attachment must
/// not be detached by another thread during the copy.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmguard_copy_from(
    shmaddr: *const c_void,
    off: size_t,
    dst: *mut c_void,
    len: size_t,
) -> c_int {
    let saved = SavedErrno::save();
    let result = shm::checked_range(shmaddr.expose_provenance(), off, len, false, dst.is_null())
        .map(|src| {
            if len > 0 {
                // SAFETY: [src, src + len) lies inside a live attachment
                // (checked above); `dst` is writable for `len` bytes by the
                // caller's contract. `copy` allows overlap.
                unsafe {
                    ptr::copy(
                        ptr::with_exposed_provenance::<u8>(src),
                        dst.cast::<u8>(),
                        len,
                    )
                };
            }
            0
        });
    finish(saved, result, -1)
}

/// The number of leaks this process would report if it exited now: those
/// that `suppressions=FILE` suppresses are not counted.
///
/// Called from a signal handler that interrupted shmguard (any shmguard
/// function) in the same thread, it returns `(size_t)-1` with errno
/// `EAGAIN` instead of waiting for records that the interrupted call holds.
/// Not async-signal-safe: it allocates memory and reads /proc.
#[unsafe(no_mangle)]
pub extern "C" fn shmguard_leak_count() -> size_t {
    let saved = SavedErrno::save();
    match shm::leak_count() {
        Some(count) => {
            saved.restore();
            count
        }
        None => {
            saved.fail(libc::EAGAIN);
            size_t::MAX
        }
    }
}

/// Writes the leak report this process would print at exit to `fd` (always
/// ending with its SUMMARY line, which counts the suppressed items) and
/// returns the number of leaks that are not suppressed.
///
/// Called from a signal handler that interrupted shmguard in the same
/// thread, it writes nothing and returns -1 with errno `EAGAIN`. Not
/// async-signal-safe: it allocates memory and reads /proc.
#[unsafe(no_mangle)]
pub extern "C" fn shmguard_leak_report(fd: c_int) -> c_int {
    let saved = SavedErrno::save();
    match shm::leak_report(fd) {
        Some(count) => {
            saved.restore();
            c_int::try_from(count).unwrap_or(c_int::MAX)
        }
        None => {
            saved.fail(libc::EAGAIN);
            -1
        }
    }
}

/// The version of shmguard, e.g. "0.1.0". Async-signal-safe.
#[unsafe(no_mangle)]
pub extern "C" fn shmguard_version() -> *const c_char {
    const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    VERSION.as_ptr().cast()
}

/// Runs first: initialise before the program's constructors where the
/// loader lets us (priority 101 sorts before default constructors when
/// linked statically).
extern "C" fn on_load() {
    start::on_load();
}

/// The library's destructor, run by `exit` (not by `_exit` or a fatal
/// signal; never by `dlclose`: the library is linked with `-z nodelete`).
///
/// Destructors of the libraries that come after ours, in whatever order
/// the loader chose, may still clean up (a library that removes a segment
/// at unload), so the check does not run here: it is registered as an exit
/// handler with no DSO (`__cxa_atexit(.., NULL)`), which glibc's `exit`
/// runs after the destructors of every object (`_dl_fini`, itself an exit
/// handler) have returned, as the last thing before stdio is flushed. Only
/// if that registration fails does the check run here.
extern "C" fn on_unload() {
    if !crate::sys::register_exit_handler(after_teardown) {
        finish_exit();
    }
}

/// The exit check, after the whole teardown (see [`on_unload`]).
extern "C" fn after_teardown(_arg: *mut c_void, _status: c_int) {
    finish_exit();
}

/// Runs the check; with `exitcode=N` and a leak, flushes stdio (what glibc
/// would still have done) and exits with N.
fn finish_exit() {
    if let Some(code) = crate::fail_open(None, shm::at_exit) {
        crate::sys::flush_and_exit(code);
    }
}

#[used]
#[unsafe(link_section = ".init_array.00101")]
static INIT: extern "C" fn() = on_load;

#[used]
#[unsafe(link_section = ".fini_array.00101")]
static FINI: extern "C" fn() = on_unload;
