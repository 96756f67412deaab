//! Host memory. (Being written.)
