//! Fuzzes `parse_npy_header`: it must never panic, and an accepted header must be
//! self-consistent. The same properties as `crates/zerofeed-core/tests/npy_fuzz.rs`,
//! coverage-guided.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zerofeed_core::source::{parse_npy_header, NpyHeader};

fn check(header: &NpyHeader, prefix_len: usize, file_len: u64) {
    assert!(header.data_offset <= prefix_len);
    assert_eq!(header.data_offset as u64 + header.data_len as u64, file_len);
    let elements = header
        .shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .expect("element count fits in usize");
    assert_eq!(
        elements.checked_mul(header.dtype.itemsize()),
        Some(header.data_len)
    );
    assert_eq!(header.byte_strides().len(), header.shape.len());
}

fuzz_target!(|data: &[u8]| {
    // The input as a whole file.
    let file_len = data.len() as u64;
    if let Ok(header) = parse_npy_header(data, file_len) {
        check(&header, data.len(), file_len);
    }
    // The input as the first bytes of a longer file, as a caller reading only the
    // header would pass it. The last byte picks how much longer.
    let extra = u64::from(data.last().copied().unwrap_or(0)) * 97;
    if let Ok(header) = parse_npy_header(data, file_len + extra) {
        check(&header, data.len(), file_len + extra);
    }
});
