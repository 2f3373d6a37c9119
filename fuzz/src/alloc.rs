//! A global allocator that remembers the largest single request made on each thread, so a target
//! can prove that a parser never reserves memory for data it has not received (a `$999999999`
//! header must not allocate a gigabyte). It knows nothing of the parsers.
//!
//! libFuzzer's `-malloc_limit_mb` only works under a sanitizer, which slows every run down; this
//! check costs one comparison per allocation and works in the stable smoke runner too.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    /// The largest request since the last [`largest_during`] began. A `const` thread-local with no
    /// destructor, so reading it never allocates (which would recurse into the allocator).
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// The system allocator, with each request's size noted.
#[derive(Debug)]
pub struct Counting;

fn note(size: usize) {
    // `try_with` rather than `with`: during thread teardown the slot may be gone, and an allocator
    // must never panic.
    let _ = LARGEST.try_with(|largest| {
        if size > largest.get() {
            largest.set(size);
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's own arguments, so `System`'s
// guarantees carry over unchanged; the bookkeeping touches only a thread-local counter.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded as received; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as in `alloc`; `ptr` and `layout` come from this allocator, which is `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as in `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `work` and returns its result with the largest single allocation it requested on this thread.
pub fn largest_during<T>(work: impl FnOnce() -> T) -> (T, usize) {
    let outer = LARGEST.with(|largest| largest.replace(0));
    let result = work();
    let inner = LARGEST.with(|largest| largest.replace(outer.max(largest.get())));
    (result, inner)
}
