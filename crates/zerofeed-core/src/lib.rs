//! zerofeed-core: the engine behind zerofeed, in pure Rust with no Python in it.
//!
//! Data flows down the modules below; nothing calls up. See `DESIGN.md` at the
//! repository root for the map.
//!
//! - [`dtype`]: element types and their DLPack / NumPy encodings
//! - [`layout`]: shape + byte strides + offset; N-d indexing, contiguity, alignment
//! - [`dlpack`]: the DLPack 1.x ABI, export and import
//! - [`exchange`]: what each consumer (NumPy, PyTorch, TensorFlow, JAX, CuPy) accepts
//! - [`gather`]: the one copy, packing a strided view
//! - [`host`]: aligned, huge-page and page-locked host memory, the recycling pool
//! - [`source`]: the `Source` trait, array sources, memory-mapped `.npy` files
//! - [`ops`]: fused per-sample kernels (crop, flip, normalize, cast, layout change)
//! - [`sampler`]: order, shuffling, shards and counter-based randomness
//! - [`pool`]: recycled, budgeted, optionally page-locked batch buffers
//! - [`pipeline`]: worker threads assembling batches in order into pooled buffers
//! - [`cuda`]: the CUDA driver, loaded at run time: contexts, streams, events, pinned memory
//! - [`view`]: the one view type (address + layout + dtype + device + keep-alive)
//! - [`transfer`]: host -> device state machines (event-gated reuse, staging), GPU-free testable

#![warn(missing_docs)]

pub mod cuda;
pub mod decode;
pub mod dlpack;
pub mod dtype;
pub mod exchange;
pub mod gather;
pub mod host;
pub mod layout;
pub mod ops;
pub mod pipeline;
pub mod pool;
pub mod sampler;
pub mod source;
pub mod transfer;
pub mod view;

pub use dtype::DType;
pub use layout::Layout;
pub use view::View;
