"""Recurrent layers with ``torch.nn``'s signatures, state_dict names and gate
orders, over NumPy arrays.

A layer runs forward and, for training code of your own, backward::

    lstm = recur.nn.LSTM(10, 20, num_layers=2)
    out, (h_n, c_n) = lstm(x)            # x: [T, B, 10] (batch_first=False)
    d_x = lstm.backward(d_out)           # parameter gradients in lstm.grads

``load_state_dict`` takes a PyTorch layer's state_dict as NumPy arrays
(``{k: v.numpy() for k, v in torch_lstm.state_dict().items()}``) and
``state_dict`` gives one PyTorch loads.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _recur

__all__ = ["RNN", "LSTM", "GRU", "RNNBase"]

_DTYPES = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}


class RNNBase:
    """The stack shared by :class:`RNN`, :class:`LSTM` and :class:`GRU`."""

    _cell = ""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        dtype: Any = np.float32,
        seed: Optional[int] = None,
        *,
        _cell: Optional[str] = None,
    ) -> None:
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {v!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout!r}")
        try:
            self.dtype = np.dtype(dtype)
        except TypeError as e:
            raise ValueError(f"dtype: expected float32 or float64, got {dtype!r}") from e
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype: expected float32 or float64, got {self.dtype}")
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.training = True
        if seed is None:
            seed = int(np.random.randint(0, 2**63 - 1))
        elif not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**64:
            raise ValueError(f"seed: expected an integer in [0, 2**64), got {seed!r}")
        self._layer = _recur.Layer(
            _cell or self._cell,
            self.input_size,
            self.hidden_size,
            self.num_layers,
            self.bias,
            self.dropout,
            self.bidirectional,
            _DTYPES[self.dtype],
            int(seed),
        )
        self._batch_first_run = False

    # -- modes -----------------------------------------------------------
    def train(self, mode: bool = True) -> "RNNBase":
        """Training mode (dropout between layers is on); returns self."""
        self.training = bool(mode)
        return self

    def eval(self) -> "RNNBase":
        """Inference mode (no dropout); returns self."""
        return self.train(False)

    # -- forward and backward ----------------------------------------------
    def _array(self, v: Any, name: str) -> np.ndarray:
        a = np.ascontiguousarray(np.asarray(v), dtype=self.dtype)
        if a.ndim != 3:
            raise ValueError(f"{name}: expected a 3-d array, got shape {a.shape}")
        return a

    def _split_state(self, hx: Any) -> Tuple[Any, Any]:
        return hx, None

    def _join_state(self, h: np.ndarray, c: Optional[np.ndarray]) -> Any:
        return h

    def forward(
        self, x: Any, h0: Any = None, lengths: Optional[Sequence[int]] = None, *, hx: Any = None
    ) -> Tuple[np.ndarray, Any]:
        """Runs the stack over ``x`` ``[T, B, input_size]`` (``[B, T, …]``
        with ``batch_first``). ``h0`` is ``[L·D, B, H]`` (for the LSTM, a
        tuple ``(h0, c0)``), zeros when None. ``lengths`` gives each
        sequence's valid steps: outputs past them are zero and ``h_n`` is
        the state at the last valid step, as with a packed sequence.
        ``hx`` is PyTorch's name for ``h0``.

        Returns ``(output, h_n)``: output ``[T, B, D·H]`` and ``h_n``
        ``[L·D, B, H]`` (for the LSTM, ``(h_n, c_n)``).
        """
        if hx is not None:
            if h0 is not None:
                raise ValueError("give the initial state as h0 or hx, not both")
            h0 = hx
        x = self._array(x, "input")
        if self.batch_first:
            x = np.ascontiguousarray(x.transpose(1, 0, 2))
        h, c = self._split_state(h0)
        h = None if h is None else self._array(h, "h0")
        c = None if c is None else self._array(c, "c0")
        if lengths is not None:
            lengths = [int(v) for v in np.asarray(lengths).reshape(-1)]
            if any(v < 1 for v in lengths):
                raise ValueError(f"lengths: every length must be at least 1, got {lengths}")
        y, h_n, c_n = self._layer.forward(x, h, c, lengths, self.training and self.dropout > 0)
        self._batch_first_run = self.batch_first
        if self.batch_first:
            y = np.ascontiguousarray(y.transpose(1, 0, 2))
        return y, self._join_state(h_n, c_n)

    __call__ = forward

    def backward(self, d_output: Any, d_h_n: Any = None) -> np.ndarray:
        """Backpropagation through time for the last :meth:`forward`.

        Takes dL/d(output) (and optionally dL/dh_n, for the LSTM a tuple
        ``(d_h_n, d_c_n)``); returns dL/dx. The parameter gradients are
        added into :attr:`grads` (call :meth:`zero_grad` between steps, as
        with PyTorch), and dL/dh0 is left in :attr:`d_h0`.
        """
        dy = self._array(d_output, "d_output")
        if self._batch_first_run:
            dy = np.ascontiguousarray(dy.transpose(1, 0, 2))
        dh, dc = self._split_state(d_h_n)
        dh = None if dh is None else self._array(dh, "d_h_n")
        dc = None if dc is None else self._array(dc, "d_c_n")
        dx, dh0, dc0 = self._layer.backward(dy, dh, dc)
        self.d_h0 = self._join_state(dh0, dc0)
        if self._batch_first_run:
            dx = np.ascontiguousarray(dx.transpose(1, 0, 2))
        return dx

    # -- parameters ----------------------------------------------------------
    @property
    def grads(self) -> Dict[str, np.ndarray]:
        """The parameter gradients, by PyTorch name (copies)."""
        return dict(self._layer.grads())

    def zero_grad(self) -> None:
        """Sets every gradient to zero."""
        self._layer.zero_grad()

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """The parameters under PyTorch's names (``weight_ih_l0``, …,
        ``bias_hh_l1_reverse``), as copies."""
        return OrderedDict(self._layer.state_dict())

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Sets every parameter. The names and shapes must be exactly this
        layer's (as ``torch.nn``'s ``strict=True``); values may be NumPy
        arrays, lists, or anything ``numpy.asarray`` takes."""
        self._layer.load_state_dict({str(k): v for k, v in state_dict.items()})

    def __setattr__(self, name: str, value: Any) -> None:
        # A parameter is set through load_state_dict; an attribute of the
        # same name would hide it and change nothing.
        if name.startswith(("weight_", "bias_")) and "_layer" in self.__dict__:
            raise AttributeError(
                f"{name}: parameters are set with load_state_dict({{{name!r}: array, ...}})"
            )
        super().__setattr__(name, value)

    def __getattr__(self, name: str) -> np.ndarray:
        # weight_ih_l0 and the rest, read as attributes as in torch.nn.
        if name.startswith(("weight_", "bias_")):
            sd = self.__dict__["_layer"].state_dict()
            if name in sd:
                value: np.ndarray = sd[name]
                return value
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __repr__(self) -> str:
        extra = ""
        if self.num_layers != 1:
            extra += f", num_layers={self.num_layers}"
        if not self.bias:
            extra += ", bias=False"
        if self.batch_first:
            extra += ", batch_first=True"
        if self.dropout:
            extra += f", dropout={self.dropout}"
        if self.bidirectional:
            extra += ", bidirectional=True"
        return f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra})"


class RNN(RNNBase):
    """Elman RNN: h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), with
    ``nonlinearity`` ``'tanh'`` or ``'relu'``."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        dtype: Any = np.float32,
        seed: Optional[int] = None,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            dtype, seed, _cell=f"rnn-{nonlinearity}",
        )


class LSTM(RNNBase):
    """LSTM with PyTorch's gate order (i, f, g, o); the state is ``(h, c)``."""

    _cell = "lstm"

    def _split_state(self, hx: Any) -> Tuple[Any, Any]:
        if hx is None:
            return None, None
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise ValueError("the LSTM's state is a tuple (h, c)")
        return hx[0], hx[1]

    def _join_state(self, h: np.ndarray, c: Optional[np.ndarray]) -> Any:
        return (h, c)


class GRU(RNNBase):
    """GRU in PyTorch's form (r, z, n; the reset gate applied after the
    recurrent product). ``reset_after=False`` gives the original form of
    Cho et al. 2014, with the reset gate applied to the state before it."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        dtype: Any = np.float32,
        seed: Optional[int] = None,
        reset_after: bool = True,
    ) -> None:
        self.reset_after = bool(reset_after)
        super().__init__(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            dtype, seed, _cell="gru" if reset_after else "gru-reset-before",
        )
