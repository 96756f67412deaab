//! Memory-mapped `.npy` sources. (Being written.)
