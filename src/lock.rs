//! A small futex mutex that the fork handlers can hold across `fork`.
//!
//! `std::sync::Mutex` cannot be released without its guard, and the guard
//! cannot cross `pthread_atfork`'s prepare/parent/child callbacks. Like
//! malloc implementations, shmguard takes every lock in `prepare` and
//! releases them in both processes, so the child never inherits a lock that
//! a vanished thread held. The lock never poisons: a panic in bookkeeping
//! unlocks on unwind, and the data stays usable (fail open).

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use crate::sys;

/// A value published by leaking it: readers get a `&'static` with one
/// atomic load, never a lock, so that nobody ever waits for a thread that
/// may not finish (a forked child, a signal handler). Publishing again
/// leaks the earlier value, which readers may still hold: publish rarely.
pub struct Published<T: 'static> {
    ptr: AtomicPtr<T>,
    /// Shared like a `&'static T`: `Sync` only when `T` is.
    _shared: PhantomData<&'static T>,
}

impl<T: 'static> Published<T> {
    /// Nothing published yet.
    pub const fn new() -> Self {
        Self {
            ptr: AtomicPtr::new(core::ptr::null_mut()),
            _shared: PhantomData,
        }
    }

    /// Publishes `value` (for ever).
    pub fn publish(&self, value: T) {
        let leaked: &'static mut T = Box::leak(Box::new(value));
        self.ptr.store(leaked, Ordering::Release);
    }

    /// The value last published, if any.
    pub fn get(&self) -> Option<&'static T> {
        let ptr = self.ptr.load(Ordering::Acquire);
        // SAFETY: a non-null pointer comes from `Box::leak` in `publish`
        // (Release/Acquire orders its initialisation before this load) and
        // is never freed or written through again.
        unsafe { ptr.as_ref() }
    }
}

impl<T: 'static> Default for Published<T> {
    fn default() -> Self {
        Self::new()
    }
}

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const CONTENDED: u32 = 2;

/// A mutex around `T`.
pub struct Locked<T> {
    state: AtomicU32,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is serialised by `state`.
unsafe impl<T: Send> Sync for Locked<T> {}
// SAFETY: moving the lock moves the value; no thread can hold it then.
unsafe impl<T: Send> Send for Locked<T> {}

impl<T> Locked<T> {
    /// A new, unlocked mutex.
    pub const fn new(value: T) -> Self {
        Self {
            state: AtomicU32::new(UNLOCKED),
            value: UnsafeCell::new(value),
        }
    }

    /// Locks, returning a guard that unlocks on drop.
    pub fn lock(&self) -> Guard<'_, T> {
        self.acquire();
        Guard { lock: self }
    }

    /// Locks if free, without waiting.
    pub fn try_lock(&self) -> Option<Guard<'_, T>> {
        self.state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
            .then_some(Guard { lock: self })
    }

    fn acquire(&self) {
        if self
            .state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
        // Brief spin: critical sections are a few hundred nanoseconds.
        for _ in 0..100 {
            core::hint::spin_loop();
            if self.state.load(Ordering::Relaxed) == UNLOCKED
                && self
                    .state
                    .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
        }
        // Drepper's "futexes are tricky", mutex 2.
        while self.state.swap(CONTENDED, Ordering::Acquire) != UNLOCKED {
            sys::futex_wait(&self.state, CONTENDED);
        }
    }

    fn release(&self) {
        if self.state.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            sys::futex_wake(&self.state, 1);
        }
    }

    /// Takes the lock without a guard, for the fork `prepare` handler.
    pub fn lock_for_fork(&self) {
        self.acquire();
    }

    /// Releases a lock taken with [`Locked::lock_for_fork`], in the parent.
    pub fn unlock_after_fork_parent(&self) {
        self.release();
    }

    /// Resets the lock in the fork child, where only the forking thread
    /// exists and it holds the lock since `prepare`.
    pub fn unlock_after_fork_child(&self) {
        self.state.store(UNLOCKED, Ordering::Release);
    }
}

/// Proof of holding a [`Locked`].
pub struct Guard<'a, T> {
    lock: &'a Locked<T>,
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock, so no one else accesses `value`.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock exclusively.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        self.lock.release();
    }
}

/// The allocator of one hash table (the registry's, the stacks'): the
/// global allocator, but it also keeps, in itself, the start of the
/// table's current block. A hash table points into the middle of its block
/// (its control bytes follow the buckets), which Valgrind's memcheck calls
/// "possibly lost" when the process ends without freeing it: a forked child
/// that calls `_exit`, or any process killed or ending in `_exit`. With the
/// start held here, in the table inside a static, the block is "still
/// reachable", as memory held on purpose is; a program leak-free without
/// shmguard is leak-free with it, whatever the way it ends.
pub struct Anchored {
    start: AtomicPtr<u8>,
}

impl Anchored {
    pub const fn new() -> Self {
        Self {
            start: AtomicPtr::new(core::ptr::null_mut()),
        }
    }
}

impl Default for Anchored {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every block comes from and goes back to the global allocator
// (`Global`), which fulfils the trait's contract; keeping a copy of the
// block's address changes nothing about the block.
unsafe impl allocator_api2::alloc::Allocator for Anchored {
    fn allocate(
        &self,
        layout: core::alloc::Layout,
    ) -> Result<core::ptr::NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        let block = allocator_api2::alloc::Global.allocate(layout)?;
        self.start
            .store(block.as_ptr().cast::<u8>(), Ordering::Relaxed);
        Ok(block)
    }

    unsafe fn deallocate(&self, ptr: core::ptr::NonNull<u8>, layout: core::alloc::Layout) {
        // A table allocates its new block before it frees the old one:
        // forget only the block being freed.
        let _ = self.start.compare_exchange(
            ptr.as_ptr(),
            core::ptr::null_mut(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        // SAFETY: the caller guarantees that `ptr` is a block this
        // allocator gave with `layout`, i.e. one of `Global`'s.
        unsafe { allocator_api2::alloc::Global.deallocate(ptr, layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn published_values_stay_readable_when_replaced() {
        static P: Published<Vec<u32>> = Published::new();
        assert!(P.get().is_none());
        P.publish(vec![1, 2]);
        let first = P.get().expect("published");
        P.publish(vec![3]);
        assert_eq!(first, &[1, 2]);
        assert_eq!(P.get().expect("published"), &[3]);
    }

    /// The allocator keeps the start of the newest block, and forgets it
    /// only when that block is freed: a table that grows allocates its new
    /// block before freeing the old one.
    #[test]
    fn anchored_keeps_the_current_block() {
        use allocator_api2::alloc::Allocator;
        let a = Anchored::new();
        let layout = core::alloc::Layout::from_size_align(148, 16).unwrap();
        let old = a.allocate(layout).unwrap().cast::<u8>();
        assert_eq!(a.start.load(Ordering::Relaxed), old.as_ptr());
        let new = a.allocate(layout).unwrap().cast::<u8>();
        // SAFETY: `old` came from `a` with `layout` and is freed once.
        unsafe { a.deallocate(old, layout) };
        assert_eq!(a.start.load(Ordering::Relaxed), new.as_ptr());
        // SAFETY: as above, for `new`.
        unsafe { a.deallocate(new, layout) };
        assert!(a.start.load(Ordering::Relaxed).is_null());

        // A table of the registry's kind holds its block's start.
        let mut map =
            hashbrown::HashMap::with_hasher_in(std::hash::RandomState::new(), Anchored::new());
        map.insert(1u32, 2u32);
        assert!(!map.allocator().start.load(Ordering::Relaxed).is_null());
    }

    #[test]
    fn counts_under_contention() {
        const ROUNDS: u64 = if cfg!(miri) { 200 } else { 20_000 };
        let lock = Arc::new(Locked::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let lock = Arc::clone(&lock);
                std::thread::spawn(move || {
                    for _ in 0..ROUNDS {
                        *lock.lock() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*lock.lock(), 4 * ROUNDS);
    }

    #[test]
    fn fork_protocol_leaves_lock_free() {
        let lock = Locked::new(1);
        lock.lock_for_fork();
        lock.unlock_after_fork_parent();
        assert_eq!(*lock.lock(), 1);
        lock.lock_for_fork();
        lock.unlock_after_fork_child();
        assert_eq!(*lock.lock(), 1);
    }
}
