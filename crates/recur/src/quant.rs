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
use crate::gemm::gemm_nt;
use crate::pool::pool;

/// The number format of a model's weight products.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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

/// Inner dimensions are padded to this many elements: one 64-byte vector
/// of int8, two of bf16. Padding is zero in the weight, so it adds nothing.
const STEP: usize = 64;

/// Products with fewer multiply-adds than this run on the calling thread
/// unless their weight is large.
const PAR_MIN_WORK: usize = 1 << 20;

/// Weights of at least this many bytes are split across threads however
/// few the activation rows: below it, one core reads the weight from its
/// cache faster than two threads meet (a few microseconds per product in
/// batch-1 generation).
const PAR_MIN_BYTES: usize = 512 * 1024;

/// A weight `[rows, cols]` (PyTorch's `[out, in]`) in a reduced precision.
#[derive(Clone, Debug)]
pub struct Packed {
    rows: usize,
    cols: usize,
    /// `cols` rounded up to [`STEP`]: the stride of a row.
    kp: usize,
    data: Data,
}

#[derive(Clone, Debug)]
enum Data {
    /// `[rows, kp]` bf16 bit patterns.
    Bf16(Vec<u16>),
    /// `[rows, kp]` w / scale, with `[rows]` scales and `[rows]` row sums.
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

impl Packed {
    /// `w` `[rows, cols]` in `precision` (which must not be f32).
    pub fn new(precision: Precision, w: &[f32], rows: usize, cols: usize) -> Packed {
        assert_eq!(
            w.len(),
            rows * cols,
            "Packed::new: weight is not [rows, cols]"
        );
        let kp = cols.next_multiple_of(STEP).max(STEP);
        let data = match precision {
            Precision::F32 => panic!("Packed::new: f32 weights are used as they are"),
            Precision::Bf16 => {
                let mut out = vec![0u16; rows * kp];
                for (o, r) in out.chunks_exact_mut(kp).zip(w.chunks_exact(cols.max(1))) {
                    for (o, &x) in o.iter_mut().zip(r) {
                        *o = to_bf16(x);
                    }
                }
                Data::Bf16(out)
            }
            Precision::Int8 => {
                let mut q = vec![0i8; rows * kp];
                let mut scale = vec![0.0f32; rows];
                let mut sum = vec![0i32; rows];
                for j in 0..rows {
                    let r = &w[j * cols..][..cols];
                    let max = r.iter().fold(0.0f32, |m, x| m.max(x.abs()));
                    if max > 0.0 && max.is_finite() {
                        scale[j] = max / 127.0;
                        let inv = 127.0 / max;
                        for (o, &x) in q[j * kp..][..cols].iter_mut().zip(r) {
                            let c = q8(x, inv);
                            *o = c as i8;
                            sum[j] += c;
                        }
                    }
                }
                Data::Int8 { w: q, scale, sum }
            }
        };
        Packed {
            rows,
            cols,
            kp,
            data,
        }
    }

    /// Rows (outputs).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns (inputs).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The precision it holds.
    pub fn precision(&self) -> Precision {
        match self.data {
            Data::Bf16(_) => Precision::Bf16,
            Data::Int8 { .. } => Precision::Int8,
        }
    }

    /// Bytes per stored weight.
    fn elem_bytes(&self) -> usize {
        match self.data {
            Data::Bf16(_) => 2,
            Data::Int8 { .. } => 1,
        }
    }

    /// Bytes its weights take.
    pub fn bytes(&self) -> usize {
        match &self.data {
            Data::Bf16(w) => 2 * w.len(),
            Data::Int8 { w, .. } => w.len() + 8 * self.rows,
        }
    }

    /// The whole matrix, from row 0.
    pub fn view(&self) -> PackedRef<'_> {
        PackedRef {
            packed: self,
            row0: 0,
        }
    }

    /// The weight as f32 again: what the products see (tests, error bounds).
    pub fn dequantize(&self) -> Vec<f32> {
        let (k, kp) = (self.cols, self.kp);
        let mut out = vec![0.0f32; self.rows * k];
        for j in 0..self.rows {
            let o = &mut out[j * k..][..k];
            match &self.data {
                Data::Bf16(w) => {
                    for (o, &b) in o.iter_mut().zip(&w[j * kp..]) {
                        *o = from_bf16(b);
                    }
                }
                Data::Int8 { w, scale, .. } => {
                    for (o, &q) in o.iter_mut().zip(&w[j * kp..]) {
                        *o = f32::from(q) * scale[j];
                    }
                }
            }
        }
        out
    }
}

/// A packed weight from row `row0` on: GRU's cells multiply by the last
/// third of `weight_hh` alone.
#[derive(Clone, Copy, Debug)]
pub struct PackedRef<'a> {
    packed: &'a Packed,
    row0: usize,
}

impl<'a> PackedRef<'a> {
    /// The same weight from `rows` rows further on.
    pub fn skip_rows(self, rows: usize) -> PackedRef<'a> {
        assert!(self.row0 + rows <= self.packed.rows);
        PackedRef {
            packed: self.packed,
            row0: self.row0 + rows,
        }
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
        assert_eq!(k, p.cols, "packed product: inner dimension");
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
            } = &mut *s;
            // Activations are converted once, before the split, so every
            // thread reads the same codes.
            let act = match &p.data {
                Data::Bf16(_) => {
                    halves.resize(m * p.kp, 0);
                    for i in 0..m {
                        let row = &mut halves[i * p.kp..][..p.kp];
                        bf16_row(&a[i * lda..][..k], &mut row[..k]);
                        row[k..].fill(0);
                    }
                    Act::Bf16(&halves[..])
                }
                Data::Int8 { .. } => {
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
            let out = OutPtr(c.as_mut_ptr());
            let row0 = self.row0;
            // SAFETY: tasks write disjoint column blocks of the m×n block
            // of `c` (asserted in bounds above).
            let block = |lo: usize, hi: usize| unsafe {
                kernel(p, row0, &act, m, lo, hi, out, ldc, accumulate)
            };
            let threads = crate::gemm::threads();
            let big = p.elem_bytes() * p.kp * n >= PAR_MIN_BYTES || m * n * k >= PAR_MIN_WORK;
            if threads <= 1 || !big || n < 32 {
                return block(0, n);
            }
            let tasks = threads.min(n / 16);
            let chunk = n.div_ceil(tasks).next_multiple_of(16);
            pool().run(tasks, &|t| {
                let (lo, hi) = ((t * chunk).min(n), ((t + 1) * chunk).min(n));
                if lo < hi {
                    block(lo, hi);
                }
            });
        });
    }
}

/// `c (+)= a · Wᵀ` (a `[m, k]`, W `[n, k]`): through `packed`, W's
/// converted copy, when there is one (inference in bf16 or int8), else
/// through the f32 weight `w` itself.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) fn weight_nt<T: Float>(
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
    gemm_nt(m, n, k, a, lda, w, c, ldc, accumulate)
}

/// Activations converted for one product.
enum Act<'a> {
    /// `[m, kp]` bf16 bits.
    Bf16(&'a [u16]),
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
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}
impl OutPtr {
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// Output columns `lo..hi` of the product, for every row.
///
/// # Safety
/// `out` points at `c` holding `m` rows `ldc` apart of at least `hi`
/// columns, and no other thread writes columns `lo..hi`.
#[allow(clippy::too_many_arguments)]
unsafe fn kernel(
    p: &Packed,
    row0: usize,
    act: &Act<'_>,
    m: usize,
    lo: usize,
    hi: usize,
    out: OutPtr,
    ldc: usize,
    accumulate: bool,
) {
    let kp = p.kp;
    let put = |i: usize, j: usize, v: f32| {
        // SAFETY: in bounds and owned by this task (the caller's contract).
        let c = unsafe { &mut *out.at(i * ldc + j) };
        *c = if accumulate { *c + v } else { v };
    };
    match (&p.data, act) {
        (Data::Bf16(w), Act::Bf16(x)) => {
            let w = &w[row0 * kp..];
            #[cfg(target_arch = "x86_64")]
            if has_bf16() {
                // SAFETY: the CPU has AVX512-BF16 (checked above).
                return unsafe { x86::bf16_block(w, x, kp, m, lo, hi, &put) };
            }
            for i in 0..m {
                let xr = &x[i * kp..][..kp];
                for j in lo..hi {
                    put(i, j, dot_bf16(&w[j * kp..][..kp], xr));
                }
            }
        }
        (Data::Int8 { w, scale, sum }, Act::Int8(x, xs)) => {
            let (w, scale, sum) = (&w[row0 * kp..], &scale[row0..], &sum[row0..]);
            let finish = |i: usize, j: usize, acc: i32| {
                put(i, j, xs[i] * scale[j] * (acc - 128 * sum[j]) as f32);
            };
            #[cfg(target_arch = "x86_64")]
            if has_vnni() {
                // SAFETY: the CPU has AVX512-VNNI (checked above).
                return unsafe { x86::int8_block(w, x, kp, m, lo, hi, &finish) };
            }
            for i in 0..m {
                let xr = &x[i * kp..][..kp];
                for j in lo..hi {
                    finish(i, j, dot_u8i8(xr, &w[j * kp..][..kp]));
                }
            }
        }
        _ => unreachable!("activations converted for the weight's own precision"),
    }
}

/// Σ w·x over bf16 pairs, in f32: the portable path.
fn dot_bf16(w: &[u16], x: &[u16]) -> f32 {
    // Sixteen lanes, as the vector path keeps them.
    let mut acc = [0.0f32; 16];
    for (wc, xc) in w.chunks_exact(32).zip(x.chunks_exact(32)) {
        for l in 0..16 {
            acc[l] += from_bf16(wc[2 * l]) * from_bf16(xc[2 * l])
                + from_bf16(wc[2 * l + 1]) * from_bf16(xc[2 * l + 1]);
        }
    }
    acc.iter().sum()
}

/// Σ u·w for u8 codes and i8 weights: the portable path (exact).
fn dot_u8i8(x: &[u8], w: &[i8]) -> i32 {
    x.iter()
        .zip(w)
        .map(|(&u, &v)| i32::from(u) * i32::from(v))
        .sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! Register tiles of up to 4 activation rows × 4 weight rows: per step
    //! of 64 bytes along k, 4 + 4 loads feed 16 multiply-adds, and the
    //! weight rows are taken in chunks that stay in the L2 cache while
    //! every row block passes over them.

    use std::arch::x86_64::*;

    /// Weight bytes per chunk of output columns (a quarter of Zen 4's L2).
    const CHUNK_BYTES: usize = 256 * 1024;

    /// Runs `tile(mr, nr, i0, j0)` over the m × (lo..hi) output in tiles of
    /// at most 4 × 4, chunk by chunk of columns.
    #[inline(always)]
    fn tiles(
        m: usize,
        lo: usize,
        hi: usize,
        row_bytes: usize,
        mut tile: impl FnMut(usize, usize, usize, usize),
    ) {
        let chunk = (CHUNK_BYTES / row_bytes.max(1)).max(4) / 4 * 4;
        let mut c0 = lo;
        while c0 < hi {
            let c1 = hi.min(c0 + chunk);
            let mut i0 = 0;
            while i0 < m {
                let mr = (m - i0).min(4);
                let mut j0 = c0;
                while j0 < c1 {
                    let nr = (c1 - j0).min(4);
                    tile(mr, nr, i0, j0);
                    j0 += nr;
                }
                i0 += mr;
            }
            c0 = c1;
        }
    }

    /// One bf16 tile of MR × NR outputs.
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn bf16_tile<const MR: usize, const NR: usize>(
        w: &[u16],
        x: &[u16],
        kp: usize,
        i0: usize,
        j0: usize,
        put: &impl Fn(usize, usize, f32),
    ) {
        let ld = |s: &[u16], at: usize| -> __m512bh {
            debug_assert!(at + 32 <= s.len());
            // SAFETY: at + 32 ≤ len (the caller's bounds).
            unsafe { std::mem::transmute(_mm512_loadu_si512(s.as_ptr().add(at).cast())) }
        };
        let mut acc = [[_mm512_setzero_ps(); NR]; MR];
        for k in (0..kp).step_by(32) {
            let wv: [__m512bh; NR] = std::array::from_fn(|r| ld(w, (j0 + r) * kp + k));
            for (i, row) in acc.iter_mut().enumerate() {
                let xv = ld(x, (i0 + i) * kp + k);
                for (a, &wr) in row.iter_mut().zip(&wv) {
                    *a = _mm512_dpbf16_ps(*a, wr, xv);
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            if let [a, b, c, d] = row[..] {
                let sums: [f32; 4] = std::mem::transmute(hsum4_ps(a, b, c, d));
                for (r, v) in sums.into_iter().enumerate() {
                    put(i0 + i, j0 + r, v);
                }
            } else {
                for (r, a) in row.iter().enumerate() {
                    put(i0 + i, j0 + r, _mm512_reduce_add_ps(*a));
                }
            }
        }
    }

    /// One int8 tile of MR × NR outputs.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn int8_tile<const MR: usize, const NR: usize>(
        w: &[i8],
        x: &[u8],
        kp: usize,
        i0: usize,
        j0: usize,
        finish: &impl Fn(usize, usize, i32),
    ) {
        // SAFETY (both): at + 64 ≤ len (the caller's bounds).
        let ldw = |at: usize| unsafe { _mm512_loadu_si512(w.as_ptr().add(at).cast()) };
        let ldx = |at: usize| unsafe { _mm512_loadu_si512(x.as_ptr().add(at).cast()) };
        let mut acc = [[_mm512_setzero_si512(); NR]; MR];
        for k in (0..kp).step_by(64) {
            let wv: [__m512i; NR] = std::array::from_fn(|r| ldw((j0 + r) * kp + k));
            for (i, row) in acc.iter_mut().enumerate() {
                let xv = ldx((i0 + i) * kp + k);
                for (a, &wr) in row.iter_mut().zip(&wv) {
                    *a = _mm512_dpbusd_epi32(*a, xv, wr);
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            if let [a, b, c, d] = row[..] {
                let sums: [i32; 4] = std::mem::transmute(hsum4_epi32(a, b, c, d));
                for (r, v) in sums.into_iter().enumerate() {
                    finish(i0 + i, j0 + r, v);
                }
            } else {
                for (r, a) in row.iter().enumerate() {
                    finish(i0 + i, j0 + r, _mm512_reduce_add_epi32(*a));
                }
            }
        }
    }

    /// The sums of the sixteen lanes of a, b, c and d, as [Σa, Σb, Σc, Σd]:
    /// one interleaved tree instead of four reductions (integer sums are
    /// exact in any order).
    #[target_feature(enable = "avx512f")]
    fn hsum4_epi32(a: __m512i, b: __m512i, c: __m512i, d: __m512i) -> __m128i {
        let ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
        let cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
        let u = _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
        let s = _mm256_add_epi32(_mm512_castsi512_si256(u), _mm512_extracti64x4_epi64::<1>(u));
        _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s))
    }

    /// [`hsum4_epi32`] for f32 lanes (a fixed order of additions, so
    /// results repeat exactly).
    #[target_feature(enable = "avx512f")]
    fn hsum4_ps(a: __m512, b: __m512, c: __m512, d: __m512) -> __m128 {
        let ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
        let cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
        let (abd, cdd) = (_mm512_castps_pd(ab), _mm512_castps_pd(cd));
        let u = _mm512_add_ps(
            _mm512_castpd_ps(_mm512_unpacklo_pd(abd, cdd)),
            _mm512_castpd_ps(_mm512_unpackhi_pd(abd, cdd)),
        );
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(u)));
        let s = _mm256_add_ps(_mm512_castps512_ps256(u), hi);
        _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s))
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

    /// `put(i, j, Σ_k x[i,k]·w[j,k])` for every row i < m and column j in
    /// lo..hi, with `VDPBF16PS`.
    ///
    /// # Safety
    /// The CPU has AVX512-F and AVX512-BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn bf16_block(
        w: &[u16],
        x: &[u16],
        kp: usize,
        m: usize,
        lo: usize,
        hi: usize,
        put: &impl Fn(usize, usize, f32),
    ) {
        assert!(w.len() >= hi * kp && x.len() >= m * kp && kp % 32 == 0);
        tiles(m, lo, hi, 2 * kp, |mr, nr, i0, j0| {
            // SAFETY: the tile is inside the bounds asserted above.
            unsafe { dispatch!(bf16_tile, mr, nr, (w, x, kp, i0, j0, put)) }
        });
    }

    /// `finish(i, j, Σ_k x[i,k]·w[j,k])` (u8 × i8, exact in i32) for every
    /// row i < m and column j in lo..hi, with `VPDPBUSD`.
    ///
    /// # Safety
    /// The CPU has AVX512-F, AVX512-BW and AVX512-VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn int8_block(
        w: &[i8],
        x: &[u8],
        kp: usize,
        m: usize,
        lo: usize,
        hi: usize,
        finish: &impl Fn(usize, usize, i32),
    ) {
        assert!(w.len() >= hi * kp && x.len() >= m * kp && kp % 64 == 0);
        tiles(m, lo, hi, kp, |mr, nr, i0, j0| {
            // SAFETY: the tile is inside the bounds asserted above.
            unsafe { dispatch!(int8_tile, mr, nr, (w, x, kp, i0, j0, finish)) }
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

    /// The vector kernels and the portable loops agree: exactly for int8,
    /// to f32 summation order for bf16; and splitting across threads
    /// changes nothing.
    #[test]
    fn vector_portable_and_threaded_paths_agree() {
        let (m, n, k) = (3, 1536, 512);
        let a = data(m * k, 3);
        let w = data(n * k, 4);
        for precision in [Precision::Bf16, Precision::Int8] {
            let p = Packed::new(precision, &w, n, k);
            let mut c = vec![0.0f32; m * n];
            crate::gemm::set_threads(1);
            p.view().product(m, n, k, &a, k, &mut c, n, false);
            let mut c2 = vec![0.0f32; m * n];
            crate::gemm::set_threads(0);
            p.view().product(m, n, k, &a, k, &mut c2, n, false);
            assert_eq!(c, c2, "{precision}: threads");
            // The portable path, on the same codes.
            let act_and_dot = |i: usize, j: usize| -> f32 {
                let kp = p.kp;
                match &p.data {
                    Data::Bf16(wq) => {
                        let mut x = vec![0u16; kp];
                        for (o, &v) in x.iter_mut().zip(&a[i * k..][..k]) {
                            *o = to_bf16(v);
                        }
                        dot_bf16(&wq[j * kp..][..kp], &x)
                    }
                    Data::Int8 { w: wq, scale, sum } => {
                        let max = a[i * k..][..k].iter().fold(0.0f32, |x, v| x.max(v.abs()));
                        let mut x = vec![128u8; kp];
                        for (o, &v) in x.iter_mut().zip(&a[i * k..][..k]) {
                            *o = (q8(v, 127.0 / max) + 128) as u8;
                        }
                        let acc = dot_u8i8(&x, &wq[j * kp..][..kp]);
                        (max / 127.0) * scale[j] * (acc - 128 * sum[j]) as f32
                    }
                }
            };
            for i in 0..m {
                for j in (0..n).step_by(7) {
                    let want = act_and_dot(i, j);
                    let got = c[i * n + j];
                    if precision == Precision::Int8 {
                        assert_eq!(got, want, "int8 [{i},{j}]");
                    } else {
                        assert!(
                            (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                            "bf16 [{i},{j}]: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn skipped_rows_are_the_tail_of_the_weight() {
        let (n, k) = (48, 70);
        let w = data(n * k, 5);
        let a = data(k, 6);
        for precision in [Precision::Bf16, Precision::Int8] {
            let p = Packed::new(precision, &w, n, k);
            let mut whole = vec![0.0f32; n];
            p.view().product(1, n, k, &a, k, &mut whole, n, false);
            let mut tail = vec![0.0f32; 16];
            p.view()
                .skip_rows(32)
                .product(1, 16, k, &a, k, &mut tail, 16, false);
            assert_eq!(&whole[32..], &tail[..]);
        }
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
