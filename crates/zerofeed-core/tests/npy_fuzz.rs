//! Property tests of `parse_npy_header` on hostile input: random bytes, token soup, and
//! valid headers mutated by byte flips, truncations and splices. The parser must never
//! panic, and whenever it accepts, the header it returns must be self-consistent.
//! (Runs in `cargo test` in a few seconds; `fuzz/` has the coverage-guided version.)

use proptest::prelude::*;
use zerofeed_core::source::{parse_npy_header, NpyHeader, MAX_NDIM};
use zerofeed_core::DType;

/// Everything an accepted header promises.
fn check_consistent(header: &NpyHeader, prefix: &[u8], file_len: u64) {
    assert!(matches!(header.version, (1, 0) | (2, 0) | (3, 0)));
    assert!(header.shape.len() <= MAX_NDIM);
    assert!(header.data_offset <= prefix.len());
    assert_eq!(header.data_offset as u64 + header.data_len as u64, file_len);
    let elements = header
        .shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .expect("element count fits");
    assert_eq!(
        elements.checked_mul(header.dtype.itemsize()),
        Some(header.data_len)
    );
    assert_eq!(header.num_elements(), elements);
    // The last element's offset, from the strides, ends exactly at the data's end.
    let strides = header.byte_strides();
    assert_eq!(strides.len(), header.shape.len());
    if elements > 0 {
        let last: isize = header
            .shape
            .iter()
            .zip(&strides)
            .map(|(&d, &s)| (d as isize - 1) * s)
            .sum();
        assert_eq!(last as usize + header.dtype.itemsize(), header.data_len);
    }
}

fn parse_and_check(prefix: &[u8], file_len: u64) {
    if let Ok(header) = parse_npy_header(prefix, file_len) {
        let available = prefix.len().min(file_len as usize);
        check_consistent(&header, &prefix[..available], file_len);
    }
}

/// A valid file (header + zeroed data) with some freedom in how the dict is spelled.
fn valid_file() -> impl Strategy<Value = (Vec<u8>, NpyHeader)> {
    let dtypes: Vec<DType> = DType::ALL
        .into_iter()
        .filter(|d| *d != DType::BF16)
        .collect();
    (
        prop::sample::select(dtypes),
        prop::collection::vec(0usize..6, 0..5),
        any::<bool>(),
        prop::sample::select(vec![(1u8, 0u8), (2, 0), (3, 0)]),
        any::<bool>(), // trailing comma
        0usize..80,    // padding
    )
        .prop_map(|(dtype, shape, fortran, version, comma, pad)| {
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            let shape_text = match dims.len() {
                1 => format!("({},)", dims[0]),
                _ => format!("({})", dims.join(", ")),
            };
            let fortran_text = if fortran { "True" } else { "False" };
            let mut text = format!(
                "{{'descr': '{}', 'fortran_order': {fortran_text}, 'shape': {shape_text}{}}}",
                dtype.typestr(),
                if comma { ", " } else { "" }
            );
            text.push_str(&" ".repeat(pad));
            text.push('\n');
            let mut file = b"\x93NUMPY".to_vec();
            file.extend([version.0, version.1]);
            if version.0 == 1 {
                file.extend((text.len() as u16).to_le_bytes());
            } else {
                file.extend((text.len() as u32).to_le_bytes());
            }
            file.extend(text.as_bytes());
            let data_offset = file.len();
            let data_len = shape.iter().product::<usize>() * dtype.itemsize();
            file.resize(data_offset + data_len, 0);
            let header = NpyHeader {
                version,
                dtype,
                fortran_order: fortran,
                shape,
                data_offset,
                data_len,
            };
            (file, header)
        })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip {
        at: usize,
        mask: u8,
    },
    Set {
        at: usize,
        byte: u8,
    },
    Truncate {
        keep: usize,
    },
    Splice {
        at: usize,
        remove: usize,
        insert: Vec<u8>,
    },
    /// Keep the file, but claim another length (or hand over only part of it).
    Lie {
        file_len_delta: i64,
    },
}

/// Bytes that matter to the grammar, so splices reach deep into the parser.
fn interesting_bytes() -> impl Strategy<Value = Vec<u8>> {
    let tokens: Vec<&'static [u8]> = vec![
        b"'",
        b"\"",
        b"(",
        b")",
        b"[",
        b"]",
        b"{",
        b"}",
        b",",
        b":",
        b" ",
        b"\n",
        b"\\",
        b"-",
        b"0",
        b"7",
        b"L",
        b"True",
        b"False",
        b"None",
        b"'descr'",
        b"'shape'",
        b"'fortran_order'",
        b"'>f4'",
        b"'|O'",
        b"99999999999999999999",
        b"4294967296",
        b"\xff",
        b"\xc3\xa9",
        b"\0",
    ];
    prop_oneof![
        prop::collection::vec(prop::sample::select(tokens), 1..6).prop_map(|t| t.concat()),
        prop::collection::vec(any::<u8>(), 1..8),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        any::<usize>().prop_map(|keep| Mutation::Truncate { keep }),
        (any::<usize>(), 0usize..4, interesting_bytes())
            .prop_map(|(at, remove, insert)| Mutation::Splice { at, remove, insert }),
        (-300i64..300).prop_map(|file_len_delta| Mutation::Lie { file_len_delta }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn valid_headers_round_trip((file, expected) in valid_file()) {
        let header = parse_npy_header(&file, file.len() as u64).unwrap();
        check_consistent(&header, &file, file.len() as u64);
        prop_assert_eq!(header, expected);
    }

    #[test]
    fn mutated_headers_never_panic(
        (file, _) in valid_file(),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        let mut file = file;
        let mut file_len = file.len() as u64;
        for m in mutations {
            let n = file.len().max(1);
            match m {
                Mutation::Flip { at, mask } => {
                    if let Some(b) = file.get_mut(at % n) { *b ^= mask; }
                }
                Mutation::Set { at, byte } => {
                    if let Some(b) = file.get_mut(at % n) { *b = byte; }
                }
                Mutation::Truncate { keep } => file.truncate(keep % n),
                Mutation::Splice { at, remove, insert } => {
                    let at = at % n;
                    let end = (at + remove).min(file.len());
                    if at <= file.len() { file.splice(at..end, insert); }
                }
                Mutation::Lie { file_len_delta } => {
                    file_len = (file.len() as i64 + file_len_delta).max(0) as u64;
                    parse_and_check(&file, file_len);
                    continue;
                }
            }
            file_len = file.len() as u64;
        }
        parse_and_check(&file, file_len);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), extra in 0u64..1000) {
        parse_and_check(&bytes, bytes.len() as u64);
        parse_and_check(&bytes, bytes.len() as u64 + extra);
    }

    #[test]
    fn token_soup_after_a_valid_preamble_never_panics(
        version in prop::sample::select(vec![(1u8, 0u8), (2, 0), (3, 0)]),
        body in prop::collection::vec(interesting_bytes(), 0..30),
        data_len in 0usize..64,
    ) {
        let body = body.concat();
        let mut file = b"\x93NUMPY".to_vec();
        file.extend([version.0, version.1]);
        if version.0 == 1 {
            file.extend((body.len() as u16).to_le_bytes());
        } else {
            file.extend((body.len() as u32).to_le_bytes());
        }
        file.extend(&body);
        file.resize(file.len() + data_len, 0);
        parse_and_check(&file, file.len() as u64);
    }
}
