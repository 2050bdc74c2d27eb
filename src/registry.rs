//! What this process holds: its attachments and the segments it created.
//!
//! Attachments are spread over shards by address, each its own lock, so
//! threads attaching and detaching rarely meet. Each record carries the pid
//! of the process that made it: after `fork` the child sees its parent's
//! records as inherited without touching them (fork stays O(1)).
//!
//! Inserting never aborts: memory is reserved with `try_reserve` first and a
//! record that cannot be stored is counted as lost (the exit check then
//! relies on the kernel alone).
#![forbid(unsafe_code)]

use core::hash::{BuildHasherDefault, Hasher};
use core::sync::atomic::{AtomicUsize, Ordering};
use hashbrown::HashMap;

use crate::lock::{Anchored, Locked};

/// One attachment made by `shmat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub shmid: i32,
    /// The process that made the attachment; another pid means inherited.
    pub pid: u32,
    pub readonly: bool,
    /// `shm_segsz`, or 0 while not yet known (fetched on first need).
    pub size: usize,
    /// Which guard pages it still owns (`guard_pages=1`): [`GUARD_BEFORE`]
    /// and [`GUARD_AFTER`]; `size` is known when any is set.
    pub guards: u8,
}

/// The no-access page just below an attachment is ours.
pub const GUARD_BEFORE: u8 = 1;
/// The no-access page just past an attachment's last page is ours.
pub const GUARD_AFTER: u8 = 2;

impl Attachment {
    /// The guard pages this attachment owns, as (address, bit), given the
    /// attachment's address and the page size.
    pub fn guard_pages(&self, addr: usize, page: usize) -> [(usize, u8); 2] {
        let end = addr + self.size.div_ceil(page) * page;
        [(addr.wrapping_sub(page), GUARD_BEFORE), (end, GUARD_AFTER)]
    }
}

/// A segment this process created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Created {
    pub key: i32,
    pub size: usize,
    pub mode: u32,
    /// The creating process; another pid means the parent created it.
    pub pid: u32,
}

/// A multiplicative hash for addresses and ids, which are not chosen by an
/// adversary; SipHash would cost more than the system call it guards.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64 >> 12).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_i32(&mut self, n: i32) {
        self.0 = u64::from(n as u32).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Build = BuildHasherDefault<IdHasher>;
type AddrMap = HashMap<usize, Attachment, Build, Anchored>;
type IdMap = HashMap<i32, Created, Build, Anchored>;

/// An empty table, which allocates nothing.
const fn table<K, V>() -> HashMap<K, V, Build, Anchored> {
    HashMap::with_hasher_in(Build::new(), Anchored::new())
}

const SHARDS: usize = 16;

/// Records are checked against the kernel (stale ones dropped) once their
/// number reaches twice what was live at the last check, and at least this.
const PRUNE_MIN: usize = 64;

/// The process's records.
pub struct Registry {
    shards: [Locked<AddrMap>; SHARDS],
    created: Locked<IdMap>,
    lost: AtomicUsize,
    /// Attachment records held.
    attachments: AtomicUsize,
    /// The number of attachment records at which they are next pruned.
    attachments_prune_at: AtomicUsize,
    /// The number of created records at which they are next pruned.
    created_prune_at: AtomicUsize,
    /// Guard pages owned by the records.
    guard_pages: AtomicUsize,
}

/// The one registry of the process.
pub static REGISTRY: Registry = Registry::new();

fn shard_of(addr: usize) -> usize {
    // Attachments are page-aligned and often adjacent: mix the page number.
    ((addr as u64 >> 12).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60) as usize % SHARDS
}

impl Registry {
    pub const fn new() -> Self {
        Self {
            shards: [const { Locked::new(table()) }; SHARDS],
            created: Locked::new(table()),
            lost: AtomicUsize::new(0),
            attachments: AtomicUsize::new(0),
            attachments_prune_at: AtomicUsize::new(PRUNE_MIN),
            created_prune_at: AtomicUsize::new(PRUNE_MIN),
            guard_pages: AtomicUsize::new(0),
        }
    }

    /// The guard pages that the records own (`guard_pages=1`).
    pub fn guard_pages(&self) -> usize {
        self.guard_pages.load(Ordering::Relaxed)
    }

    fn gained_guards(&self, bits: u8) {
        self.guard_pages
            .fetch_add(bits.count_ones() as usize, Ordering::Relaxed);
    }

    fn lost_guards(&self, bits: u8) {
        let n = bits.count_ones() as usize;
        let _ = self
            .guard_pages
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |g| {
                Some(g.saturating_sub(n))
            });
    }

    /// An attachment record left the registry.
    fn gone(&self, a: &Attachment) {
        self.lost_guards(a.guards);
        let _ = self
            .attachments
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
    }

    fn shard(&self, addr: usize) -> &Locked<AddrMap> {
        &self.shards[shard_of(addr)]
    }

    fn lose(&self) {
        self.lost.fetch_add(1, Ordering::Relaxed);
    }

    /// Records cannot be trusted to be complete when this is nonzero.
    pub fn lost(&self) -> usize {
        self.lost.load(Ordering::Relaxed)
    }

    /// Records a new attachment at `addr`. Returns the stale record it
    /// replaced there, if any (its guard pages are the caller's to release),
    /// and whether the records are due to be pruned
    /// ([`Registry::prune_attachments`]): they doubled since the last time.
    pub fn attach(&self, addr: usize, attachment: Attachment) -> (Option<Attachment>, bool) {
        let mut map = self.shard(addr).lock();
        if map.try_reserve(1).is_err() {
            drop(map);
            self.lose();
            return (None, false);
        }
        let old = map.insert(addr, attachment);
        drop(map);
        self.gained_guards(attachment.guards);
        if let Some(old) = &old {
            self.lost_guards(old.guards);
            return (Some(*old), false);
        }
        let n = self.attachments.fetch_add(1, Ordering::Relaxed) + 1;
        (None, n >= self.attachments_prune_at.load(Ordering::Relaxed))
    }

    /// Forgets the attachment at `addr`, returning it.
    pub fn detach(&self, addr: usize) -> Option<Attachment> {
        let a = self.shard(addr).lock().remove(&addr)?;
        self.gone(&a);
        Some(a)
    }

    /// Runs `unmap` (the kernel's `shmdt`) with the shard of `addr` locked,
    /// and forgets the attachment there if it succeeds.
    ///
    /// The lock spans the system call on purpose: the moment the kernel
    /// unmaps `addr`, another thread's `shmat` may get the same address, and
    /// its new record must not be the one this detach removes. Holding the
    /// shard makes that thread's insert wait for our removal.
    pub fn detach_with<E>(
        &self,
        addr: usize,
        unmap: impl FnOnce() -> Result<(), E>,
    ) -> Result<Option<Attachment>, E> {
        let mut map = self.shard(addr).lock();
        unmap()?;
        let a = map.remove(&addr);
        drop(map);
        if let Some(a) = &a {
            self.gone(a);
        }
        Ok(a)
    }

    /// Drops the records of attachments that are gone from the address
    /// space behind shmguard's back (a raw `shmdt`, `munmap`), returning
    /// them (for their guard pages) with what `read` returned.
    ///
    /// `read` takes a view of the kernel (/proc/self/maps) while every shard
    /// is locked, so every record checked was made after its mapping
    /// existed, and no `shmdt` is half-way; `live` then tells, from that
    /// view, whether a record's mapping is still there. If `read` fails,
    /// nothing is dropped. Afterwards the next prune is due when the records
    /// double again: the cost is amortized O(1) per attachment.
    pub fn prune_attachments<M>(
        &self,
        read: impl FnOnce() -> Option<M>,
        live: impl Fn(&M, usize, &Attachment) -> bool,
    ) -> Option<(M, Vec<(usize, Attachment)>)> {
        let mut shards: [_; SHARDS] = core::array::from_fn(|i| self.shards[i].lock());
        let Some(view) = read() else {
            self.attachments_prune_at.store(
                self.attachments.load(Ordering::Relaxed).max(PRUNE_MIN) * 2,
                Ordering::Relaxed,
            );
            return None;
        };
        let mut stale = Vec::new();
        let mut held = 0;
        for map in &mut shards {
            map.retain(|&addr, a| {
                if live(&view, addr, a) || stale.try_reserve(1).is_err() {
                    return true;
                }
                stale.push((addr, *a));
                false
            });
            held += map.len();
        }
        for (_, a) in &stale {
            self.lost_guards(a.guards);
        }
        self.attachments.store(held, Ordering::Relaxed);
        self.attachments_prune_at
            .store(held.max(PRUNE_MIN / 2) * 2, Ordering::Relaxed);
        drop(shards);
        Some((view, stale))
    }

    /// Takes the guard pages away from every attachment that has some:
    /// `release` gets each such record (with the guards it owned) under its
    /// shard's lock and returns the guards it could not release, which the
    /// record keeps. Returns how many guards were given up.
    pub fn give_up_guards(&self, mut release: impl FnMut(usize, &Attachment) -> u8) -> usize {
        let mut n = 0;
        for shard in &self.shards {
            for (&addr, a) in shard.lock().iter_mut() {
                if a.guards != 0 {
                    let kept = release(addr, a) & a.guards;
                    let given = a.guards & !kept;
                    self.lost_guards(given);
                    a.guards = kept;
                    n += given.count_ones() as usize;
                }
            }
        }
        n
    }

    /// The attachment that starts at `addr`.
    pub fn get(&self, addr: usize) -> Option<Attachment> {
        self.shard(addr).lock().get(&addr).copied()
    }

    /// Remembers the size of the attachment at `addr` once it is known.
    pub fn set_size(&self, addr: usize, shmid: i32, size: usize) {
        if let Some(a) = self.shard(addr).lock().get_mut(&addr) {
            if a.shmid == shmid {
                a.size = size;
            }
        }
    }

    /// A `SHM_REMAP` attach replaced `[start, end)`: forgets the
    /// attachments that start there (returned, for their guard pages) and
    /// disowns the guard pages of others that the new mapping covers, so
    /// they are never unmapped from under it. Scans every shard; remapping
    /// is rare.
    pub fn remapped(&self, start: usize, end: usize, page: usize) -> Vec<(usize, Attachment)> {
        let inside = |p: usize| (start..end).contains(&p);
        let mut gone = Vec::new();
        for shard in &self.shards {
            shard.lock().retain(|&addr, a| {
                for (p, bit) in a.guard_pages(addr, page) {
                    if a.guards & bit != 0 && inside(p) {
                        a.guards &= !bit;
                        self.lost_guards(bit);
                    }
                }
                if !inside(addr) {
                    return true;
                }
                self.gone(a);
                if gone.try_reserve(1).is_ok() {
                    gone.push((addr, *a));
                }
                false
            });
        }
        gone
    }

    /// Calls `f` for every attachment (in no particular order).
    pub fn for_each_attachment(&self, mut f: impl FnMut(usize, &Attachment)) {
        for shard in &self.shards {
            for (&addr, a) in shard.lock().iter() {
                f(addr, a);
            }
        }
    }

    /// Like [`Registry::for_each_attachment`], but skips shards whose lock
    /// is held: for a signal handler, which must never wait.
    pub fn try_for_each_attachment(&self, mut f: impl FnMut(usize, &Attachment)) {
        for shard in &self.shards {
            if let Some(map) = shard.try_lock() {
                for (&addr, a) in map.iter() {
                    f(addr, a);
                }
            }
        }
    }

    /// Records a segment this process created. Returns whether the
    /// records are due to be pruned ([`Registry::prune_created`]): they
    /// doubled since the last time.
    pub fn created(&self, shmid: i32, segment: Created) -> bool {
        let mut map = self.created.lock();
        if map.try_reserve(1).is_err() {
            drop(map);
            self.lose();
            return false;
        }
        map.insert(shmid, segment);
        map.len() >= self.created_prune_at.load(Ordering::Relaxed)
    }

    /// Drops the records of created segments for which `live` says no (the
    /// segment was removed by another process, or its shmid now belongs to
    /// another segment), collecting their shmids in `dropped` as far as
    /// memory allows. The next prune is due when the records double again,
    /// so the cost is amortized O(1) per creation and the records stay
    /// within twice what is live.
    pub fn prune_created(
        &self,
        mut live: impl FnMut(i32, &Created) -> bool,
        dropped: &mut Vec<i32>,
    ) {
        let mut map = self.created.lock();
        map.retain(|&id, c| {
            if live(id, c) {
                return true;
            }
            if dropped.try_reserve(1).is_ok() {
                dropped.push(id);
            }
            false
        });
        self.created_prune_at
            .store(map.len().max(PRUNE_MIN / 2) * 2, Ordering::Relaxed);
    }

    /// The number of created records held.
    #[cfg(test)]
    pub fn created_count(&self) -> usize {
        self.created.lock().len()
    }

    /// The segment was marked with `IPC_RMID`: it is no longer a leak.
    pub fn marked(&self, shmid: i32) {
        self.created.lock().remove(&shmid);
    }

    /// Calls `f` for every created segment.
    pub fn for_each_created(&self, mut f: impl FnMut(i32, &Created)) {
        for (&id, c) in self.created.lock().iter() {
            f(id, c);
        }
    }

    /// Frees every record and the tables' memory, once the exit check is
    /// done (the process is about to end). A table another thread holds
    /// is left alone: exit never waits.
    pub fn release(&self) {
        for shard in &self.shards {
            if let Some(mut map) = shard.try_lock() {
                *map = table();
            }
        }
        if let Some(mut map) = self.created.try_lock() {
            *map = table();
        }
    }

    /// Takes every lock, in a fixed order (fork `prepare`).
    pub fn lock_all_for_fork(&self) {
        for shard in &self.shards {
            shard.lock_for_fork();
        }
        self.created.lock_for_fork();
    }

    /// Releases every lock in the parent after fork.
    pub fn unlock_all_in_parent(&self) {
        self.created.unlock_after_fork_parent();
        for shard in self.shards.iter().rev() {
            shard.unlock_after_fork_parent();
        }
    }

    /// Releases every lock in the child after fork.
    pub fn unlock_all_in_child(&self) {
        self.created.unlock_after_fork_child();
        for shard in &self.shards {
            shard.unlock_after_fork_child();
        }
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att(shmid: i32) -> Attachment {
        Attachment {
            shmid,
            pid: 1,
            readonly: false,
            size: 0,
            guards: 0,
        }
    }

    #[test]
    fn attach_get_detach() {
        let r = Registry::new();
        r.attach(0x7f00_0000_0000, att(5));
        assert_eq!(r.get(0x7f00_0000_0000).map(|a| a.shmid), Some(5));
        assert_eq!(r.get(0x7f00_0000_1000), None);
        r.set_size(0x7f00_0000_0000, 5, 100);
        r.set_size(0x7f00_0000_0000, 6, 200);
        assert_eq!(r.get(0x7f00_0000_0000).map(|a| a.size), Some(100));
        assert_eq!(r.detach(0x7f00_0000_0000).map(|a| a.shmid), Some(5));
        assert_eq!(r.detach(0x7f00_0000_0000), None);
    }

    #[test]
    fn address_zero_is_an_ordinary_key() {
        let r = Registry::new();
        r.attach(0, att(9));
        assert_eq!(r.get(0).map(|a| a.shmid), Some(9));
    }

    #[test]
    fn many_attachments_spread_and_are_all_found() {
        let r = Registry::new();
        // Miri is ~1000x slower: the same shape, smaller.
        let n: usize = if cfg!(miri) { 1_600 } else { 60_000 };
        for i in 0..n {
            r.attach(0x7000_0000_0000 + i * 4096, att(i as i32));
        }
        let sizes: Vec<usize> = r.shards.iter().map(|s| s.lock().len()).collect();
        assert!(sizes.iter().all(|&s| s > n / SHARDS / 2), "{sizes:?}");
        for i in (0..n).step_by(97) {
            assert_eq!(
                r.get(0x7000_0000_0000 + i * 4096).map(|a| a.shmid),
                Some(i as i32)
            );
        }
        let mut count = 0;
        r.for_each_attachment(|_, _| count += 1);
        assert_eq!(count, n);
    }

    #[test]
    fn remapped_removes_only_inside() {
        let r = Registry::new();
        for i in 0..10usize {
            r.attach(0x1000 * (i + 1), att(i as i32));
        }
        let gone = r.remapped(0x3000, 0x6000, 0x1000);
        assert_eq!(gone.len(), 3);
        let mut left = Vec::new();
        r.for_each_attachment(|addr, _| left.push(addr));
        left.sort_unstable();
        assert_eq!(
            left,
            vec![0x1000, 0x2000, 0x6000, 0x7000, 0x8000, 0x9000, 0xa000]
        );
    }

    #[test]
    fn remapped_disowns_covered_guard_pages() {
        let r = Registry::new();
        let guarded = Attachment {
            size: 0x1800,
            guards: GUARD_BEFORE | GUARD_AFTER,
            ..att(1)
        };
        // Guards at 0x9000 and 0xc000 around [0xa000, 0xc000).
        r.attach(0xa000, guarded);
        // A new mapping over the guard after it only.
        assert!(r.remapped(0xc000, 0xd000, 0x1000).is_empty());
        assert_eq!(r.get(0xa000).unwrap().guards, GUARD_BEFORE);
        // A new mapping over the attachment itself and its guard before.
        let gone = r.remapped(0x9000, 0xb000, 0x1000);
        assert_eq!(gone.len(), 1);
        assert_eq!(
            gone[0].1.guards, 0,
            "a covered guard page is not ours to unmap"
        );
    }

    #[test]
    fn created_and_marked() {
        let r = Registry::new();
        let c = Created {
            key: 0x1234,
            size: 10,
            mode: 0o600,
            pid: 7,
        };
        r.created(3, c);
        r.created(4, c);
        r.marked(3);
        let mut ids = Vec::new();
        r.for_each_created(|id, _| ids.push(id));
        assert_eq!(ids, vec![4]);
    }
}
