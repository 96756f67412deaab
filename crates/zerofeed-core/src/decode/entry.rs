//! Entry points into a baseline JPEG scan: where each MCU row's entropy-coded data starts,
//! with the Huffman decoder's state there, so that a later decode of the same file starts
//! at the first row it needs instead of decoding every row above it.
//!
//! Why: entropy-coded data can only be read in order, so a crop's region decode still
//! Huffman-decodes each MCU row above the crop (a sixth of the image, on average, for
//! RandomResizedCrop). Training reads every file once an epoch with a new crop each time;
//! from the second epoch on, the rows above the crop are skipped outright. The pixels are
//! the same (tests compare against a decode without entry points).
//!
//! An entry is 32 bytes a row: about 800 bytes for an ImageNet-sized photo (25 rows of 16
//! pixels). [`EntryPointCache`] keeps them by sample index under a byte budget.

use std::collections::HashMap;
use std::sync::Mutex;

/// The decoder's state at the start of one MCU row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RowStart {
    /// The bit buffer, left-aligned, and how many of its bits are valid.
    pub(super) buf: u64,
    pub(super) count: u32,
    /// The scan data's next byte not yet in the buffer.
    pub(super) pos: u32,
    /// The DC predictor of each component of the scan.
    pub(super) predictors: [i32; 4],
}

/// The entry points of one image's scan, filled in as it is decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryPoints {
    /// What the rows belong to: the file's length, MCU layout and first scan bytes hashed.
    /// A different value (another file at the same index) discards the rows.
    pub(super) fingerprint: u64,
    pub(super) rows: Vec<RowStart>,
}

impl EntryPoints {
    /// No entry points yet.
    pub fn new() -> EntryPoints {
        EntryPoints::default()
    }

    /// MCU rows with a known start.
    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    /// Memory held, in bytes (approximate: the rows and the bookkeeping).
    pub fn nbytes(&self) -> usize {
        self.rows.capacity() * std::mem::size_of::<RowStart>() + 64
    }
}

/// FNV-1a over `parts` then `bytes`: a fingerprint, not a security measure.
pub(super) fn fingerprint(parts: &[u64], bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    for p in parts {
        p.to_le_bytes().into_iter().for_each(&mut eat);
    }
    bytes.iter().copied().for_each(eat);
    h
}

/// The default budget of an [`EntryPointCache`]: 64 MiB, the entry points of about 80,000
/// ImageNet-sized photos (a process that reads its shard of a larger dataset indexes the
/// first ones it meets, and decodes the others from their first row).
pub const DEFAULT_ENTRY_POINT_BUDGET: usize = 64 << 20;

/// Entry points by sample index, shared by a loader's workers, within a byte budget.
///
/// A worker [`take`](Self::take)s an image's entry points before decoding it and
/// [`put`](Self::put)s them back after, so the lock is never held during a decode.
///
/// ```
/// use zerofeed_core::decode::{EntryPointCache, EntryPoints};
/// let cache = EntryPointCache::new(1 << 20);
/// let points = cache.take(7); // none yet: decode from the first row, recording
/// cache.put(7, points);
/// assert_eq!(cache.take(7), EntryPoints::new());
/// ```
#[derive(Debug)]
pub struct EntryPointCache {
    budget: usize,
    state: Mutex<(HashMap<u64, EntryPoints>, usize)>,
}

impl EntryPointCache {
    /// An empty cache that holds at most `budget` bytes of entry points.
    pub fn new(budget: usize) -> EntryPointCache {
        EntryPointCache {
            budget,
            state: Mutex::new((HashMap::new(), 0)),
        }
    }

    /// Sample `index`'s entry points (empty if none are kept), removed from the cache.
    pub fn take(&self, index: u64) -> EntryPoints {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (map, used) = &mut *guard;
        match map.remove(&index) {
            Some(points) => {
                *used -= points.nbytes();
                points
            }
            None => EntryPoints::new(),
        }
    }

    /// Keeps sample `index`'s entry points, unless that would pass the budget.
    pub fn put(&self, index: u64, points: EntryPoints) {
        if points.rows.is_empty() {
            return;
        }
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (map, used) = &mut *guard;
        let size = points.nbytes();
        let replaced = map.get(&index).map_or(0, EntryPoints::nbytes);
        if *used - replaced + size <= self.budget {
            *used += size;
            if let Some(old) = map.insert(index, points) {
                *used -= old.nbytes();
            }
        }
    }

    /// Bytes held now.
    pub fn nbytes(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(rows: usize) -> EntryPoints {
        let start = RowStart {
            buf: 0,
            count: 0,
            pos: 0,
            predictors: [0; 4],
        };
        EntryPoints {
            fingerprint: 1,
            rows: vec![start; rows],
        }
    }

    #[test]
    fn the_budget_holds_and_taking_gives_memory_back() {
        let one = points(10).nbytes();
        let cache = EntryPointCache::new(2 * one);
        cache.put(1, points(10));
        cache.put(2, points(10));
        cache.put(3, points(10)); // past the budget: not kept
        assert_eq!(cache.nbytes(), 2 * one);
        assert_eq!(cache.take(3).rows(), 0);
        assert_eq!(cache.take(1).rows(), 10);
        assert_eq!(cache.nbytes(), one);
        cache.put(3, points(10));
        assert_eq!(cache.take(3).rows(), 10);
        cache.put(2, points(0)); // nothing learnt: the kept rows stay
        assert_eq!(cache.take(2).rows(), 10);
        assert_eq!(cache.nbytes(), 0);
    }

    #[test]
    fn fingerprints_tell_files_apart() {
        assert_ne!(fingerprint(&[1, 2], b"abc"), fingerprint(&[1, 2], b"abd"));
        assert_ne!(fingerprint(&[1, 2], b"abc"), fingerprint(&[1, 3], b"abc"));
    }
}
