//! What each consumer accepts, and whether handing it a view needs a copy.
//!
//! The rules are facts measured on the frameworks themselves (NumPy 2.4, PyTorch 2.15,
//! TensorFlow 2.21, JAX 0.10); the tests in `tests/test_frameworks.py` pin them down, so
//! a framework that changes its mind makes a test fail instead of a user's process crash.

use std::fmt;
use std::str::FromStr;

use crate::dlpack::DLDevice;
use crate::dtype::DType;
use crate::host::FRAMEWORK_ALIGNMENT;
use crate::layout::{alignment_of, Layout};

/// A consumer of views.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// NumPy, through the buffer protocol: host memory only, any strides and alignment.
    Numpy,
    /// PyTorch, through versioned DLPack; negative strides force a copy.
    Torch,
    /// TensorFlow, through legacy DLPack; needs C-contiguous data, 64-byte aligned on the host.
    TensorFlow,
    /// JAX; `x64` is the state of `jax_enable_x64` (off by default), which decides
    /// whether 64-bit types survive the trip.
    Jax {
        /// True when `jax_enable_x64` is on, so 64-bit types are kept as they are.
        x64: bool,
    },
    /// CuPy, through versioned DLPack: device memory (host views are copied there).
    Cupy,
}

impl Target {
    /// The names [`Target::from_str`] accepts first (aliases like `tf` aside), in variant order.
    pub const NAMES: [&'static str; 5] = ["numpy", "torch", "tensorflow", "jax", "cupy"];

    /// The canonical lower-case name, as used in messages and [`Target::NAMES`].
    pub fn name(self) -> &'static str {
        match self {
            Target::Numpy => "numpy",
            Target::Torch => "torch",
            Target::TensorFlow => "tensorflow",
            Target::Jax { .. } => "jax",
            Target::Cupy => "cupy",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown target name.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("unknown target {0:?}: use one of numpy, torch, tensorflow, jax, cupy")]
pub struct UnknownTarget(pub String);

impl FromStr for Target {
    type Err = UnknownTarget;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "numpy" | "np" => Ok(Target::Numpy),
            "torch" | "pytorch" => Ok(Target::Torch),
            "tensorflow" | "tf" => Ok(Target::TensorFlow),
            "jax" => Ok(Target::Jax { x64: false }),
            "cupy" | "cp" => Ok(Target::Cupy),
            _ => Err(UnknownTarget(s.to_owned())),
        }
    }
}

/// How a view would travel to a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// The buffer protocol (NumPy on the host): any strides, any alignment.
    Buffer,
    /// A DLPack capsule; `legacy` when the consumer only takes `"dltensor"` capsules.
    Dlpack {
        /// True for a legacy (pre-1.0) `"dltensor"` capsule, false for `"dltensor_versioned"`.
        legacy: bool,
    },
}

/// The verdict for one view and one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportPlan {
    /// The consumer the plan is for.
    pub target: Target,
    /// How the view (or its copy) is handed over.
    pub route: Route,
    /// True when the consumer will read the view's own bytes.
    pub zero_copy: bool,
    /// Why a copy is needed (empty when none is), each with how to avoid it.
    pub reasons: Vec<String>,
    /// Bytes that the copy writes (0 when zero-copy).
    pub copy_bytes: usize,
    /// Warnings that do not force a copy (e.g. a consumer that ignores read-only flags).
    pub notes: Vec<String>,
    /// True when the only reason to copy is that the memory is read-only (so an explicit
    /// `copy=False` may share it, with a warning).
    pub only_read_only: bool,
}

/// What the planner needs to know about a view.
#[derive(Clone, Debug)]
pub struct ViewFacts<'a> {
    /// Address of the view's first element (for the alignment rules).
    pub address: usize,
    /// Shape and byte strides of the view.
    pub layout: &'a Layout,
    /// Element type of the view.
    pub dtype: DType,
    /// Where the bytes are (host, pinned host, or a GPU).
    pub device: DLDevice,
    /// True when the bytes must not be written (e.g. a read-only memory map).
    pub readonly: bool,
    /// True when writes are harmless even so: private copy-on-write pages of a file map
    /// (`zerofeed.open_npy`), where a write neither crashes nor reaches the file.
    pub private_writes: bool,
}

impl ViewFacts<'_> {
    /// Read-only host memory whose writes would crash or change shared data: a consumer
    /// that cannot honour read-only (PyTorch), or that may hand it on to one (TensorFlow's
    /// in-place raw ops, JAX arrays re-exported by DLPack), must get a copy.
    pub fn shared_read_only(&self) -> bool {
        self.readonly && !self.private_writes && self.device.is_host_accessible()
    }
}

/// Why read-only memory is copied for consumers that cannot honour read-only.
const READ_ONLY_REASON: &str = "the data is read-only memory that a write would crash or change (a read-only NumPy array, bytes, a shared read-only map), and {target} tensors can be written ({how}): it gets a copy; zerofeed.open_npy maps files copy-on-write and needs none; copy=False shares it anyway, and then writes are undefined";

fn read_only_reason(target: Target, how: &str) -> String {
    READ_ONLY_REASON
        .replace("{target}", target.name())
        .replace("{how}", how)
}

/// Decides whether `target` can take the view as it is, and why not.
pub fn plan(facts: &ViewFacts<'_>, target: Target) -> ExportPlan {
    let mut reasons = Vec::new();
    let mut notes = Vec::new();
    let layout = facts.layout;
    let on_host = facts.device.is_host_accessible();
    let contiguous = layout.is_c_contiguous();
    let aligned = layout.size() == 0 || alignment_of(facts.address) >= FRAMEWORK_ALIGNMENT;
    let align_reason = || {
        format!(
            "data starts at an address aligned to {} bytes, and {} needs {FRAMEWORK_ALIGNMENT}; allocate with zerofeed.empty()/zerofeed.aligned() or load with zerofeed.open_npy() to avoid the copy",
            alignment_of(facts.address),
            target.name()
        )
    };
    let contiguity_reason = || {
        format!(
            "the view is not C-contiguous (strides {:?} for shape {:?}), and {} only imports packed row-major buffers; slice the batch axis only, or keep the crop as a NumPy/PyTorch view",
            layout.strides(),
            layout.shape(),
            target.name()
        )
    };
    if !layout.strides_are_element_multiples() && target != Target::Numpy {
        reasons.push(format!(
            "a stride is not a whole number of {}-byte items (DLPack counts strides in items)",
            facts.dtype.itemsize()
        ));
    }
    let route = match target {
        Target::Numpy => {
            if !on_host {
                reasons.push(format!(
                    "the data is on {}; NumPy arrays live in host memory, so it must be copied to the host (copy=True, or use a GPU framework)",
                    facts.device.name()
                ));
            }
            Route::Buffer
        }
        Target::Torch => {
            if layout.has_negative_strides() {
                reasons.push(
                    "a stride is negative (a reversed axis), which PyTorch tensors cannot express; flip in PyTorch instead (torch.flip) or slice with a positive step"
                        .to_owned(),
                );
            }
            if facts.shared_read_only() {
                reasons.push(read_only_reason(
                    target,
                    "PyTorch tensors are always writable",
                ));
            } else if facts.readonly && on_host {
                notes.push(
                    "the data is read-only and PyTorch tensors cannot be: writes to the tensor land in this process's private copy-on-write pages of the file (the file never changes, other views of it in this process see them)"
                        .to_owned(),
                );
            }
            Route::Dlpack { legacy: false }
        }
        Target::TensorFlow => {
            if !contiguous {
                reasons.push(contiguity_reason());
            }
            if on_host && !aligned {
                reasons.push(align_reason());
            }
            if facts.shared_read_only() {
                reasons.push(read_only_reason(
                    target,
                    "tf.raw_ops in-place updates, or torch.from_dlpack of the tensor",
                ));
            }
            Route::Dlpack { legacy: true }
        }
        Target::Jax { x64 } => {
            if !contiguous {
                reasons.push(contiguity_reason());
            }
            if on_host && !aligned {
                reasons.push(align_reason());
            }
            let wide = matches!(
                facts.dtype,
                DType::I64 | DType::U64 | DType::F64 | DType::C128
            );
            if wide && !x64 {
                reasons.push(format!(
                    "{} is 64-bit and jax_enable_x64 is off, so JAX converts it to 32 bits; enable x64 (jax.config.update('jax_enable_x64', True)) or cast first",
                    facts.dtype
                ));
            }
            if facts.shared_read_only() {
                reasons.push(read_only_reason(target, "torch.from_dlpack of the array"));
            }
            Route::Dlpack { legacy: true }
        }
        Target::Cupy => {
            if on_host {
                reasons.push(
                    "the data is in host memory and CuPy arrays live on the GPU: it is copied to the device; use Loader(device=\"cuda\") to have batches arrive there"
                        .to_owned(),
                );
            }
            Route::Dlpack { legacy: false }
        }
    };
    let zero_copy = reasons.is_empty();
    let only_read_only = facts.shared_read_only() && reasons.len() == 1 && target != Target::Cupy;
    ExportPlan {
        only_read_only,
        target,
        route,
        zero_copy,
        copy_bytes: if zero_copy { 0 } else { layout.nbytes() },
        reasons,
        notes,
    }
}

/// What `__dlpack__` hands out: the view's own bytes, or a packed aligned copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DlpackExport {
    /// The view itself.
    Share,
    /// A packed, 64-byte-aligned copy (flagged IS_COPIED in versioned capsules).
    Copy,
    /// The view itself, although it is read-only memory that a consumer ignoring the flag
    /// could crash on (`copy=False` asked for it): the caller warns.
    ShareReadOnly,
}

/// Why `__dlpack__` refuses; [`ExportError::argument`] names the argument at fault.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ExportError {
    /// `dl_device` asks for a device the data is not on.
    #[error("the view is on {from} and cannot be exported to {to}")]
    WrongDevice {
        /// Where the data is.
        from: String,
        /// What was asked for.
        to: String,
    },
    /// `copy=False` but the export needs a copy.
    #[error("copy=False but {reason}")]
    CopyForbidden {
        /// Why a copy is needed.
        reason: String,
    },
}

impl ExportError {
    /// The `__dlpack__` argument the error is about.
    pub fn argument(&self) -> &'static str {
        match self {
            ExportError::WrongDevice { .. } => "dl_device",
            ExportError::CopyForbidden { .. } => "copy",
        }
    }
}

/// The `__dlpack__(max_version, dl_device, copy)` decision of the array API standard.
///
/// - Strides that are not whole items cannot be expressed in DLPack: copy.
/// - A consumer asking for a legacy capsule may be TensorFlow, which aborts the process on
///   host data that is not C-contiguous and 64-byte aligned (`Check failed: IsAligned()`);
///   the standard lets a producer copy when it must (`copy=None`), so such data is copied.
/// - Read-only memory whose writes would crash or change shared data is copied: a legacy
///   capsule cannot say "read-only", and PyTorch ignores the versioned flag. `copy=False`
///   shares it anyway ([`DlpackExport::ShareReadOnly`]: the caller warns). Private
///   copy-on-write maps (`open_npy`) are shared: their writes are harmless.
pub fn dlpack_decision(
    facts: &ViewFacts<'_>,
    versioned: bool,
    copy: Option<bool>,
    dl_device: Option<DLDevice>,
) -> Result<DlpackExport, ExportError> {
    if let Some(wanted) = dl_device {
        let both_host = wanted.is_host_accessible() && facts.device.is_host_accessible();
        if wanted != facts.device && !both_host {
            return Err(ExportError::WrongDevice {
                from: facts.device.name(),
                to: wanted.name(),
            });
        }
    }
    let layout = facts.layout;
    let must_copy = if !layout.strides_are_element_multiples() {
        Some("the strides are not whole items, which DLPack cannot express")
    } else if !versioned && facts.device.is_host_accessible() && !legacy_safe(facts) {
        Some("a legacy capsule of host data must be C-contiguous and 64-byte aligned (TensorFlow aborts the process otherwise)")
    } else {
        None
    };
    match (copy, must_copy) {
        (Some(false), Some(reason)) => Err(ExportError::CopyForbidden {
            reason: reason.to_owned(),
        }),
        (Some(true), _) | (None, Some(_)) => Ok(DlpackExport::Copy),
        (None, None) if facts.shared_read_only() => Ok(DlpackExport::Copy),
        (Some(false), None) if facts.shared_read_only() => Ok(DlpackExport::ShareReadOnly),
        _ => Ok(DlpackExport::Share),
    }
}

/// What a buffer-protocol consumer asks for (the `PyBUF_*` request flags, decoded).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BufferRequest {
    /// `PyBUF_WRITABLE`: the consumer wants to write.
    pub writable: bool,
    /// `PyBUF_STRIDES`: the consumer understands strides.
    pub strides: bool,
    /// `PyBUF_C_CONTIGUOUS`.
    pub c_contiguous: bool,
    /// `PyBUF_F_CONTIGUOUS`.
    pub f_contiguous: bool,
    /// `PyBUF_ANY_CONTIGUOUS`.
    pub any_contiguous: bool,
}

/// Why a buffer request is refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BufferRefusal {
    /// A writable buffer of read-only memory.
    #[error("the view is read-only; request a read-only buffer (np.asarray works) or copy it")]
    ReadOnly,
    /// A contiguous buffer of a strided view (or a strided one for a consumer without strides).
    #[error("the consumer asked for a contiguous buffer but the view is strided; use np.asarray(view) (strided) or view.copy()")]
    NotContiguous,
    /// Device memory.
    #[error("the buffer protocol needs host memory but the view is on {0}; move it with a GPU framework first")]
    NotOnHost(String),
}

/// Whether the buffer protocol can hand the view to a consumer that asked for `request`
/// (the rules of PEP 3118: a consumer without `PyBUF_STRIDES` can only take C order).
pub fn buffer_request(facts: &ViewFacts<'_>, request: BufferRequest) -> Result<(), BufferRefusal> {
    if !facts.device.is_host_accessible() {
        return Err(BufferRefusal::NotOnHost(facts.device.name()));
    }
    if request.writable && facts.readonly {
        return Err(BufferRefusal::ReadOnly);
    }
    let layout = facts.layout;
    let contiguous_ok = if request.c_contiguous {
        layout.is_c_contiguous()
    } else if request.f_contiguous {
        layout.is_f_contiguous()
    } else if request.any_contiguous || !request.strides {
        layout.is_c_contiguous() || (request.any_contiguous && layout.is_f_contiguous())
    } else {
        true
    };
    if contiguous_ok {
        Ok(())
    } else {
        Err(BufferRefusal::NotContiguous)
    }
}

/// What `zerofeed.to_<target>(view, copy=...)` does with a [`plan`]: share when the target
/// takes the view as it is (or `copy=False` insists on sharing read-only memory, with a
/// warning), copy once when it cannot (or `copy=True`), and refuse `copy=False` otherwise.
pub fn conversion(plan: &ExportPlan, copy: Option<bool>) -> Result<DlpackExport, ExportError> {
    match copy {
        Some(true) => Ok(DlpackExport::Copy),
        _ if plan.zero_copy => Ok(DlpackExport::Share),
        None => Ok(DlpackExport::Copy),
        Some(false) if plan.only_read_only => Ok(DlpackExport::ShareReadOnly),
        Some(false) => Err(ExportError::CopyForbidden {
            reason: format!(
                "{} cannot take this view as it is: {}",
                plan.target,
                plan.reasons.join("; ")
            ),
        }),
    }
}

/// True when every legacy consumer (TensorFlow's strictness is the bound) can take the view.
fn legacy_safe(facts: &ViewFacts<'_>) -> bool {
    facts.layout.size() == 0
        || (facts.layout.is_c_contiguous() && alignment_of(facts.address) >= FRAMEWORK_ALIGNMENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::IndexItem;

    fn facts(layout: &Layout, address: usize) -> ViewFacts<'_> {
        ViewFacts {
            address,
            layout,
            dtype: DType::U8,
            device: DLDevice::CPU,
            readonly: false,
            private_writes: false,
        }
    }

    #[test]
    fn aligned_contiguous_goes_everywhere_on_the_host() {
        let l = Layout::c_contiguous(&[4, 8, 8, 3], 1).unwrap();
        for t in [
            Target::Numpy,
            Target::Torch,
            Target::TensorFlow,
            Target::Jax { x64: false },
        ] {
            let p = plan(&facts(&l, 0x10000), t);
            assert!(p.zero_copy, "{t}: {:?}", p.reasons);
            assert_eq!(p.copy_bytes, 0);
        }
        assert!(!plan(&facts(&l, 0x10000), Target::Cupy).zero_copy);
    }

    #[test]
    fn misaligned_costs_a_copy_for_tensorflow_only() {
        let l = Layout::c_contiguous(&[1024], 1).unwrap();
        let p = plan(&facts(&l, 0x10010), Target::TensorFlow);
        assert!(!p.zero_copy);
        assert_eq!(p.copy_bytes, 1024);
        assert!(
            p.reasons[0].contains("aligned to 16 bytes"),
            "{:?}",
            p.reasons
        );
        assert!(plan(&facts(&l, 0x10010), Target::Torch).zero_copy);
        assert!(plan(&facts(&l, 0x10010), Target::Numpy).zero_copy);
    }

    #[test]
    fn crops_are_zero_copy_for_numpy_and_torch_but_not_tensorflow() {
        let full = Layout::c_contiguous(&[4, 16, 16, 3], 1).unwrap();
        let s = |a, b| IndexItem::Slice {
            start: Some(a),
            stop: Some(b),
            step: None,
        };
        let crop = full
            .index(&[IndexItem::Ellipsis, s(4, 12), s(4, 12), s(0, 3)])
            .unwrap()
            .layout;
        assert!(plan(&facts(&crop, 0x10000), Target::Numpy).zero_copy);
        assert!(plan(&facts(&crop, 0x10000), Target::Torch).zero_copy);
        let tf = plan(&facts(&crop, 0x10000), Target::TensorFlow);
        assert!(!tf.zero_copy && tf.reasons[0].contains("C-contiguous"));
        assert_eq!(tf.copy_bytes, 4 * 8 * 8 * 3);
    }

    #[test]
    fn reversed_axes_cost_torch_a_copy() {
        let l = Layout::new(vec![5], vec![-4], 4).unwrap();
        let p = plan(
            &ViewFacts {
                dtype: DType::F32,
                ..facts(&l, 0x1000)
            },
            Target::Torch,
        );
        assert!(!p.zero_copy && p.reasons[0].contains("negative"));
    }

    #[test]
    fn jax_without_x64_converts_wide_types() {
        let l = Layout::c_contiguous(&[8], 8).unwrap();
        let f = ViewFacts {
            dtype: DType::F64,
            ..facts(&l, 0x1000)
        };
        assert!(!plan(&f, Target::Jax { x64: false }).zero_copy);
        assert!(plan(&f, Target::Jax { x64: true }).zero_copy);
    }

    #[test]
    fn gpu_data_cannot_become_numpy_without_a_copy() {
        let l = Layout::c_contiguous(&[8], 4).unwrap();
        let f = ViewFacts {
            device: DLDevice {
                device_type: crate::dlpack::device_type::CUDA,
                device_id: 0,
            },
            ..facts(&l, 0x1000)
        };
        let p = plan(&f, Target::Numpy);
        assert!(!p.zero_copy && p.reasons[0].contains("cuda:0"));
        assert!(plan(&f, Target::Cupy).zero_copy);
    }

    #[test]
    fn legacy_capsules_of_misaligned_or_strided_host_data_are_copies() {
        let l = Layout::c_contiguous(&[64], 1).unwrap();
        let aligned = facts(&l, 0x10000);
        assert_eq!(
            dlpack_decision(&aligned, false, None, None),
            Ok(DlpackExport::Share)
        );
        let misaligned = facts(&l, 0x10010);
        assert_eq!(
            dlpack_decision(&misaligned, false, None, None),
            Ok(DlpackExport::Copy)
        );
        assert_eq!(
            dlpack_decision(&misaligned, true, None, None),
            Ok(DlpackExport::Share)
        );
        let err = dlpack_decision(&misaligned, false, Some(false), None).unwrap_err();
        assert_eq!(err.argument(), "copy");
        let strided = Layout::new(vec![8], vec![2], 1).unwrap();
        assert_eq!(
            dlpack_decision(&facts(&strided, 0x10000), false, None, None),
            Ok(DlpackExport::Copy)
        );
    }

    #[test]
    fn shared_read_only_memory_leaves_as_a_copy_and_private_maps_as_they_are() {
        let l = Layout::c_contiguous(&[64], 1).unwrap();
        let ro = ViewFacts {
            readonly: true,
            ..facts(&l, 0x10000)
        };
        for versioned in [false, true] {
            assert_eq!(
                dlpack_decision(&ro, versioned, None, None),
                Ok(DlpackExport::Copy)
            );
            assert_eq!(
                dlpack_decision(&ro, versioned, Some(false), None),
                Ok(DlpackExport::ShareReadOnly)
            );
        }
        let cow = ViewFacts {
            private_writes: true,
            ..ro.clone()
        };
        assert_eq!(
            dlpack_decision(&cow, false, None, None),
            Ok(DlpackExport::Share)
        );
        assert_eq!(
            dlpack_decision(&cow, true, None, None),
            Ok(DlpackExport::Share)
        );
        for target in [Target::Torch, Target::TensorFlow, Target::Jax { x64: true }] {
            assert!(!plan(&ro, target).zero_copy, "{target}");
            assert!(plan(&cow, target).zero_copy, "{target}");
        }
        assert!(
            plan(&ro, Target::Numpy).zero_copy,
            "the buffer protocol keeps read-only"
        );
        let torch = plan(&ro, Target::Torch);
        assert_eq!(conversion(&torch, None), Ok(DlpackExport::Copy));
        assert_eq!(
            conversion(&torch, Some(false)),
            Ok(DlpackExport::ShareReadOnly)
        );
        let reversed = Layout::new(vec![8], vec![-1], 1).unwrap();
        let both = plan(
            &ViewFacts {
                layout: &reversed,
                ..ro.clone()
            },
            Target::Torch,
        );
        assert_eq!(
            conversion(&both, Some(false)).unwrap_err().argument(),
            "copy"
        );
        let gpu = DLDevice {
            device_type: crate::dlpack::device_type::CUDA,
            device_id: 1,
        };
        let err = dlpack_decision(&ro, true, None, Some(gpu)).unwrap_err();
        assert_eq!(err.argument(), "dl_device");
    }

    #[test]
    fn target_names_parse() {
        assert_eq!("TF".parse::<Target>().unwrap(), Target::TensorFlow);
        assert!("mxnet"
            .parse::<Target>()
            .unwrap_err()
            .to_string()
            .contains("tensorflow"));
    }
}
