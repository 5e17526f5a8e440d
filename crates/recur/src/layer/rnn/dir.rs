//! One direction of one layer, step by step: the pieces both the whole-
//! sequence pass and the step-by-step pass are made of.
//!
//! Forward: [`start`], an input GEMM ([`input_gemm`]) over the rows of one
//! or all steps, then [`step`] per step (the cell's recurrent GEMM and fused
//! kernel). Backward: [`start_backward`], [`step_backward`] per step in
//! reverse, [`input_grad`] (dL/dx) over the rows of one or all steps, and
//! [`finish_backward`]: the weight gradients as large GEMMs over all T·B rows.

use crate::cell::{self, CellKind, CellParams, StepBackward, StepForward, StepMask};
use crate::float::Float;
use crate::gemm::gemm_tn;
use crate::params::{Param, ParamsView};
use crate::quant::{grad_tn, weight_nn, weight_nt};

use super::workspace::DirWs;
use super::{Leak, RnnConfig};
use crate::layer::add_column_sums;
use crate::layer::embedding::{gather_rows, scatter_rows};

/// Shapes shared by the per-direction passes.
#[derive(Clone, Copy)]
pub(super) struct Dims {
    pub cell: CellKind,
    /// T
    pub tn: usize,
    /// B
    pub bn: usize,
    /// H
    pub h: usize,
    /// input width of this layer
    pub inp: usize,
    /// whether this direction runs backwards in time
    pub rev: bool,
    /// skip distance (0: none)
    pub skip: usize,
}

impl Dims {
    pub fn new(cfg: &RnnConfig, tn: usize, bn: usize, inp: usize, rev: bool) -> Dims {
        Dims {
            cell: cfg.cell,
            tn,
            bn,
            h: cfg.hidden,
            inp,
            rev,
            skip: cfg.skip,
        }
    }
    pub fn gh(&self) -> usize {
        self.cell.gates() * self.h
    }
    pub fn bh(&self) -> usize {
        self.bn * self.h
    }
    /// Time index of processing step s.
    pub fn time(&self, s: usize) -> usize {
        if self.rev {
            self.tn - 1 - s
        } else {
            s
        }
    }
    /// State slots (before, after) of time t; see `DirWs::hs`.
    pub fn slots(&self, t: usize) -> (usize, usize) {
        if self.rev {
            (t + 1, t)
        } else {
            (t, t + 1)
        }
    }
    /// The slot of the state before the first step, and of the final state.
    pub fn first_last(&self) -> (usize, usize) {
        if self.rev {
            (self.tn, 0)
        } else {
            (0, self.tn)
        }
    }
    /// Offset of the T contiguous "state before step" slots.
    pub fn prev_states_offset(&self) -> usize {
        if self.rev {
            self.bh()
        } else {
            0
        }
    }
    /// With ragged rows sorted longest first (and no skip connection), the
    /// number of rows still inside their sequences at time t: a prefix.
    /// `None` when every row runs (equal lengths) or the rows are unsorted.
    pub fn active_rows(&self, lengths: Option<&[usize]>, t: usize) -> Option<usize> {
        let l = lengths?;
        (self.skip == 0 && l.windows(2).all(|w| w[0] >= w[1]))
            .then(|| l.partition_point(|&n| n > t))
    }
    /// The slot the skip connection reads at processing step s: the state
    /// d steps back in processing order, or the state before the sequence.
    pub fn skip_slot(&self, s: usize) -> usize {
        match (s + 1).checked_sub(self.skip) {
            Some(k) => self.slots(self.time(k)).0,
            None => self.first_last().0,
        }
    }
}

/// Where the tensors of one direction of one layer sit in the store, in
/// registration order.
#[derive(Clone, Copy, Debug)]
pub(super) struct Slot {
    /// H.
    pub hidden: usize,
    /// Whether the units leak (the constants start with α).
    pub leaky: bool,
    pub w_ih: Param,
    pub w_hh: Option<Param>,
    pub b_ih: Param,
    pub b_hh: Option<Param>,
    pub w_skip: Option<Param>,
    pub leak_logit: Option<Param>,
}

impl Slot {
    /// The parameters a step reads; `consts` is the pass's `DirWs::consts`:
    /// the leak rates, then zeros standing in for an absent `bias_hh`.
    pub fn params<'a, T>(&self, p: &'a [T], consts: &'a [T]) -> CellParams<'a, T> {
        let (alpha, zeros) = consts.split_at(if self.leaky { self.hidden } else { 0 });
        CellParams {
            w_ih: self.w_ih.of(p),
            w_hh: self.w_hh.map_or(&[], |w| w.of(p)),
            b_ih: self.b_ih.of(p),
            b_hh: self.b_hh.map_or(zeros, |b| b.of(p)),
            w_skip: self.w_skip.map(|w| w.of(p)),
            alpha: self.leaky.then_some(alpha),
            q_ih: None,
            q_hh: None,
        }
    }

    /// [`Slot::params`] with the converted copies of the weights where
    /// `store` holds them (inference in bf16 or int8, training in bf16).
    pub fn params_packed<'a, T: Float>(
        &self,
        store: ParamsView<'a, T>,
        consts: &'a [T],
    ) -> CellParams<'a, T> {
        CellParams {
            q_ih: store.packed(self.w_ih),
            q_hh: self.w_hh.and_then(|w| store.packed(w)),
            ..self.params(store.params, consts)
        }
    }

    /// The gradients of the slot's tensors, apart.
    pub fn grads<'a, T>(&self, g: &'a mut [T]) -> SlotGrads<'a, T> {
        // Registration order: w_ih, w_hh?, b_ih, b_hh?, w_skip?, leak_logit?.
        let end = [Some(self.b_ih), self.b_hh, self.w_skip, self.leak_logit]
            .into_iter()
            .flatten()
            .map(|p| p.offset + p.len)
            .max()
            .expect("b_ih");
        let mut rest = &mut g[self.w_ih.offset..end];
        let mut take = |p: Option<Param>| -> &'a mut [T] {
            match p {
                None => &mut [],
                Some(p) => {
                    let (head, tail) = std::mem::take(&mut rest).split_at_mut(p.len);
                    rest = tail;
                    head
                }
            }
        };
        SlotGrads {
            w_ih: take(Some(self.w_ih)),
            w_hh: take(self.w_hh),
            b_ih: take(Some(self.b_ih)),
            b_hh: take(self.b_hh),
            w_skip: take(self.w_skip),
            leak_logit: take(self.leak_logit),
        }
    }
}

/// The gradients of one slot (empty slices for absent tensors).
pub(super) struct SlotGrads<'a, T> {
    pub w_ih: &'a mut [T],
    pub w_hh: &'a mut [T],
    pub b_ih: &'a mut [T],
    pub b_hh: &'a mut [T],
    pub w_skip: &'a mut [T],
    pub leak_logit: &'a mut [T],
}

/// The first `n` elements of `s`, or all of a shorter (empty) one.
fn head<T>(s: &mut [T], n: usize) -> &mut [T] {
    let k = n.min(s.len());
    &mut s[..k]
}

/// Writes the state before the first step (zeros when not given) and the
/// pass's constants: the leak rates, and zeros for an absent `bias_hh`.
pub(super) fn start<T: Float>(
    dm: Dims,
    leak: Leak,
    logit: Option<&[T]>,
    d: &mut DirWs<T>,
    h0: Option<&[T]>,
    c0: Option<&[T]>,
) {
    let bh = dm.bh();
    let (first, _) = dm.first_last();
    match h0 {
        Some(s) => d.hs[first * bh..][..bh].copy_from_slice(s),
        None => d.hs[first * bh..][..bh].fill(T::ZERO),
    }
    if dm.cell.has_cell_state() {
        match c0 {
            Some(s) => d.cs[first * bh..][..bh].copy_from_slice(s),
            None => d.cs[first * bh..][..bh].fill(T::ZERO),
        }
    }
    let (alpha, zeros) = d
        .consts
        .split_at_mut(if leak == Leak::None { 0 } else { dm.h });
    zeros.fill(T::ZERO);
    match (leak, logit) {
        (Leak::None, _) => {}
        (Leak::Fixed(a), _) => alpha.fill(T::from_f64(a)),
        (Leak::Learned(_), Some(l)) => {
            for (a, l) in alpha.iter_mut().zip(l) {
                *a = l.sigmoid();
            }
        }
        (Leak::Learned(_), None) => unreachable!("a learned leak has logits"),
    }
}

/// The input side of the gates of steps `t0..t0+n`: `gates = x · W_ihᵀ`,
/// with `x` `[n·B, in]` those steps' inputs.
pub(super) fn input_gemm<T: Float>(
    dm: Dims,
    p: &CellParams<T>,
    x: &[T],
    d: &mut DirWs<T>,
    t0: usize,
    n: usize,
) {
    let (gh, rows) = (dm.gh(), n * dm.bn);
    weight_nt(
        rows,
        gh,
        dm.inp,
        x,
        dm.inp,
        p.w_ih,
        p.q_ih,
        &mut d.gates[t0 * dm.bn * gh..][..rows * gh],
        gh,
        false,
    );
}

/// [`input_gemm`] of all T steps for a lookup pass: the input at row n is
/// row `ids[n]` of `rows` `[V, in]`, so the V rows go through W_ih once
/// (`d.table` `[V, G·H]`) and each of the T·B rows takes its product:
/// the same sums at V/(T·B) of the cost.
pub(super) fn input_table<T: Float>(
    dm: Dims,
    p: &CellParams<T>,
    rows: &[T],
    ids: &[u32],
    d: &mut DirWs<T>,
) {
    let (gh, v) = (dm.gh(), rows.len() / dm.inp);
    d.table.resize(v * gh, T::ZERO);
    weight_nt(
        v,
        gh,
        dm.inp,
        rows,
        dm.inp,
        p.w_ih,
        p.q_ih,
        &mut d.table,
        gh,
        false,
    );
    gather_rows(
        &d.table,
        v,
        gh,
        ids,
        1,
        None,
        &mut d.gates[..ids.len() * gh],
    );
}

/// [`input_table`] reversed: dP[v] = the sum of d_gates over the rows
/// whose id is v (`d.table`), then dW_ih += dPᵀ · rows and dL/d`rows`
/// (+)= dP · W_ih, each a product over V rows instead of T·B.
#[allow(clippy::too_many_arguments)]
pub(super) fn table_backward<T: Float>(
    dm: Dims,
    p: &CellParams<T>,
    d: &mut DirWs<T>,
    rows: &[T],
    ids: &[u32],
    g_w_ih: &mut [T],
    d_rows: &mut [T],
    accumulate: bool,
    bf16: bool,
) {
    let (gh, v) = (dm.gh(), rows.len() / dm.inp);
    d.table.fill(T::ZERO);
    scatter_rows(&d.d_gates, gh, ids, 1, v, &mut d.table);
    grad_tn(gh, dm.inp, v, &d.table, gh, rows, g_w_ih, bf16);
    weight_nn(
        v,
        dm.inp,
        gh,
        &d.table,
        gh,
        p.w_ih,
        p.qt_ih(),
        d_rows,
        dm.inp,
        accumulate,
    );
}

/// Processing step s forward: the cell's recurrent GEMM(s) and kernel.
/// `y` `[T, B, D·H]` gets the new state at column `y_off`.
#[allow(clippy::too_many_arguments)]
pub(super) fn step<T: Float>(
    dm: Dims,
    p: &CellParams<T>,
    d: &mut DirWs<T>,
    s: usize,
    lengths: Option<&[usize]>,
    y: &mut [T],
    y_off: usize,
    y_stride: usize,
) {
    let v = DirRows::new(d, y);
    // SAFETY: every row, on this thread, while `d` and `y` are borrowed.
    unsafe { step_rows(dm, p, v, s, lengths, y_off, y_stride, 0..dm.bn) }
}

/// Whether a one-direction layer of `bn` rows of `h` units runs its
/// forward steps on two threads, half the rows each (see [`step_rows`]):
/// with `packed` (bf16 or int8) recurrent weights, whose kernel gives
/// each row the same sums at any row count. (faer's f32 products of half
/// the rows ran 1–8% slower than the whole product split by columns.)
pub(super) fn rows_split(bn: usize, h: usize, packed: bool) -> bool {
    packed && bn >= 8 && bn * h >= 4096 && crate::gemm::threads() >= 2
}

/// [`rows_split`] for backward steps, whose products each thread would
/// take through the whole transposed recurrent weight: only while that
/// (G·H × H in bf16) stays within 256 KiB, a quarter of a core's L2.
/// (char-lstm-128x2 bf16 training gained 5–7%; H = 512 layers lost 0–2%.)
pub(super) fn rows_split_backward(dm: Dims, packed: bool) -> bool {
    rows_split(dm.bn, dm.h, packed) && dm.gh() * dm.h * 2 <= 256 * 1024
}

/// A direction's forward buffers as raw parts, so that threads can run
/// disjoint ranges of rows through the same steps: each row's recurrence
/// reads only its own rows (see [`step_rows`]).
#[derive(Clone, Copy)]
pub(super) struct DirRows<T> {
    hs: Raw<T>,
    cs: Raw<T>,
    extra: Raw<T>,
    gates: Raw<T>,
    hg: Raw<T>,
    y: Raw<T>,
}

/// A buffer's pointer and length.
#[derive(Clone, Copy)]
struct Raw<T>(*mut T, usize);

// SAFETY: tasks given the same `DirRows` touch disjoint rows (step_rows'
// contract).
unsafe impl<T: Send> Send for DirRows<T> {}
unsafe impl<T: Send> Sync for DirRows<T> {}

impl<T> Raw<T> {
    fn of(v: &mut [T]) -> Raw<T> {
        Raw(v.as_mut_ptr(), v.len())
    }
    /// `n` elements from `at`, or nothing from an unused (empty) buffer.
    ///
    /// # Safety
    /// No other live reference overlaps them.
    unsafe fn at<'a>(self, at: usize, n: usize) -> &'a mut [T] {
        if self.1 == 0 {
            return &mut [];
        }
        assert!(at + n <= self.1, "row window outside its buffer");
        // SAFETY: in bounds (asserted); the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(at), n) }
    }
    /// [`Raw::at`], read-only.
    ///
    /// # Safety
    /// No live mutable reference overlaps them.
    unsafe fn read<'a>(self, at: usize, n: usize) -> &'a [T] {
        if self.1 == 0 {
            return &[];
        }
        assert!(at + n <= self.1, "row window outside its buffer");
        // SAFETY: in bounds (asserted); the caller's contract.
        unsafe { std::slice::from_raw_parts(self.0.add(at), n) }
    }
}

impl<T> DirRows<T> {
    pub(super) fn new(d: &mut DirWs<T>, y: &mut [T]) -> DirRows<T> {
        DirRows {
            hs: Raw::of(&mut d.hs),
            cs: Raw::of(&mut d.cs),
            extra: Raw::of(&mut d.extra),
            gates: Raw::of(&mut d.gates),
            hg: Raw::of(&mut d.hg),
            y: Raw::of(y),
        }
    }
}

/// [`step`] for rows `rows` of the batch.
///
/// # Safety
/// `v` comes from buffers that outlive the call and that nothing else
/// reads or writes meanwhile except other calls for disjoint row ranges
/// of this layer's direction.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn step_rows<T: Float>(
    dm: Dims,
    p: &CellParams<T>,
    v: DirRows<T>,
    s: usize,
    lengths: Option<&[usize]>,
    y_off: usize,
    y_stride: usize,
    rows: std::ops::Range<usize>,
) {
    let (gh, bh, bn, h) = (dm.gh(), dm.bh(), dm.bn, dm.h);
    let (b0, w) = (rows.start, rows.len());
    let t = dm.time(s);
    let (before, after) = dm.slots(t);
    let skip = dm.skip > 0;
    let sk = if skip { dm.skip_slot(s) } else { before };
    debug_assert!(before != after && sk != after);
    // SAFETY (all views): these rows of this step's slots, which only this
    // call touches (the contract); the slots read differ from the one
    // written (`Dims::slots`, `skip_slot`).
    let (h_prev, h_skip, h_new, c_prev, c_new, extra, gates, hg, y) = unsafe {
        let row = |slot: usize| slot * bh + b0 * h;
        (
            v.hs.read(row(before), w * h),
            v.hs.read(row(sk), w * h),
            v.hs.at(row(after), w * h),
            v.cs.read(row(before), w * h),
            v.cs.at(row(after), w * h),
            v.extra.at(row(t), w * h),
            v.gates.at((t * bn + b0) * gh, w * gh),
            v.hg.at(b0 * gh, w * gh),
            v.y.at((t * bn + b0) * y_stride + y_off, (w - 1) * y_stride + h),
        )
    };
    let lengths = lengths.map(|l| &l[rows.clone()]);
    // Rows sorted longest first (as a packed batch is): the step runs on
    // the rows still inside their sequences, and the others carry.
    if let Some(m) = dm.active_rows(lengths, t) {
        let (mh, mg) = (m * h, m * gh);
        let io = StepForward {
            h_prev: &h_prev[..mh],
            h_skip: skip.then(|| &h_skip[..mh]),
            h_new: &mut h_new[..mh],
            c_prev: &c_prev[..mh.min(c_prev.len())],
            c_new: head(c_new, mh),
            gates: &mut gates[..mg],
            extra: head(extra, mh),
            hg: head(hg, mg),
            y: &mut y[..],
            y_stride,
            mask: StepMask { lengths: None, t },
        };
        if m > 0 {
            cell::forward_step(dm.cell, h, p, io);
        }
        h_new[mh..].copy_from_slice(&h_prev[mh..]);
        if !c_prev.is_empty() {
            c_new[mh..].copy_from_slice(&c_prev[mh..]);
        }
        for b in m..w {
            y[b * y_stride..][..h].fill(T::ZERO);
        }
        return;
    }
    let io = StepForward {
        h_prev,
        h_skip: skip.then_some(h_skip),
        h_new,
        c_prev,
        c_new,
        gates,
        extra,
        hg,
        y,
        y_stride,
        mask: StepMask { lengths, t },
    };
    cell::forward_step(dm.cell, h, p, io);
}

/// Sets dL/d(final state) (zeros when not given) before the first
/// backward step.
pub(super) fn start_backward<T: Float>(d: &mut DirWs<T>, dh_n: Option<&[T]>, dc_n: Option<&[T]>) {
    match dh_n {
        Some(s) => d.dh.copy_from_slice(s),
        None => d.dh.fill(T::ZERO),
    }
    match dc_n {
        Some(s) => d.dc.copy_from_slice(s),
        None => d.dc.fill(T::ZERO),
    }
    d.dh_skip.fill(T::ZERO);
    d.d_logit.fill(T::ZERO);
}

/// Processing step s backward: dL/dh of the state after it (from later
/// steps, from `dy_t`, the step's dL/dy rows at `dy_stride`, and from skip
/// connections) becomes dL/d(pre-activations) and dL/dh of the state
/// before it.
#[allow(clippy::too_many_arguments)]
pub(super) fn step_backward<T: Float>(
    dm: Dims,
    p: &CellParams<T>,
    d: &mut DirWs<T>,
    s: usize,
    lengths: Option<&[usize]>,
    dy_t: &[T],
    dy_stride: usize,
) {
    let v = DirRowsBack::new(d);
    // SAFETY: every row, on this thread, while `d` is borrowed; the state
    // gradient goes from `dh` into `dh_next` (parity 0), then they swap.
    unsafe { step_backward_rows(dm, p, v, s, 0, lengths, dy_t, dy_stride, 0..dm.bn) };
    std::mem::swap(&mut d.dh, &mut d.dh_next);
}

/// A direction's backward buffers as raw parts, for threads that run
/// disjoint ranges of rows through the same steps (see
/// [`step_backward_rows`]).
#[derive(Clone, Copy)]
pub(super) struct DirRowsBack<T> {
    gates: Raw<T>,
    extra: Raw<T>,
    hs: Raw<T>,
    cs: Raw<T>,
    dh: Raw<T>,
    dh_next: Raw<T>,
    dc: Raw<T>,
    d_gates: Raw<T>,
    d_hgates: Raw<T>,
    d_rh: Raw<T>,
    dh_skip: Raw<T>,
    dh_record: Raw<T>,
    d_logit: Raw<T>,
}

// SAFETY: as `DirRows`.
unsafe impl<T: Send> Send for DirRowsBack<T> {}
unsafe impl<T: Send> Sync for DirRowsBack<T> {}

impl<T> DirRowsBack<T> {
    pub(super) fn new(d: &mut DirWs<T>) -> DirRowsBack<T> {
        DirRowsBack {
            gates: Raw::of(&mut d.gates),
            extra: Raw::of(&mut d.extra),
            hs: Raw::of(&mut d.hs),
            cs: Raw::of(&mut d.cs),
            dh: Raw::of(&mut d.dh),
            dh_next: Raw::of(&mut d.dh_next),
            dc: Raw::of(&mut d.dc),
            d_gates: Raw::of(&mut d.d_gates),
            d_hgates: Raw::of(&mut d.d_hgates),
            d_rh: Raw::of(&mut d.d_rh),
            dh_skip: Raw::of(&mut d.dh_skip),
            dh_record: Raw::of(&mut d.dh_record),
            d_logit: Raw::of(&mut d.d_logit),
        }
    }
}

/// [`step_backward`] for rows `rows`, reading dL/dh of the state after the
/// step from `dh` and writing that of the state before it into `dh_next`
/// when `parity` is 0, the other way round when it is 1 (threads cannot
/// swap the buffers under each other). Not with a learned leak, whose
/// gradient sums over rows: [`step_backward`] handles it.
///
/// # Safety
/// As [`step_rows`], for the buffers of `v`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn step_backward_rows<T: Float>(
    dm: Dims,
    p: &CellParams<T>,
    v: DirRowsBack<T>,
    s: usize,
    parity: usize,
    lengths: Option<&[usize]>,
    dy_t: &[T],
    dy_stride: usize,
    rows: std::ops::Range<usize>,
) {
    let (gh, bh, bn, h) = (dm.gh(), dm.bh(), dm.bn, dm.h);
    let (b0, w) = (rows.start, rows.len());
    let t = dm.time(s);
    let (before, after) = dm.slots(t);
    let (cur, next) = if parity == 0 {
        (v.dh, v.dh_next)
    } else {
        (v.dh_next, v.dh)
    };
    let dy_t = &dy_t[b0 * dy_stride..];
    let row = |slot: usize| slot * bh + b0 * h;
    // SAFETY (all views): these rows of this step's buffers, which only
    // this call touches (the contract); `cur` and `next` are different
    // buffers.
    let (dh, dh_next) = unsafe { (cur.at(b0 * h, w * h), next.at(b0 * h, w * h)) };
    if v.dh_skip.1 > 0 {
        // SAFETY: as above.
        let skip = unsafe { v.dh_skip.read(row(after), w * h) };
        for (a, v) in dh.iter_mut().zip(skip) {
            *a += *v;
        }
    }
    if v.dh_record.1 > 0 {
        // SAFETY: as above.
        let rec = unsafe { v.dh_record.at(row(t), w * h) };
        for (b, r) in rec.chunks_exact_mut(h).enumerate() {
            let dyr = &dy_t[b * dy_stride..][..h];
            for ((r, g), y) in r.iter_mut().zip(&dh[b * h..][..h]).zip(dyr) {
                *r = *g + *y;
            }
        }
    }
    // SAFETY: as above; the slots read (`before`, the step's rows) are not
    // written by this pass.
    let (gates, extra, h_prev, c_prev, dc, d_gates, d_hgates, d_rh) = unsafe {
        (
            v.gates.read((t * bn + b0) * gh, w * gh),
            v.extra.read(row(t), w * h),
            v.hs.read(row(before), w * h),
            v.cs.read(row(before), w * h),
            v.dc.at(b0 * h, w * h),
            v.d_gates.at((t * bn + b0) * gh, w * gh),
            v.d_hgates.at((t * bn + b0) * gh, w * gh),
            v.d_rh.at(b0 * h, w * h),
        )
    };
    // A learned leak's gradient sums over every row: only a call for all
    // of them has one.
    assert!(
        v.d_logit.1 == 0 || w == bn,
        "a learned leak takes every row"
    );
    // SAFETY: as above.
    let d_logit = (v.d_logit.1 > 0).then(|| unsafe { v.d_logit.at(0, h) });
    let lengths = lengths.map(|l| &l[rows.clone()]);
    if let Some(m) = dm.active_rows(lengths, t) {
        let (mh, mg) = (m * h, m * gh);
        let io = StepBackward {
            gates: &gates[..mg],
            extra: &extra[..mh.min(extra.len())],
            h_prev: &h_prev[..mh],
            c_prev: &c_prev[..mh.min(c_prev.len())],
            dh: &dh[..mh],
            dy: dy_t,
            dy_stride,
            dc: head(dc, mh),
            d_gates: &mut d_gates[..mg],
            d_hgates: head(d_hgates, mg),
            d_rh: head(d_rh, mh),
            dh_prev: &mut dh_next[..mh],
            dh_skip: None,
            d_logit,
            mask: StepMask { lengths: None, t },
        };
        if m > 0 {
            cell::backward_step(dm.cell, h, p, io);
        }
        // Finished rows: no gradient into their gates; dL/dh (and dL/dc,
        // left in place) pass through the carried state.
        d_gates[mg..].fill(T::ZERO);
        if !d_hgates.is_empty() {
            d_hgates[mg..].fill(T::ZERO);
        }
        dh_next[mh..].copy_from_slice(&dh[mh..]);
        return;
    }
    let dh_skip = if dm.skip > 0 {
        // SAFETY: as above; the skip slot of step s is written by this
        // step only.
        Some(unsafe { v.dh_skip.at(row(dm.skip_slot(s)), w * h) })
    } else {
        None
    };
    let io = StepBackward {
        gates,
        extra,
        h_prev,
        c_prev,
        dh,
        dy: dy_t,
        dy_stride,
        dc,
        d_gates,
        d_hgates,
        d_rh,
        dh_prev: dh_next,
        dh_skip,
        d_logit,
        mask: StepMask { lengths, t },
    };
    cell::backward_step(dm.cell, h, p, io);
}

/// dL/dx of steps `t0..t0+n`: `dx = d_gates · W_ih` over their rows, added
/// into `dx` `[n·B, in]` or written over it.
pub(super) fn input_grad<T: Float>(
    dm: Dims,
    p: &CellParams<T>,
    d: &DirWs<T>,
    t0: usize,
    n: usize,
    dx: &mut [T],
    accumulate: bool,
) {
    let (gh, rows) = (dm.gh(), n * dm.bn);
    weight_nn(
        rows,
        dm.inp,
        gh,
        &d.d_gates[t0 * dm.bn * gh..][..rows * gh],
        gh,
        p.w_ih,
        p.qt_ih(),
        dx,
        dm.inp,
        accumulate,
    );
}

/// After the last backward step: dL/d(initial state) into `dh0`, `dc0`
/// `[B, H]`, and the weight gradients of the T = `dm.tn` steps as large
/// GEMMs over all T·B rows (`x` `[T·B, in]` the layer's input; `None`
/// when [`table_backward`] gives W_ih's), in bf16 when training runs in
/// bf16.
pub(super) fn finish_backward<T: Float>(
    dm: Dims,
    d: &DirWs<T>,
    g: SlotGrads<T>,
    x: Option<&[T]>,
    dh0: &mut [T],
    dc0: &mut [T],
    bf16: bool,
) {
    let Dims {
        cell,
        tn,
        bn,
        h,
        inp,
        ..
    } = dm;
    let (gh, bh) = (dm.gh(), dm.bh());
    dh0.copy_from_slice(&d.dh);
    if !d.dh_skip.is_empty() {
        let (first, _) = dm.first_last();
        for (a, v) in dh0.iter_mut().zip(&d.dh_skip[first * bh..][..bh]) {
            *a += *v;
        }
    }
    if cell.has_cell_state() {
        dc0.copy_from_slice(&d.dc);
    }
    let rows = tn * bn;
    let dgx = &d.d_gates[..rows * gh];
    let dgh = if cell == CellKind::Gru {
        &d.d_hgates[..rows * gh]
    } else {
        dgx
    };
    let h_prevs = &d.hs[dm.prev_states_offset()..][..rows * h];
    if let Some(x) = x {
        grad_tn(gh, inp, rows, dgx, gh, &x[..rows * inp], g.w_ih, bf16);
    }
    if cell == CellKind::GruResetBefore {
        grad_tn(2 * h, h, rows, dgh, gh, h_prevs, g.w_hh, bf16);
        let rh = &d.extra[..rows * h];
        let g_n = &mut g.w_hh[2 * h * h..];
        grad_tn(h, h, rows, &dgh[2 * h..], gh, rh, g_n, bf16);
    } else if !g.w_hh.is_empty() {
        grad_tn(gh, h, rows, dgh, gh, h_prevs, g.w_hh, bf16);
    }
    if dm.skip > 0 {
        skip_weight_grad(dm, d, g.w_skip);
    }
    add_column_sums(g.b_ih, dgx, gh);
    add_column_sums(g.b_hh, dgh, gh);
    for (a, v) in g.leak_logit.iter_mut().zip(&d.d_logit) {
        *a += *v;
    }
}

/// dW_skip += Σ_t d_pre_tᵀ · h_skip(t): one GEMM over the steps whose skip
/// state lies inside the sequence (their slots are contiguous), one small
/// GEMM for each step that reads the state before the sequence.
fn skip_weight_grad<T: Float>(dm: Dims, d: &DirWs<T>, gw: &mut [T]) {
    let (bh, h, tn) = (dm.bh(), dm.h, dm.tn);
    let inside = (tn + 1).saturating_sub(dm.skip);
    // Forward: steps t = d−1.. read slots 0..; reverse: t = 0..=T−d read slots d..
    let (t0, k0) = if dm.rev {
        (0, dm.skip)
    } else {
        (dm.skip - 1, 0)
    };
    let mut product = |t: usize, n: usize, k: usize| {
        gemm_tn(
            h,
            h,
            n * dm.bn,
            &d.d_gates[t * bh..][..n * bh],
            h,
            &d.hs[k * bh..][..n * bh],
            gw,
        );
    };
    if inside > 0 {
        product(t0, inside, k0);
    }
    let (first, _) = dm.first_last();
    for s in 0..tn.min(dm.skip - 1) {
        product(dm.time(s), 1, first);
    }
}
