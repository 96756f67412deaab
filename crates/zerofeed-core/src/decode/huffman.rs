//! zerofeed's own Huffman decoder for baseline JPEG scans, plugged into libjpeg in place of
//! its `decode_mcu`; libjpeg still parses the markers and does the IDCT, upsampling and
//! colour conversion.
//!
//! Why: in the train recipe, libjpeg-turbo's `decode_mcu` was 44 % of a worker's time, and
//! region decode cannot skip it (entropy-coded data is only readable in order, so every MCU
//! above and beside the crop is decoded too). This decoder does the same work in fewer
//! steps:
//!
//! - most AC coefficients take one table lookup: the entry for the next [`FAST_BITS`] bits
//!   holds the run, the coefficient's value and the length of code and value bits together
//!   (libjpeg looks the code up, then reads and sign-extends the value bits separately);
//! - the bit buffer is refilled eight bytes at a time wherever those bytes hold no `0xFF`
//!   (which would be a stuffed byte or a marker), not one byte per step.
//!
//! It produces exactly libjpeg's coefficients (tests compare whole decodes, bit for bit, on
//! real photographs and on mutated files). On data libjpeg would decode as garbage without
//! complaint (an invalid Huffman code in its fast path) it returns an error instead, and it
//! decodes only what libjpeg's fast path handles: a single baseline Huffman scan without
//! restart markers ([`install`] leaves every other JPEG to libjpeg).

use std::ffi::{c_int, c_void};
use std::panic::resume_unwind;

use mozjpeg_sys as ffi;

use super::entry::{fingerprint, EntryPoints, RowStart};
use super::jpeg::{corrupt, Abort, TRUNCATED};
use super::DecodeError;

/// Bits of lookahead of the one-step tables: codes (and, for AC, code + value bits) up to
/// this long decode in one lookup. 10 keeps a table at 6 KiB, so a scan's four fit in L1.
const FAST_BITS: u32 = 10;

/// The most blocks an MCU has (libjpeg's `D_MAX_BLOCKS_IN_MCU`).
const MAX_BLOCKS: usize = 10;

/// Zigzag position to natural (row-major) position.
const NATURAL: [u8; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// The run of a one-step end-of-block entry: it takes the position past every real one.
const END_OF_BLOCK_RUN: usize = 128;

/// One block of an MCU; mirrors `struct zf_block_plan` in `csrc/jpeg_scan.c`.
#[repr(C)]
#[derive(Clone, Copy)]
struct BlockPlanC {
    dc_table: *const ffi::JHUFF_TBL,
    ac_table: *const ffi::JHUFF_TBL,
    component: c_int,
    dc_needed: c_int,
    ac_needed: c_int,
}

/// Mirrors `struct zf_scan_plan` in `csrc/jpeg_scan.c`.
#[repr(C)]
struct ScanPlanC {
    blocks_in_mcu: c_int,
    comps_in_scan: c_int,
    blocks: [BlockPlanC; MAX_BLOCKS],
}

type DecodeMcu =
    unsafe extern "C-unwind" fn(&mut ffi::jpeg_decompress_struct, *mut ffi::JBLOCKROW) -> c_int;

extern "C" {
    fn zf_jpeg_scan_plan(cinfo: *mut ffi::jpeg_decompress_struct, plan: *mut ScanPlanC) -> c_int;
    fn zf_jpeg_replace_decode_mcu(cinfo: *mut ffi::jpeg_decompress_struct, decode_mcu: DecodeMcu);
    fn zf_jpeg_mcu_columns(
        cinfo: *mut ffi::jpeg_decompress_struct,
        first: *mut ffi::JDIMENSION,
        last: *mut ffi::JDIMENSION,
        per_row: *mut ffi::JDIMENSION,
    );
}

/// One Huffman table in the forms the decoder reads.
struct Table {
    /// Indexed by the next [`FAST_BITS`] bits: `(code length << 8) | symbol`, or 0 where the
    /// code is longer (or no code starts with those bits).
    lookup: [u16; 1 << FAST_BITS],
    /// AC tables only, same index: `(value << 16) | (run << 8) | bits`, where `bits` is the
    /// code's length plus the value's, when both fit in [`FAST_BITS`]; 0 otherwise. The
    /// zero run (16 zeros) is run 15 and value 0 (storing that 0 changes nothing); the end of
    /// the block is run [`END_OF_BLOCK_RUN`].
    fast_ac: [i32; 1 << FAST_BITS],
    /// `max_code[l]`: the largest code of length `l`, or -1 when there is none.
    max_code: [i32; 17],
    /// `value_offset[l]`: added to a code of length `l`, its symbol's index in `symbols`.
    value_offset: [i32; 17],
    symbols: [u8; 256],
}

impl Table {
    /// The canonical code of JPEG's Annex C from libjpeg's parsed (and already validated)
    /// table, checked again here so that nothing below can index out of bounds.
    fn build(spec: &ffi::JHUFF_TBL, ac: bool) -> Result<Box<Table>, DecodeError> {
        let bad = || corrupt("Bogus Huffman table definition");
        let mut table = Box::new(Table {
            lookup: [0; 1 << FAST_BITS],
            fast_ac: [0; 1 << FAST_BITS],
            max_code: [-1; 17],
            value_offset: [0; 17],
            symbols: spec.huffval,
        });
        let (mut code, mut count) = (0u32, 0usize);
        let total: usize = spec.bits[1..].iter().map(|&b| usize::from(b)).sum();
        for len in 1..=16u32 {
            let n = usize::from(spec.bits[len as usize]);
            // As libjpeg: no code may be all ones, at any length up to the longest one.
            if count + n > 256 || (count < total && code + n as u32 >= 1 << len) {
                return Err(bad());
            }
            table.value_offset[len as usize] = count as i32 - code as i32;
            if n > 0 {
                table.max_code[len as usize] = (code + n as u32 - 1) as i32;
            }
            for i in 0..n {
                let symbol = spec.huffval[count + i];
                if len <= FAST_BITS {
                    table.fill(code + i as u32, len, symbol, ac);
                }
            }
            code = (code + n as u32) << 1;
            count += n;
        }
        Ok(table)
    }

    /// The one-step entries of every index whose first `len` bits are `code`.
    fn fill(&mut self, code: u32, len: u32, symbol: u8, ac: bool) {
        let spare = FAST_BITS - len;
        let first = (code << spare) as usize;
        for index in first..first + (1 << spare) {
            self.lookup[index] = ((len << 8) | u32::from(symbol)) as u16;
            let (run, size) = (u32::from(symbol >> 4), u32::from(symbol & 15));
            if !ac || len + size > FAST_BITS {
                continue;
            }
            self.fast_ac[index] = match (run, size) {
                // A zero size with a run other than 15 ends the block, as in libjpeg.
                (0..=14, 0) => ((END_OF_BLOCK_RUN as u32) << 8 | len) as i32,
                _ => {
                    let raw = (index as u32 >> (FAST_BITS - len - size)) & ((1 << size) - 1);
                    let value = if size == 0 { 0 } else { extend(raw, size) };
                    (value << 16) | (run << 8 | (len + size)) as i32
                }
            };
        }
    }
}

/// A coefficient from its `size` value bits (JPEG's EXTEND; `size` 1 to 15).
#[inline(always)]
fn extend(raw: u32, size: u32) -> i32 {
    if raw < 1 << (size - 1) {
        raw as i32 - (1 << size) + 1
    } else {
        raw as i32
    }
}

/// Has any byte of `x` the value 0xFF? (A zero byte of `!x`, by the usual bit trick; exact.)
#[inline(always)]
fn has_ff(x: u64) -> bool {
    let v = !x;
    v.wrapping_sub(0x0101_0101_0101_0101) & !v & 0x8080_8080_8080_8080 != 0
}

/// Why the decoder stopped appending real bits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    /// Not yet.
    No,
    /// At a marker: the scan's data ends (or, if bits past it are needed, the scan is cut).
    Marker,
    /// At the end of the bytes: the file is cut.
    Data,
}

/// The entropy-coded bits, most significant first, with JPEG's byte stuffing undone.
///
/// `Copy`, so that an MCU is decoded on a copy in registers (through `&mut self` fields the
/// compiler kept `buf` and `count` in memory, a load and a store for every coefficient).
#[derive(Clone, Copy)]
struct Bits<'a> {
    /// From the scan's first byte to the end of the file.
    data: &'a [u8],
    /// The next byte of `data` not yet in `buf`.
    pos: usize,
    /// The next `count` bits, left-aligned; below them, zeros or the bits that come next.
    buf: u64,
    count: u32,
    /// How many of the `count` bits (the last ones) are zeros appended past the end.
    padding: u32,
    end: End,
}

impl<'a> Bits<'a> {
    /// Before the first bit of `data`.
    fn new(data: &'a [u8]) -> Bits<'a> {
        Bits {
            data,
            pos: 0,
            buf: 0,
            count: 0,
            padding: 0,
            end: End::No,
        }
    }

    /// At least 57 bits in `buf`, real or padding.
    #[inline(always)]
    fn refill(&mut self) {
        if self.end == End::No {
            if let Some(chunk) = self.data.get(self.pos..self.pos + 8) {
                let x = u64::from_be_bytes(chunk.try_into().unwrap_or([0xFF; 8]));
                if !has_ff(x) {
                    // Whole bytes that fit; the bits of the next byte that `x >> count` also
                    // brings in are that byte's own, so reading it again later is harmless.
                    let bytes = (64 - self.count) / 8;
                    self.buf |= x >> self.count;
                    self.pos += bytes as usize;
                    self.count += 8 * bytes;
                    return;
                }
            }
        }
        *self = self.refilled_bytewise();
    }

    /// The slow refill, by value: a `&mut self` call would pin the hot loop's copy of
    /// these bits to the stack.
    #[cold]
    #[inline(never)]
    fn refilled_bytewise(mut self) -> Self {
        while self.count <= 56 {
            let byte = self.next_byte();
            self.buf |= u64::from(byte) << (56 - self.count);
            self.count += 8;
        }
        self
    }

    fn next_byte(&mut self) -> u8 {
        if self.end == End::No {
            match self.data.get(self.pos) {
                Some(&0xFF) => {
                    // Any number of 0xFF fill bytes, then 0x00 (a stuffed 0xFF, as libjpeg
                    // reads it) or a marker's code.
                    let mut at = self.pos + 1;
                    while self.data.get(at) == Some(&0xFF) {
                        at += 1;
                    }
                    match self.data.get(at) {
                        Some(&0) => {
                            self.pos = at + 1;
                            return 0xFF;
                        }
                        Some(_) => self.end = End::Marker,
                        None => self.end = End::Data,
                    }
                }
                Some(&byte) => {
                    self.pos += 1;
                    return byte;
                }
                None => self.end = End::Data,
            }
        }
        self.padding += 8;
        0
    }

    #[inline(always)]
    fn ensure(&mut self, bits: u32) {
        if self.count < bits {
            self.refill();
        }
    }

    /// The next `n` bits (1 to 32) without consuming them.
    #[inline(always)]
    fn peek(&self, n: u32) -> u32 {
        (self.buf >> (64 - n)) as u32
    }

    #[inline(always)]
    fn consume(&mut self, n: u32) {
        self.buf <<= n;
        self.count -= n;
    }

    /// The next `n` bits (1 to 15), consumed.
    #[inline(always)]
    fn take(&mut self, n: u32) -> u32 {
        let v = self.peek(n);
        self.consume(n);
        v
    }

    /// One Huffman symbol; the caller has ensured 16 bits.
    #[inline(always)]
    fn symbol(&mut self, table: &Table) -> Result<u8, DecodeError> {
        let entry = table.lookup[self.peek(FAST_BITS) as usize];
        if entry != 0 {
            self.consume(u32::from(entry >> 8));
            return Ok(entry as u8);
        }
        let (symbol, len) = long_symbol(self.buf, table)?;
        self.consume(len);
        Ok(symbol)
    }

    /// An error when bits past the end of the data were consumed.
    #[inline(always)]
    fn check(&self) -> Result<(), DecodeError> {
        if self.count >= self.padding {
            return Ok(());
        }
        Err(match self.end {
            End::Data => TRUNCATED,
            _ => corrupt("Corrupt JPEG data: premature end of data segment"),
        })
    }
}

/// A code longer than [`FAST_BITS`] at the top of `buf`: its symbol and length. By value,
/// like [`Bits::refilled_bytewise`].
#[cold]
#[inline(never)]
fn long_symbol(buf: u64, table: &Table) -> Result<(u8, u32), DecodeError> {
    for len in FAST_BITS + 1..=16 {
        let code = (buf >> (64 - len)) as i32;
        if code <= table.max_code[len as usize] {
            let at = (code + table.value_offset[len as usize]) as usize;
            return Ok((table.symbols[at & 0xFF], len));
        }
    }
    Err(corrupt("Corrupt JPEG data: bad Huffman code"))
}

/// How to decode one block of an MCU.
#[derive(Clone, Copy)]
struct BlockPlan {
    dc: usize,
    ac: usize,
    component: usize,
    dc_needed: bool,
    ac_needed: bool,
}

/// The decoder of one scan; libjpeg reaches it through `client_data`.
pub(super) struct ScanDecoder<'a> {
    bits: Bits<'a>,
    tables: Vec<Box<Table>>,
    blocks: Vec<BlockPlan>,
    predictors: [i32; 4],
    /// The MCU column the next MCU is in, and the MCUs in a row.
    column: u32,
    per_row: u32,
    /// The columns libjpeg inverse-transforms; outside them coefficients are not stored.
    first: u32,
    last: u32,
    /// The MCU row the next MCU is in.
    row: u32,
    /// The image's entry points, used and extended; and whether the decoder is jumping
    /// over rows libjpeg skips (its state is then stale until the jump lands).
    entries: Option<&'a mut EntryPoints>,
    jumping: bool,
}

/// The installed decoder, owned through the raw pointer libjpeg holds (a `Box` moved after
/// its pointer was handed out would invalidate that pointer); freed when this drops, which
/// must be after the decompressor's last `decode_mcu` call.
pub(super) struct Installed<'a> {
    decoder: std::ptr::NonNull<ScanDecoder<'a>>,
}

impl Drop for Installed<'_> {
    fn drop(&mut self) {
        // SAFETY: made by `Box::into_raw` in `install`, freed only here.
        drop(unsafe { Box::from_raw(self.decoder.as_ptr()) });
    }
}

/// Replaces libjpeg's Huffman decoder with a [`ScanDecoder`] when the image is one baseline
/// Huffman scan without restart markers; returns the guard that owns it (to be kept until
/// the decompressor has stopped), or None when libjpeg keeps its own.
///
/// # Safety
/// `cinfo` is a decompressor after `jpeg_start_decompress` (and `jpeg_crop_scanline`, if
/// called) and before the first scanline, reading `bytes` through `jpeg_mem_src`.
pub(super) unsafe fn install<'a>(
    cinfo: &mut ffi::jpeg_decompress_struct,
    bytes: &'a [u8],
    mut entries: Option<&'a mut EntryPoints>,
) -> Result<Option<Installed<'a>>, DecodeError> {
    // SAFETY: plain C data (integers and pointers) for which all-zero is valid.
    let mut plan: ScanPlanC = unsafe { std::mem::zeroed() };
    // SAFETY: a started decompressor, as the caller promises; `plan` is writable.
    if unsafe { zf_jpeg_scan_plan(cinfo, &mut plan) } == 0 {
        return Ok(None);
    }
    let n = usize::try_from(plan.blocks_in_mcu).unwrap_or(0);
    if n == 0 || n > MAX_BLOCKS || !(1..=4).contains(&plan.comps_in_scan) {
        return Ok(None);
    }
    let mut sources: Vec<(*const ffi::JHUFF_TBL, bool)> = Vec::new();
    let mut tables = Vec::new();
    let mut index_of = |spec: *const ffi::JHUFF_TBL, ac: bool| {
        if let Some(i) = sources.iter().position(|&s| s == (spec, ac)) {
            return Ok(i);
        }
        // SAFETY: the C side returned libjpeg's own non-null table, alive for the scan.
        tables.push(Table::build(unsafe { &*spec }, ac)?);
        sources.push((spec, ac));
        Ok::<usize, DecodeError>(tables.len() - 1)
    };
    let mut blocks = Vec::with_capacity(n);
    for b in &plan.blocks[..n] {
        blocks.push(BlockPlan {
            dc: index_of(b.dc_table, false)?,
            ac: index_of(b.ac_table, true)?,
            component: usize::try_from(b.component).unwrap_or(0).min(3),
            dc_needed: b.dc_needed != 0,
            ac_needed: b.ac_needed != 0,
        });
    }
    // SAFETY: jpeg_mem_src's manager over `bytes`; what it has not yet handed out is the
    // tail of `bytes`, from the scan's first entropy-coded byte.
    let (next, left) = unsafe { ((*cinfo.src).next_input_byte, (*cinfo.src).bytes_in_buffer) };
    let start = (next as usize).wrapping_sub(bytes.as_ptr() as usize);
    if start > bytes.len() || bytes.len() - start != left {
        return Ok(None);
    }
    let data = &bytes[start..];
    let (mut first, mut last, mut per_row) = (0, 0, 0);
    // SAFETY: a started decompressor; three writable integers.
    unsafe { zf_jpeg_mcu_columns(cinfo, &mut first, &mut last, &mut per_row) };
    if per_row == 0 || first > last {
        return Ok(None);
    }
    if let Some(points) = entries.as_deref_mut() {
        // The cache is keyed by sample index; this tells another file at that index apart.
        let layout = [
            bytes.len() as u64,
            start as u64,
            u64::from(per_row),
            n as u64,
        ];
        let print = fingerprint(&layout, &data[..data.len().min(256)])
            ^ fingerprint(&[], &data[data.len().saturating_sub(256)..]).rotate_left(1);
        let fits = |r: &RowStart| r.pos as usize <= data.len() && r.count <= 64;
        if points.fingerprint != print || !points.rows.iter().all(fits) {
            *points = EntryPoints {
                fingerprint: print,
                rows: Vec::new(),
            };
        }
    }
    let decoder = Box::new(ScanDecoder {
        bits: Bits::new(data),
        tables,
        blocks,
        predictors: [0; 4],
        column: 0,
        per_row,
        first,
        last,
        row: 0,
        entries,
        jumping: false,
    });
    let decoder = std::ptr::NonNull::from(Box::leak(decoder));
    cinfo.common.client_data = decoder.as_ptr().cast::<c_void>();
    // SAFETY: as above; libjpeg calls `decode_mcu` only while reading this scan's rows.
    unsafe { zf_jpeg_replace_decode_mcu(cinfo, decode_mcu) };
    Ok(Some(Installed { decoder }))
}

/// libjpeg's `decode_mcu` method: one MCU's coefficients, in natural order and not
/// dequantized, into the (zeroed) blocks `data` points to; `data` null skips the MCU.
unsafe extern "C-unwind" fn decode_mcu(
    cinfo: &mut ffi::jpeg_decompress_struct,
    data: *mut ffi::JBLOCKROW,
) -> c_int {
    // SAFETY: `install` set `client_data` to the boxed decoder, which outlives every call.
    let decoder = unsafe { &mut *cinfo.common.client_data.cast::<ScanDecoder>() };
    // SAFETY: libjpeg passes null or `blocks_in_MCU` pointers to distinct zeroed blocks.
    if let Err(error) = unsafe { decoder.mcu(data) } {
        resume_unwind(Box::new(Abort(error)));
    }
    let bits = &decoder.bits;
    // Keep libjpeg's source in step, so that it finds the markers after the scan.
    // SAFETY: `pos <= data.len()`, and `src` is jpeg_mem_src's manager over these bytes.
    unsafe {
        (*cinfo.src).next_input_byte = bits.data.as_ptr().add(bits.pos);
        (*cinfo.src).bytes_in_buffer = bits.data.len() - bits.pos;
    }
    1
}

impl ScanDecoder<'_> {
    /// # Safety
    /// `data` is null or points to `self.blocks.len()` pointers to distinct 64-coefficient
    /// blocks.
    unsafe fn mcu(&mut self, data: *mut ffi::JBLOCKROW) -> Result<(), DecodeError> {
        let column = self.column;
        if column == 0 {
            self.row_start(data.is_null());
        }
        self.column = if column + 1 == self.per_row {
            self.row += 1;
            0
        } else {
            column + 1
        };
        if self.jumping {
            return Ok(()); // a row libjpeg skips, and an entry point past it is known
        }
        let mut bits = self.bits;
        // libjpeg skips the inverse DCT of the columns a crop cuts off: nothing to store.
        let store = (self.first..=self.last).contains(&column);
        for (i, plan) in self.blocks.iter().enumerate() {
            let block = if data.is_null() || !store {
                None
            } else {
                // SAFETY: the caller's promise; `i < blocks.len()`.
                Some(unsafe { &mut *(*data.add(i)) })
            };
            let (dc, ac) = (&*self.tables[plan.dc], &*self.tables[plan.ac]);
            bits.ensure(32);
            let size = u32::from(bits.symbol(dc)?);
            let diff = match size {
                0 => 0,
                1..=15 => {
                    bits.ensure(16);
                    extend(bits.take(size), size)
                }
                _ => return Err(corrupt("Corrupt JPEG data: bad DC coefficient size")),
            };
            // Kept for every component, needed or not (libjpeg keeps only the needed
            // ones), so that an entry point serves a gray decode and an RGB one alike.
            let p = &mut self.predictors[plan.component];
            *p = p.wrapping_add(diff);
            let Some(block) = block else {
                ac_coefficients::<false>(&mut bits, ac, &mut [0; 64])?;
                continue;
            };
            if plan.dc_needed {
                block[0] = *p as i16;
            }
            if plan.ac_needed {
                ac_coefficients::<true>(&mut bits, ac, block)?;
            } else {
                ac_coefficients::<false>(&mut bits, ac, block)?;
            }
        }
        self.bits = bits;
        bits.check()
    }

    /// At the start of MCU row `self.row`: jump over it when libjpeg skips it (`skipped`)
    /// and the next row's entry point is known; land on this row's entry point when a jump
    /// ends here; record the row's entry point when it is the first one not yet known.
    fn row_start(&mut self, skipped: bool) {
        let Some(points) = self.entries.as_deref_mut() else {
            return;
        };
        let row = self.row as usize;
        if skipped && points.rows.len() > row + 1 {
            self.jumping = true;
            return;
        }
        if self.jumping {
            self.jumping = false;
            let at = points.rows[row];
            self.bits.buf = at.buf;
            self.bits.count = at.count;
            self.bits.pos = at.pos as usize;
            self.bits.padding = 0;
            self.bits.end = End::No;
            self.predictors = at.predictors;
        } else if points.rows.len() == row
            && self.bits.end == End::No
            && self.bits.padding == 0
            && u32::try_from(self.bits.pos).is_ok()
        {
            points.rows.push(RowStart {
                buf: self.bits.buf,
                count: self.bits.count,
                pos: self.bits.pos as u32,
                predictors: self.predictors,
            });
        }
    }
}

/// A block's 63 AC coefficients, stored into `block` when `STORE`, else only read past.
///
/// A run past the block's end is an error (libjpeg stores such a coefficient at position
/// 63 and carries on).
#[inline(always)]
fn ac_coefficients<const STORE: bool>(
    bits: &mut Bits,
    table: &Table,
    block: &mut [i16; 64],
) -> Result<(), DecodeError> {
    let mut k = 1usize;
    loop {
        bits.ensure(32);
        let fast = table.fast_ac[bits.peek(FAST_BITS) as usize];
        let value = if fast != 0 {
            bits.consume((fast & 0xFF) as u32);
            k += ((fast >> 8) & 0xFF) as usize;
            fast >> 16
        } else {
            let symbol = bits.symbol(table)?;
            let (run, size) = (usize::from(symbol >> 4), u32::from(symbol & 15));
            k += match (run, size) {
                (15, 0) => 15,              // the zero run: sixteen zeros, the last one stored below
                (_, 0) => END_OF_BLOCK_RUN, // EOB (and, as in libjpeg, any other zero size)
                _ => run,
            };
            if size == 0 {
                0
            } else {
                extend(bits.take(size), size)
            }
        };
        if k > 63 {
            if k >= END_OF_BLOCK_RUN {
                return Ok(());
            }
            return Err(corrupt(
                "Corrupt JPEG data: a run goes past the end of a block",
            ));
        }
        if STORE {
            block[usize::from(NATURAL[k])] = value as i16;
        }
        k += 1;
        if k > 63 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small canonical AC table: `00` = 0x01 (run 0, size 1), `01` = EOB, `100` = ZRL,
    /// `1010` = 0x12 (run 1, size 2).
    fn table(counts: &[u8], symbols: &[u8]) -> Result<Box<Table>, DecodeError> {
        let mut spec = ffi::JHUFF_TBL::default();
        spec.bits[1..=counts.len()].copy_from_slice(counts);
        spec.huffval[..symbols.len()].copy_from_slice(symbols);
        Table::build(&spec, true)
    }

    fn entry(t: &Table, prefix: u32, len: u32) -> i32 {
        t.fast_ac[(prefix << (FAST_BITS - len)) as usize]
    }

    #[test]
    fn one_step_entries_hold_run_value_and_length() {
        let t = table(&[0, 2, 1, 1], &[0x01, 0x00, 0xF0, 0x12]).unwrap();
        // `00` then value bit 1: +1; value bit 0: -1 (JPEG's EXTEND); 3 bits in all
        assert_eq!(entry(&t, 0b001, 3), 1 << 16 | 3);
        assert_eq!(entry(&t, 0b000, 3), -1 << 16 | 3);
        assert_eq!(entry(&t, 0b01, 2), (END_OF_BLOCK_RUN as i32) << 8 | 2);
        assert_eq!(entry(&t, 0b100, 3), 15 << 8 | 3);
        // `1010` then `10`: run 1, value 2, 6 bits; `01`: value -2
        assert_eq!(entry(&t, (0b1010 << 2) | 0b10, 6), 2 << 16 | 1 << 8 | 6);
        assert_eq!(entry(&t, (0b1010 << 2) | 0b01, 6), -2 << 16 | 1 << 8 | 6);
        // no code starts with `1011` or `11`: not one step, and an error when read
        assert_eq!(entry(&t, 0b1011, 4), 0);
        assert_eq!(t.lookup[(0b11 << (FAST_BITS - 2)) as usize], 0);
        assert!(long_symbol(0b11 << 62, &t).is_err());
    }

    #[test]
    fn long_codes_decode_through_max_code() {
        // one code of each length 1..=12: the 12-bit one is `1111_1111_1110`
        let counts = [1u8; 12];
        let symbols: Vec<u8> = (1..=12).collect();
        let t = table(&counts, &symbols).unwrap();
        let (symbol, len) = long_symbol(0b1111_1111_1110u64 << 52, &t).unwrap();
        assert_eq!((symbol, len), (12, 12));
    }

    #[test]
    fn impossible_tables_are_refused() {
        assert!(table(&[3], &[1, 2, 3]).is_err(), "three codes of one bit");
        assert!(
            table(&[0, 4, 1], &[1, 2, 3, 4, 5]).is_err(),
            "a full length-2 level"
        );
    }

    #[test]
    fn stuffing_is_undone_and_reads_past_a_marker_are_caught() {
        let data = [0xAB, 0xFF, 0x00, 0xCD, 0xFF, 0xD9];
        let mut bits = Bits::new(&data);
        bits.refill();
        assert_eq!(bits.take(12), 0xABF);
        assert_eq!(bits.take(12), 0xFCD);
        assert!(bits.check().is_ok(), "every bit read so far is real");
        assert_eq!(bits.pos, 4, "stopped at the marker, for libjpeg to read");
        bits.take(1);
        assert!(matches!(bits.check(), Err(DecodeError::Corrupt { .. })));
    }

    #[test]
    fn fill_bytes_before_a_stuffed_byte_are_dropped_as_libjpeg_does() {
        let data = [0x12, 0xFF, 0xFF, 0xFF, 0x00, 0x34, 0xFF, 0xFF, 0xD9];
        let mut bits = Bits::new(&data);
        bits.refill();
        assert_eq!(bits.take(8), 0x12);
        assert_eq!(bits.take(8), 0xFF);
        assert_eq!(bits.take(8), 0x34);
        assert!(bits.check().is_ok());
        assert_eq!(bits.pos, 6, "stopped at the fill bytes before the marker");
    }

    #[test]
    fn the_eight_byte_refill_matches_the_bytewise_one() {
        let data: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37)).collect();
        assert!(!data.contains(&0xFF));
        let fresh = Bits::new(&data);
        let (mut fast, mut slow) = (fresh, fresh);
        for n in [3u32, 15, 7, 1, 15, 9, 11, 13, 15, 2, 5, 15, 15] {
            fast.ensure(32);
            if slow.count < 32 {
                slow = slow.refilled_bytewise();
            }
            assert_eq!(fast.take(n), slow.take(n));
        }
        assert!(has_ff(0x00FF_0000_0000_0000) && !has_ff(0xFEFE_FEFE_FEFE_FEFE));
    }
}
