//! The per-sample ops as Python classes over the core's `OpSpec` (`zerofeed.RandomCrop`, ...).
//!
//! Each class converts its arguments, builds the `OpSpec`, and lets the core validate it
//! (`OpSpec::validate`), so a bad op fails where it is written with the argument named.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyString, PyTuple};

use zerofeed_core::ops::{jitter_factors, rrc_box, Interpolation, OpSpec, ResizeTo};
use zerofeed_core::sampler::{domain, CounterRng};
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
            } => {
                let scale = scale.map_or_else(|| "None".to_owned(), |s| s.to_string());
                format!("Normalize(mean={mean:?}, std={std:?}, scale={scale}, dtype='{dtype}')")
            }
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
    fn __getnewargs_ex__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyTuple>, Bound<'py, PyDict>)> {
        let kwargs = PyDict::new(py);
        let filter = |interpolation: &Interpolation, antialias: &bool| -> PyResult<()> {
            kwargs.set_item("interpolation", interpolation.name())?;
            kwargs.set_item("antialias", *antialias)
        };
        let args = match &self.spec {
            OpSpec::RandomCrop { height, width } | OpSpec::CenterCrop { height, width } => {
                (*height, *width).into_pyobject(py)?
            }
            OpSpec::RandomFlip { p } => (*p,).into_pyobject(py)?,
            OpSpec::Normalize {
                mean,
                std,
                scale,
                dtype,
            } => (mean.clone(), std.clone(), *scale, dtype.name()).into_pyobject(py)?,
            OpSpec::Cast { dtype } => (dtype.name(),).into_pyobject(py)?,
            OpSpec::ToCHW => PyTuple::empty(py),
            OpSpec::Resize {
                size,
                interpolation,
                antialias,
            } => {
                filter(interpolation, antialias)?;
                match size {
                    ResizeTo::Shorter(s) => (*s,).into_pyobject(py)?,
                    ResizeTo::Exact { height, width } => ((*height, *width),).into_pyobject(py)?,
                }
            }
            OpSpec::RandomResizedCrop {
                height,
                width,
                scale,
                ratio,
                interpolation,
                antialias,
            } => {
                filter(interpolation, antialias)?;
                kwargs.set_item("scale", *scale)?;
                kwargs.set_item("ratio", *ratio)?;
                ((*height, *width),).into_pyobject(py)?
            }
            OpSpec::ColorJitter {
                brightness,
                contrast,
                saturation,
            } => (*brightness, *contrast, *saturation).into_pyobject(py)?,
            OpSpec::Pad {
                top,
                left,
                bottom,
                right,
                fill,
            } => {
                kwargs.set_item("fill", *fill)?;
                ((*left, *top, *right, *bottom),).into_pyobject(py)?
            }
        };
        Ok((args, kwargs))
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

/// A `height x width` window at a uniformly random position (like torchvision's RandomCrop);
/// `width` defaults to `height`.
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
    #[pyo3(signature = (height, width = None))]
    fn new(
        height: &Bound<'_, PyAny>,
        width: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let height = positive("height", height)?;
        let spec = OpSpec::RandomCrop {
            height,
            width: width.map_or(Ok(height), |w| positive("width", w))?,
        };
        Ok(PyClassInitializer::from(PyOp::checked(spec)?).add_subclass(PyRandomCrop))
    }
}

/// A `height x width` window in the middle of the sample (placed as torchvision places it);
/// `width` defaults to `height`. After `Resize(256)`, `CenterCrop(224)` is the validation recipe.
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
    #[pyo3(signature = (height, width = None))]
    fn new(
        height: &Bound<'_, PyAny>,
        width: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let height = positive("height", height)?;
        let spec = OpSpec::CenterCrop {
            height,
            width: width.map_or(Ok(height), |w| positive("width", w))?,
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
/// `mean` and `std` take one value per channel (or one for all). `scale=None` (the default)
/// is 1/255 when Normalize reads uint8 values (pixels to [0, 1] first, as torchvision's
/// `ToTensor` does) and 1 for every other input (float series or images are taken as they
/// are); pass `scale=` to choose.
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
            scale: scale.map(|s| real("scale", s)).transpose()?,
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

/// `(h, w)` from an int (both sides) or a pair.
fn size_pair(argument: &'static str, value: &Bound<'_, PyAny>) -> PyResult<(usize, usize)> {
    if let Ok(n) = positive(argument, value) {
        return Ok((n, n));
    }
    let fail = || {
        raise(
            Kind::Pipeline,
            argument,
            format!("{argument}={value} must be a positive int or a (height, width) pair"),
        )
    };
    let items: Vec<Bound<'_, PyAny>> = value
        .try_iter()
        .map_err(|_| fail())?
        .collect::<PyResult<_>>()
        .map_err(|_| fail())?;
    match items.as_slice() {
        [h] => {
            let h = positive(argument, h)?;
            Ok((h, h))
        }
        [h, w] => Ok((positive(argument, h)?, positive(argument, w)?)),
        _ => Err(fail()),
    }
}

fn range_pair(argument: &'static str, value: &Bound<'_, PyAny>) -> PyResult<(f64, f64)> {
    let v = per_channel(argument, value)?;
    match v.as_slice() {
        [a, b] => Ok((*a, *b)),
        _ => Err(raise(
            Kind::Pipeline,
            argument,
            format!(
                "{argument} must be a (min, max) pair, got {} values",
                v.len()
            ),
        )),
    }
}

fn interpolation_arg(value: Option<&str>) -> PyResult<Interpolation> {
    let name = value.unwrap_or("bilinear");
    Interpolation::parse(name).ok_or_else(|| {
        raise(
            Kind::Pipeline,
            "interpolation",
            format!("interpolation={name:?} is not one of 'nearest', 'bilinear', 'bicubic'"),
        )
    })
}

/// Resize images like torchvision v2's `Resize`: an int makes the shorter side `size` (the
/// longer becomes `int(size * long / short)`), a `(height, width)` pair is exact.
///
/// `interpolation` is "nearest", "bilinear" or "bicubic"; `antialias=True` widens the filter
/// by the downscale factor (PIL's and torchvision's antialiased resize). Separable, with
/// per-row and per-column weight tables, fused with the crop, flip and value ops after it.
/// Images are uint8; put `Normalize` after it.
///
/// Example:
///     >>> import zerofeed as zf
///     >>> zf.Resize(256)
///     Resize(256, interpolation='bilinear', antialias=True)
///     >>> zf.Resize((224, 224), interpolation="bicubic")
///     Resize((224, 224), interpolation='bicubic', antialias=True)
#[pyclass(extends = PyOp, frozen, module = "zerofeed", name = "Resize")]
pub struct PyResize;

#[pymethods]
impl PyResize {
    #[new]
    #[pyo3(signature = (size, *, interpolation = None, antialias = true))]
    fn new(
        size: &Bound<'_, PyAny>,
        interpolation: Option<&str>,
        antialias: bool,
    ) -> PyResult<PyClassInitializer<Self>> {
        let size = match positive("size", size) {
            Ok(s) => ResizeTo::Shorter(s),
            Err(_) => {
                let (height, width) = size_pair("size", size)?;
                ResizeTo::Exact { height, width }
            }
        };
        let spec = OpSpec::Resize {
            size,
            interpolation: interpolation_arg(interpolation)?,
            antialias,
        };
        Ok(PyClassInitializer::from(PyOp::checked(spec)?).add_subclass(PyResize))
    }
}

/// A random box resampled to `size` (an int for a square, or `(height, width)`), with
/// torchvision's rule: up to 10 tries of an area fraction uniform in `scale` and an aspect
/// ratio log-uniform in `ratio`, then the central crop of the nearest allowed ratio. Draws
/// come from the loader's keyed generator (seed, epoch, sample index, op position).
///
/// ``box(height, width, seed=, epoch=, index=, position=0)`` returns the ``(top, left,
/// box_height, box_width)`` a sample of that size gets when this op is ``ops[position]``.
///
/// Example:
///     >>> import zerofeed as zf
///     >>> rrc = zf.RandomResizedCrop(224)
///     >>> top, left, h, w = rrc.box(375, 500, seed=0, epoch=0, index=3)
///     >>> 0 <= top <= 375 - h and 0 <= left <= 500 - w
///     True
#[pyclass(extends = PyOp, frozen, module = "zerofeed", name = "RandomResizedCrop")]
pub struct PyRandomResizedCrop;

#[pymethods]
impl PyRandomResizedCrop {
    #[new]
    #[pyo3(signature = (size, *, scale = None, ratio = None, interpolation = None, antialias = true))]
    fn new(
        size: &Bound<'_, PyAny>,
        scale: Option<&Bound<'_, PyAny>>,
        ratio: Option<&Bound<'_, PyAny>>,
        interpolation: Option<&str>,
        antialias: bool,
    ) -> PyResult<PyClassInitializer<Self>> {
        let (height, width) = size_pair("size", size)?;
        let spec = OpSpec::RandomResizedCrop {
            height,
            width,
            scale: scale.map_or(Ok((0.08, 1.0)), |s| range_pair("scale", s))?,
            ratio: ratio.map_or(Ok((3.0 / 4.0, 4.0 / 3.0)), |r| range_pair("ratio", r))?,
            interpolation: interpolation_arg(interpolation)?,
            antialias,
        };
        Ok(PyClassInitializer::from(PyOp::checked(spec)?).add_subclass(PyRandomResizedCrop))
    }

    /// The box `(top, left, height, width)` a `height x width` image gets for a sample.
    #[pyo3(signature = (height, width, *, seed, epoch, index, position = 0))]
    #[allow(clippy::too_many_arguments)]
    fn r#box(
        slf: PyRef<'_, Self>,
        height: &Bound<'_, PyAny>,
        width: &Bound<'_, PyAny>,
        seed: u64,
        epoch: u64,
        index: u64,
        position: u64,
    ) -> PyResult<(usize, usize, usize, usize)> {
        let (h, w) = (positive("height", height)?, positive("width", width)?);
        let OpSpec::RandomResizedCrop { scale, ratio, .. } = slf.as_super().spec else {
            unreachable!("a RandomResizedCrop holds its spec");
        };
        let rng = CounterRng::new(seed, &[domain::OPS, epoch, index, position]);
        Ok(rrc_box(&rng, h, w, scale, ratio))
    }
}

/// Random brightness, contrast and saturation with torchvision's definitions (contrast
/// blends with the mean of the grayscale image, saturation with each pixel's grayscale).
/// Each factor is uniform in `[max(0, 1 - x), 1 + x]` (0 turns it off); they apply in the
/// fixed order brightness, contrast, saturation (torchvision permutes the order per image).
/// Comes after the geometric ops and before `Normalize`. ``factors(seed=, epoch=, index=,
/// position=0)`` returns the factors a sample gets.
///
/// Example:
///     >>> import zerofeed as zf
///     >>> zf.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4)
///     ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4)
#[pyclass(extends = PyOp, frozen, module = "zerofeed", name = "ColorJitter")]
pub struct PyColorJitter;

#[pymethods]
impl PyColorJitter {
    #[new]
    #[pyo3(signature = (brightness = None, contrast = None, saturation = None))]
    fn new(
        brightness: Option<&Bound<'_, PyAny>>,
        contrast: Option<&Bound<'_, PyAny>>,
        saturation: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let get = |argument, v: Option<&Bound<'_, PyAny>>| v.map_or(Ok(0.0), |v| real(argument, v));
        let spec = OpSpec::ColorJitter {
            brightness: get("brightness", brightness)?,
            contrast: get("contrast", contrast)?,
            saturation: get("saturation", saturation)?,
        };
        Ok(PyClassInitializer::from(PyOp::checked(spec)?).add_subclass(PyColorJitter))
    }

    /// The `(brightness, contrast, saturation)` factors a sample gets when this op is
    /// `ops[position]` (1.0 = unchanged).
    #[pyo3(signature = (*, seed, epoch, index, position = 0))]
    fn factors(
        slf: PyRef<'_, Self>,
        seed: u64,
        epoch: u64,
        index: u64,
        position: u64,
    ) -> (f64, f64, f64) {
        let OpSpec::ColorJitter {
            brightness,
            contrast,
            saturation,
        } = slf.as_super().spec
        else {
            unreachable!("a ColorJitter holds its spec");
        };
        let rng = CounterRng::new(seed, &[domain::OPS, epoch, index, position]);
        let f = jitter_factors(&rng, brightness, contrast, saturation);
        (f.brightness, f.contrast, f.saturation)
    }
}

/// Borders of `fill` (0 to 255) around the image, as torchvision's `Pad`: `padding` is an int
/// (every side), `(left/right, top/bottom)` or `(left, top, right, bottom)`. Comes after any
/// Resize; `[Pad(4), RandomCrop(32)]` is the CIFAR recipe.
///
/// Example:
///     >>> import zerofeed as zf
///     >>> zf.Pad(4)
///     Pad((4, 4, 4, 4), fill=0)
#[pyclass(extends = PyOp, frozen, module = "zerofeed", name = "Pad")]
pub struct PyPad;

#[pymethods]
impl PyPad {
    #[new]
    #[pyo3(signature = (padding, *, fill = None))]
    fn new(
        padding: &Bound<'_, PyAny>,
        fill: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let fail = || {
            raise(
                Kind::Pipeline,
                "padding",
                format!("padding={padding} must be an int >= 0 or a sequence of 2 or 4 of them"),
            )
        };
        let count = |v: &Bound<'_, PyAny>| -> PyResult<usize> {
            if v.is_instance_of::<PyBool>() {
                return Err(fail());
            }
            v.extract::<usize>().map_err(|_| fail())
        };
        let sides: Vec<usize> = match count(padding) {
            Ok(n) => vec![n],
            Err(_) => padding
                .try_iter()
                .map_err(|_| fail())?
                .map(|v| count(&v?))
                .collect::<PyResult<_>>()?,
        };
        let (left, top, right, bottom) = match *sides.as_slice() {
            [n] => (n, n, n, n),
            [lr, tb] => (lr, tb, lr, tb),
            [l, t, r, b] => (l, t, r, b),
            _ => return Err(fail()),
        };
        let spec = OpSpec::Pad {
            top,
            left,
            bottom,
            right,
            fill: fill.map_or(Ok(0.0), |f| real("fill", f))?,
        };
        Ok(PyClassInitializer::from(PyOp::checked(spec)?).add_subclass(PyPad))
    }
}
