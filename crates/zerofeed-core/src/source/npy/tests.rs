//! Unit tests of header parsing on hand-built bytes: every accepted form and one case
//! per refusal, each checking the variant and the field its message names.

use super::*;

/// A file as `np.save` lays it out: preamble, `dict`, space padding to a multiple of
/// 64 and `'\n'`, then `data_len` zero bytes.
fn npy(version: (u8, u8), dict: &str, data_len: usize) -> Vec<u8> {
    let preamble = if version.0 == 1 { 10 } else { 12 };
    let mut header = dict.as_bytes().to_vec();
    while !(preamble + header.len() + 1).is_multiple_of(64) {
        header.push(b' ');
    }
    header.push(b'\n');
    raw(version, &header, data_len)
}

/// Preamble + exactly `header` + `data_len` zero bytes, no padding.
fn raw(version: (u8, u8), header: &[u8], data_len: usize) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend([version.0, version.1]);
    if version.0 == 1 {
        out.extend((header.len() as u16).to_le_bytes());
    } else {
        out.extend((header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header);
    out.resize(out.len() + data_len, 0);
    out
}

fn dict(descr: &str, fortran: bool, shape: &str) -> String {
    let fortran = if fortran { "True" } else { "False" };
    format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}")
}

fn parse(bytes: &[u8]) -> Result<NpyHeader, NpyError> {
    parse_npy_header(bytes, bytes.len() as u64)
}

/// Parses, expects an error, and checks that its message starts with its field.
fn fail(bytes: &[u8]) -> NpyError {
    let err = parse(bytes).expect_err("header should be refused");
    let msg = err.to_string();
    assert!(msg.starts_with(err.field()), "{msg:?} vs {}", err.field());
    err
}

fn fail_dict(text: &str) -> NpyError {
    fail(&npy((1, 0), text, 0))
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// `np.save` of `np.arange(6, dtype='<i2').reshape(2, 3)` (NumPy 2.4), byte for byte.
const NUMPY_I2_2X3: &str = "934e554d5059010076007b276465736372273a20273c6932272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028322c2033292c207d202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a000001000200030004000500";
/// `write_array(np.arange(3, dtype='<u2'), version=(3, 0))`.
const NUMPY_U2_V3: &str = "934e554d50590300740000007b276465736372273a20273c7532272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028332c292c207d202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a000001000200";

#[test]
fn numpy_written_files() {
    let h = parse(&hex(NUMPY_I2_2X3)).unwrap();
    assert_eq!(
        h,
        NpyHeader {
            version: (1, 0),
            dtype: DType::I16,
            fortran_order: false,
            shape: vec![2, 3],
            data_offset: 128,
            data_len: 12,
        }
    );
    let h = parse(&hex(NUMPY_U2_V3)).unwrap();
    assert_eq!(
        (h.version, h.dtype, h.shape.as_slice()),
        ((3, 0), DType::U16, &[3][..])
    );
    assert_eq!((h.data_offset, h.data_len), (128, 6));
}

#[test]
fn every_dtype_but_bfloat16() {
    for dtype in DType::ALL.into_iter().filter(|d| *d != DType::BF16) {
        let n = 6 * dtype.itemsize();
        let h = parse(&npy((1, 0), &dict(dtype.typestr(), false, "(2, 3)"), n)).unwrap();
        assert_eq!(
            (h.dtype, h.data_len, h.data_offset),
            (dtype, n, 128),
            "{dtype}"
        );
    }
    // One-byte types have no byte order; NumPy may write any marker.
    for (descr, dtype) in [
        (">u1", DType::U8),
        ("|u1", DType::U8),
        (">i1", DType::I8),
        ("<b1", DType::Bool),
    ] {
        assert_eq!(
            parse(&npy((1, 0), &dict(descr, false, "(4,)"), 4))
                .unwrap()
                .dtype,
            dtype
        );
    }
}

#[test]
fn versions_one_two_three() {
    for version in [(1, 0), (2, 0), (3, 0)] {
        let h = parse(&npy(version, &dict("<f4", false, "(3, 4)"), 48)).unwrap();
        assert_eq!((h.version, h.data_offset, h.data_len), (version, 128, 48));
    }
    // A 2.0 header longer than u16 allows (NumPy switches to 2.0 for those).
    let long = format!("{}{}", dict("<f4", false, "(1,)"), " ".repeat(70_000));
    let h = parse(&raw((2, 0), long.as_bytes(), 4)).unwrap();
    assert_eq!(h.data_offset, 12 + long.len());
}

#[test]
fn strides_c_and_fortran() {
    let c = parse(&npy((1, 0), &dict("<f4", false, "(2, 3, 4)"), 96)).unwrap();
    assert_eq!(c.byte_strides(), [48, 16, 4]);
    let f = parse(&npy((1, 0), &dict("<f4", true, "(2, 3, 4)"), 96)).unwrap();
    assert!(f.fortran_order);
    assert_eq!(f.byte_strides(), [4, 8, 24]);
    assert_eq!(f.num_elements(), 24);
}

#[test]
fn zero_d_and_zero_length() {
    let h = parse(&npy((1, 0), &dict("<f8", false, "()"), 8)).unwrap();
    assert_eq!((h.shape.len(), h.data_len, h.num_elements()), (0, 8, 1));
    assert!(h.byte_strides().is_empty());
    let h = parse(&npy((1, 0), &dict("<f4", false, "(0, 3)"), 0)).unwrap();
    assert_eq!(
        (h.shape.as_slice(), h.data_len, h.num_elements()),
        (&[0, 3][..], 0, 0)
    );
    assert_eq!(h.byte_strides(), [12, 4]);
    // A zero-size array may have huge other axes, as long as strides fit.
    let h = parse(&npy((1, 0), &dict("|u1", false, "(0, 4294967296)"), 0)).unwrap();
    assert_eq!(h.byte_strides(), [1 << 32, 1]);
}

#[test]
fn literal_forms_numpy_and_python_write() {
    let ok = |text: &str| parse(&npy((1, 0), text, 4)).unwrap();
    // No trailing comma, double quotes, odd spacing, keys in any order, Python 2 longs.
    ok("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}");
    ok("{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (1,)}");
    ok("  {'shape':(1 , ),'descr':'<f4',\n\t'fortran_order':False}");
    ok("{'descr': '<f4', 'fortran_order': False, 'shape': (1L,), }");
    let text = "{'descr': '<f4', 'fortran_order': False, 'shape': (-0, 1), }";
    assert_eq!(parse(&npy((1, 0), text, 0)).unwrap().shape, [0, 1]);
    // Unpadded header, total length not a multiple of 16 or 64, no newline.
    let text = dict("<f4", false, "(1,)");
    let h = parse(&raw((1, 0), text.as_bytes(), 4)).unwrap();
    assert_eq!(h.data_offset, 10 + text.len());
    assert_ne!(h.data_offset % 16, 0);
}

#[test]
fn short_and_foreign_files() {
    assert!(matches!(fail(b""), NpyError::TooShort { len: 0, .. }));
    assert!(matches!(
        fail(b"\x93NUM"),
        NpyError::TooShort { len: 4, .. }
    ));
    let err = fail(b"PK\x03\x04 this is a zip archive");
    assert!(matches!(err, NpyError::BadMagic { .. }), "{err}");
    assert!(
        err.to_string().contains("found b\"PK\\x03\\x04 t\""),
        "{err}"
    );
    // A 2.0 preamble needs 12 bytes.
    assert!(matches!(
        fail(b"\x93NUMPY\x02\x00\x00\x00\x00"),
        NpyError::TooShort { needed: 12, .. }
    ));
}

#[test]
fn unknown_versions() {
    for (major, minor) in [(0, 0), (1, 1), (4, 0), (255, 255)] {
        let err = fail(&npy((major, minor), &dict("<f4", false, "(1,)"), 4));
        assert_eq!(err, NpyError::UnsupportedVersion { major, minor });
    }
}

#[test]
fn header_length_bounds() {
    let mut file = npy((2, 0), &dict("<f4", false, "(1,)"), 4);
    file[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(fail(&file), NpyError::HeaderTooLong { len, .. } if len == u32::MAX as u64));
    let mut file = npy((1, 0), &dict("<f4", false, "(1,)"), 4);
    file[8..10].copy_from_slice(&1000u16.to_le_bytes());
    let err = fail(&file);
    let file_len = file.len() as u64;
    assert_eq!(
        err,
        NpyError::HeaderPastEnd {
            header_end: 1010,
            file_len
        }
    );
    assert!(err.to_string().contains("truncated file?"));
}

#[test]
fn prefix_shorter_than_header() {
    let file = npy((1, 0), &dict("<f4", false, "(1,)"), 4);
    let err = parse_npy_header(&file[..20], file.len() as u64).unwrap_err();
    assert_eq!(
        err,
        NpyError::PrefixTooShort {
            needed: 128,
            available: 20
        }
    );
    // Exactly the header is enough; bytes past file_len are ignored.
    assert!(parse_npy_header(&file[..128], file.len() as u64).is_ok());
    let mut longer = file.clone();
    longer.extend([0; 100]);
    assert!(parse_npy_header(&longer, file.len() as u64).is_ok());
}

#[test]
fn data_length_must_match_exactly() {
    let mut file = npy((1, 0), &dict("<f4", false, "(1024,)"), 4000);
    let err = fail(&file);
    assert_eq!(
        err,
        NpyError::DataTruncated {
            expected: 4096,
            actual: 4000
        }
    );
    assert_eq!(
        err.to_string(),
        "data length: header says 4096 bytes but file holds 4000 after the header (truncated file?)"
    );
    let data_offset = file.len() - 4000;
    file.resize(data_offset + 4100, 0);
    let err = fail(&file);
    assert_eq!(
        err,
        NpyError::TrailingBytes {
            expected: 4096,
            actual: 4100
        }
    );
    assert!(err.to_string().contains("4 trailing bytes"), "{err}");
    // A lying shape, too big and too small.
    assert!(matches!(
        fail(&npy((1, 0), &dict("<f8", false, "(10, 10)"), 792)),
        NpyError::DataTruncated { .. }
    ));
    assert!(matches!(
        fail(&npy((1, 0), &dict("<f8", false, "(10, 9)"), 800)),
        NpyError::TrailingBytes { .. }
    ));
}

#[test]
fn shape_refusals() {
    let err = fail_dict(&dict("<f4", false, "(3, -3)"));
    assert_eq!(
        err,
        NpyError::NegativeDim {
            axis: 1,
            value: "-3".into()
        }
    );
    assert!(err.to_string().starts_with("shape: dimension -3 "), "{err}");
    let err = fail_dict(&dict("<f4", false, "(99999999999999999999999999,)"));
    assert!(
        matches!(err, NpyError::DimTooLarge { axis: 0, .. }),
        "{err}"
    );
    let err = fail_dict(&dict("<f4", false, "(4294967296, 4294967296)"));
    assert!(
        matches!(&err, NpyError::SizeOverflow { itemsize: 4, shape } if shape == "(4294967296, 4294967296)")
    );
    // Zero elements do not excuse an unaddressable span (NumPy refuses these too).
    let err = fail_dict(&dict("<f4", false, "(4294967296, 0, 4294967296)"));
    assert!(matches!(err, NpyError::SizeOverflow { .. }), "{err}");
    let err = fail_dict(&dict("<f4", false, "(9223372036854775807,)"));
    assert!(matches!(err, NpyError::SizeOverflow { .. }), "{err}");
    let many = format!("({})", "1, ".repeat(65));
    assert_eq!(
        fail_dict(&dict("<f4", false, &many)),
        NpyError::TooManyDims { ndim: 65, max: 64 }
    );
    assert_eq!(
        fail_dict(&dict("<f4", false, "(2, 'a')")),
        NpyError::ShapeElement {
            axis: 1,
            found: "a string"
        }
    );
    assert_eq!(
        fail_dict(&dict("<f4", false, "((2,),)")),
        NpyError::ShapeElement {
            axis: 0,
            found: "a tuple"
        }
    );
    // `(5)` is the integer 5 in Python, not a 1-tuple.
    let err = fail_dict(&dict("<f4", false, "(5)"));
    assert!(
        matches!(
            err,
            NpyError::WrongType {
                key: "shape",
                found: "an integer",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(fail_dict(&dict("<f4", false, "[5]")).field(), "shape");
}

#[test]
fn descr_refusals() {
    let err = fail_dict(&dict(">f4", false, "(1,)"));
    assert_eq!(
        err,
        NpyError::BigEndian {
            descr: ">f4".into(),
            swapped: "<f4".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "descr: big-endian '>f4' is not supported; byte-swap with arr.astype('<f4') and save again"
    );
    assert!(matches!(
        fail_dict(&dict(">c16", false, "(1,)")),
        NpyError::BigEndian { .. }
    ));
    assert!(matches!(
        fail_dict(&dict("|O", false, "(1,)")),
        NpyError::ObjectDescr { .. }
    ));
    let structured =
        "{'descr': [('a', '<f4'), ('b', '<i8', (2,))], 'fortran_order': False, 'shape': (1,), }";
    assert_eq!(fail_dict(structured), NpyError::StructuredDescr);
    for descr in ["<U10", "|S4", "<M8[ns]", "<f16", "|V2", "float32", ""] {
        let err = fail_dict(&dict(descr, false, "(1,)"));
        assert!(
            matches!(err, NpyError::UnsupportedDescr { .. }),
            "{descr}: {err}"
        );
        assert!(err.to_string().contains("'<f4' (float32)"), "{err}");
    }
    let err = fail_dict("{'descr': 5, 'fortran_order': False, 'shape': (1,), }");
    assert!(
        matches!(err, NpyError::WrongType { key: "descr", .. }),
        "{err}"
    );
}

#[test]
fn fortran_order_must_be_a_bool() {
    for value in ["1", "'False'", "None", "false"] {
        let text = format!("{{'descr': '<f4', 'fortran_order': {value}, 'shape': (1,), }}");
        assert_eq!(
            fail_dict(&text).field(),
            if value == "false" {
                "header dict"
            } else {
                "fortran_order"
            }
        );
    }
}

#[test]
fn keys_exactly_once() {
    let err = fail_dict("{'descr': '<f4', 'shape': (1,), }");
    assert_eq!(
        err,
        NpyError::MissingKey {
            key: "fortran_order"
        }
    );
    assert_eq!(fail_dict("{}"), NpyError::MissingKey { key: "descr" });
    let err = fail_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1}");
    assert_eq!(
        err,
        NpyError::UnknownKey {
            key: "extra".into()
        }
    );
    let err = fail_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'shape': (1,)}");
    assert_eq!(err, NpyError::DuplicateKey { key: "shape" });
    // An enormous unknown key is clipped in the message.
    let key = "k".repeat(5000);
    let err = fail_dict(&format!("{{'{key}': 1}}"));
    assert!(matches!(err, NpyError::UnknownKey { .. }));
    assert!(err.to_string().len() < 300, "{err}");
}

#[test]
fn syntax_refusals_point_at_the_byte() {
    let cases: &[(&str, usize)] = &[
        ("'descr': '<f4'", 10),                  // no opening brace
        ("{'descr' '<f4'}", 19),                 // missing colon
        ("{'descr': '<f4}", 63),                 // string runs into the '\n'
        ("{'descr': '<f4', 'shape': (1, 2", 64), // unclosed tuple (end of header)
        ("{'descr': '<f4',, }", 26),             // double comma
        ("{descr: '<f4'}", 11),                  // bare key
        ("{'descr': '<f4'} junk", 27),           // text after the dict
        ("{'shape': (007,)}", 21),               // leading zeros
        ("{'shape': (3.0,)}", 22),               // float
        ("{'shape': (0x10,)}", 22),              // hex
        ("{'shape': (1,,)}", 23),                // empty tuple slot
        ("{'a': \x01}", 16),                     // control byte
    ];
    for &(text, offset) in cases {
        match fail_dict(text) {
            NpyError::Syntax { offset: at, .. } => assert_eq!(at, offset, "{text:?}"),
            other => panic!("{text:?}: {other}"),
        }
    }
    // Deep nesting is refused, not a stack overflow.
    let deep = format!("{{'shape': {}}}", "(".repeat(100_000));
    assert!(
        matches!(fail_dict(&deep), NpyError::Syntax { expected, .. } if expected.contains("nested"))
    );
}

#[test]
fn version_3_must_be_utf8() {
    let mut header = dict("<f4", false, "(1,)").into_bytes();
    header.extend(b"  \xff\xfe \n");
    let err = fail(&raw((3, 0), &header, 4));
    assert_eq!(
        err,
        NpyError::NotUtf8 {
            offset: 12 + header.len() - 4
        }
    );
    // Valid UTF-8 beyond ASCII is decoded, then refused by the grammar like in NumPy.
    let err = fail(&raw((3, 0), "{'descr': '<f4', 'é': 1}".as_bytes(), 0));
    assert!(
        matches!(err, NpyError::UnknownKey { ref key } if key.contains("\\xc3\\xa9")),
        "{err}"
    );
    // The same bytes in a 1.0 header are Latin-1 and just an unknown key.
    let err = fail(&raw((1, 0), &header, 4));
    assert!(matches!(err, NpyError::Syntax { .. }), "{err}");
}
