//! Attention of a decoder over an encoder's outputs (the keys), masked to
//! each source's valid steps.
//!
//! - **Bahdanau** (additive), in the form of PyTorch's translation
//!   tutorial: the query is the decoder's previous top state,
//!   `score_s = Va · tanh(Wa·q + Ua·k_s) + b_Va`, and the context joins the
//!   decoder's next input.
//! - **Luong** general (`score_s = q · W k_s`) and dot (`q · k_s`): the
//!   query is the decoder's new top state, and the attentional state
//!   `h̃ = tanh(Wc [context; q] + b)` is what the output layer reads (and,
//!   with input feeding, what joins the next input).
//!
//! The keys' projection (`Ua·k`, `W·k`) is one GEMM over all S·B key rows
//! per batch ([`Attention::project_keys`]); each step then costs O(S·A) per
//! row. Backward runs per step in reverse and leaves the keys' projection
//! gradient accumulated, so the weight gradients are again one GEMM per
//! batch ([`Attention::finish_backward`]).
//!
//! Rows of a step may outnumber the sources: row n attends to source
//! `n / group` (a beam of `group` hypotheses per source).

use multiversion::multiversion;
use serde::{Deserialize, Serialize};

use crate::float::{dot, Float};
use crate::gemm::{gemm_nn, gemm_nt, gemm_tn};
use crate::layer::linear::Linear;
use crate::params::{Param, ParamStore, Scope};

/// Which attention a decoder has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttentionKind {
    /// No attention: the decoder sees the source only through its initial state.
    None,
    /// Additive (Bahdanau et al. 2015, PyTorch tutorial form).
    Bahdanau,
    /// Luong et al. 2015 "general": q · W k.
    General,
    /// Luong et al. 2015 "dot": q · k (needs K = H).
    Dot,
}

impl AttentionKind {
    /// From `none`, `bahdanau`, `general` or `dot`.
    pub fn from_name(s: &str) -> Option<AttentionKind> {
        match s {
            "none" => Some(AttentionKind::None),
            "bahdanau" => Some(AttentionKind::Bahdanau),
            "general" | "luong" => Some(AttentionKind::General),
            "dot" => Some(AttentionKind::Dot),
            _ => None,
        }
    }

    /// Whether the output layer reads the attentional state h̃ (Luong).
    pub fn luong(self) -> bool {
        matches!(self, AttentionKind::General | AttentionKind::Dot)
    }
}

/// The parameters of one attention, and where they sit in the store.
#[derive(Clone, Copy, Debug)]
pub struct Attention {
    kind: AttentionKind,
    /// K: key width.
    keys: usize,
    /// H: query width.
    query: usize,
    /// Bahdanau: Wa `[A, H]`, Ua `[A, K]`, Va `[1, A]` (A = H).
    wa: Option<Linear>,
    ua: Option<Linear>,
    va: Option<Linear>,
    /// General: W `[H, K]`.
    w: Option<Param>,
    /// Luong: Wc `[H, K + H]`.
    wc: Option<Linear>,
}

/// What a pass of attention keeps: per step, the weights and contexts, and
/// for backward what the step computed.
#[derive(Clone, Debug, Default)]
pub struct AttentionWs<T> {
    /// `[S, Bs, A]` the projected keys (Ua·k or W·k; dot: unused).
    pub kproj: Vec<T>,
    /// `[S, Bs, A]` dL/d(projected keys), summed over the steps.
    pub d_kproj: Vec<T>,
    /// `[U, N, S]` the weights of every step (zero past each source's end).
    pub alpha: Vec<T>,
    /// `[U, N, K]` the contexts.
    pub ctx: Vec<T>,
    /// `[U, N, H]` the queries.
    pub q: Vec<T>,
    /// `[U, N, A]` Wa·q + b (Bahdanau), then its gradient.
    wq: Vec<T>,
    /// `[U, N, K + H]` [context; q] (Luong).
    cat: Vec<T>,
    /// `[U, N, H]` the attentional states h̃ (Luong).
    pub h_att: Vec<T>,
    /// `[U, N, H]` dL/d(Wc·[c; q] + b) (Luong), gradients of the GEMM at the end.
    d_pre: Vec<T>,
    /// `[N, K + H]` dL/d[c; q] of one step.
    d_cat: Vec<T>,
    /// `[N, S]` dL/d(score) of one step.
    d_score: Vec<T>,
    /// `[A]` dL/d(Wa·q + b) of one row.
    d_row: Vec<T>,
    /// The steps started (capacity U) and the rows per step.
    cap: usize,
    /// Whether every step's scratch is kept for backward (else one slot).
    keep: bool,
    rows: usize,
}

impl<T> AttentionWs<T> {
    /// N: the rows of each step.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

impl Attention {
    /// Registers the parameters of `kind` for keys of width `keys` and
    /// queries of width `query`, under PyTorch-style names (`Wa`, `Ua`,
    /// `Va`; `W`, `Wc`).
    pub fn new<T: Float>(
        mut scope: Scope<'_, T>,
        kind: AttentionKind,
        keys: usize,
        query: usize,
    ) -> Attention {
        let mut a = Attention {
            kind,
            keys,
            query,
            wa: None,
            ua: None,
            va: None,
            w: None,
            wc: None,
        };
        match kind {
            AttentionKind::None => {}
            AttentionKind::Bahdanau => {
                a.wa = Some(Linear::new(scope.pp("Wa"), query, query));
                a.ua = Some(Linear::new(scope.pp("Ua"), keys, query));
                a.va = Some(Linear::new(scope.pp("Va"), query, 1));
            }
            AttentionKind::General | AttentionKind::Dot => {
                if kind == AttentionKind::General {
                    a.w = Some(scope.add("W", &[query, keys]));
                }
                a.wc = Some(Linear::new(scope.pp("Wc"), keys + query, query));
            }
        }
        a
    }

    /// The kind.
    pub fn kind(&self) -> AttentionKind {
        self.kind
    }

    /// Its linear layers and the general form's matrix, for initialisation.
    pub fn linears(&self) -> Vec<Linear> {
        [self.wa, self.ua, self.va, self.wc]
            .into_iter()
            .flatten()
            .collect()
    }

    /// General: W `[H, K]`.
    pub fn general_weight(&self) -> Option<Param> {
        self.w
    }

    /// The projected keys' width A (H; dot: K).
    fn proj_width(&self) -> usize {
        match self.kind {
            AttentionKind::Dot => self.keys,
            _ => self.query,
        }
    }

    /// Sizes the workspace for `steps` steps of `rows` rows over `keys`
    /// `[S, Bs, K]`, and projects the keys once. Without `backward`, the
    /// per-step scratch of the additive form is not kept (inference).
    pub fn project_keys<T: Float>(
        &self,
        store: &ParamStore<T>,
        ws: &mut AttentionWs<T>,
        keys: &[T],
        steps: usize,
        rows: usize,
        backward: bool,
    ) {
        let (k, h, a) = (self.keys, self.query, self.proj_width());
        let sb = keys.len() / k;
        ws.cap = steps;
        ws.rows = rows;
        ws.keep = backward;
        ws.kproj.resize(sb * a, T::ZERO);
        match self.kind {
            AttentionKind::Bahdanau => {
                self.ua.unwrap().forward(store, keys, sb, &mut ws.kproj);
            }
            AttentionKind::General => {
                gemm_nt(
                    sb,
                    h,
                    k,
                    keys,
                    k,
                    self.w.unwrap().of(&store.params),
                    &mut ws.kproj,
                    h,
                    false,
                );
            }
            AttentionKind::Dot => ws.kproj.copy_from_slice(keys),
            AttentionKind::None => {}
        }
        ws.d_kproj.clear();
        // Inference keeps only the weights of every step (for heatmaps).
        let slots = if backward { steps } else { 1 };
        ws.q.resize(slots * rows * h, T::ZERO);
        ws.ctx.resize(slots * rows * k, T::ZERO);
        if self.kind.luong() {
            ws.cat.resize(slots * rows * (k + h), T::ZERO);
            ws.h_att.resize(slots * rows * h, T::ZERO);
        }
        if self.kind == AttentionKind::Bahdanau {
            ws.wq.resize(slots * rows * h, T::ZERO);
        }
    }

    /// Step u: attends from the queries `q` `[N, H]` over `keys` `[S, Bs, K]`
    /// (row n reads source `n / group`, valid for s < `lengths[n / group]`),
    /// writing the weights and context of step u; Luong forms also write h̃.
    /// Returns the context `[N, K]` (Bahdanau) or h̃ `[N, H]` (Luong).
    #[allow(clippy::too_many_arguments)]
    pub fn step<'w, T: Float>(
        &self,
        store: &ParamStore<T>,
        ws: &'w mut AttentionWs<T>,
        u: usize,
        q: &[T],
        keys: &[T],
        lengths: &[usize],
        group: usize,
    ) -> &'w [T] {
        let (k, h, a) = (self.keys, self.query, self.proj_width());
        let n = ws.rows;
        let bs = lengths.len();
        let sn = keys.len() / (k * bs);
        let us = if ws.keep { u } else { 0 };
        ws.q[us * n * h..][..n * h].copy_from_slice(q);
        ws.alpha.resize(ws.cap * n * sn, T::ZERO);
        let p = &store.params;
        let alpha = &mut ws.alpha[u * n * sn..][..n * sn];
        if self.kind == AttentionKind::Bahdanau {
            // tanh(Wa·q + Ua·k) is not stored: backward recomputes it, so
            // memory stays linear in S and U.
            let wq = &mut ws.wq[us * n * a..][..n * a];
            self.wa.unwrap().forward(store, q, n, wq);
            let va = self.va.unwrap();
            let (vw, vb) = (va.weight().of(p), va.bias().of(p)[0]);
            for r in 0..n {
                let b = r / group;
                let wq_r = &wq[r * a..][..a];
                for s in 0..lengths[b] {
                    let kp = &ws.kproj[(s * bs + b) * a..][..a];
                    alpha[r * sn + s] = vb + additive_score(wq_r, kp, vw);
                }
            }
        } else {
            for r in 0..n {
                let b = r / group;
                let qr = &q[r * h..][..h];
                for s in 0..lengths[b] {
                    alpha[r * sn + s] = dot(qr, &ws.kproj[(s * bs + b) * a..][..a]);
                }
            }
        }
        let ctx = &mut ws.ctx[us * n * k..][..n * k];
        for r in 0..n {
            let b = r / group;
            let len = lengths[b];
            softmax_prefix(&mut alpha[r * sn..][..sn], len);
            let c = &mut ctx[r * k..][..k];
            c.fill(T::ZERO);
            for s in 0..len {
                let w = alpha[r * sn + s];
                for (c, x) in c.iter_mut().zip(&keys[(s * bs + b) * k..][..k]) {
                    *c += w * *x;
                }
            }
        }
        if !self.kind.luong() {
            return &ws.ctx[us * n * k..][..n * k];
        }
        let cat = &mut ws.cat[us * n * (k + h)..][..n * (k + h)];
        for r in 0..n {
            cat[r * (k + h)..][..k].copy_from_slice(&ctx[r * k..][..k]);
            cat[r * (k + h) + k..][..h].copy_from_slice(&q[r * h..][..h]);
        }
        let ht = &mut ws.h_att[us * n * h..][..n * h];
        self.wc.unwrap().forward(store, cat, n, ht);
        ht.iter_mut().for_each(|v| *v = v.tanh());
        &ws.h_att[us * n * h..][..n * h]
    }

    /// Backward of step u (steps in reverse), given dL/d(what [`step`]
    /// returned) `d_out` `[N, K]` (Bahdanau: the context) or `[N, H]`
    /// (Luong: h̃). Adds dL/dkeys into `d_keys` `[S, Bs, K]` and dL/dq into
    /// `d_q` `[N, H]`, and keeps what the weight gradients need.
    ///
    /// [`step`]: Attention::step
    #[allow(clippy::too_many_arguments)]
    pub fn step_backward<T: Float>(
        &self,
        store: &mut ParamStore<T>,
        ws: &mut AttentionWs<T>,
        u: usize,
        d_out: &[T],
        keys: &[T],
        lengths: &[usize],
        group: usize,
        d_keys: &mut [T],
        d_q: &mut [T],
    ) {
        let (k, h, a) = (self.keys, self.query, self.proj_width());
        let n = ws.rows;
        let bs = lengths.len();
        let sn = keys.len() / (k * bs);
        if ws.d_kproj.is_empty() {
            ws.d_kproj.resize(ws.kproj.len(), T::ZERO);
            if self.kind.luong() {
                ws.d_pre.resize(ws.cap * n * h, T::ZERO);
            }
        }
        ws.d_score.resize(n * sn, T::ZERO);
        // Luong: through h̃ = tanh(Wc [c; q] + b) to d[c; q]; the weight
        // gradient waits for one GEMM in finish_backward.
        let d_ctx: &[T] = if self.kind.luong() {
            let ht = &ws.h_att[u * n * h..][..n * h];
            let d_pre = &mut ws.d_pre[u * n * h..][..n * h];
            for ((d, y), g) in d_pre.iter_mut().zip(ht).zip(d_out) {
                *d = *g * (T::ONE - *y * *y);
            }
            ws.d_cat.resize(n * (k + h), T::ZERO);
            let wc = self.wc.unwrap();
            gemm_nn(
                n,
                k + h,
                h,
                d_pre,
                h,
                wc.weight().of(&store.params),
                &mut ws.d_cat,
                k + h,
                false,
            );
            for r in 0..n {
                for (g, d) in d_q[r * h..][..h]
                    .iter_mut()
                    .zip(&ws.d_cat[r * (k + h) + k..][..h])
                {
                    *g += *d;
                }
            }
            // Only the context part is read below, with row stride K + H.
            &ws.d_cat
        } else {
            d_out
        };
        let stride = if self.kind.luong() { k + h } else { k };
        let alpha = &ws.alpha[u * n * sn..][..n * sn];
        // Through the weighted sum and the softmax:
        // dα_s = d_ctx · k_s, d_score_s = α_s (dα_s − Σ α dα).
        for r in 0..n {
            let b = r / group;
            let len = lengths[b];
            let dc = &d_ctx[r * stride..][..k];
            let mut mean = T::ZERO;
            for s in 0..len {
                let key = &keys[(s * bs + b) * k..][..k];
                let da = dot(dc, key);
                let w = alpha[r * sn + s];
                ws.d_score[r * sn + s] = da;
                mean += w * da;
                for (g, x) in d_keys[(s * bs + b) * k..][..k].iter_mut().zip(dc) {
                    *g += w * *x;
                }
            }
            for s in 0..len {
                let ds = &mut ws.d_score[r * sn + s];
                *ds = alpha[r * sn + s] * (*ds - mean);
            }
        }
        let (params, grads) = (&store.params, &mut store.grads);
        match self.kind {
            AttentionKind::Bahdanau => {
                let va = self.va.unwrap();
                let vw = va.weight().of(params);
                let d_wq = &mut ws.wq[u * n * a..][..n * a];
                let (vw_at, vb_at) = (va.weight().range().start, va.bias().range().start);
                ws.d_row.resize(a, T::ZERO);
                for r in 0..n {
                    let b = r / group;
                    let wq_r = &mut d_wq[r * a..][..a];
                    ws.d_row.fill(T::ZERO);
                    for s in 0..lengths[b] {
                        let ds = ws.d_score[r * sn + s];
                        grads[vb_at] += ds;
                        let kp = &ws.kproj[(s * bs + b) * a..][..a];
                        let dk = &mut ws.d_kproj[(s * bs + b) * a..][..a];
                        let d_vw = &mut grads[vw_at..][..a];
                        additive_backward(wq_r, kp, vw, ds, d_vw, dk, &mut ws.d_row);
                    }
                    // Wa·q + b is read for the last time: its gradient takes its place.
                    wq_r.copy_from_slice(&ws.d_row);
                }
                // d_q += d(Wa q)·Wa; dWa waits for finish_backward.
                let wa = self.wa.unwrap();
                gemm_nn(n, h, a, d_wq, a, wa.weight().of(params), d_q, h, true);
            }
            AttentionKind::General | AttentionKind::Dot => {
                let q = &ws.q[u * n * h..][..n * h];
                for r in 0..n {
                    let b = r / group;
                    let qr = &q[r * h..][..h];
                    for s in 0..lengths[b] {
                        let ds = ws.d_score[r * sn + s];
                        let kp = &ws.kproj[(s * bs + b) * a..][..a];
                        for (g, x) in d_q[r * h..][..h].iter_mut().zip(kp) {
                            *g += ds * *x;
                        }
                        for (g, x) in ws.d_kproj[(s * bs + b) * a..][..a].iter_mut().zip(qr) {
                            *g += ds * *x;
                        }
                    }
                }
            }
            AttentionKind::None => {}
        }
    }

    /// After every step's backward: the weight gradients as GEMMs over all
    /// `steps` steps, and the keys' projection's share of dL/dkeys.
    pub fn finish_backward<T: Float>(
        &self,
        store: &mut ParamStore<T>,
        ws: &mut AttentionWs<T>,
        steps: usize,
        keys: &[T],
        d_keys: &mut [T],
    ) {
        let (k, h) = (self.keys, self.query);
        let rows = steps * ws.rows;
        let sb = keys.len() / k;
        if ws.d_kproj.is_empty() {
            return;
        }
        match self.kind {
            AttentionKind::Bahdanau => {
                self.wa
                    .unwrap()
                    .backward(store, &ws.q[..rows * h], &ws.wq[..rows * h], rows, None);
                let ua = self.ua.unwrap();
                // d_keys += d_kproj · Ua; dUa += d_kprojᵀ keys (bias: Σ).
                gemm_nn(
                    sb,
                    k,
                    h,
                    &ws.d_kproj,
                    h,
                    ua.weight().of(&store.params),
                    d_keys,
                    k,
                    true,
                );
                ua.backward(store, keys, &ws.d_kproj, sb, None);
            }
            AttentionKind::General => {
                let w = self.w.unwrap();
                let (p, g) = (&store.params, &mut store.grads);
                gemm_nn(sb, k, h, &ws.d_kproj, h, w.of(p), d_keys, k, true);
                gemm_tn(h, k, sb, &ws.d_kproj, h, keys, w.of_mut(g));
            }
            AttentionKind::Dot => {
                for (g, d) in d_keys.iter_mut().zip(&ws.d_kproj) {
                    *g += *d;
                }
            }
            AttentionKind::None => {}
        }
        if self.kind.luong() {
            self.wc.unwrap().backward(
                store,
                &ws.cat[..rows * (k + h)],
                &ws.d_pre[..rows * h],
                rows,
                None,
            );
        }
    }
}

/// Σ_j v_j · tanh(wq_j + k_j): one additive score, in fixed lanes so it
/// vectorises and stays deterministic.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn additive_score<T: Float>(wq: &[T], k: &[T], v: &[T]) -> T {
    const LANES: usize = 16;
    let mut acc = [T::ZERO; LANES];
    let n = wq.len() / LANES * LANES;
    for ((w, k), v) in wq[..n]
        .chunks_exact(LANES)
        .zip(k[..n].chunks_exact(LANES))
        .zip(v[..n].chunks_exact(LANES))
    {
        for l in 0..LANES {
            acc[l] += v[l] * (w[l] + k[l]).tanh();
        }
    }
    let mut s = T::ZERO;
    for j in n..wq.len() {
        s += v[j] * (wq[j] + k[j]).tanh();
    }
    for a in acc {
        s += a;
    }
    s
}

/// Backward of one additive score with gradient `ds`, recomputing
/// e = tanh(wq + k): dv += ds·e, and ds·v·(1 − e²) added into both dk and
/// d_wq.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn additive_backward<T: Float>(
    wq: &[T],
    k: &[T],
    v: &[T],
    ds: T,
    dv: &mut [T],
    dk: &mut [T],
    d_wq: &mut [T],
) {
    let a = wq.len();
    let (k, v, dv, dk, d_wq) = (&k[..a], &v[..a], &mut dv[..a], &mut dk[..a], &mut d_wq[..a]);
    for j in 0..a {
        let e = (wq[j] + k[j]).tanh();
        dv[j] += ds * e;
        let de = ds * v[j] * (T::ONE - e * e);
        dk[j] += de;
        d_wq[j] += de;
    }
}

/// Softmax over the first `len` entries in place; the rest become 0.
fn softmax_prefix<T: Float>(x: &mut [T], len: usize) {
    let max = x[..len]
        .iter()
        .fold(T::from_f64(f64::NEG_INFINITY), |m, &v| m.max(v));
    let mut sum = T::ZERO;
    for v in &mut x[..len] {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in &mut x[..len] {
        *v /= sum;
    }
    x[len..].fill(T::ZERO);
}
