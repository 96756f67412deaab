//! Sample order, shards and counter-based randomness. (Being written.)
