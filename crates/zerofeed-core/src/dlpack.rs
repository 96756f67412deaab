//! DLPack ABI. (Being written.)
