//! Reduced-precision weights for inference: bf16, or int8 with a scale per
//! output channel, converted once from a model's f32 weights.
//!
//! Products `c (+)= a · Wᵀ` (activations `[m, k]` through a weight stored
//! `[out, in]`) accumulate in f32 (bf16) or i32 (int8); everything else —
//! biases, the cells' pointwise kernels, the softmax — stays f32.
//! - **bf16**: the weight is rounded to bf16 (nearest even) and each
//!   activation row is rounded the same way when it is used; AVX512-BF16's
//!   `VDPBF16PS` multiplies pairs and adds them into f32 lanes.
//! - **int8**: each weight row j is `round(w / s_j)` in [−127, 127] with
//!   `s_j = max|w_j| / 127`; each activation row is quantised when it is used
//!   (dynamic quantisation, as PyTorch's `quantize_dynamic` does, but with a
//!   scale per row instead of per tensor) to `u = round(a / s_a) + 128` in
//!   [1, 255]. AVX512-VNNI's `VPDPBUSD` adds four u8·i8 products into each
//!   i32 lane, and `Σ (u − 128)·w = Σ u·w − 128·Σ w` undoes the offset.
//!
//! Where the CPU lacks the instruction, a portable loop computes the same
//! thing: exactly the same integers for int8, the same bf16 products
//! summed in another order for bf16. [`native`] says which path runs.

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};
use crate::float::Float;
use crate::gemm::{gemm_nn, gemm_nt, gemm_tn, OutPtr};
use crate::pool::pool;

/// The number format of a model's weight products.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 weights and products: training's format, and the reference.
    #[default]
    F32,
    /// bf16 weights and activations, f32 accumulation.
    Bf16,
    /// int8 weights (a scale per output channel) and activations (a scale
    /// per row, computed at each product), i32 accumulation.
    Int8,
}

impl Precision {
    /// Every precision, by its name.
    pub const ALL: [(&'static str, Precision); 3] = [
        ("f32", Precision::F32),
        ("bf16", Precision::Bf16),
        ("int8", Precision::Int8),
    ];

    /// The precision called `s`: f32, bf16 or int8.
    pub fn from_name(s: &str) -> Result<Precision> {
        Precision::ALL
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, p)| *p)
            .ok_or_else(|| {
                Error::Config(format!(
                    "unknown precision '{s}': expected f32, bf16 or int8"
                ))
            })
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether this CPU runs `precision`'s products with its own instruction
/// (AVX512-BF16 for bf16, AVX512-VNNI for int8); f32 always is native.
/// Where it is not, the portable path gives the same results, slower.
pub fn native(precision: Precision) -> bool {
    match precision {
        Precision::F32 => true,
        Precision::Bf16 => has_bf16(),
        Precision::Int8 => has_vnni(),
    }
}

/// Set by [`force_portable`]: tests run the portable path on CPUs that
/// have the instructions.
static PORTABLE: AtomicBool = AtomicBool::new(false);

/// Runs every product on the portable path (true) or on the CPU's own
/// instructions where it has them (false, the default): for tests and
/// measurements of the fallback.
pub fn force_portable(on: bool) {
    PORTABLE.store(on, Ordering::Relaxed);
}

#[cfg(target_arch = "x86_64")]
fn has_bf16() -> bool {
    !PORTABLE.load(Ordering::Relaxed)
        && std::arch::is_x86_feature_detected!("avx512bf16")
        && std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512vl")
}

#[cfg(not(target_arch = "x86_64"))]
fn has_bf16() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
fn has_vnni() -> bool {
    !PORTABLE.load(Ordering::Relaxed)
        && std::arch::is_x86_feature_detected!("avx512vnni")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512f")
}

#[cfg(not(target_arch = "x86_64"))]
fn has_vnni() -> bool {
    false
}

/// Output rows are packed in blocks of this many: one vector of f32 (or
/// i32) results.
const LANES: usize = 16;

/// Inner dimensions are padded to a multiple of this: the k values one
/// 32-bit lane takes in int8 (four codes; bf16 takes two).
const PAD: usize = 4;

/// Products with fewer multiply-adds than this run on the calling thread
/// unless their weight is large.
const PAR_MIN_WORK: usize = 4 << 20;

/// The same for bf16, whose products take twice int8's time: training's
/// per-step products of small models (50 × 512 × 128) gain from both cores.
const PAR_MIN_WORK_BF16: usize = 1 << 20;

/// Weights of at least this many bytes are split across threads however
/// few the activation rows: below it, one core reads the weight from its
/// cache faster than two threads meet (a few microseconds per product in
/// batch-1 generation).
const PAR_MIN_BYTES: usize = 512 * 1024;

/// A weight `[rows, cols]` (PyTorch's `[out, in]`) in a reduced precision.
///
/// The layout is the one `VPDPBUSD` and `VDPBF16PS` want with the
/// activations broadcast: blocks of 16 output rows; within a block, for
/// each group of G inputs (G = 4 int8 codes or 2 bf16 values, one 32-bit
/// lane), the 16 rows' G values side by side. One 64-byte load then feeds
/// 16 outputs, and the results land one output per lane, with no
/// horizontal sums.
#[derive(Clone, Debug)]
pub(crate) struct Packed {
    rows: usize,
    cols: usize,
    /// `cols` rounded up to [`PAD`].
    kp: usize,
    /// ⌈rows / 16⌉.
    blocks: usize,
    data: Data,
    /// The weight transposed (`[cols, rows]`) in the same format, for the
    /// backward products of training in bf16; `None` for inference.
    t: Option<Box<Packed>>,
}

#[derive(Clone, Debug)]
enum Data {
    /// `[blocks, kp / 2, 16, 2]` bf16 bit patterns.
    Bf16(Vec<u16>),
    /// `[blocks, kp / 4, 16, 4]` round(w / scale), with `[blocks·16]`
    /// scales and row sums (zero past `rows`).
    Int8 {
        w: Vec<i8>,
        scale: Vec<f32>,
        sum: Vec<i32>,
    },
}

/// f32 → bf16 bits, rounding to nearest even (NaN stays NaN).
#[inline]
pub(crate) fn to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) as u16) | 0x40;
    }
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// bf16 bits → f32 (exact).
#[inline]
pub(crate) fn from_bf16(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// The int8 code of `x` at scale 1/`inv`, rounded to nearest even as the
/// vector path's conversion does. Adding and taking away 1.5·2²³ rounds
/// any |y| < 2²² that way (`f32::round` is a library call on baseline
/// x86-64, and these run per activation per product).
#[inline]
fn q8(x: f32, inv: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0;
    let y = (x * inv).clamp(-127.0, 127.0);
    ((y + MAGIC) - MAGIC) as i32
}

/// The scale of row `x` (max |x| / 127; 0 for a row of zeros or with a
/// non-finite value, which a finite model does not produce) and its codes
/// + 128 in `out` (`x.len()` of them).
fn quantize_row(x: &[f32], out: &mut [u8]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_vnni() {
        // SAFETY: the CPU has AVX512-F and AVX512-BW (has_vnni checks them).
        return unsafe { x86::quantize_row(x, out) };
    }
    let max = x.iter().fold(0.0f32, |acc, v| acc.max(v.abs()));
    let (scale, inv) = if max > 0.0 && max.is_finite() {
        (max / 127.0, 127.0 / max)
    } else {
        (0.0, 0.0)
    };
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (q8(v, inv) + 128) as u8;
    }
    scale
}

/// Row `x` as bf16 bits in `out` (`x.len()` of them).
fn bf16_row(x: &[f32], out: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    if has_bf16() {
        // SAFETY: the CPU has AVX512-F and AVX512-BF16.
        return unsafe { x86::bf16_row(x, out) };
    }
    for (o, &v) in out.iter_mut().zip(x) {
        *o = to_bf16(v);
    }
}

/// Fills `out` `[blocks, groups, 16, 2]` with `w` `[rows, cols]` in bf16:
/// block b, group g, lane l holds w[16b + l][2g], w[16b + l][2g + 1]
/// (zeros past the edges). Blocks are split across threads.
fn pack_bf16_rows(w: &[f32], rows: usize, cols: usize, groups: usize, out: &mut [u16]) {
    // Groups per pass: the block's 16 rows of 2·CHUNK values are converted
    // (vectorised) into a tile on the stack, then laid out pair by pair.
    const CHUNK: usize = 64;
    let block = groups * 2 * LANES;
    let blocks = out.len() / block;
    let base = OutPtr(out.as_mut_ptr());
    crate::pool::par_ranges(blocks, 8, &|range| {
        let mut tile = [[0u16; 2 * CHUNK]; LANES];
        for b in range {
            // SAFETY: each task writes the blocks of its own range.
            let blk = unsafe { std::slice::from_raw_parts_mut(base.at(b * block), block) };
            for g0 in (0..groups).step_by(CHUNK) {
                let gn = CHUNK.min(groups - g0);
                let (c0, c1) = (2 * g0, (2 * (g0 + gn)).min(cols));
                for (l, t) in tile.iter_mut().enumerate() {
                    let (r, t) = (b * LANES + l, &mut t[..2 * gn]);
                    let have = if r < rows && c0 < c1 { c1 - c0 } else { 0 };
                    if have > 0 {
                        bf16_row(&w[r * cols + c0..r * cols + c1], &mut t[..have]);
                    }
                    t[have..].fill(0);
                }
                for g in 0..gn {
                    let dst = &mut blk[(g0 + g) * 2 * LANES..][..2 * LANES];
                    for (d, t) in dst.chunks_exact_mut(2).zip(&tile) {
                        d.copy_from_slice(&t[2 * g..2 * g + 2]);
                    }
                }
            }
        }
    });
}

/// Where [`interleave_pairs`] puts block b, group g.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    /// `[blocks, groups, 16, 2]`: a packed weight.
    BlockMajor,
    /// `[blocks·4, groups, 4, 2]`: activations, each tile of 4 rows with
    /// its pairs side by side, group after group.
    TileMajor,
}

/// `src` `[k, n]` (rows `ld` apart) in bf16 pairs along k: lane l of block
/// b, group g holds src[2g][16b + l], src[2g + 1][16b + l] (zeros past the
/// edges), placed by `order`. Row pairs are split across threads.
fn interleave_pairs(
    src: &[f32],
    ld: usize,
    k: usize,
    n: usize,
    groups: usize,
    out: &mut [u16],
    order: Order,
) {
    let blocks = n.div_ceil(LANES);
    assert!(out.len() >= blocks * groups * 2 * LANES && groups * 2 >= k);
    assert!(k == 0 || src.len() >= (k - 1) * ld + n);
    let base = OutPtr(out.as_mut_ptr());
    let vector = has_bf16();
    let portable = |r0: Option<&[f32]>, r1: Option<&[f32]>, dst: &mut [u16]| {
        for l in 0..LANES {
            let v = |r: Option<&[f32]>| r.and_then(|r| r.get(l)).map_or(0, |&x| to_bf16(x));
            dst[2 * l] = v(r0);
            dst[2 * l + 1] = v(r1);
        }
    };
    // Row pair by row pair, so that reads are sequential; the writes of
    // consecutive pairs fill the same lines, which stay in cache.
    crate::pool::par_ranges(groups, 16, &|range| {
        let mut pairs = [0u16; 2 * LANES];
        for g in range {
            for b in 0..blocks {
                let c0 = b * LANES;
                let width = (n - c0).min(LANES);
                let dst = &mut pairs[..];
                let row = |r: usize| (r < k).then(|| &src[r * ld + c0..][..width]);
                let (r0, r1) = (row(2 * g), row(2 * g + 1));
                #[cfg(target_arch = "x86_64")]
                if vector {
                    let mask = ((1u32 << width) - 1) as u16;
                    let ptr = |r: Option<&[f32]>| r.map_or(std::ptr::null(), <[f32]>::as_ptr);
                    match r0 {
                        // SAFETY: the CPU has AVX512-BF16 (has_bf16); the
                        // rows hold `width` values and `dst` 32.
                        Some(_) => unsafe {
                            x86::pairs16(ptr(r0), ptr(r1), mask, dst.as_mut_ptr())
                        },
                        None => dst.fill(0),
                    }
                } else {
                    portable(r0, r1, dst);
                }
                #[cfg(not(target_arch = "x86_64"))]
                {
                    let _ = vector;
                    portable(r0, r1, dst);
                }
                // SAFETY: each task writes the values of its own blocks.
                let put = |at: usize, v: &[u16]| unsafe {
                    std::ptr::copy_nonoverlapping(v.as_ptr(), base.at(at), v.len())
                };
                match order {
                    Order::BlockMajor => put((b * groups + g) * 2 * LANES, &pairs),
                    Order::TileMajor => {
                        for (q, v) in pairs.chunks_exact(8).enumerate() {
                            put(((4 * b + q) * groups + g) * 8, v);
                        }
                    }
                }
            }
        }
    });
}

impl Packed {
    /// `w` `[rows, cols]` in `precision` (which must not be f32).
    pub fn new(precision: Precision, w: &[f32], rows: usize, cols: usize) -> Packed {
        assert_eq!(
            w.len(),
            rows * cols,
            "Packed::new: weight is not [rows, cols]"
        );
        let kp = cols.next_multiple_of(PAD).max(PAD);
        let blocks = rows.div_ceil(LANES);
        let mut p = Packed {
            rows,
            cols,
            kp,
            blocks,
            data: Data::Bf16(Vec::new()),
            t: None,
        };
        let len = blocks * LANES * kp;
        p.data = match precision {
            Precision::F32 => panic!("Packed::new: f32 weights are used as they are"),
            Precision::Bf16 => {
                let mut out = vec![0u16; len];
                pack_bf16_rows(w, rows, cols, kp / 2, &mut out);
                Data::Bf16(out)
            }
            Precision::Int8 => {
                let mut q = vec![0i8; len];
                let mut scale = vec![0.0f32; blocks * LANES];
                let mut sum = vec![0i32; blocks * LANES];
                for r in 0..rows {
                    let row = &w[r * cols..][..cols];
                    let max = row.iter().fold(0.0f32, |m, x| m.max(x.abs()));
                    if max > 0.0 && max.is_finite() {
                        scale[r] = max / 127.0;
                        let inv = 127.0 / max;
                        for (k, &x) in row.iter().enumerate() {
                            let c = q8(x, inv);
                            q[p.at_int8(r, k)] = c as i8;
                            sum[r] += c;
                        }
                    }
                }
                Data::Int8 { w: q, scale, sum }
            }
        };
        p
    }

    /// `w` `[rows, cols]` in bf16 for training: with its transpose, which
    /// backward multiplies by; [`Packed::repack`] refreshes both after each
    /// update of the f32 weights.
    pub fn trainable(w: &[f32], rows: usize, cols: usize) -> Packed {
        let mut p = Packed::new(Precision::Bf16, w, rows, cols);
        let mut t = Box::new(Packed {
            rows: cols,
            cols: rows,
            kp: rows.next_multiple_of(PAD).max(PAD),
            blocks: cols.div_ceil(LANES),
            data: Data::Bf16(Vec::new()),
            t: None,
        });
        t.data = Data::Bf16(vec![0u16; t.blocks * LANES * t.kp]);
        t.pack_transpose_of(w);
        p.t = Some(t);
        p
    }

    /// Converts `w` (the same shape) into this packing again, and into its
    /// transpose when there is one; bf16 only.
    pub fn repack(&mut self, w: &[f32]) {
        let (rows, cols) = (self.rows, self.cols);
        assert_eq!(
            w.len(),
            rows * cols,
            "Packed::repack: weight is not [rows, cols]"
        );
        let Data::Bf16(out) = &mut self.data else {
            panic!("Packed::repack: only bf16 weights are trained");
        };
        pack_bf16_rows(w, rows, cols, self.kp / 2, out);
        if let Some(t) = &mut self.t {
            t.pack_transpose_of(w);
        }
    }

    /// Fills this bf16 packing (`[cols, rows]` of `w`) with `w`
    /// `[rows, cols]` transposed.
    fn pack_transpose_of(&mut self, w: &[f32]) {
        let (k, n) = (self.cols, self.rows);
        let Data::Bf16(out) = &mut self.data else {
            unreachable!("the transpose is bf16")
        };
        interleave_pairs(w, n, k, n, self.kp / 2, out, Order::BlockMajor);
    }

    /// Where weight (r, k) is stored, for group size `g`.
    fn at_group(&self, r: usize, k: usize, g: usize) -> usize {
        ((r / LANES * (self.kp / g) + k / g) * LANES + r % LANES) * g + k % g
    }

    /// Where bf16 weight (r, k) is stored.
    #[cfg(test)]
    fn at(&self, r: usize, k: usize) -> usize {
        self.at_group(r, k, 2)
    }

    /// Where int8 weight (r, k) is stored.
    fn at_int8(&self, r: usize, k: usize) -> usize {
        self.at_group(r, k, 4)
    }

    /// Whether it was packed for training, with its transpose.
    pub fn has_transpose(&self) -> bool {
        self.t.is_some()
    }

    /// The weight's element count (rows × cols).
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// The precision it holds.
    pub fn precision(&self) -> Precision {
        match self.data {
            Data::Bf16(_) => Precision::Bf16,
            Data::Int8 { .. } => Precision::Int8,
        }
    }

    /// Bytes its weights take.
    pub fn bytes(&self) -> usize {
        match &self.data {
            Data::Bf16(w) => 2 * w.len(),
            Data::Int8 { w, .. } => w.len() + 8 * self.blocks * LANES,
        }
    }

    /// The whole matrix, from row 0.
    pub fn view(&self) -> PackedRef<'_> {
        PackedRef {
            packed: self,
            row0: 0,
            k0: 0,
            k1: self.cols,
        }
    }

    /// The weight as f32 again: what the products see.
    #[cfg(test)]
    fn dequantize(&self) -> Vec<f32> {
        let k = self.cols;
        let mut out = vec![0.0f32; self.rows * k];
        for r in 0..self.rows {
            for c in 0..k {
                out[r * k + c] = match &self.data {
                    Data::Bf16(w) => from_bf16(w[self.at(r, c)]),
                    Data::Int8 { w, scale, .. } => f32::from(w[self.at_int8(r, c)]) * scale[r],
                };
            }
        }
        out
    }
}

/// A packed weight from row `row0` on, columns `k0..k1`: GRU's cells
/// multiply by the last third of `weight_hh` alone, and by the first two
/// thirds or the last of its transpose in backward.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PackedRef<'a> {
    packed: &'a Packed,
    row0: usize,
    k0: usize,
    k1: usize,
}

impl<'a> PackedRef<'a> {
    /// The same weight from `rows` rows further on.
    pub fn skip_rows(self, rows: usize) -> PackedRef<'a> {
        assert!(self.row0 + rows <= self.packed.rows);
        PackedRef {
            row0: self.row0 + rows,
            ..self
        }
    }

    /// Columns `k0..k1` of the whole weight; `k0` must be even (a bf16
    /// pair never straddles the edge) and bf16's.
    pub fn cols(self, k0: usize, k1: usize) -> PackedRef<'a> {
        assert!(
            k0.is_multiple_of(2) && k0 <= k1 && k1 <= self.packed.cols,
            "packed columns {k0}..{k1}"
        );
        assert!(
            matches!(self.packed.data, Data::Bf16(_)),
            "only bf16 has column windows"
        );
        PackedRef { k0, k1, ..self }
    }

    /// The transposed weight (`[in, out]`), packed for training's backward
    /// products, when it was ([`Packed::trainable`]).
    pub fn t(self) -> Option<PackedRef<'a>> {
        self.packed.t.as_deref().map(Packed::view)
    }

    /// `c[m, n] (+)= a[m, k] · W[row0..row0 + n, :k]ᵀ`, `a` with rows `lda`
    /// apart, `c` with rows `ldc` apart; `k` must be the weight's columns.
    #[allow(clippy::too_many_arguments)]
    pub fn product(
        self,
        m: usize,
        n: usize,
        k: usize,
        a: &[f32],
        lda: usize,
        c: &mut [f32],
        ldc: usize,
        accumulate: bool,
    ) {
        let p = self.packed;
        assert_eq!(k, self.k1 - self.k0, "packed product: inner dimension");
        assert!(self.row0 + n <= p.rows, "packed product: rows");
        if m == 0 || n == 0 {
            return;
        }
        assert!(a.len() >= (m - 1) * lda + k, "packed product: a too short");
        assert!(c.len() >= (m - 1) * ldc + n, "packed product: c too short");
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let Scratch {
                bytes,
                halves,
                scales,
                ..
            } = &mut *s;
            // Activations are converted once, before the split, so every
            // thread reads the same codes.
            let act = match &p.data {
                Data::Bf16(w) => {
                    let ng = k.div_ceil(2);
                    // Every element is written below: grow, never refill.
                    grow(halves, m * 2 * ng);
                    let base = OutPtr(halves.as_mut_ptr());
                    let convert = |rows: std::ops::Range<usize>| {
                        for i in rows {
                            // SAFETY: each task converts its own rows.
                            let row = unsafe {
                                std::slice::from_raw_parts_mut(base.at(i * 2 * ng), 2 * ng)
                            };
                            bf16_row(&a[i * lda..][..k], &mut row[..k]);
                            row[k..].fill(0);
                        }
                    };
                    // Training's products over all T·B rows convert
                    // megabytes: both threads share that.
                    if m * k >= 1 << 20 {
                        crate::pool::par_ranges(m, 64, &convert);
                    } else {
                        convert(0..m);
                    }
                    Act::Bf16(Bf16Operands {
                        w: w.as_ptr(),
                        groups: p.kp / 2,
                        wg0: self.k0 / 2,
                        ng,
                        x: halves.as_ptr(),
                        tile: 8 * ng,
                        row: 2 * ng,
                        group: 2,
                        kc: ng,
                    })
                }
                Data::Int8 { .. } => {
                    assert_eq!(k, p.cols, "int8 products take every column");
                    bytes.resize(m * p.kp, 0);
                    scales.resize(m, 0.0);
                    for i in 0..m {
                        let row = &mut bytes[i * p.kp..][..p.kp];
                        scales[i] = quantize_row(&a[i * lda..][..k], &mut row[..k]);
                        row[k..].fill(128);
                    }
                    Act::Int8(&bytes[..], &scales[..])
                }
            };
            let out = Out {
                ptr: c.as_mut_ptr(),
                ldc,
                row0: self.row0,
                accumulate,
            };
            let (lo, hi) = (self.row0, self.row0 + n);
            let bytes = p.bytes() / p.blocks * (hi.div_ceil(LANES) - lo / LANES);
            let work = match p.data {
                Data::Bf16(_) => PAR_MIN_WORK_BF16,
                Data::Int8 { .. } => PAR_MIN_WORK,
            };
            let big = bytes >= PAR_MIN_BYTES || m * n * k >= work;
            // SAFETY: `c` holds the m × n block (asserted above); tasks
            // write the rows of disjoint blocks of 16 weight rows.
            over_blocks(lo, hi, big, &|lo, hi| unsafe {
                kernel(p, &act, m, lo, hi, out)
            });
        });
    }
}

/// Runs `f(lo', hi')` over weight rows lo..hi: on this thread, or, when
/// the product is `big`, split into runs of whole blocks of 16 rows, one
/// per thread.
fn over_blocks(lo: usize, hi: usize, big: bool, f: &(dyn Fn(usize, usize) + Sync)) {
    let (b_lo, b_hi) = (lo / LANES, hi.div_ceil(LANES));
    let threads = crate::gemm::threads();
    if threads <= 1 || !big || b_hi - b_lo < 2 {
        return f(lo, hi);
    }
    let tasks = threads.min(b_hi - b_lo);
    let chunk = (b_hi - b_lo).div_ceil(tasks);
    pool().run(tasks, &|t| {
        let b0 = b_lo + t * chunk;
        let b1 = b_hi.min(b0 + chunk);
        if b0 < b1 {
            f(lo.max(b0 * LANES), hi.min(b1 * LANES));
        }
    });
}

/// A product of activations with a weight, through the weight's packed
/// copy when there is one (and the operands are f32), else through the
/// f32 weight `w` itself by `$f32`: the same ten arguments either way.
macro_rules! packed_product {
    ($(#[$doc:meta])* $name:ident, $f32:ident) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        #[inline]
        pub(crate) fn $name<T: Float>(
            m: usize,
            n: usize,
            k: usize,
            a: &[T],
            lda: usize,
            w: &[T],
            packed: Option<PackedRef<'_>>,
            c: &mut [T],
            ldc: usize,
            accumulate: bool,
        ) {
            if let (Some(q), Some(a)) = (packed, T::as_f32(a)) {
                let c = T::as_f32_mut(c).expect("a and c are both f32");
                return q.product(m, n, k, a, lda, c, ldc, accumulate);
            }
            $f32(m, n, k, a, lda, w, c, ldc, accumulate)
        }
    };
}

packed_product!(
    /// `c (+)= a · Wᵀ` (a `[m, k]`, W `[n, k]`): through `packed`, W's
    /// converted copy, when there is one (bf16 or int8).
    weight_nt, gemm_nt
);

packed_product!(
    /// `c (+)= a · W` (a `[m, k]` with rows `lda` apart, W `[k, n]`
    /// contiguous, c with rows `ldc` apart): a gradient back through a
    /// weight, through `packed`, W's transpose in bf16, when training runs
    /// in bf16.
    weight_nn, gemm_nn
);

/// Groups of k (pairs of T·B rows) per pass of a weight gradient over its
/// blocks. Each pass reads and writes the whole gradient, so passes are
/// long: 256 took 43 ms for 2048 × 512 × 6400, 1,024 40, 2,048 38, one
/// pass 38.
const TN_CHUNK: usize = 2048;

/// `c += aᵀ · b` (a `[k, m]` with rows `lda` apart, b `[k, n]` and c
/// `[m, n]` contiguous): a weight gradient summed over k rows. With `bf16`
/// (training in bf16) both operands are rounded to bf16 and the products
/// added in f32 by `VDPBF16PS`; else it is [`gemm_tn`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn grad_tn<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    lda: usize,
    b: &[T],
    c: &mut [T],
    bf16: bool,
) {
    let (Some(a), Some(b), true) = (T::as_f32(a), T::as_f32(b), bf16) else {
        return gemm_tn(m, n, k, a, lda, b, c);
    };
    let c = T::as_f32_mut(c).expect("a and c are both f32");
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!(a.len() >= (k - 1) * lda + m && b.len() >= k * n && c.len() >= m * n);
    let groups = k.div_ceil(2);
    let (mb, nb) = (m.div_ceil(LANES), n.div_ceil(LANES));
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let Scratch { left, right, .. } = &mut *s;
        grow(left, groups * mb * 2 * LANES);
        grow(right, groups * nb * 2 * LANES);
        interleave_pairs(a, lda, k, m, groups, left, Order::TileMajor);
        interleave_pairs(b, n, k, n, groups, right, Order::BlockMajor);
        let o = Bf16Operands {
            w: right.as_ptr(),
            groups,
            wg0: 0,
            ng: groups,
            x: left.as_ptr(),
            tile: 8 * groups,
            row: 2,
            group: 8,
            kc: TN_CHUNK,
        };
        let out = Out {
            ptr: c.as_mut_ptr(),
            ldc: n,
            row0: 0,
            accumulate: true,
        };
        let big = m * n * k >= PAR_MIN_WORK_BF16;
        // SAFETY: `o` holds m rows of `groups` groups and n columns; tasks
        // write disjoint blocks of 16 columns of `c` (m × n, asserted).
        over_blocks(0, n, big, &|lo, hi| unsafe {
            bf16_kernel(o, m, lo, hi, out)
        });
    });
}

/// Makes `v` at least `n` long, keeping what it holds: for buffers whose
/// every element the caller writes (refilling tens of MB per product would
/// cost more than converting them).
fn grow(v: &mut Vec<u16>, n: usize) {
    if v.len() < n {
        v.resize(n, 0);
    }
}

/// Activations converted for one product.
enum Act<'a> {
    /// bf16 activations and the weight, addressed together.
    Bf16(Bf16Operands),
    /// `[m, kp]` codes + 128, and `[m]` scales.
    Int8(&'a [u8], &'a [f32]),
}

/// Per-thread buffers for converted activations: they grow to the largest
/// product once and are reused, so the time loop does not allocate.
#[derive(Default)]
struct Scratch {
    bytes: Vec<u8>,
    halves: Vec<u16>,
    scales: Vec<f32>,
    /// A weight gradient's left operand (tile by tile) and right operand
    /// (packed), kept apart from inference's buffers: they are large.
    left: Vec<u16>,
    right: Vec<u16>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Where a product's results go: `c` with rows `ldc` apart, weight row r
/// in column r − `row0`.
#[derive(Clone, Copy)]
struct Out {
    ptr: *mut f32,
    ldc: usize,
    row0: usize,
    accumulate: bool,
}
// SAFETY: tasks given the same `Out` write disjoint elements (kernel's
// contract).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// Writes (or adds) `v` at row i, weight row r.
    ///
    /// # Safety
    /// (i, r − row0) is inside `c` and owned by this task.
    unsafe fn put(self, i: usize, r: usize, v: f32) {
        // SAFETY: the caller's contract.
        let c = unsafe { &mut *self.ptr.add(i * self.ldc + r - self.row0) };
        *c = if self.accumulate { *c + v } else { v };
    }
}

/// The operands of a bf16 product, as raw parts so that tasks can share
/// them: the weight's blocks, and activations of which row i, group g
/// (inputs 2g, 2g + 1 of the window) is at
/// `x + (i / 4)·tile + (i % 4)·row + g·group` (register tiles are 4 rows,
/// starting at multiples of 4):
/// `row = 2·ng, tile = 4·row, group = 2` for activations converted row by
/// row; `row = 2, group = 8, tile = 8·groups` for a weight gradient's
/// left operand, converted tile by tile so that a tile's pairs are
/// contiguous.
#[derive(Clone, Copy)]
struct Bf16Operands {
    /// `[blocks, groups, 16, 2]` the packed weight.
    w: *const u16,
    /// Groups per block of the weight (its padded columns / 2).
    groups: usize,
    /// The window's first group in the weight.
    wg0: usize,
    /// Groups in the window: the product's inner dimension / 2, rounded up.
    ng: usize,
    x: *const u16,
    tile: usize,
    row: usize,
    group: usize,
    /// Groups per pass over the blocks (see `x86::bf16_block`).
    kc: usize,
}

impl Bf16Operands {
    /// Where activation row i, group g is (in u16s from `x`).
    #[inline(always)]
    fn x_at(&self, i: usize, g: usize) -> usize {
        i / 4 * self.tile + i % 4 * self.row + g * self.group
    }
}
// SAFETY: read-only views of buffers that outlive the product.
unsafe impl Send for Bf16Operands {}
unsafe impl Sync for Bf16Operands {}

/// Weight rows `lo..hi` of a bf16 product, for rows 0..m of the
/// activations.
///
/// # Safety
/// As [`kernel`]; `o` addresses m rows of `o.ng` groups and the weight's
/// blocks for those groups.
unsafe fn bf16_kernel(o: Bf16Operands, m: usize, lo: usize, hi: usize, out: Out) {
    #[cfg(target_arch = "x86_64")]
    if has_bf16() {
        // SAFETY: the CPU has AVX512-BF16 (checked); the rest is this
        // function's contract.
        return unsafe { x86::bf16_block(o, m, lo, hi, out) };
    }
    for i in 0..m {
        for r in lo..hi {
            let mut acc = 0.0f32;
            for g in 0..o.ng {
                // SAFETY: the contract.
                let (w, x) = unsafe {
                    let w =
                        o.w.add(((r / LANES * o.groups + o.wg0 + g) * LANES + r % LANES) * 2);
                    ([*w, *w.add(1)], o.x.add(o.x_at(i, g)))
                };
                // SAFETY: the contract.
                let x = unsafe { [*x, *x.add(1)] };
                acc += from_bf16(w[0]) * from_bf16(x[0]) + from_bf16(w[1]) * from_bf16(x[1]);
            }
            // SAFETY: this function's contract.
            unsafe { out.put(i, r, acc) };
        }
    }
}

/// Weight rows `lo..hi` of the product, for every activation row.
///
/// # Safety
/// `out` holds `m` rows of columns `lo − row0 .. hi − row0`, which no other
/// thread writes.
unsafe fn kernel(p: &Packed, act: &Act<'_>, m: usize, lo: usize, hi: usize, out: Out) {
    let kp = p.kp;
    match (&p.data, act) {
        (Data::Bf16(_), Act::Bf16(o)) => {
            // SAFETY: this function's contract.
            unsafe { bf16_kernel(*o, m, lo, hi, out) }
        }
        (Data::Int8 { w, scale, sum }, Act::Int8(x, xs)) => {
            #[cfg(target_arch = "x86_64")]
            if has_vnni() {
                let e = x86::Int8Epilogue { scale, sum, xs };
                // SAFETY: the CPU has AVX512-VNNI (checked); the rest is
                // this function's contract.
                return unsafe { x86::int8_block(w, x, kp, m, lo, hi, &e, out) };
            }
            for i in 0..m {
                let xr = &x[i * kp..][..kp];
                for r in lo..hi {
                    let mut acc = 0i32;
                    for g in 0..kp / 4 {
                        let o = p.at_int8(r, 4 * g);
                        for q in 0..4 {
                            acc += i32::from(xr[4 * g + q]) * i32::from(w[o + q]);
                        }
                    }
                    let v = xs[i] * scale[r] * (acc - 128 * sum[r]) as f32;
                    // SAFETY: this function's contract.
                    unsafe { out.put(i, r, v) };
                }
            }
        }
        _ => unreachable!("activations converted for the weight's own precision"),
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! Register tiles of up to 4 activation rows × 4 blocks of 16 weight
    //! rows: per group of k, 4 broadcasts and 4 loads feed 16
    //! multiply-adds into 16 accumulators, each lane one output. Blocks
    //! are taken in chunks that stay in the L2 cache while every row tile
    //! passes over them.

    use std::arch::x86_64::*;

    use super::{Bf16Operands, Out, LANES};

    /// Weight bytes per chunk of blocks (a quarter of Zen 4's L2).
    const CHUNK_BYTES: usize = 256 * 1024;

    /// Runs `tile(mr, nr, i0, b0)` over m rows × blocks b_lo..b_hi in tiles
    /// of at most 4 rows × 4 blocks, chunk by chunk of blocks.
    #[inline(always)]
    fn tiles(
        m: usize,
        b_lo: usize,
        b_hi: usize,
        block_bytes: usize,
        mut tile: impl FnMut(usize, usize, usize, usize),
    ) {
        let chunk = (CHUNK_BYTES / block_bytes.max(1)).max(4) / 4 * 4;
        let mut c0 = b_lo;
        while c0 < b_hi {
            let c1 = b_hi.min(c0 + chunk);
            let mut i0 = 0;
            while i0 < m {
                let mr = (m - i0).min(4);
                let mut b0 = c0;
                while b0 < c1 {
                    let nr = (c1 - b0).min(4);
                    tile(mr, nr, i0, b0);
                    b0 += nr;
                }
                i0 += mr;
            }
            c0 = c1;
        }
    }

    /// The lanes of the block starting at weight row r0 that fall in lo..hi.
    #[inline(always)]
    fn lanes(r0: usize, lo: usize, hi: usize) -> __mmask16 {
        let start = lo.saturating_sub(r0).min(LANES);
        let end = hi.saturating_sub(r0).min(LANES);
        if end <= start {
            0
        } else {
            (((1u32 << end) - 1) & !((1u32 << start) - 1)) as __mmask16
        }
    }

    /// Writes (or adds) the lanes `mask` of `v` at row i, weight rows
    /// r0..r0 + 16.
    ///
    /// # Safety
    /// The masked lanes are inside `c` and owned by this task; the others
    /// are not touched (masked stores do not fault).
    #[target_feature(enable = "avx512f")]
    unsafe fn store(out: Out, i: usize, r0: usize, v: __m512, mask: __mmask16) {
        let p = out
            .ptr
            .wrapping_add(i * out.ldc + r0)
            .wrapping_sub(out.row0);
        // SAFETY: the caller's contract.
        unsafe {
            let v = if out.accumulate {
                _mm512_add_ps(_mm512_maskz_loadu_ps(mask, p), v)
            } else {
                v
            };
            _mm512_mask_storeu_ps(p, mask, v);
        }
    }

    /// The 32-bit lane of activation row i at group g (k = g·G), broadcast.
    ///
    /// # Safety
    /// The 4 bytes at `x + at` are inside the activations.
    #[inline(always)]
    unsafe fn bcast(x: *const u8, at: usize) -> __m512i {
        // SAFETY: the caller's contract.
        _mm512_set1_epi32(unsafe { std::ptr::read_unaligned(x.add(at).cast::<i32>()) })
    }

    /// One bf16 tile: MR rows × NR blocks, groups `g_lo..g_hi` of the
    /// window (weight groups `o.wg0 + g`).
    ///
    /// # Safety
    /// AVX512-F and AVX512-BF16; the tile is inside `o` and `out`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn bf16_tile<const MR: usize, const NR: usize>(
        o: Bf16Operands,
        i0: usize,
        b0: usize,
        g_lo: usize,
        g_hi: usize,
        lo: usize,
        hi: usize,
        out: Out,
    ) {
        let xp = o.x.cast::<u8>();
        let mut acc = [[_mm512_setzero_ps(); NR]; MR];
        for g in g_lo..g_hi {
            // SAFETY (loads): inside the blocks and rows (the contract).
            let wv: [__m512bh; NR] = std::array::from_fn(|r| unsafe {
                std::mem::transmute(_mm512_loadu_si512(
                    o.w.add(((b0 + r) * o.groups + o.wg0 + g) * 2 * LANES)
                        .cast(),
                ))
            });
            for (i, row) in acc.iter_mut().enumerate() {
                let xb: __m512bh = std::mem::transmute(unsafe { bcast(xp, o.x_at(i0 + i, g) * 2) });
                for (a, &wr) in row.iter_mut().zip(&wv) {
                    *a = _mm512_dpbf16_ps(*a, wr, xb);
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (r, &v) in row.iter().enumerate() {
                let r0 = (b0 + r) * LANES;
                // SAFETY: lanes in lo..hi are this task's (the contract).
                unsafe { store(out, i0 + i, r0, v, lanes(r0, lo, hi)) };
            }
        }
    }

    /// What turns an int8 tile's i32 sums into outputs.
    pub(super) struct Int8Epilogue<'a> {
        /// `[blocks·16]` weight scales.
        pub scale: &'a [f32],
        /// `[blocks·16]` weight row sums.
        pub sum: &'a [i32],
        /// `[m]` activation scales.
        pub xs: &'a [f32],
    }

    /// One int8 tile: MR rows × NR blocks; output = s_x·s_w·(Σ u·w − 128·Σ w),
    /// multiplied in the portable path's order so the results are equal.
    ///
    /// # Safety
    /// AVX512-F, AVX512-BW and AVX512-VNNI; the tile is inside `w`, `x`, the
    /// epilogue's slices and `out`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn int8_tile<const MR: usize, const NR: usize>(
        w: &[i8],
        x: &[u8],
        kp: usize,
        i0: usize,
        b0: usize,
        lo: usize,
        hi: usize,
        e: &Int8Epilogue<'_>,
        out: Out,
    ) {
        let groups = kp / 4;
        let (wp, xp) = (w.as_ptr(), x.as_ptr());
        let mut acc = [[_mm512_setzero_si512(); NR]; MR];
        for g in 0..groups {
            // SAFETY (loads): inside the blocks and rows (the contract).
            let wv: [__m512i; NR] = std::array::from_fn(|r| unsafe {
                _mm512_loadu_si512(wp.add(((b0 + r) * groups + g) * 4 * LANES).cast())
            });
            for (i, row) in acc.iter_mut().enumerate() {
                let xb = unsafe { bcast(xp, (i0 + i) * kp + 4 * g) };
                for (a, &wr) in row.iter_mut().zip(&wv) {
                    *a = _mm512_dpbusd_epi32(*a, xb, wr);
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            let xs = _mm512_set1_ps(e.xs[i0 + i]);
            for (r, &v) in row.iter().enumerate() {
                let r0 = (b0 + r) * LANES;
                // SAFETY: r0 + 16 ≤ blocks·16 (the contract).
                let (s, z) = unsafe {
                    (
                        _mm512_loadu_ps(e.scale.as_ptr().add(r0)),
                        _mm512_loadu_si512(e.sum.as_ptr().add(r0).cast()),
                    )
                };
                let d = _mm512_cvtepi32_ps(_mm512_sub_epi32(v, _mm512_slli_epi32::<7>(z)));
                let y = _mm512_mul_ps(_mm512_mul_ps(xs, s), d);
                // SAFETY: lanes in lo..hi are this task's (the contract).
                unsafe { store(out, i0 + i, r0, y, lanes(r0, lo, hi)) };
            }
        }
    }

    /// [`super::quantize_row`] with AVX-512: the same codes (round to
    /// nearest even, under the default MXCSR) sixteen at a time.
    ///
    /// # Safety
    /// The CPU has AVX512-F and AVX512-BW.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn quantize_row(x: &[f32], out: &mut [u8]) -> f32 {
        let n = x.len();
        assert!(out.len() >= n);
        let (body, tail) = (n / 16 * 16, n % 16);
        let tail_mask: __mmask16 = ((1u32 << tail) - 1) as __mmask16;
        // SAFETY (all loads and stores): within x[..n] and out[..n], the
        // last block masked to its `tail` lanes.
        let load =
            |at: usize, mask: __mmask16| unsafe { _mm512_maskz_loadu_ps(mask, x.as_ptr().add(at)) };
        let mut vmax = _mm512_setzero_ps();
        for at in (0..body).step_by(16) {
            vmax = _mm512_max_ps(vmax, _mm512_abs_ps(load(at, !0)));
        }
        if tail > 0 {
            vmax = _mm512_max_ps(vmax, _mm512_abs_ps(load(body, tail_mask)));
        }
        let max = _mm512_reduce_max_ps(vmax);
        let (scale, inv) = if max > 0.0 && max.is_finite() {
            (max / 127.0, 127.0 / max)
        } else {
            (0.0, 0.0)
        };
        let (vinv, lo, hi, off) = (
            _mm512_set1_ps(inv),
            _mm512_set1_ps(-127.0),
            _mm512_set1_ps(127.0),
            _mm512_set1_epi32(128),
        );
        let code = |v: __m512| {
            let y = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v, vinv), lo), hi);
            _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(y), off))
        };
        for at in (0..body).step_by(16) {
            let c = code(load(at, !0));
            unsafe { _mm_storeu_si128(out.as_mut_ptr().add(at).cast(), c) };
        }
        if tail > 0 {
            let c = code(load(body, tail_mask));
            unsafe { _mm_mask_storeu_epi8(out.as_mut_ptr().add(body).cast(), tail_mask, c) };
        }
        scale
    }

    /// [`super::bf16_row`] with `VCVTNEPS2BF16` (nearest even; denormals
    /// flush to zero, where the portable path keeps them).
    ///
    /// # Safety
    /// The CPU has AVX512-F and AVX512-BF16.
    #[target_feature(enable = "avx512f,avx512bf16,avx512vl")]
    pub(super) unsafe fn bf16_row(x: &[f32], out: &mut [u16]) {
        let n = x.len();
        assert!(out.len() >= n);
        let body = n / 16 * 16;
        for at in (0..body).step_by(16) {
            // SAFETY: at + 16 ≤ n.
            unsafe {
                let v = _mm512_loadu_ps(x.as_ptr().add(at));
                let b: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(v));
                _mm256_storeu_si256(out.as_mut_ptr().add(at).cast(), b);
            }
        }
        for (o, &v) in out[body..n].iter_mut().zip(&x[body..]) {
            *o = super::to_bf16(v);
        }
    }

    /// Dispatches a tile of mr × nr (each 1..=4) to its instance.
    macro_rules! dispatch {
        ($f:ident, $mr:expr, $nr:expr, ($($arg:expr),*)) => {
            match ($mr, $nr) {
                (4, 4) => $f::<4, 4>($($arg),*),
                (4, 3) => $f::<4, 3>($($arg),*),
                (4, 2) => $f::<4, 2>($($arg),*),
                (4, 1) => $f::<4, 1>($($arg),*),
                (3, 4) => $f::<3, 4>($($arg),*),
                (3, 3) => $f::<3, 3>($($arg),*),
                (3, 2) => $f::<3, 2>($($arg),*),
                (3, 1) => $f::<3, 1>($($arg),*),
                (2, 4) => $f::<2, 4>($($arg),*),
                (2, 3) => $f::<2, 3>($($arg),*),
                (2, 2) => $f::<2, 2>($($arg),*),
                (2, 1) => $f::<2, 1>($($arg),*),
                (1, 4) => $f::<1, 4>($($arg),*),
                (1, 3) => $f::<1, 3>($($arg),*),
                (1, 2) => $f::<1, 2>($($arg),*),
                _ => $f::<1, 1>($($arg),*),
            }
        };
    }

    /// Weight rows lo..hi of the bf16 product for all m activation rows,
    /// with `VDPBF16PS`. Long inner dimensions (weight gradients sum over
    /// every T·B row) go in passes of `o.kc` groups, each added into
    /// `out`, so that a chunk of blocks stays in cache while the
    /// activations stream.
    ///
    /// # Safety
    /// AVX512-F and AVX512-BF16; `o` holds m rows of `o.groups` groups and
    /// the weight's blocks; `out` as in `super::kernel`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn bf16_block(o: Bf16Operands, m: usize, lo: usize, hi: usize, out: Out) {
        let (b_lo, b_hi) = (lo / LANES, hi.div_ceil(LANES));
        let mut out = out;
        let mut g0 = 0;
        while g0 < o.ng {
            let g1 = o.ng.min(g0 + o.kc);
            tiles(m, b_lo, b_hi, 4 * LANES * (g1 - g0), |mr, nr, i0, b0| {
                // SAFETY: the tile is inside `o` and `out` (the contract).
                unsafe { dispatch!(bf16_tile, mr, nr, (o, i0, b0, g0, g1, lo, hi, out)) }
            });
            out.accumulate = true;
            g0 = g1;
        }
    }

    /// Sixteen bf16 pairs from rows `r0` and `r1` (`r1` may be null: zeros)
    /// at columns c..c + 16, masked to `mask`: lane j holds (r0[c + j],
    /// r1[c + j]), the pair one 32-bit lane of `VDPBF16PS` takes.
    ///
    /// # Safety
    /// AVX512-F and AVX512-BF16; the masked lanes are inside both rows and
    /// `out` holds 32 values.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn pairs16(r0: *const f32, r1: *const f32, mask: __mmask16, out: *mut u16) {
        // SAFETY: the caller's contract (masked loads do not fault).
        unsafe {
            let a = _mm512_maskz_loadu_ps(mask, r0);
            let b = if r1.is_null() {
                _mm512_setzero_ps()
            } else {
                _mm512_maskz_loadu_ps(mask, r1)
            };
            let lo = _mm512_permutex2var_ps(
                a,
                _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23),
                b,
            );
            let hi = _mm512_permutex2var_ps(
                a,
                _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31),
                b,
            );
            let v: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
            _mm512_storeu_si512(out.cast(), v);
        }
    }

    /// Weight rows lo..hi of the int8 product for all m activation rows,
    /// with `VPDPBUSD`.
    ///
    /// # Safety
    /// AVX512-F, AVX512-BW and AVX512-VNNI; `out` as in `super::kernel`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn int8_block(
        w: &[i8],
        x: &[u8],
        kp: usize,
        m: usize,
        lo: usize,
        hi: usize,
        e: &Int8Epilogue<'_>,
        out: Out,
    ) {
        let (b_lo, b_hi) = (lo / LANES, hi.div_ceil(LANES));
        assert!(w.len() >= b_hi * LANES * kp && x.len() >= m * kp && kp.is_multiple_of(4));
        assert!(e.scale.len() >= b_hi * LANES && e.sum.len() >= b_hi * LANES && e.xs.len() >= m);
        tiles(m, b_lo, b_hi, LANES * kp, |mr, nr, i0, b0| {
            // SAFETY: the tile is inside the bounds asserted above.
            unsafe { dispatch!(int8_tile, mr, nr, (w, x, kp, i0, b0, lo, hi, e, out)) }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104729) % 2003) as f32 / 1001.0 - 1.0) * 0.3)
            .collect()
    }

    fn reference(m: usize, n: usize, k: usize, a: &[f32], w: &[f32]) -> Vec<f64> {
        let mut c = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|p| f64::from(a[i * k + p]) * f64::from(w[j * k + p]))
                    .sum();
            }
        }
        c
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between two bf16 values: ties to even (1.0).
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
    }

    /// Each precision's product is within its rounding bound of the exact
    /// product of the f32 operands, for shapes with ragged edges.
    #[test]
    fn products_are_within_their_rounding_bounds() {
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        for (m, n, k) in [(1, 7, 5), (3, 37, 65), (5, 130, 200), (1, 1024, 512)] {
            let a = data(m * k, 1);
            let w = data(n * k, 2);
            let exact = reference(m, n, k, &a, &w);
            for precision in [Precision::Bf16, Precision::Int8] {
                let p = Packed::new(precision, &w, n, k);
                let mut c = vec![0.5f32; m * n];
                p.view().product(m, n, k, &a, k, &mut c, n, true);
                // Σ|a||w| bounds the error: bf16 rounds each operand by at
                // most 2^-8 relative; int8 by half a step of each scale.
                for i in 0..m {
                    let amax = a[i * k..][..k].iter().fold(0.0f32, |x, v| x.max(v.abs()));
                    for j in 0..n {
                        let wmax = w[j * k..][..k].iter().fold(0.0f32, |x, v| x.max(v.abs()));
                        let abs: f64 = (0..k)
                            .map(|q| f64::from((a[i * k + q] * w[j * k + q]).abs()))
                            .sum();
                        let bound = match precision {
                            Precision::Bf16 => abs * 2.0 * 2f64.powi(-8) + 1e-6,
                            _ => {
                                let (sa, sw) = (f64::from(amax) / 127.0, f64::from(wmax) / 127.0);
                                k as f64
                                    * (0.5 * sa * f64::from(wmax)
                                        + 0.5 * sw * f64::from(amax)
                                        + 0.25 * sa * sw)
                                    + 1e-6
                            }
                        };
                        let got = f64::from(c[i * n + j]) - 0.5;
                        let err = (got - exact[i * n + j]).abs();
                        assert!(
                            err <= bound,
                            "{precision} {m}x{n}x{k} [{i},{j}]: error {err} > {bound}"
                        );
                    }
                }
            }
        }
    }

    /// The thread count and the portable switch are process-wide.
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// The vector kernels and the portable loops agree: exactly for int8,
    /// to f32 summation order for bf16; and splitting across threads
    /// changes nothing.
    #[test]
    fn vector_portable_and_threaded_paths_agree() {
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        for (m, n, k) in [(3, 1536, 512), (6, 100, 70), (1, 33, 5)] {
            let a = data(m * k, 3);
            let w = data(n * k, 4);
            for precision in [Precision::Bf16, Precision::Int8] {
                let p = Packed::new(precision, &w, n, k);
                let run = |threads: usize, portable: bool| {
                    crate::gemm::set_threads(threads);
                    force_portable(portable);
                    let mut c = vec![0.25f32; m * n];
                    p.view().product(m, n, k, &a, k, &mut c, n, true);
                    crate::gemm::set_threads(0);
                    force_portable(false);
                    c
                };
                let one = run(1, false);
                assert_eq!(one, run(2, false), "{precision} {m}x{n}x{k}: threads");
                let portable = run(1, true);
                if precision == Precision::Int8 {
                    assert_eq!(one, portable, "int8 {m}x{n}x{k}");
                } else {
                    for (x, y) in one.iter().zip(&portable) {
                        assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "bf16: {x} vs {y}");
                    }
                }
            }
        }
    }

    #[test]
    fn any_row_range_is_the_same_rows_of_the_whole_product() {
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let (m, n, k) = (3, 50, 70);
        let w = data(n * k, 5);
        let a = data(m * k, 6);
        for portable in [false, true] {
            force_portable(portable);
            for precision in [Precision::Bf16, Precision::Int8] {
                let p = Packed::new(precision, &w, n, k);
                let mut whole = vec![0.0f32; m * n];
                p.view().product(m, n, k, &a, k, &mut whole, n, false);
                // Ranges that start and end inside blocks of 16 rows.
                for (skip, take) in [(20, 30), (20, 10), (0, 33), (17, 1), (48, 2)] {
                    let mut part = vec![-1.0f32; m * take];
                    p.view()
                        .skip_rows(skip)
                        .product(m, take, k, &a, k, &mut part, take, false);
                    for i in 0..m {
                        assert_eq!(
                            &whole[i * n + skip..][..take],
                            &part[i * take..][..take],
                            "{precision} rows {skip}..{}",
                            skip + take
                        );
                    }
                }
            }
            force_portable(false);
        }
    }

    /// Packing keeps every weight to its rounding: half a step of its
    /// row's scale in int8, 2⁻⁸ relative in bf16.
    #[test]
    fn packed_weights_are_the_weights_rounded() {
        let (n, k) = (37, 29);
        let w = data(n * k, 7);
        for precision in [Precision::Bf16, Precision::Int8] {
            let d = Packed::new(precision, &w, n, k).dequantize();
            for r in 0..n {
                let row = &w[r * k..][..k];
                let step = row.iter().fold(0.0f32, |m, x| m.max(x.abs())) / 127.0;
                for (x, y) in row.iter().zip(&d[r * k..][..k]) {
                    let bound = match precision {
                        Precision::Int8 => 0.5 * step * (1.0 + 1e-6),
                        _ => x.abs() / 256.0,
                    };
                    assert!((x - y).abs() <= bound, "{precision} row {r}: {x} → {y}");
                }
            }
        }
    }

    fn round(v: &[f32]) -> Vec<f32> {
        v.iter().map(|&x| from_bf16(to_bf16(x))).collect()
    }

    /// |got − want| within 1e-5 of the scale of the sum of |products|.
    fn close(got: &[f32], want: &[f64], scale: f64, what: &str) {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (f64::from(*g) - w).abs() <= 1e-5 * scale,
                "{what}[{i}]: {g} vs {w}"
            );
        }
    }

    /// Training's products in bf16: a weight gradient c += aᵀ·b over long
    /// ragged k, a gradient back through a weight (its transpose packed),
    /// and column windows of that transpose, each equal to the exact
    /// product of the bf16-rounded operands (up to f32 summation), on the
    /// vector and portable paths and at 1 and 2 threads.
    #[test]
    fn training_products_are_the_rounded_operands_products() {
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        for (m, n, k, lda) in [
            (3, 5, 7, 4),
            (50, 72, 55, 61),
            (72, 130, 2600, 80),
            (2, 17, 1, 2),
        ] {
            let a = data(k * lda, 3);
            let b = data(k * n, 4);
            let c0 = data(m * n, 5);
            let (ra, rb) = (round(&a), round(&b));
            let mut want = vec![0.0f64; m * n];
            for i in 0..m {
                for j in 0..n {
                    want[i * n + j] = f64::from(c0[i * n + j])
                        + (0..k)
                            .map(|p| f64::from(ra[p * lda + i]) * f64::from(rb[p * n + j]))
                            .sum::<f64>();
                }
            }
            let mut runs = Vec::new();
            for (portable, threads) in [(false, 2), (false, 1), (true, 2)] {
                force_portable(portable);
                crate::gemm::set_threads(threads);
                let mut c = c0.clone();
                grad_tn(m, n, k, &a, lda, &b, &mut c, true);
                close(&c, &want, k as f64 * 0.1, "grad_tn");
                runs.push(c);
            }
            force_portable(false);
            crate::gemm::set_threads(0);
            assert_eq!(runs[0], runs[1], "1 and 2 threads");
        }
        // dx = dy · W through Wᵀ packed, whole and in column windows.
        let (rows, cols, m) = (75, 38, 9);
        let w = data(rows * cols, 6);
        let p = Packed::trainable(&w, rows, cols);
        let dy = data(m * rows, 7);
        let (rw, rdy) = (round(&w), round(&dy));
        for (k0, k1) in [(0, rows), (0, 50), (50, rows), (24, 26)] {
            let kk = k1 - k0;
            let mut c = vec![0.5f32; m * cols];
            let q = p.view().t().unwrap().cols(k0, k1);
            q.product(m, cols, kk, &dy[k0..], rows, &mut c, cols, true);
            let want: Vec<f64> = (0..m * cols)
                .map(|ij| {
                    let (i, j) = (ij / cols, ij % cols);
                    0.5 + (k0..k1)
                        .map(|r| f64::from(rdy[i * rows + r]) * f64::from(rw[r * cols + j]))
                        .sum::<f64>()
                })
                .collect();
            close(&c, &want, kk as f64 * 0.1, "dy·W");
        }
    }

    /// [`Packed::repack`] after an update is a fresh packing of the new
    /// weights, transpose included.
    #[test]
    fn repacking_equals_packing_afresh() {
        let (rows, cols) = (37, 21);
        let mut p = Packed::trainable(&data(rows * cols, 1), rows, cols);
        let w = data(rows * cols, 2);
        p.repack(&w);
        let q = Packed::trainable(&w, rows, cols);
        let bits = |p: &Packed| match &p.data {
            Data::Bf16(v) => v.clone(),
            Data::Int8 { .. } => unreachable!(),
        };
        assert_eq!(bits(&p), bits(&q));
        assert_eq!(bits(p.t.as_ref().unwrap()), bits(q.t.as_ref().unwrap()));
        assert_eq!(p.dequantize(), round(&w));
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_errors() {
        for (name, p) in Precision::ALL {
            assert_eq!(Precision::from_name(name).unwrap(), p);
            assert_eq!(p.name(), name);
        }
        let e = Precision::from_name("fp16").unwrap_err().to_string();
        assert!(e.contains("f32, bf16 or int8"), "{e}");
    }
}
