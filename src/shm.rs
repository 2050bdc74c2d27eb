//! The safe core: each call forwards to the kernel once, then keeps the
//! books, explains failures and traces, all in safe Rust.
//!
//! The path of a call: `ffi` (C boundary, errno) -> here -> `sys` (the
//! kernel) -> here again for `registry` (accounting), `diagnose` (the
//! sentence on failure) and the verbosity trace. Bookkeeping runs under
//! [`crate::fail_open`]: if it panics, the kernel's answer still goes back.
#![forbid(unsafe_code)]

use core::fmt;
use std::borrow::Cow;

use crate::audit::{self, Addr, Call, Extra, Ret};
use crate::diagnose::{self, Key, Live};
use crate::error::{ErrnoName, Error, Sentence};
use crate::fail_open;
use crate::fault;
use crate::guard;
use crate::leak::{self, Finding, SegmentState};
use crate::options::{CallKind, FaultAction};
use crate::policy;
use crate::registry::{Attachment, Created, GUARD_AFTER, GUARD_BEFORE, REGISTRY};
use crate::runtime::{self, say};
use crate::stacks;
use crate::start;
use crate::suppress;
use crate::sys::{self, Errno, SHM_REMAP, UserPath};

/// Traces (verbosity 2) and logs a successful call. `call` is built only
/// when someone wants it: the default path costs two relaxed loads.
#[inline]
fn succeeded(call: impl FnOnce() -> Call<'static>, ret: Ret, extra: Extra) {
    if runtime::verbosity() >= 2 || audit::enabled() {
        record_success(call(), ret, extra);
    }
}

#[inline(never)]
fn record_success(call: Call<'_>, ret: Ret, extra: Extra) {
    if runtime::verbosity() >= 2 {
        say(format_args!("{call} = {ret}"));
    }
    audit::call(&call, Ok((ret, extra)));
}

/// Builds the error of a failed call: its sentence, printed at verbosity 1
/// and logged.
#[cold]
#[inline(never)]
fn failed(call: Call<'_>, errno: Errno, explain: impl FnOnce() -> Sentence) -> Error {
    let detail = fail_open(Sentence::new(), explain);
    if runtime::verbosity() >= 1 {
        say(format_args!("{call} = -1 {}: {detail}", ErrnoName(errno)));
    }
    fail_open((), || audit::call(&call, Err((errno, &detail))));
    Error { errno, detail }
}

/// Applies the policy findings of one call, every rule it breaks: each is
/// recorded (one log event, and at verbosity 1 one stderr line, per rule);
/// under `policy=strict` the call is refused with `EACCES` and a diagnostic
/// that names them all.
fn judge(call: impl FnOnce() -> Call<'static>, findings: &policy::Findings) -> Result<(), Error> {
    if findings.is_empty() {
        return Ok(());
    }
    let call = call();
    let strict = runtime::strict();
    let stack = fail_open(Vec::new(), stacks::here);
    // Suppressions silence the report of a finding, never its refusal.
    let active = fail_open(None, suppress::active).filter(|a| a.rules.has_findings());
    // The segment's key, for the log and for suppressions (a finding is
    // rare: one `IPC_STAT` for a call that names a shmid is no cost).
    let key = fail_open(None, || match &call {
        Call::Shmget { key, .. } => Some(*key),
        Call::Shmat { shmid, .. } | Call::Shmctl { shmid, .. } => {
            sys::shm_stat(*shmid).ok().map(|ds| ds.shm_perm.__key)
        }
        _ => None,
    });
    for finding in findings.iter() {
        let suppressed = active.is_some_and(|a| {
            fail_open(false, || {
                a.rules
                    .finding(finding.rule.name(), &a.subject(key, &stack))
                    .is_some()
            })
        });
        fail_open((), || {
            audit::finding(
                finding.rule.name(),
                call.name(),
                strict,
                suppressed,
                key,
                &finding.detail,
                &stack,
            )
        });
        if !strict && !suppressed && runtime::verbosity() >= 1 {
            say(format_args!(
                "policy: {}: {}",
                finding.rule.name(),
                finding.detail
            ));
            for frame in &stack {
                say(format_args!("    at {frame}"));
            }
        }
    }
    if !strict {
        return Ok(());
    }
    Err(failed(call, libc::EACCES, || refusal(findings)))
}

/// The diagnostic of a call refused under `policy=strict`: the names of
/// all the rules first (so that a cut sentence still gives them), then
/// each rule's explanation.
fn refusal(findings: &policy::Findings) -> Sentence {
    let mut s = Sentence::new();
    let n = findings.len();
    let _ = fmt::Write::write_str(
        &mut s,
        if n > 1 {
            "refused by policy=strict, rules "
        } else {
            "refused by policy=strict, rule "
        },
    );
    for (i, f) in findings.iter().enumerate() {
        let sep = match i {
            0 => "",
            i if i + 1 == n => " and ",
            _ => ", ",
        };
        let _ = fmt::Write::write_fmt(&mut s, format_args!("{sep}{}", f.rule.name()));
    }
    for (i, f) in findings.iter().enumerate() {
        let sep = if i == 0 { ": " } else { "; " };
        let _ = fmt::Write::write_fmt(&mut s, format_args!("{sep}{}", f.detail));
    }
    s
}

fn owner_of(ds: &sys::ShmidDs) -> policy::Owner {
    policy::Owner {
        uid: ds.shm_perm.uid,
        gid: ds.shm_perm.gid,
        cuid: ds.shm_perm.cuid,
        mode: u32::from(ds.shm_perm.mode),
    }
}

/// Fails the call if a `fault=` rule names it.
fn injected(kind: CallKind, call: impl FnOnce() -> Call<'static>) -> Result<(), Error> {
    match fault::check(kind) {
        Some(FaultAction::Fail(errno)) => {
            Err(failed(call(), errno, || fault::explain(kind, errno)))
        }
        Some(FaultAction::Panic) => {
            fail_open((), || fault::deliberate_panic(kind));
            Ok(())
        }
        None => Ok(()),
    }
}

fn bare(errno: Errno) -> Error {
    Error::new(errno)
}

/// Calls `shmget` and tells whether this call created the segment.
///
/// `IPC_CREAT` without `IPC_EXCL` may create or open. To know which, ask
/// for an exclusive create first and open only on `EEXIST`: the kernel
/// checks existence before anything else, so every other outcome (errno
/// included) is the one the plain call gives. It costs a second system
/// call only when the key exists.
fn get_or_create(key: i32, size: usize, flags: i32) -> (Result<i32, Errno>, bool) {
    let creat = flags & libc::IPC_CREAT != 0;
    let excl = flags & libc::IPC_EXCL != 0;
    if key == libc::IPC_PRIVATE || !creat || excl {
        let result = sys::shmget(key, size, flags);
        return (result, creat || key == libc::IPC_PRIVATE);
    }
    for _ in 0..8 {
        match sys::shmget(key, size, flags | libc::IPC_EXCL) {
            Ok(id) => return (Ok(id), true),
            Err(libc::EEXIST) => {}
            Err(e) => return (Err(e), false),
        }
        match sys::shmget(key, size, flags & !libc::IPC_CREAT) {
            // Removed between our two calls: try to create again.
            Err(libc::ENOENT) => continue,
            result => return (result, false),
        }
    }
    (sys::shmget(key, size, flags), false)
}

/// `shmget`.
pub fn shmget(key: i32, size: usize, flags: i32) -> Result<i32, Error> {
    let Some(_inside) = start::enter() else {
        return sys::shmget(key, size, flags).map_err(bare);
    };
    let call = move || Call::Shmget { key, size, flags };
    injected(CallKind::Shmget, call)?;
    let policed = start::policy_active();
    if policed {
        let findings = fail_open(policy::Findings::default(), || {
            policy::shmget_request(key, flags)
        });
        judge(call, &findings)?;
    }
    match get_or_create(key, size, flags) {
        (Ok(id), created) => {
            if policed && !created && key != libc::IPC_PRIVATE {
                let euid = sys::euid_egid().0;
                let owner = sys::shm_stat(id).ok().map(|ds| owner_of(&ds));
                let finding = fail_open(None, || policy::shmget_opened(key, id, owner, euid));
                judge(call, &finding.into())?;
            }
            if created {
                fail_open((), || {
                    let segment = Created {
                        key,
                        size,
                        mode: (flags & 0o777) as u32,
                        pid: runtime::pid(),
                    };
                    if REGISTRY.created(id, segment) {
                        prune_created();
                    }
                    stacks::record(stacks::Owner::Segment(id));
                });
            }
            let extra = Extra {
                created: Some(created),
                ..Extra::default()
            };
            fail_open((), || succeeded(call, Ret::Int(id.into()), extra));
            Ok(id)
        }
        (Err(errno), _) => Err(failed(call(), errno, || {
            diagnose::shmget(&Live, errno, key, size, flags)
        })),
    }
}

/// Drops the records of created segments that are gone (removed by
/// another process, or their shmid reused by another creator) or marked
/// for removal: one `IPC_STAT` per record, when the records doubled since
/// the last time (see `Registry::prune_created`).
fn prune_created() {
    let mut dropped = Vec::new();
    REGISTRY.prune_created(
        |shmid, c| match sys::shm_stat(shmid) {
            Ok(ds) => {
                u32::from(ds.shm_perm.mode) & sys::SHM_DEST == 0 && ds.shm_cpid as u32 == c.pid
            }
            // Only a segment known to be gone is dropped (not EACCES).
            Err(e) => e != libc::EINVAL && e != libc::EIDRM,
        },
        &mut dropped,
    );
    for shmid in dropped {
        stacks::forget(stacks::Owner::Segment(shmid));
    }
}

/// Drops the records of attachments that went away behind our back (a raw
/// `shmdt`, `munmap`), releasing their guard pages: once the records
/// doubled since the last time (see `Registry::prune_attachments`).
fn prune_attachments() {
    let Some((maps, stale)) =
        REGISTRY.prune_attachments(guard::read_maps, |m, addr, a| m.has_sysv(addr, a.shmid))
    else {
        return;
    };
    for (addr, a) in &stale {
        guard::release_stale(*addr, a, Some(&maps), (0, 0));
        stacks::forget(stacks::Owner::Attachment(*addr));
    }
}

/// `shmat`: the address of the new attachment.
pub fn shmat(shmid: i32, addr: usize, flags: i32) -> Result<usize, Error> {
    let Some(_inside) = start::enter() else {
        return sys::shmat(shmid, addr, flags).map_err(bare);
    };
    let call = move || Call::Shmat { shmid, addr, flags };
    injected(CallKind::Shmat, call)?;
    if start::policy_active() {
        let finding = fail_open(None, || policy::shmat_request(shmid, flags));
        judge(call, &finding.into())?;
    }
    // With guard_pages=1 the kernel-chosen address moves inside a guarded
    // range; any trouble there falls back to the plain call.
    let guarded = match guard::applies(addr, flags) {
        true => fail_open(None, || guard::attach(shmid, flags)),
        false => None,
    };
    let result = match guarded {
        Some((at, _)) => Ok(at),
        None => sys::shmat(shmid, addr, flags),
    };
    // Out of mappings (or address space) while guard pages hold some: give
    // them up and try again, so that guards never make a call fail.
    let result = match result {
        Err(libc::ENOMEM) if REGISTRY.guard_pages() > 0 && fail_open(false, guard::give_up) => {
            sys::shmat(shmid, addr, flags)
        }
        result => result,
    };
    match result {
        Ok(at) => {
            let size = fail_open(0, || {
                let mut size = guarded.map_or(0, |(_, size)| size);
                if flags & SHM_REMAP != 0 {
                    // The new mapping replaced whatever was in its range,
                    // guard pages included.
                    if let Ok(ds) = sys::shm_stat(shmid) {
                        size = ds.shm_segsz;
                        let page = sys::page_size();
                        let end = at.saturating_add(size.div_ceil(page) * page);
                        for (old, a) in REGISTRY.remapped(at, end, page) {
                            guard::release(old, &a, at, end);
                            stacks::forget(stacks::Owner::Attachment(old));
                        }
                    }
                }
                let attachment = Attachment {
                    shmid,
                    pid: runtime::pid(),
                    readonly: flags & libc::SHM_RDONLY != 0,
                    size,
                    guards: match guarded {
                        Some(_) => GUARD_BEFORE | GUARD_AFTER,
                        None => 0,
                    },
                };
                let (stale, prune) = REGISTRY.attach(at, attachment);
                if let Some(old) = stale {
                    // The attachment recorded here went away behind our
                    // back: release its guards, not the new ones.
                    let page = sys::page_size();
                    let end = at.saturating_add(size.div_ceil(page) * page);
                    let keep = (at.saturating_sub(page), end.saturating_add(page));
                    guard::release_stale(at, &old, None, keep);
                }
                if guarded.is_some() {
                    // A guard-page hit prints it from the SIGSEGV handler.
                    stacks::record_resolved(stacks::Owner::Attachment(at));
                } else {
                    stacks::record(stacks::Owner::Attachment(at));
                }
                if prune {
                    prune_attachments();
                }
                size
            });
            let extra = Extra {
                size: (size != 0).then_some(size),
                ..Extra::default()
            };
            fail_open((), || succeeded(call, Ret::Addr(at), extra));
            Ok(at)
        }
        Err(errno) => Err(failed(call(), errno, || {
            diagnose::shmat(&Live, errno, shmid, addr, flags)
        })),
    }
}

/// `shmdt`.
pub fn shmdt(addr: usize) -> Result<(), Error> {
    let Some(_inside) = start::enter() else {
        return sys::shmdt(addr).map_err(bare);
    };
    let call = move || Call::Shmdt { addr };
    injected(CallKind::Shmdt, call)?;
    match REGISTRY.detach_with(addr, || sys::shmdt(addr)) {
        Ok(record) => {
            let shmid = fail_open(None, || {
                stacks::forget(stacks::Owner::Attachment(addr));
                let a = record?;
                if a.guards != 0 {
                    guard::release(addr, &a, 0, 0);
                }
                Some(a.shmid)
            });
            let extra = Extra {
                shmid,
                ..Extra::default()
            };
            fail_open((), || succeeded(call, Ret::Int(0), extra));
            Ok(())
        }
        Err(errno) => {
            let inside = fail_open(None, || attachment_containing(addr));
            if errno == libc::EINVAL && inside.is_some_and(|(start, _)| start == addr) {
                // The kernel has no attachment here although we recorded
                // one: the record is stale (see diagnose::shmdt). Forget it.
                fail_open((), || {
                    if let Some(a) = REGISTRY.detach(addr) {
                        guard::release_stale(addr, &a, None, (0, 0));
                    }
                    stacks::forget(stacks::Owner::Attachment(addr));
                });
            }
            Err(failed(call(), errno, || {
                diagnose::shmdt(errno, addr, inside)
            }))
        }
    }
}

/// The attachment whose range contains `addr`, for explaining a bad detach.
fn attachment_containing(addr: usize) -> Option<(usize, Attachment)> {
    let mut best: Option<(usize, Attachment)> = None;
    REGISTRY.for_each_attachment(|start, a| {
        if start <= addr && best.is_none_or(|(b, _)| start > b) {
            best = Some((start, *a));
        }
    });
    let (start, a) = best?;
    let size = known_size(start, &a)?;
    (addr < start.saturating_add(size)).then_some((start, a))
}

/// `shm_segsz` of the attachment at `addr`, fetched once and remembered.
fn known_size(addr: usize, a: &Attachment) -> Option<usize> {
    if a.size != 0 {
        return Some(a.size);
    }
    let size = sys::shm_stat(a.shmid).ok()?.shm_segsz;
    REGISTRY.set_size(addr, a.shmid, size);
    Some(size)
}

/// `shmctl`. `buf` is the caller's pointer, handed to the kernel untouched.
pub fn shmctl(shmid: i32, cmd: i32, buf: usize) -> Result<i32, Error> {
    let Some(_inside) = start::enter() else {
        return sys::shmctl(shmid, cmd, buf).map_err(bare);
    };
    let call = move || Call::Shmctl { shmid, cmd, buf };
    injected(CallKind::Shmctl, call)?;
    if cmd == libc::IPC_SET && start::policy_active() {
        // Only a readable buffer and a segment we can stat are judged; the
        // kernel rejects the others itself.
        if let (Some(new), Ok(now)) = (sys::peek_shmid_ds(buf), sys::shm_stat(shmid)) {
            let finding = fail_open(None, || {
                policy::ipc_set(shmid, owner_of(&now), owner_of(&new))
            });
            judge(call, &finding.into())?;
        }
    }
    match sys::shmctl(shmid, cmd, buf) {
        Ok(ret) => {
            if cmd == libc::IPC_RMID {
                fail_open((), || {
                    REGISTRY.marked(shmid);
                    stacks::forget(stacks::Owner::Segment(shmid));
                });
            }
            fail_open((), || {
                succeeded(call, Ret::Int(ret.into()), Extra::default())
            });
            Ok(ret)
        }
        Err(errno) => Err(failed(call(), errno, || {
            diagnose::shmctl(&Live, errno, shmid, cmd, buf)
        })),
    }
}

/// glibc's key: the low 16 bits of the inode, the low 8 bits of the device
/// and the low 8 bits of `id`, as an unsigned 32-bit pattern in a `key_t`
/// (so ids from 0x80 up give negative keys, as in glibc).
pub fn ftok_key(ino: u64, dev: u64, id: i32) -> i32 {
    let key = (ino as u32 & 0xffff) | ((dev as u32 & 0xff) << 16) | ((id as u32 & 0xff) << 24);
    key as i32
}

/// `ftok`.
pub fn ftok(path: UserPath, id: i32) -> Result<i32, Error> {
    let Some(_inside) = start::enter() else {
        return path
            .stat()
            .map(|(ino, dev)| ftok_key(ino, dev, id))
            .map_err(bare);
    };
    let mut buf = [0u8; 256];
    match fault::check(CallKind::Ftok) {
        Some(FaultAction::Fail(errno)) => {
            // The path is shown only if the kernel could read it.
            let shown = path.prefix(path.stat().err().unwrap_or(0), &mut buf);
            return Err(failed(Call::Ftok { path: shown, id }, errno, || {
                fault::explain(CallKind::Ftok, errno)
            }));
        }
        Some(FaultAction::Panic) => fail_open((), || fault::deliberate_panic(CallKind::Ftok)),
        None => {}
    }
    match path.stat() {
        Ok((ino, dev)) => {
            let key = ftok_key(ino, dev, id);
            let (trace, log) = (runtime::verbosity() >= 2, audit::enabled());
            if trace || log {
                let call = Call::Ftok {
                    path: path.prefix(0, &mut buf),
                    id,
                };
                if trace {
                    say(format_args!("{call} = {}", Key(key)));
                }
                let extra = Extra {
                    key: Some(key),
                    ..Extra::default()
                };
                fail_open((), || audit::call(&call, Ok((Ret::Int(key.into()), extra))));
            }
            Ok(key)
        }
        Err(errno) => {
            let shown = path.prefix(errno, &mut buf);
            Err(failed(Call::Ftok { path: shown, id }, errno, || {
                diagnose::ftok(errno, shown)
            }))
        }
    }
}

fn ext_error(errno: Errno, args: fmt::Arguments<'_>) -> Error {
    let mut detail = Sentence::new();
    let _ = fmt::Write::write_fmt(&mut detail, args);
    Error { errno, detail }
}

/// The error of an extension function called from a signal handler that
/// interrupted shmguard in the same thread: the records are in use (maybe
/// locked) by the interrupted call, so it cannot wait for them.
fn busy() -> Error {
    ext_error(
        libc::EAGAIN,
        format_args!(
            "called from a signal handler that interrupted shmguard in this thread: the records are busy, try again later"
        ),
    )
}

/// `shmguard_attachment_size`.
pub fn attachment_size(addr: usize) -> Result<usize, Error> {
    let Some(_inside) = start::enter() else {
        return Err(busy());
    };
    REGISTRY
        .get(addr)
        .and_then(|a| known_size(addr, &a))
        .ok_or_else(|| {
            ext_error(
                libc::EINVAL,
                format_args!("no attachment starts at {}", Addr(addr)),
            )
        })
}

/// Checks a copy of `len` bytes at offset `off` of the attachment at
/// `addr`; returns the address where the copy starts.
pub fn checked_range(
    addr: usize,
    off: usize,
    len: usize,
    write: bool,
    buffer_is_null: bool,
) -> Result<usize, Error> {
    let Some(_inside) = start::enter() else {
        return Err(busy());
    };
    let what = if write {
        "shmguard_copy_to"
    } else {
        "shmguard_copy_from"
    };
    let Some(a) = REGISTRY.get(addr) else {
        return Err(ext_error(
            libc::EINVAL,
            format_args!("{what}: no attachment starts at {}", Addr(addr)),
        ));
    };
    if write && a.readonly {
        return Err(ext_error(
            libc::EACCES,
            format_args!(
                "{what}: the attachment at {} (shmid={}) is read-only (SHM_RDONLY)",
                Addr(addr),
                a.shmid
            ),
        ));
    }
    let size = known_size(addr, &a).unwrap_or(0);
    match off.checked_add(len) {
        Some(end) if end <= size => {}
        _ => {
            return Err(ext_error(
                libc::ERANGE,
                format_args!(
                    "{what}: {len} bytes at offset {off} run past the end of the {size}-byte segment shmid={}",
                    a.shmid
                ),
            ));
        }
    }
    if buffer_is_null && len > 0 {
        return Err(ext_error(
            libc::EFAULT,
            format_args!("{what}: the buffer is NULL"),
        ));
    }
    Ok(addr + off)
}

/// The live kernel, for the leak check.
struct LiveKernel;

impl leak::Kernel for LiveKernel {
    fn sysv_mappings(&self) -> Vec<(usize, i32)> {
        let mut maps = Vec::new();
        match sys::read_file(c"/proc/self/maps", &mut maps) {
            Ok(()) => leak::parse_sysv_mappings(&maps),
            Err(_) => Vec::new(),
        }
    }
    fn stat(&self, shmid: i32) -> Option<SegmentState> {
        let ds = sys::shm_stat(shmid).ok()?;
        Some(SegmentState {
            key: ds.shm_perm.__key,
            size: ds.shm_segsz,
            mode: u32::from(ds.shm_perm.mode),
            cpid: ds.shm_cpid as u32,
            nattch: ds.shm_nattch,
        })
    }
}

/// What this process would be reported for if it exited now, or `None`
/// when this thread is already inside shmguard (a signal handler
/// interrupted one of our calls, whose records may be locked).
#[cfg(test)]
pub fn findings() -> Option<Vec<Finding>> {
    let _inside = start::enter()?;
    Some(findings_inside())
}

/// [`findings`], the caller being inside shmguard.
fn findings_inside() -> Vec<Finding> {
    fail_open(Vec::new(), || {
        let me = sys::getpid();
        if me != runtime::pid() {
            // A child made without the fork handlers (`_Fork`, a raw
            // `clone`): every record it holds, even one it made itself
            // under the stale pid, is counted as inherited. Never report
            // the parent's records as this process's leaks.
            return Vec::new();
        }
        leak::findings(&REGISTRY, me, &LiveKernel)
    })
}

/// Which of `findings` a `leak:` line of `suppressions=FILE` matches
/// (all `false` without suppressions).
fn suppressed(findings: &[Finding]) -> Vec<bool> {
    let mut mask = Vec::new();
    if findings.is_empty() {
        return mask;
    }
    let Some(active) = fail_open(None, suppress::active).filter(|a| a.rules.has_leaks()) else {
        return mask;
    };
    if mask.try_reserve(findings.len()).is_err() {
        return mask;
    }
    for f in findings {
        let hit = fail_open(false, || {
            let key = match *f {
                Finding::Segment { key, .. } | Finding::Note { key, .. } => Some(key),
                Finding::Attachment { shmid, .. } => {
                    leak::Kernel::stat(&LiveKernel, shmid).map(|s| s.key)
                }
            };
            let stack = stacks::frames(leak::stack_owner(f));
            active.rules.leak(&active.subject(key, &stack)).is_some()
        });
        mask.push(hit);
    }
    mask
}

/// `findings` without the suppressed ones, and how many those were.
fn unsuppressed<'a>(findings: &'a [Finding], mask: &[bool]) -> (Cow<'a, [Finding]>, usize) {
    if !mask.contains(&true) {
        return (Cow::Borrowed(findings), 0);
    }
    let kept: Vec<Finding> = findings
        .iter()
        .zip(mask)
        .filter(|(_, s)| !**s)
        .map(|(f, _)| *f)
        .collect();
    let gone = findings.len() - kept.len();
    (Cow::Owned(kept), gone)
}

/// `shmguard_leak_count`: the leaks not suppressed; `None` when this
/// thread is already inside shmguard.
pub fn leak_count() -> Option<usize> {
    let _inside = start::enter()?;
    let findings = findings_inside();
    let mask = suppressed(&findings);
    Some(leak::leak_count(&unsuppressed(&findings, &mask).0))
}

/// `shmguard_leak_report`: the number of leaks written to `fd`, or `None`
/// when this thread is already inside shmguard.
pub fn leak_report(fd: i32) -> Option<usize> {
    let _inside = start::enter()?;
    let findings = findings_inside();
    let mask = suppressed(&findings);
    let (kept, gone) = unsuppressed(&findings, &mask);
    Some(write_report(fd, &kept, gone))
}

/// Writes the leak report to `fd` (`suppressed`: how many items
/// suppressions left out); returns the number of leaks.
///
/// Lines go out in writes of up to 64 KiB of whole lines: a report of
/// 60,000 leaks is a few dozen system calls, not 60,000.
pub fn write_report(fd: i32, findings: &[Finding], suppressed: usize) -> usize {
    const BATCH: usize = 64 << 10;
    fail_open((), || {
        let mut batch: Vec<u8> = Vec::new();
        leak::report(
            findings,
            REGISTRY.lost(),
            suppressed,
            |f| stacks::frames(leak::stack_owner(f)),
            |mut line| {
                let bytes = line.finish();
                if batch.len() + bytes.len() > BATCH || batch.try_reserve(bytes.len()).is_err() {
                    let _ = sys::write_all(fd, &batch);
                    batch.clear();
                }
                if batch.try_reserve(bytes.len()).is_ok() {
                    batch.extend_from_slice(bytes);
                } else {
                    let _ = sys::write_all(fd, bytes);
                }
            },
        );
        let _ = sys::write_all(fd, &batch);
    });
    leak::leak_count(findings)
}

/// The exit check, run once the whole teardown of the program is done
/// (see `ffi::on_unload`): after every `atexit` handler and every library's
/// destructor, and only on a normal exit. Returns the status the process
/// must exit with instead of its own (`exitcode=N` and a leak), if any: the
/// caller flushes stdio and exits with it.
pub fn at_exit() -> Option<i32> {
    if !runtime::active() {
        return None; // no call was made: nothing to check
    }
    // exit() called from a signal handler that interrupted shmguard: the
    // records may be locked by the interrupted call.
    let _inside = start::enter()?;
    let saved = sys::errno();
    let status = exit_check();
    // The records are of no use any more: free them, so that memcheck
    // finds nothing of shmguard's in a leak-free program.
    fail_open((), || {
        REGISTRY.release();
        stacks::release();
    });
    sys::set_errno(saved);
    status
}

/// [`at_exit`]'s check: the report, the log's exit event, and the status.
fn exit_check() -> Option<i32> {
    let options = runtime::options();
    if !options.leak_check && !audit::enabled() {
        return None;
    }
    let findings = findings_inside();
    let mask = suppressed(&findings);
    let (kept, gone) = unsuppressed(&findings, &mask);
    let leaks = leak::leak_count(&kept);
    // Leaks, and notes of segments left to other processes, are reported;
    // a process that leaves nothing behind (or only what suppressions
    // name) prints nothing. `leak_report=0` silences only the report: the
    // exit event and `exitcode` stay.
    if options.leak_check && options.leak_report && !kept.is_empty() {
        write_report(2, &kept, gone);
    }
    fail_open((), || audit::exit(&findings, &mask));
    (options.leak_check && leaks > 0 && options.exitcode != 0)
        .then_some(i32::from(options.exitcode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ftok_key_matches_glibc_arithmetic() {
        assert_eq!(ftok_key(0x12345, 0x801, 1), 0x0101_2345);
        assert_eq!(ftok_key(0xffff, 0xff, 0x7f), 0x7fff_ffff);
        assert_eq!(ftok_key(0, 0, 0x80), i32::MIN);
        assert_eq!(ftok_key(1, 2, 0x1ff), ftok_key(1, 2, 0xff));
        assert_eq!(ftok_key(0xffff, 0xff, -1), -1);
    }

    #[test]
    fn call_traces_read_like_c() {
        let c = Call::Shmat {
            shmid: 3,
            addr: 0,
            flags: libc::SHM_RDONLY,
        };
        assert_eq!(
            c.to_string(),
            "shmat(shmid=3, shmaddr=NULL, shmflg=SHM_RDONLY)"
        );
        let c = Call::Shmget {
            key: 0x1234,
            size: 10,
            flags: libc::IPC_CREAT | 0o600,
        };
        assert_eq!(
            c.to_string(),
            "shmget(key=0x00001234, size=10, shmflg=IPC_CREAT|0600)"
        );
        let c = Call::Shmctl {
            shmid: 1,
            cmd: libc::IPC_RMID,
            buf: 0,
        };
        assert_eq!(c.to_string(), "shmctl(shmid=1, cmd=IPC_RMID, buf=NULL)");
    }

    /// Removes a segment when dropped, so a failing test leaves nothing.
    struct Segment(i32);
    impl Drop for Segment {
        fn drop(&mut self) {
            let _ = sys::shm_rmid(self.0);
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "System V shm is not emulated by Miri")]
    fn create_attach_detach_against_the_kernel() {
        let seg = Segment(shmget(libc::IPC_PRIVATE, 10_000, 0o600).expect("create"));
        let at = shmat(seg.0, 0, 0).expect("attach");
        assert_eq!(attachment_size(at).unwrap(), 10_000);
        assert_eq!(sys::shm_stat(seg.0).unwrap().shm_nattch, 1);
        assert!(
            findings()
                .unwrap()
                .iter()
                .any(|f| matches!(f, Finding::Attachment { addr, .. } if *addr == at))
        );
        assert_eq!(
            checked_range(at, 9_000, 1_000, true, false).unwrap(),
            at + 9_000
        );
        assert_eq!(
            checked_range(at, 9_001, 1_000, true, false)
                .unwrap_err()
                .errno,
            libc::ERANGE
        );
        assert_eq!(
            checked_range(at, usize::MAX, 2, false, false)
                .unwrap_err()
                .errno,
            libc::ERANGE
        );
        assert_eq!(
            checked_range(at + 1, 0, 0, false, false).unwrap_err().errno,
            libc::EINVAL
        );
        let e = shmdt(at + 4096).unwrap_err();
        assert_eq!(e.errno, sys::shmdt(at + 4096).unwrap_err());
        assert!(
            e.detail.as_str().contains("4096 bytes inside"),
            "{}",
            e.detail
        );
        shmdt(at).expect("detach");
        assert_eq!(attachment_size(at).unwrap_err().errno, libc::EINVAL);
        shmctl(seg.0, libc::IPC_RMID, 0).expect("rmid");
        assert!(
            !findings()
                .unwrap()
                .iter()
                .any(|f| matches!(f, Finding::Segment { shmid, .. } if *shmid == seg.0))
        );
    }

    /// Records of segments that another process removed (here: a raw
    /// IPC_RMID behind shmguard's back) are pruned: their number stays
    /// bounded by what is live, not by what was ever created.
    #[test]
    #[cfg_attr(miri, ignore = "System V shm is not emulated by Miri")]
    fn records_of_segments_removed_behind_our_back_are_pruned() {
        let kept = Segment(shmget(libc::IPC_PRIVATE, 1, 0o600).expect("create"));
        for _ in 0..3_000 {
            let id = shmget(libc::IPC_PRIVATE, 1, 0o600).expect("create");
            sys::shm_rmid(id).expect("raw IPC_RMID");
        }
        let held = REGISTRY.created_count();
        // Other tests of this binary may hold a few records of their own.
        assert!(held < 200, "{held} records held for 1 live segment");
        let mut found = false;
        REGISTRY.for_each_created(|id, _| found |= id == kept.0);
        assert!(found, "the live segment's record was pruned");
    }

    /// Records of attachments that went away behind shmguard's back (a raw
    /// shmdt) are pruned likewise.
    #[test]
    #[cfg_attr(miri, ignore = "System V shm is not emulated by Miri")]
    fn records_of_attachments_removed_behind_our_back_are_pruned() {
        let seg = Segment(sys::shmget(libc::IPC_PRIVATE, 1, 0o600).expect("create"));
        let kept = shmat(seg.0, 0, 0).expect("attach");
        // A placeholder mapping takes each hole, so that every attachment
        // gets a new address (a record at a reused address is replaced).
        let page = sys::page_size();
        let mut placeholders = Vec::new();
        for _ in 0..3_000 {
            let at = shmat(seg.0, 0, 0).expect("attach");
            sys::shmdt(at).expect("raw shmdt");
            placeholders.push(sys::reserve(page).expect("placeholder"));
        }
        for p in placeholders {
            sys::release(p, page);
        }
        let mut held = 0;
        let mut found = false;
        REGISTRY.for_each_attachment(|addr, _| {
            held += 1;
            found |= addr == kept;
        });
        assert!(held < 200, "{held} attachment records held for 1 live one");
        assert!(found, "the live attachment's record was pruned");
        shmdt(kept).expect("detach");
    }

    #[test]
    #[cfg_attr(miri, ignore = "System V shm is not emulated by Miri")]
    fn ipc_creat_without_excl_knows_whether_it_created() {
        let key = 0x5347_0000 | (std::process::id() as i32 & 0xffff);
        let (first, created) = get_or_create(key, 100, libc::IPC_CREAT | 0o600);
        let seg = Segment(first.expect("create"));
        assert!(created);
        let (again, created_again) = get_or_create(key, 50, libc::IPC_CREAT | 0o600);
        assert_eq!(again, Ok(seg.0));
        assert!(!created_again);
        let (too_big, _) = get_or_create(key, 200, libc::IPC_CREAT | 0o600);
        assert_eq!(too_big, sys::shmget(key, 200, libc::IPC_CREAT | 0o600));
        assert_eq!(too_big, Err(libc::EINVAL));
    }
}
