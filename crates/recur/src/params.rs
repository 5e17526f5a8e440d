//! The parameter store: every parameter of a model in one flat buffer, its
//! gradient in a second one of the same layout, and a table of named views.
//!
//! As in llm.c, a tensor is an offset and a length into the two buffers, so
//! initialisers, optimisers, clipping, checkpoints and export each loop
//! over one slice (or over the table) whatever the model is. As in candle's
//! `VarBuilder`, a part registers its tensors through a [`Scope`] that
//! carries the name prefix: a part never spells its parent's name.
//!
//! ```
//! use recur::{ParamStore, Linear};
//! let mut store = ParamStore::<f32>::new();
//! let head = Linear::new(store.scope("decoder"), 4, 3);
//! assert_eq!(store.info()[0].name, "decoder.weight");
//! assert_eq!(store.info()[1].shape, vec![3]);
//! assert_eq!(store.len(), 3 * 4 + 3);
//! # let _ = head;
//! ```

use std::ops::Range;

use crate::error::{Error, Result};
use crate::float::Float;
use crate::quant::{Packed, PackedRef, Precision};

/// Where one named tensor lives in a [`ParamStore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamInfo {
    /// The full scoped name, such as `rnn.weight_ih_l0` (PyTorch's
    /// `state_dict` name where the model has a PyTorch counterpart).
    pub name: String,
    /// The shape, PyTorch's where there is one.
    pub shape: Vec<usize>,
    /// Offset of the first element in the flat buffers.
    pub offset: usize,
}

impl ParamInfo {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Its range in the flat buffers.
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// A handle on one tensor of a store: what a part keeps to find its
/// parameters and gradients again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Param {
    /// Offset of the first element.
    pub offset: usize,
    /// Number of elements.
    pub len: usize,
}

impl Param {
    /// Its range in the flat buffers.
    pub fn range(self) -> Range<usize> {
        self.offset..self.offset + self.len
    }
    /// The tensor's values in `buf` (the store's `params` or `grads`).
    #[inline]
    pub fn of<T>(self, buf: &[T]) -> &[T] {
        &buf[self.offset..self.offset + self.len]
    }
    /// The tensor's values in `buf`, mutable.
    #[inline]
    pub fn of_mut<T>(self, buf: &mut [T]) -> &mut [T] {
        &mut buf[self.offset..self.offset + self.len]
    }
}

/// All parameters `[P]` and gradients `[P]` of a model, with their names.
#[derive(Clone, Debug, Default)]
pub struct ParamStore<T> {
    /// Every parameter, flat `[P]`, in registration order.
    pub params: Vec<T>,
    /// dL/dparams, flat `[P]`, laid out like `params`; backward passes add
    /// into it.
    pub grads: Vec<T>,
    info: Vec<ParamInfo>,
    /// Weights converted for inference (`[out, in]` each, by offset, in
    /// order); empty in f32. Copies of `params` at [`ParamStore::pack`].
    packed: Vec<(usize, Packed)>,
}

/// A store's parameters and the converted copies of its weights (see
/// [`ParamStore::pack`]), borrowed apart from its gradients.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ParamsView<'a, T> {
    /// Every parameter, flat `[P]`.
    pub params: &'a [T],
    packed: &'a [(usize, Packed)],
}

impl<'a, T> ParamsView<'a, T> {
    /// The converted copy of `weight`, if it was packed.
    pub fn packed(self, weight: Param) -> Option<PackedRef<'a>> {
        if self.packed.is_empty() {
            return None;
        }
        self.packed
            .binary_search_by_key(&weight.offset, |(o, _)| *o)
            .ok()
            .map(|i| self.packed[i].1.view())
    }
}

impl<T: Float> ParamStore<T> {
    /// An empty store.
    pub fn new() -> ParamStore<T> {
        ParamStore {
            params: Vec::new(),
            grads: Vec::new(),
            info: Vec::new(),
            packed: Vec::new(),
        }
    }

    /// The precision of the weight products: f32 unless [`ParamStore::pack`]
    /// converted weights.
    pub fn precision(&self) -> Precision {
        self.packed
            .first()
            .map_or(Precision::F32, |(_, p)| p.precision())
    }

    /// The converted copy of `weight`, if it was packed.
    pub(crate) fn packed(&self, weight: Param) -> Option<PackedRef<'_>> {
        self.view().packed(weight)
    }

    /// The parameters and their converted copies, to read.
    pub(crate) fn view(&self) -> ParamsView<'_, T> {
        ParamsView {
            params: &self.params,
            packed: &self.packed,
        }
    }

    /// [`ParamStore::view`] and the gradients, to add into: for backward
    /// passes.
    pub(crate) fn view_and_grads(&mut self) -> (ParamsView<'_, T>, &mut [T]) {
        (
            ParamsView {
                params: &self.params,
                packed: &self.packed,
            },
            &mut self.grads,
        )
    }

    /// Whether an optimiser may update the weights: they are f32, or
    /// packed for training ([`ParamStore::set_training_precision`]), whose
    /// copies [`ParamStore::repack`] refreshes.
    pub(crate) fn trainable(&self) -> bool {
        self.packed.iter().all(|(_, p)| p.has_transpose())
    }

    /// Converts the packed weights again from `params`: after each update
    /// when training in bf16 (nothing when none are packed).
    pub(crate) fn repack(&mut self) {
        let params = &self.params;
        for (offset, p) in &mut self.packed {
            let len = p.len();
            let w = T::as_f32(&params[*offset..][..len]).expect("only f32 weights are packed");
            p.repack(w);
        }
    }

    /// The scope with no prefix: its tensors keep the names they are given.
    pub fn root(&mut self) -> Scope<'_, T> {
        Scope {
            store: self,
            prefix: String::new(),
        }
    }

    /// The scope `name`: a tensor `weight` registered in it is `name.weight`.
    pub fn scope(&mut self, name: &str) -> Scope<'_, T> {
        Scope {
            store: self,
            prefix: format!("{name}."),
        }
    }

    /// Every tensor, in registration order (the order of the buffers).
    pub fn info(&self) -> &[ParamInfo] {
        &self.info
    }

    /// P: the number of parameters.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// A tensor's entry by its full name.
    pub fn find(&self, name: &str) -> Option<&ParamInfo> {
        self.info.iter().find(|p| p.name == name)
    }

    /// A tensor's values by its full name.
    pub fn get(&self, name: &str) -> Option<&[T]> {
        let r = self.find(name)?.range();
        Some(&self.params[r])
    }

    /// A tensor's values by its full name, mutable.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut [T]> {
        let r = self.find(name)?.range();
        Some(&mut self.params[r])
    }

    /// A tensor's gradient by its full name.
    pub fn grad(&self, name: &str) -> Option<&[T]> {
        let r = self.find(name)?.range();
        Some(&self.grads[r])
    }

    /// Sets every gradient to zero.
    pub fn zero_grad(&mut self) {
        self.grads.fill(T::ZERO);
    }

    /// Every tensor as (name, shape, values), in order: what a checkpoint
    /// or an export writes.
    pub fn named(&self) -> impl Iterator<Item = (&str, &[usize], &[T])> + '_ {
        self.info
            .iter()
            .map(|p| (p.name.as_str(), &p.shape[..], &self.params[p.range()]))
    }
}

/// A name prefix into a store, through which a part registers its tensors.
pub struct Scope<'a, T> {
    store: &'a mut ParamStore<T>,
    prefix: String,
}

impl ParamStore<f32> {
    /// Converts `weights` (each a registered `[out, in]` matrix that
    /// forward passes multiply activations by) to `precision` for
    /// inference, once; f32 drops any conversion. The copies are of the
    /// values now: training refuses a converted store, so they cannot go
    /// stale under an optimiser.
    pub fn pack(&mut self, precision: Precision, weights: &[Param]) -> Result<()> {
        self.pack_with(
            weights,
            |w, rows, cols| Packed::new(precision, w, rows, cols),
            precision,
        )
    }

    /// Training's products in `precision`: f32 drops any conversion; bf16
    /// converts `weights` for training: forward and backward products read
    /// the copies (the weights and their transposes), the optimiser
    /// updates the f32 weights, and [`ParamStore::repack`] converts them
    /// again after every update; int8 is an error (it is for inference).
    pub(crate) fn set_training_precision(
        &mut self,
        precision: Precision,
        weights: &[Param],
    ) -> Result<()> {
        match precision {
            Precision::F32 => self.pack(precision, weights),
            Precision::Bf16 => self.pack_with(weights, Packed::trainable, precision),
            Precision::Int8 => Err(Error::Config(
                "training runs in f32 or bf16; int8 is for inference".into(),
            )),
        }
    }

    fn pack_with(
        &mut self,
        weights: &[Param],
        pack: impl Fn(&[f32], usize, usize) -> Packed,
        precision: Precision,
    ) -> Result<()> {
        self.packed.clear();
        if precision == Precision::F32 {
            return Ok(());
        }
        for &w in weights {
            let info = self
                .info
                .iter()
                .find(|i| i.offset == w.offset && i.len() == w.len)
                .ok_or_else(|| {
                    Error::Config(format!("no tensor at offset {} to pack", w.offset))
                })?;
            let [rows, cols] = info.shape[..] else {
                return Err(Error::Config(format!(
                    "{}: only matrices are packed, not shape {:?}",
                    info.name, info.shape
                )));
            };
            self.packed
                .push((w.offset, pack(w.of(&self.params), rows, cols)));
        }
        self.packed.sort_by_key(|(o, _)| *o);
        Ok(())
    }
}

impl<T: Float> Scope<'_, T> {
    /// The sub-scope `name` (`encoder` → `encoder.name.`).
    pub fn pp(&mut self, name: &str) -> Scope<'_, T> {
        Scope {
            prefix: format!("{}{name}.", self.prefix),
            store: self.store,
        }
    }

    /// Registers a zero tensor `name` of `shape` and returns its handle.
    pub fn add(&mut self, name: &str, shape: &[usize]) -> Param {
        let offset = self.store.params.len();
        let info = ParamInfo {
            name: format!("{}{name}", self.prefix),
            shape: shape.to_vec(),
            offset,
        };
        let len = info.len();
        self.store.info.push(info);
        self.store.params.resize(offset + len, T::ZERO);
        self.store.grads.resize(offset + len, T::ZERO);
        Param { offset, len }
    }

    /// Sets every element of a tensor this scope's store holds, for a part
    /// that gives its own start value.
    pub fn fill(&mut self, p: Param, value: T) {
        p.of_mut(&mut self.store.params).fill(value);
    }

    /// Where the next tensor will start.
    pub fn offset(&self) -> usize {
        self.store.params.len()
    }
}
