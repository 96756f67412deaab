//! The per-sample ops as Python classes over the core's `OpSpec` (`zerofeed.RandomCrop`, ...).
//!
//! Each class converts its arguments, builds the `OpSpec`, and lets the core validate it
//! (`OpSpec::validate`), so a bad op fails where it is written with the argument named.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyString, PyTuple};

use zerofeed_core::ops::OpSpec;
use zerofeed_core::DType;

use crate::errors::{raise, Kind};
use crate::view::parse_dtype;

/// Base class of the per-sample operations that `zerofeed.Loader` fuses into one pass.
#[pyclass(subclass, frozen, module = "zerofeed", name = "Op")]
pub struct PyOp {
    spec: OpSpec,
}

impl PyOp {
    /// The core op.
    pub fn spec(&self) -> &OpSpec {
        &self.spec
    }

    fn checked(spec: OpSpec) -> PyResult<PyOp> {
        spec.validate()
            .map_err(|e| raise(Kind::Pipeline, e.argument, e.to_string()))?;
        Ok(PyOp { spec })
    }
}

#[pymethods]
impl PyOp {
    fn __repr__(&self) -> String {
        match &self.spec {
            OpSpec::RandomFlip { p } => format!("RandomFlip(p={p})"),
            OpSpec::Normalize {
                mean,
                std,
                scale,
                dtype,
            } => format!("Normalize(mean={mean:?}, std={std:?}, scale={scale}, dtype='{dtype}')"),
            OpSpec::Cast { dtype } => format!("Cast('{dtype}')"),
            other => other.to_string(),
        }
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyOp>()
            .is_ok_and(|o| o.get().spec == self.spec)
    }

    fn __hash__(&self) -> u64 {
        // Ops are immutable values; the repr identifies them exactly.
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.__repr__().hash(&mut hasher);
        hasher.finish()
    }

    /// The constructor arguments (pickling and copying rebuild the op from them).
    fn __getnewargs__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        match &self.spec {
            OpSpec::RandomCrop { height, width } | OpSpec::CenterCrop { height, width } => {
                (*height, *width).into_pyobject(py)
            }
            OpSpec::RandomFlip { p } => (*p,).into_pyobject(py),
            OpSpec::Normalize {
                mean,
                std,
                scale,
                dtype,
            } => (mean.clone(), std.clone(), *scale, dtype.name()).into_pyobject(py),
            OpSpec::Cast { dtype } => (dtype.name(),).into_pyobject(py),
            OpSpec::ToCHW => Ok(PyTuple::empty(py)),
        }
    }
}

/// A positive integer argument (Python ints of any size; bools refused).
fn positive(argument: &'static str, value: &Bound<'_, PyAny>) -> PyResult<usize> {
    let fail = || {
        raise(
            Kind::Pipeline,
            argument,
            format!("{argument}={value} must be a positive integer below 2**63"),
        )
    };
    if value.is_instance_of::<PyBool>() {
        return Err(fail());
    }
    match value.extract::<usize>() {
        Ok(n) if n >= 1 && n <= isize::MAX as usize => Ok(n),
        _ => Err(fail()),
    }
}

/// A real number argument.
fn real(argument: &'static str, value: &Bound<'_, PyAny>) -> PyResult<f64> {
    if value.is_instance_of::<PyBool>() || value.is_instance_of::<PyString>() {
        return Err(not_real(argument, value));
    }
    value
        .extract::<f64>()
        .map_err(|_| not_real(argument, value))
}

fn not_real(argument: &'static str, value: &Bound<'_, PyAny>) -> PyErr {
    let shown = value
        .repr()
        .map_or_else(|_| "?".to_owned(), |r| r.to_string());
    raise(
        Kind::Pipeline,
        argument,
        format!("{argument}={shown} must be a real number or a sequence of them"),
    )
}

/// One number (for every channel) or a sequence of numbers (one per channel).
fn per_channel(argument: &'static str, value: &Bound<'_, PyAny>) -> PyResult<Vec<f64>> {
    if value.is_instance_of::<PyFloat>() || value.extract::<i64>().is_ok() {
        return Ok(vec![real(argument, value)?]);
    }
    if value.is_none() || value.is_instance_of::<PyString>() {
        return Err(not_real(argument, value));
    }
    let items = value.try_iter().map_err(|_| not_real(argument, value))?;
    items
        .map(|item| real(argument, &item.map_err(|_| not_real(argument, value))?))
        .collect()
}

/// A dtype given as a name or anything `numpy.dtype` takes (`np.float32`, `ml_dtypes.bfloat16`).
fn dtype_arg(value: &Bound<'_, PyAny>) -> PyResult<DType> {
    let name = match value.cast::<PyString>() {
        Ok(text) => text.to_string(),
        Err(_) => {
            let numpy = value.py().import("numpy")?;
            let resolved = numpy.getattr("dtype")?.call1((value,)).map_err(|_| {
                raise(
                    Kind::DType,
                    "dtype",
                    format!("dtype={value} is not a dtype; use a name like 'float32'"),
                )
            })?;
            resolved.getattr("name")?.extract()?
        }
    };
    parse_dtype("dtype", &name)
}

/// A `height x width` window at a uniformly random position (like torchvision's RandomCrop).
///
/// Example:
///     >>> import zerofeed as zf
///     >>> zf.RandomCrop(256, 224)
///     RandomCrop(256, 224)
#[pyclass(extends = PyOp, frozen, module = "zerofeed", name = "RandomCrop")]
pub struct PyRandomCrop;

#[pymethods]
impl PyRandomCrop {
    #[new]
    fn new(
        height: &Bound<'_, PyAny>,
        width: &Bound<'_, PyAny>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let spec = OpSpec::RandomCrop {
            height: positive("height", height)?,
            width: positive("width", width)?,
        };
        Ok(PyClassInitializer::from(PyOp::checked(spec)?).add_subclass(PyRandomCrop))
    }
}

/// A `height x width` window in the middle of the sample (the top-left corner rounds down).
///
/// Example:
///     >>> import zerofeed as zf
///     >>> zf.CenterCrop(224, 224)
///     CenterCrop(224, 224)
#[pyclass(extends = PyOp, frozen, module = "zerofeed", name = "CenterCrop")]
pub struct PyCenterCrop;

#[pymethods]
impl PyCenterCrop {
    #[new]
    fn new(
        height: &Bound<'_, PyAny>,
        width: &Bound<'_, PyAny>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let spec = OpSpec::CenterCrop {
            height: positive("height", height)?,
            width: positive("width", width)?,
        };
        Ok(PyClassInitializer::from(PyOp::checked(spec)?).add_subclass(PyCenterCrop))
    }
}

/// Mirror left-right (a horizontal flip) with probability `p`.
///
/// Example:
///     >>> import zerofeed as zf
///     >>> zf.RandomFlip(), zf.RandomFlip(p=1.0)
///     (RandomFlip(p=0.5), RandomFlip(p=1))
#[pyclass(extends = PyOp, frozen, module = "zerofeed", name = "RandomFlip")]
pub struct PyRandomFlip;

#[pymethods]
impl PyRandomFlip {
    #[new]
    #[pyo3(signature = (p = None))]
    fn new(p: Option<&Bound<'_, PyAny>>) -> PyResult<PyClassInitializer<Self>> {
        let p = p.map_or(Ok(0.5), |p| real("p", p))?;
        Ok(
            PyClassInitializer::from(PyOp::checked(OpSpec::RandomFlip { p })?)
                .add_subclass(PyRandomFlip),
        )
    }
}

/// `(x * scale - mean[c]) / std[c]` per channel, written as a float `dtype`.
///
/// `mean` and `std` take one value per channel (or one for all). The default
/// `scale=1/255` takes uint8 pixels to [0, 1] first, as torchvision's `ToTensor` does.
/// `dtype` is float32, float16, bfloat16 or float64. NaN, infinite or zero `std`, and values
/// whose coefficients overflow (e.g. `std=1e-320`) raise PipelineError here.
///
/// Example:
///     >>> import zerofeed as zf
///     >>> zf.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]).__class__.__name__
///     'Normalize'
#[pyclass(extends = PyOp, frozen, module = "zerofeed", name = "Normalize")]
pub struct PyNormalize;

#[pymethods]
impl PyNormalize {
    #[new]
    #[pyo3(signature = (mean, std, scale = None, dtype = None))]
    fn new(
        mean: &Bound<'_, PyAny>,
        std: &Bound<'_, PyAny>,
        scale: Option<&Bound<'_, PyAny>>,
        dtype: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let spec = OpSpec::Normalize {
            mean: per_channel("mean", mean)?,
            std: per_channel("std", std)?,
            scale: scale.map_or(Ok(1.0 / 255.0), |s| real("scale", s))?,
            dtype: dtype.map_or(Ok(DType::F32), dtype_arg)?,
        };
        Ok(PyClassInitializer::from(PyOp::checked(spec)?).add_subclass(PyNormalize))
    }
}

/// Convert values to `dtype`. Integer to integer wraps and anything to float rounds to
/// nearest, as NumPy's `astype` does; float to integer truncates toward zero and, unlike
/// `astype` (whose result is undefined there), saturates out-of-range values and maps NaN
/// to 0: `Cast("uint8")` makes 300.7 -> 255 and -3.2 -> 0.
///
/// Example:
///     >>> import zerofeed as zf
///     >>> zf.Cast("float16")
///     Cast('float16')
#[pyclass(extends = PyOp, frozen, module = "zerofeed", name = "Cast")]
pub struct PyCast;

#[pymethods]
impl PyCast {
    #[new]
    fn new(dtype: &Bound<'_, PyAny>) -> PyResult<PyClassInitializer<Self>> {
        let spec = OpSpec::Cast {
            dtype: dtype_arg(dtype)?,
        };
        Ok(PyClassInitializer::from(PyOp::checked(spec)?).add_subclass(PyCast))
    }
}

/// Write the sample channels-first, `(H, W, C) -> (C, H, W)`, as PyTorch models expect.
///
/// Example:
///     >>> import zerofeed as zf
///     >>> zf.ToCHW()
///     ToCHW
#[pyclass(extends = PyOp, frozen, module = "zerofeed", name = "ToCHW")]
pub struct PyToCHW;

#[pymethods]
impl PyToCHW {
    #[new]
    fn new() -> PyClassInitializer<Self> {
        PyClassInitializer::from(PyOp {
            spec: OpSpec::ToCHW,
        })
        .add_subclass(PyToCHW)
    }
}

/// Reads one op chain: a list of `Op`s (a single op is an error that says to wrap it).
pub fn op_chain(label: &str, chain: &Bound<'_, PyAny>) -> PyResult<Vec<OpSpec>> {
    if chain.cast::<PyOp>().is_ok() {
        return Err(raise(
            Kind::Pipeline,
            "ops",
            format!(
                "ops for {label} is a single op; pass a list, e.g. [{}]",
                chain.repr()?
            ),
        ));
    }
    let Ok(items) = chain.try_iter() else {
        return Err(raise(
            Kind::Pipeline,
            "ops",
            format!(
                "ops for {label} must be a list of zerofeed ops, got {}",
                chain.get_type().name()?
            ),
        ));
    };
    items
        .map(|item| {
            let item = item?;
            match item.cast::<PyOp>() {
                Ok(op) => Ok(op.get().spec().clone()),
                Err(_) => Err(raise(
                    Kind::Pipeline,
                    "ops",
                    format!(
                        "ops for {label} contains {}; use zerofeed ops (RandomCrop, CenterCrop, RandomFlip, Normalize, Cast, ToCHW)",
                        item.repr()?
                    ),
                )),
            }
        })
        .collect()
}
