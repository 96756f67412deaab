//! `zerofeed._zerofeed`: PyO3 bindings of zerofeed-core.
//!
//! Only argument parsing, error mapping and GIL release live here; every decision is made
//! in the core. Modules mirror the core's: `view`, `dlpack`, `import`, `source`, `ops`, `pipeline`, `windows`, `images`, `cuda`;
//! `numpy` (batches as NumPy arrays through its C API) is binding-only.

use pyo3::prelude::*;

mod args;
mod cuda;
mod dlpack;
mod errors;
mod images;
mod import;
mod numpy;
mod ops;
mod pipeline;
mod source;
mod view;
mod windows;

#[pymodule]
fn _zerofeed(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<view::PyView>()?;
    m.add_class::<pipeline::PyPipeline>()?;
    m.add_class::<ops::PyOp>()?;
    m.add_class::<ops::PyRandomCrop>()?;
    m.add_class::<ops::PyCenterCrop>()?;
    m.add_class::<ops::PyRandomFlip>()?;
    m.add_class::<ops::PyNormalize>()?;
    m.add_class::<ops::PyCast>()?;
    m.add_class::<ops::PyToCHW>()?;
    m.add_class::<ops::PyResize>()?;
    m.add_class::<ops::PyRandomResizedCrop>()?;
    m.add_class::<ops::PyColorJitter>()?;
    m.add_class::<ops::PyPad>()?;
    m.add_class::<pipeline::PyEpoch>()?;
    m.add_class::<windows::PyWindows>()?;
    m.add_class::<images::PyImages>()?;
    m.add_class::<images::PyTarShards>()?;
    m.add_function(wrap_pyfunction!(images::_open_tar, m)?)?;
    m.add_function(wrap_pyfunction!(images::_decode, m)?)?;
    m.add_function(wrap_pyfunction!(images::_probe, m)?)?;
    m.add_function(wrap_pyfunction!(errors::_register_errors, m)?)?;
    m.add_function(wrap_pyfunction!(errors::_panic_for_tests, m)?)?;
    m.add_function(wrap_pyfunction!(import::_view_from_buffer, m)?)?;
    m.add_function(wrap_pyfunction!(import::_view_from_capsule, m)?)?;
    m.add_function(wrap_pyfunction!(import::_view_from_address, m)?)?;
    m.add_function(wrap_pyfunction!(import::_empty, m)?)?;
    m.add_function(wrap_pyfunction!(view::_copy_stats, m)?)?;
    m.add_function(wrap_pyfunction!(numpy::_numpy_arrays_available, m)?)?;
    m.add_function(wrap_pyfunction!(source::_open_npy, m)?)?;
    m.add_function(wrap_pyfunction!(source::_view_of_file, m)?)?;
    m.add_class::<cuda::PyDeviceStage>()?;
    for f in [
        wrap_pyfunction!(cuda::_cuda_available, m)?,
        wrap_pyfunction!(cuda::_cuda_unavailable_reason, m)?,
        wrap_pyfunction!(cuda::_cuda_device_count, m)?,
        wrap_pyfunction!(cuda::_cuda_device_name, m)?,
        wrap_pyfunction!(cuda::_cuda_driver_version, m)?,
        wrap_pyfunction!(cuda::_cuda_check_device, m)?,
        wrap_pyfunction!(cuda::_cuda_wait, m)?,
        wrap_pyfunction!(cuda::_pinned_empty, m)?,
        wrap_pyfunction!(cuda::_to_device, m)?,
    ] {
        m.add_function(f)?;
    }
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // The core's lists, so that the Python front never writes them again.
    m.add("_TARGETS", zerofeed_core::exchange::Target::NAMES.to_vec())?;
    m.add(
        "_HOST_DEVICE_TYPES",
        zerofeed_core::dlpack::HOST_ACCESSIBLE.to_vec(),
    )?;
    Ok(())
}
