//! `EpochOrder` allocates nothing: neither building it nor looking up positions, for any
//! dataset size. A counting allocator (this test binary's own) proves it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use zerofeed_core::sampler::{Sampler, Shard};

struct Counting;

thread_local! {
    // Only this thread's allocations while `COUNTING` is set are counted, so the test
    // harness's own threads cannot disturb the count. Const-initialised: reading it
    // never allocates.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
// thread-local `Cell` with no destructor, so counting cannot recurse into allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: forwarded with the caller's layout, which satisfies `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout (see `alloc`).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn building_and_reading_an_order_allocates_nothing() {
    COUNTING.with(|c| c.set(true));
    let mut checksum = 0usize;
    for len in [0usize, 1, 17, 1_000_000_000_000, usize::MAX] {
        let shard = Shard::new(1, 3).unwrap();
        let sampler = Sampler::new(len, true, 9, false, Some(shard)).unwrap();
        let order = sampler.epoch_order(7);
        let copy = order;
        for position in (0..order.len()).step_by(order.len() / 1000 + 1).take(1000) {
            checksum = checksum.wrapping_add(copy.get(position));
        }
        checksum = checksum.wrapping_add(order.range(0..100).fold(0, usize::wrapping_add));
    }
    COUNTING.with(|c| c.set(false));
    assert_eq!(ALLOCATIONS.with(Cell::get), 0, "checksum {checksum}");
    // The counter does count: one boxed value is one allocation.
    COUNTING.with(|c| c.set(true));
    let boxed = std::hint::black_box(Box::new(checksum));
    COUNTING.with(|c| c.set(false));
    drop(boxed);
    assert_eq!(ALLOCATIONS.with(Cell::get), 1);
}
