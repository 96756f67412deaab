//! Document boundaries from a begin-of-sequence token: [`bos_boundaries`].
//!
//! The scan reads the token stream once, at memory speed: blocks are tested for the token
//! with a branch-free fold the compiler vectorizes, and only blocks that hold it are walked
//! for positions. Big streams are split between threads (each returns its own sorted
//! offsets, joined in order), so opening a multi-GB stream costs a fraction of a second and
//! memory grows with the number of documents, not the stream.

use crate::view::View;
use crate::DType;

use super::windows::WindowError;

/// Tokens per block tested at once; a block with a hit is walked element by element. Small,
/// so that with documents of a few hundred tokens most blocks still hold none.
const BLOCK: usize = 64;
/// Below this many bytes a stream is scanned on the calling thread.
const PARALLEL_MIN_BYTES: usize = 64 << 20;

/// The stream offsets (series laid end to end) of every occurrence of `token` in
/// `series`: each starts a document. Errors name `bos`: a token outside the dtype's range,
/// a dtype that is not an integer, or a series that is not contiguous host memory.
pub fn bos_boundaries(series: &[View], token: i64) -> Result<Vec<u64>, WindowError> {
    let mut out = Vec::new();
    let mut base: u64 = 0;
    for (number, view) in series.iter().enumerate() {
        let dtype = view.dtype();
        let pattern = pattern(dtype, token).ok_or(WindowError::BosOutOfRange { token, dtype })?;
        let bytes = view
            .contiguous_bytes()
            .filter(|_| view.layout().ndim() == 1)
            .ok_or(WindowError::BosNeedsContiguous { series: number })?;
        scan(bytes, &pattern, base, &mut out);
        base += view.layout().shape()[0] as u64;
    }
    Ok(out)
}

/// The little-endian bytes of `token` as one item of `dtype`; `None` when it does not fit
/// (or the dtype holds no integer tokens).
fn pattern(dtype: DType, token: i64) -> Option<Vec<u8>> {
    let bytes = match dtype {
        DType::U8 => u8::try_from(token).ok()?.to_le_bytes().to_vec(),
        DType::I8 => i8::try_from(token).ok()?.to_le_bytes().to_vec(),
        DType::U16 => u16::try_from(token).ok()?.to_le_bytes().to_vec(),
        DType::I16 => i16::try_from(token).ok()?.to_le_bytes().to_vec(),
        DType::U32 => u32::try_from(token).ok()?.to_le_bytes().to_vec(),
        DType::I32 => i32::try_from(token).ok()?.to_le_bytes().to_vec(),
        DType::U64 => u64::try_from(token).ok()?.to_le_bytes().to_vec(),
        DType::I64 => token.to_le_bytes().to_vec(),
        _ => return None,
    };
    Some(bytes)
}

/// Appends `base + i` for every item `i` of `bytes` equal to `pattern`, in order.
fn scan(bytes: &[u8], pattern: &[u8], base: u64, out: &mut Vec<u64>) {
    let item = pattern.len();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if bytes.len() < PARALLEL_MIN_BYTES || threads < 2 {
        scan_serial(bytes, pattern, base, out);
        return;
    }
    // Chunks of whole blocks, so no item straddles two threads.
    let items = bytes.len() / item;
    let per = items.div_ceil(threads).div_ceil(BLOCK) * BLOCK;
    let parts: Vec<Vec<u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..items.div_ceil(per))
            .map(|k| {
                let lo = k * per;
                let hi = (lo + per).min(items);
                let chunk = &bytes[lo * item..hi * item];
                scope.spawn(move || {
                    let mut found = Vec::new();
                    scan_serial(chunk, pattern, base + lo as u64, &mut found);
                    found
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("the scan does not panic"))
            .collect()
    });
    for part in parts {
        out.extend(part);
    }
}

fn scan_serial(bytes: &[u8], pattern: &[u8], base: u64, out: &mut Vec<u64>) {
    match *pattern {
        [a] => scan_items(bytes, base, out, |c: &[u8; 1]| c[0] == a),
        [a, b] => {
            let p = u16::from_le_bytes([a, b]);
            scan_items(bytes, base, out, |c: &[u8; 2]| u16::from_le_bytes(*c) == p)
        }
        _ if pattern.len() == 4 => {
            let p = u32::from_le_bytes(pattern.try_into().expect("4 bytes"));
            scan_items(bytes, base, out, |c: &[u8; 4]| u32::from_le_bytes(*c) == p)
        }
        _ => {
            let p = u64::from_le_bytes(pattern.try_into().expect("8 bytes"));
            scan_items(bytes, base, out, |c: &[u8; 8]| u64::from_le_bytes(*c) == p)
        }
    }
}

fn scan_items<const N: usize>(
    bytes: &[u8],
    base: u64,
    out: &mut Vec<u64>,
    hit: impl Fn(&[u8; N]) -> bool,
) {
    let item = |c: &[u8]| -> [u8; N] { c.try_into().expect("chunks of N bytes") };
    for (b, block) in bytes.chunks(BLOCK * N).enumerate() {
        // No early exit: the fold compiles to vector compares.
        if !block
            .chunks_exact(N)
            .fold(false, |any, c| any | hit(&item(c)))
        {
            continue;
        }
        let first = base + (b * BLOCK) as u64;
        out.extend(
            block
                .chunks_exact(N)
                .enumerate()
                .filter(|(_, c)| hit(&item(c)))
                .map(|(i, _)| first + i as u64),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlpack::DLDevice;

    fn u16_view(values: &[u16]) -> View {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        View::from_owned(bytes, &[values.len()], DType::U16, DLDevice::CPU, true).unwrap()
    }

    #[test]
    fn finds_every_token_in_stream_offsets() {
        let a: Vec<u16> = (0..5000)
            .map(|i| if i % 777 == 3 { 9 } else { 1 })
            .collect();
        let b = [9u16, 2, 9];
        let found = bos_boundaries(&[u16_view(&a), u16_view(&b)], 9).unwrap();
        let mut expected: Vec<u64> = (0..5000).filter(|i| i % 777 == 3).collect();
        expected.extend([5000, 5002]);
        assert_eq!(found, expected);
    }

    #[test]
    fn threads_join_in_order() {
        let bytes: Vec<u8> = (0..(PARALLEL_MIN_BYTES as u64 + 12345))
            .map(|i| if i % 100_003 == 0 { 7 } else { 0 })
            .collect();
        let mut out = Vec::new();
        scan(&bytes, &[7], 10, &mut out);
        let expected: Vec<u64> = (0..bytes.len() as u64)
            .filter(|i| i % 100_003 == 0)
            .map(|i| i + 10)
            .collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn token_outside_the_dtype_is_refused() {
        let err = bos_boundaries(&[u16_view(&[1, 2])], 70_000).unwrap_err();
        assert_eq!(err.argument(), "bos");
        assert!(err.to_string().contains("70000"), "{err}");
        assert!(bos_boundaries(&[u16_view(&[1, 2])], -1).is_err());
    }
}
