//! DLPack import of hostile tensors: every field is validated before use, each failure
//! is a typed error naming the field and value, and the producer's deleter runs exactly
//! once whatever happens. Random structs (proptest) and one test per known attack.

use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use zerofeed_core::dlpack::{
    DLDataType, DLDevice, DLManagedTensor, DLManagedTensorVersioned, DLPackVersion, DLTensor,
    DlpackError, Imported, ManagedTensor, MAX_IMPORT_NDIM,
};
use zerofeed_core::layout::LayoutError;

/// Everything a producer puts in a tensor, as plain values.
#[derive(Clone, Debug)]
struct Spec {
    versioned: bool,
    major: u32,
    data: usize,
    device: DLDevice,
    ndim: i32,
    dtype: DLDataType,
    /// `None` for a NULL pointer; otherwise 64 values, of which `ndim` are read.
    shape: Option<Vec<i64>>,
    strides: Option<Vec<i64>>,
    byte_offset: u64,
}

fn f32_spec(shape: &[i64]) -> Spec {
    let mut dims = shape.to_vec();
    dims.resize(MAX_IMPORT_NDIM, 1);
    Spec {
        versioned: true,
        major: 1,
        data: 0x1000,
        device: DLDevice::CPU,
        ndim: shape.len() as i32,
        dtype: DLDataType {
            code: 2,
            bits: 32,
            lanes: 1,
        },
        shape: Some(dims),
        strides: None,
        byte_offset: 0,
    }
}

unsafe extern "C" fn count_legacy(managed: *mut DLManagedTensor) {
    // SAFETY: `manager_ctx` is the test's live counter and `managed` came from
    // `Box::into_raw` in `import`; the deleter frees it, once.
    unsafe {
        (*(*managed).manager_ctx.cast::<AtomicUsize>()).fetch_add(1, Ordering::SeqCst);
        drop(Box::from_raw(managed));
    }
}

unsafe extern "C" fn count_versioned(managed: *mut DLManagedTensorVersioned) {
    // SAFETY: as in `count_legacy`.
    unsafe {
        (*(*managed).manager_ctx.cast::<AtomicUsize>()).fetch_add(1, Ordering::SeqCst);
        drop(Box::from_raw(managed));
    }
}

/// Builds the managed tensor `spec` describes, imports it, and checks the deleter ran
/// exactly once by the time the import is dropped (at once on error).
fn import(spec: &Spec) -> Result<(), DlpackError> {
    let deleted = AtomicUsize::new(0);
    let ctx = std::ptr::from_ref(&deleted).cast_mut().cast::<c_void>();
    let mut shape = spec.shape.clone();
    let mut strides = spec.strides.clone();
    let pointer =
        |v: &mut Option<Vec<i64>>| v.as_mut().map_or(std::ptr::null_mut(), |v| v.as_mut_ptr());
    let dl_tensor = DLTensor {
        data: spec.data as *mut c_void,
        device: spec.device,
        ndim: spec.ndim,
        dtype: spec.dtype,
        shape: pointer(&mut shape),
        strides: pointer(&mut strides),
        byte_offset: spec.byte_offset,
    };
    // SAFETY: each struct is freshly boxed and handed over once; its shape and strides
    // vectors hold 64 values (>= any ndim the importer accepts) and outlive the call.
    let result = unsafe {
        if spec.versioned {
            ManagedTensor::import_versioned(Box::into_raw(Box::new(DLManagedTensorVersioned {
                version: DLPackVersion {
                    major: spec.major,
                    minor: 7,
                },
                manager_ctx: ctx,
                deleter: Some(count_versioned),
                flags: 0,
                dl_tensor,
            })))
        } else {
            ManagedTensor::import_legacy(Box::into_raw(Box::new(DLManagedTensor {
                dl_tensor,
                manager_ctx: ctx,
                deleter: Some(count_legacy),
            })))
        }
    };
    match result {
        Ok(imported) => {
            assert_eq!(deleted.load(Ordering::SeqCst), 0, "deleted while in use");
            check_valid(spec, &imported);
            drop(imported);
            assert_eq!(deleted.load(Ordering::SeqCst), 1, "deleter after drop");
            Ok(())
        }
        Err(err) => {
            assert_eq!(deleted.load(Ordering::SeqCst), 1, "deleter on error {err}");
            assert!(!err.to_string().is_empty());
            Err(err)
        }
    }
}

/// An accepted tensor describes what the producer said, and every byte it spans has an
/// address in `1..=usize::MAX` (computed here in 128-bit arithmetic, independently).
fn check_valid(spec: &Spec, imported: &Imported) {
    assert_eq!(spec.dtype.lanes, 1);
    assert!(!spec.versioned || spec.major == 1);
    assert!(matches!(spec.device.device_type, 1..=4 | 7..=18) && spec.device.device_id >= 0);
    let ndim = usize::try_from(spec.ndim).unwrap();
    assert!(ndim <= MAX_IMPORT_NDIM);
    let layout = &imported.layout;
    let dims = &spec.shape.as_ref().map_or(&[][..], |s| &s[..ndim]);
    let shape: Vec<usize> = dims.iter().map(|&d| usize::try_from(d).unwrap()).collect();
    assert_eq!(layout.shape(), &shape[..]);
    let itemsize = layout.itemsize() as i128;
    assert_eq!(itemsize * 8, i128::from(spec.dtype.bits).max(8));
    if let Some(strides) = &spec.strides {
        let want: Vec<i128> = strides[..ndim]
            .iter()
            .map(|&s| i128::from(s) * itemsize)
            .collect();
        let got: Vec<i128> = layout.strides().iter().map(|&s| s as i128).collect();
        assert_eq!(got, want);
    } else {
        assert!(layout.is_c_contiguous());
    }
    let first = spec.data as i128 + i128::from(spec.byte_offset);
    assert_eq!(imported.data as usize as i128, first);
    if layout.size() > 0 {
        assert_ne!(spec.data, 0);
        let (mut low, mut high) = (first, first + itemsize - 1);
        for (&n, &s) in shape.iter().zip(layout.strides()) {
            let reach = (n as i128 - 1) * s as i128;
            if reach < 0 {
                low += reach;
            } else {
                high += reach;
            }
        }
        assert!(
            low >= 1 && high <= usize::MAX as i128,
            "{low:#x}..={high:#x}"
        );
    }
}

fn dim() -> impl Strategy<Value = i64> {
    prop_oneof![
        12 => 0i64..5,
        1 => any::<i64>(),
        1 => (0u32..63).prop_map(|k| 1i64 << k),
        1 => Just(-1i64),
    ]
}

fn stride() -> impl Strategy<Value = i64> {
    prop_oneof![
        12 => -6i64..7,
        1 => any::<i64>(),
        1 => (0u32..63).prop_map(|k| 1i64 << k),
        1 => (0u32..63).prop_map(|k| -(1i64 << k)),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    let header = (
        any::<bool>(),
        prop_oneof![8 => Just(1u32), 1 => any::<u32>()],
        prop_oneof![
            2 => Just(0x10_0000usize),
            1 => Just(0usize),
            1 => any::<usize>(),
            1 => (0usize..4096).prop_map(|d| usize::MAX - d),
        ],
        (
            prop_oneof![8 => Just(1i32), 1 => Just(2i32), 2 => -2i32..22, 1 => any::<i32>()],
            prop_oneof![8 => Just(0i32), 1 => any::<i32>()],
        ),
        prop_oneof![6 => 0i32..5, 1 => 60i32..70, 1 => any::<i32>()],
    );
    // Mostly dtypes that exist, so that hostile shapes and addresses get tested too.
    let valid = prop::sample::select(vec![
        (0u8, 8u8),
        (0, 64),
        (1, 8),
        (1, 16),
        (2, 16),
        (2, 32),
        (2, 64),
        (4, 16),
        (5, 128),
        (6, 8),
    ])
    .prop_map(|(code, bits)| (code, bits, 1u16));
    let dtype = prop_oneof![
        6 => valid,
        1 => (0u8..8, prop::sample::select(vec![1u8, 8, 16, 32, 64, 128]), Just(1u16)),
        1 => (any::<u8>(), any::<u8>(), any::<u16>()),
    ];
    let arrays = (
        prop::option::weighted(0.95, prop::collection::vec(dim(), MAX_IMPORT_NDIM)),
        prop::option::weighted(0.6, prop::collection::vec(stride(), MAX_IMPORT_NDIM)),
        prop_oneof![
            4 => Just(0u64),
            2 => 0u64..4096,
            1 => any::<u64>(),
            1 => (0u64..4096).prop_map(|d| u64::MAX - d),
        ],
    );
    (header, dtype, arrays).prop_map(
        |(
            (versioned, major, data, (device_type, device_id), ndim),
            (code, bits, lanes),
            (shape, strides, byte_offset),
        )| Spec {
            versioned,
            major,
            data,
            device: DLDevice {
                device_type,
                device_id,
            },
            ndim,
            dtype: DLDataType { code, bits, lanes },
            shape,
            strides,
            byte_offset,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Never a crash or panic: a valid description within its extent, or a typed
    /// error; the deleter exactly once either way (both checked inside `import`).
    #[test]
    fn hostile_tensors_are_refused_or_valid(spec in spec()) {
        let _ = import(&spec);
    }
}

#[test]
fn fuzzing_reaches_both_outcomes() {
    // The strategy is only useful if it produces valid tensors as well as hostile ones.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut ok, mut err) = (0, 0);
    for _ in 0..2000 {
        let spec = spec().new_tree(&mut runner).unwrap().current();
        match import(&spec) {
            Ok(()) => ok += 1,
            Err(_) => err += 1,
        }
    }
    assert!(ok > 200 && err > 200, "ok {ok}, err {err}");
}

fn message(spec: &Spec) -> (DlpackError, String) {
    let err = import(spec)
        .err()
        .unwrap_or_else(|| panic!("must be refused: {spec:?}"));
    let text = err.to_string();
    (err, text)
}

#[test]
fn null_managed_pointer_is_refused_and_nothing_deleted() {
    // SAFETY: NULL is allowed; there is nothing to take.
    let err = unsafe { ManagedTensor::import_legacy(std::ptr::null_mut()) }
        .err()
        .unwrap();
    assert!(matches!(err, DlpackError::Null));
    // SAFETY: as above.
    let err = unsafe { ManagedTensor::import_versioned(std::ptr::null_mut()) }
        .err()
        .unwrap();
    assert!(matches!(err, DlpackError::Null));
}

#[test]
fn null_shape_with_dimensions_is_refused() {
    for versioned in [false, true] {
        let spec = Spec {
            shape: None,
            versioned,
            ..f32_spec(&[2, 3])
        };
        let (err, text) = message(&spec);
        assert!(matches!(err, DlpackError::NullShape(2)), "{err:?}");
        assert!(
            text.contains("shape=NULL") && text.contains("ndim=2"),
            "{text}"
        );
    }
    // 0-d: the shape is never read, so NULL is fine.
    let scalar = Spec {
        shape: None,
        ..f32_spec(&[])
    };
    import(&scalar).unwrap();
}

#[test]
fn huge_or_negative_ndim_is_refused_without_reading_the_shape() {
    for ndim in [1 << 30, i32::MAX, MAX_IMPORT_NDIM as i32 + 1] {
        // The shape array has 64 entries: reading 2^30 would fault or allocate 8 GiB.
        let spec = Spec {
            ndim,
            ..f32_spec(&[2])
        };
        let (err, text) = message(&spec);
        assert!(
            matches!(err, DlpackError::TooManyDims(n) if n == ndim),
            "{err:?}"
        );
        assert!(text.contains(&format!("ndim={ndim}")), "{text}");
    }
    let spec = Spec {
        ndim: -1,
        ..f32_spec(&[2])
    };
    assert!(matches!(message(&spec).0, DlpackError::BadNdim(-1)));
    // The cap itself is accepted.
    import(&f32_spec(&[1; MAX_IMPORT_NDIM])).unwrap();
}

#[test]
fn negative_and_overflowing_sizes_are_refused() {
    let (err, text) = message(&f32_spec(&[4, -3]));
    assert!(matches!(err, DlpackError::NegativeDim { axis: 1, dim: -3 }));
    assert!(text.contains("shape[1]=-3"), "{text}");
    for shape in [&[1 << 40, 1 << 40][..], &[0, 1 << 62, 1 << 62], &[i64::MAX]] {
        let (err, text) = message(&f32_spec(shape));
        assert!(
            matches!(err, DlpackError::SizeOverflow { .. }),
            "{shape:?}: {err:?}"
        );
        assert!(text.contains("shape="), "{text}");
    }
}

#[test]
fn null_strides_mean_c_contiguous() {
    let deleted = AtomicUsize::new(0);
    let mut shape = [2i64, 3, 4];
    let managed = Box::into_raw(Box::new(DLManagedTensor {
        dl_tensor: DLTensor {
            data: 0x1000 as *mut c_void,
            device: DLDevice::CPU,
            ndim: 3,
            dtype: DLDataType {
                code: 0,
                bits: 16,
                lanes: 1,
            },
            shape: shape.as_mut_ptr(),
            strides: std::ptr::null_mut(),
            byte_offset: 6,
        },
        manager_ctx: std::ptr::from_ref(&deleted).cast_mut().cast(),
        deleter: Some(count_legacy),
    }));
    // SAFETY: freshly boxed; shape has 3 values.
    let imported = unsafe { ManagedTensor::import_legacy(managed) }.unwrap();
    assert_eq!(imported.layout.strides(), &[24, 8, 2]);
    assert_eq!(imported.data as usize, 0x1006);
    drop(imported);
    assert_eq!(deleted.load(Ordering::SeqCst), 1);
}

#[test]
fn overflowing_strides_are_refused() {
    let with_strides = |shape: &[i64], strides: &[i64]| {
        let mut s = strides.to_vec();
        s.resize(MAX_IMPORT_NDIM, 0);
        Spec {
            strides: Some(s),
            ..f32_spec(shape)
        }
    };
    // stride * (dim - 1) overflows, and stride * itemsize does.
    for (shape, strides) in [
        ([1 << 20], [1i64 << 60]),
        ([1], [i64::MAX]),
        ([3], [i64::MIN]),
    ] {
        let (err, text) = message(&with_strides(&shape, &strides));
        assert!(
            matches!(err, DlpackError::StrideOverflow { axis: 0, .. }),
            "{err:?}"
        );
        assert!(
            text.contains(&format!("strides[0]={}", strides[0])),
            "{text}"
        );
    }
    // Each axis fits, their sum does not.
    let (err, _) = message(&with_strides(&[2, 2, 2], &[1 << 60, 1 << 60, 1 << 60]));
    assert!(
        matches!(err, DlpackError::Layout(LayoutError::Overflow { .. })),
        "{err:?}"
    );
}

#[test]
fn wrapping_byte_offsets_and_extents_are_refused() {
    let mut buffer = [0f32; 16];
    let real = buffer.as_mut_ptr() as usize;
    for (data, byte_offset, what) in [
        (real, u64::MAX - 3, "data + byte_offset"),
        (real, u64::MAX, "data + byte_offset"),
        // The first element is fine, the last byte wraps.
        (usize::MAX - 32, 0, "last byte"),
        (0x1000, (usize::MAX - 0x1000 - 8) as u64, "last byte"),
    ] {
        let spec = Spec {
            data,
            byte_offset,
            ..f32_spec(&[16])
        };
        let (err, text) = message(&spec);
        assert!(
            matches!(err, DlpackError::AddressOverflow { .. }),
            "{err:?}"
        );
        assert!(text.contains(what), "{text}");
        assert!(
            text.contains(&format!("byte_offset={byte_offset}")),
            "{text}"
        );
    }
    // A negative stride reaching below address 0.
    let mut strides = vec![-4i64];
    strides.resize(MAX_IMPORT_NDIM, 0);
    let spec = Spec {
        data: 64,
        strides: Some(strides),
        ..f32_spec(&[100])
    };
    assert!(matches!(
        message(&spec).0,
        DlpackError::AddressOverflow { .. }
    ));
    // An empty tensor may sit anywhere that does not wrap.
    import(&Spec {
        data: usize::MAX - 1,
        ..f32_spec(&[0, 5])
    })
    .unwrap();
}

#[test]
fn null_data_needs_an_empty_tensor() {
    let (err, text) = message(&Spec {
        data: 0,
        ..f32_spec(&[3])
    });
    assert!(matches!(err, DlpackError::NullData { size: 3 }));
    assert!(text.contains("data=NULL"), "{text}");
    import(&Spec {
        data: 0,
        ..f32_spec(&[0])
    })
    .unwrap();
}

#[test]
fn lanes_dtypes_devices_and_versions_are_checked() {
    let dtype = |code, bits, lanes| Spec {
        dtype: DLDataType { code, bits, lanes },
        ..f32_spec(&[2])
    };
    for lanes in [0, 4, u16::MAX] {
        let (err, text) = message(&dtype(2, 32, lanes));
        assert!(matches!(err, DlpackError::DType(_)), "{err:?}");
        assert!(text.contains(&format!("lanes={lanes}")), "{text}");
    }
    for (code, bits) in [(2, 24), (9, 32), (0, 0), (2, 255)] {
        let (err, text) = message(&dtype(code, bits, 1));
        assert!(matches!(err, DlpackError::DType(_)), "{err:?}");
        assert!(text.contains(&format!("code={code} bits={bits}")), "{text}");
    }
    for device_type in [0, 5, 6, 19, -1, i32::MAX] {
        let (err, text) = message(&Spec {
            device: DLDevice {
                device_type,
                device_id: 0,
            },
            ..f32_spec(&[2])
        });
        assert!(matches!(err, DlpackError::UnknownDevice(d) if d == device_type));
        assert!(
            text.contains(&format!("device_type={device_type}")),
            "{text}"
        );
    }
    let (err, text) = message(&Spec {
        device: DLDevice {
            device_type: 2,
            device_id: -3,
        },
        ..f32_spec(&[2])
    });
    assert!(matches!(err, DlpackError::NegativeDeviceId(-3)));
    assert!(text.contains("device_id=-3"), "{text}");
    for major in [0, 2, u32::MAX] {
        let (err, _) = message(&Spec {
            major,
            ..f32_spec(&[2])
        });
        assert!(matches!(err, DlpackError::Version { major: m } if m == major));
    }
    // A CUDA tensor is described (the importer does not read device memory).
    let cuda = import(&Spec {
        device: DLDevice {
            device_type: 2,
            device_id: 1,
        },
        ..f32_spec(&[2])
    });
    assert!(cuda.is_ok());
}
