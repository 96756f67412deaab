//! Fused per-sample kernels. (Being written.)
