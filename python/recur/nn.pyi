"""Recurrent layers with ``torch.nn``'s signatures, state_dict names and gate
orders, over NumPy arrays."""

from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt
from typing_extensions import Self

__all__ = ["RNN", "LSTM", "GRU", "RNNBase"]

_Array = npt.NDArray[np.floating[Any]]
_Lengths = Union[Sequence[int], npt.NDArray[np.integer[Any]]]

class RNNBase:
    """The stack shared by :class:`RNN`, :class:`LSTM` and :class:`GRU`."""

    dtype: np.dtype[Any]
    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    batch_first: bool
    dropout: float
    bidirectional: bool
    training: bool
    d_h0: Any
    """dL/dh0 of the last :meth:`backward` (for the LSTM, ``(d_h0, d_c0)``)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        dtype: npt.DTypeLike = ...,
        seed: Optional[int] = None,
        *,
        _cell: Optional[str] = None,
    ) -> None: ...
    def train(self, mode: bool = True) -> Self:
        """Training mode (dropout between layers is on); returns self."""

    def eval(self) -> Self:
        """Inference mode (no dropout); returns self."""

    def forward(self, x: npt.ArrayLike, h0: Any = None, lengths: Optional[_Lengths] = None, *, hx: Any = None) -> Tuple[_Array, Any]:
        """Runs the stack over ``x`` ``[T, B, input_size]`` (``[B, T, …]`` with
        ``batch_first``); returns ``(output, h_n)``."""

    def __call__(self, x: npt.ArrayLike, h0: Any = None, lengths: Optional[_Lengths] = None, *, hx: Any = None) -> Tuple[_Array, Any]:
        """Same as :meth:`forward`."""

    def backward(self, d_output: npt.ArrayLike, d_h_n: Any = None) -> _Array:
        """Backpropagation through time for the last :meth:`forward`; returns
        dL/dx, adds the parameter gradients into :attr:`grads` and leaves
        dL/dh0 in :attr:`d_h0`."""

    @property
    def grads(self) -> Dict[str, _Array]:
        """The parameter gradients, by PyTorch name (copies)."""

    def zero_grad(self) -> None:
        """Sets every gradient to zero."""

    def state_dict(self) -> "OrderedDict[str, _Array]":
        """The parameters under PyTorch's names (``weight_ih_l0``, …,
        ``bias_hh_l1_reverse``), as copies."""

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Sets every parameter. The names and shapes must be exactly this
        layer's (as ``torch.nn``'s ``strict=True``)."""

    def __setattr__(self, name: str, value: Any) -> None: ...
    def __getattr__(self, name: str) -> _Array:
        """``weight_ih_l0`` and the rest, read as attributes as in torch.nn."""

class RNN(RNNBase):
    """Elman RNN: h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), with
    ``nonlinearity`` ``'tanh'`` or ``'relu'``."""

    nonlinearity: str
    d_h0: _Array

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
        dtype: npt.DTypeLike = ...,
        seed: Optional[int] = None,
    ) -> None: ...
    def forward(
        self, x: npt.ArrayLike, h0: Optional[npt.ArrayLike] = None, lengths: Optional[_Lengths] = None, *, hx: Optional[npt.ArrayLike] = None
    ) -> Tuple[_Array, _Array]:
        """Runs the stack; returns ``(output, h_n)``."""

    def __call__(
        self, x: npt.ArrayLike, h0: Optional[npt.ArrayLike] = None, lengths: Optional[_Lengths] = None, *, hx: Optional[npt.ArrayLike] = None
    ) -> Tuple[_Array, _Array]:
        """Same as :meth:`forward`."""

    def backward(self, d_output: npt.ArrayLike, d_h_n: Optional[npt.ArrayLike] = None) -> _Array:
        """Backpropagation through time for the last :meth:`forward`; returns dL/dx."""

class LSTM(RNNBase):
    """LSTM with PyTorch's gate order (i, f, g, o); the state is ``(h, c)``."""

    d_h0: Tuple[_Array, _Array]

    def forward(
        self,
        x: npt.ArrayLike,
        h0: Union[Tuple[npt.ArrayLike, npt.ArrayLike], List[npt.ArrayLike], None] = None,
        lengths: Optional[_Lengths] = None,
        *,
        hx: Union[Tuple[npt.ArrayLike, npt.ArrayLike], List[npt.ArrayLike], None] = None,
    ) -> Tuple[_Array, Tuple[_Array, _Array]]:
        """Runs the stack; returns ``(output, (h_n, c_n))``."""

    def __call__(
        self,
        x: npt.ArrayLike,
        h0: Union[Tuple[npt.ArrayLike, npt.ArrayLike], List[npt.ArrayLike], None] = None,
        lengths: Optional[_Lengths] = None,
        *,
        hx: Union[Tuple[npt.ArrayLike, npt.ArrayLike], List[npt.ArrayLike], None] = None,
    ) -> Tuple[_Array, Tuple[_Array, _Array]]:
        """Same as :meth:`forward`."""

    def backward(
        self,
        d_output: npt.ArrayLike,
        d_h_n: Union[Tuple[npt.ArrayLike, npt.ArrayLike], List[npt.ArrayLike], None] = None,
    ) -> _Array:
        """Backpropagation through time for the last :meth:`forward`; returns dL/dx."""

class GRU(RNNBase):
    """GRU in PyTorch's form (r, z, n; the reset gate applied after the
    recurrent product). ``reset_after=False`` gives the original form of
    Cho et al. 2014, with the reset gate applied to the state before it."""

    reset_after: bool
    d_h0: _Array

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        dtype: npt.DTypeLike = ...,
        seed: Optional[int] = None,
        reset_after: bool = True,
    ) -> None: ...
    def forward(
        self, x: npt.ArrayLike, h0: Optional[npt.ArrayLike] = None, lengths: Optional[_Lengths] = None, *, hx: Optional[npt.ArrayLike] = None
    ) -> Tuple[_Array, _Array]:
        """Runs the stack; returns ``(output, h_n)``."""

    def __call__(
        self, x: npt.ArrayLike, h0: Optional[npt.ArrayLike] = None, lengths: Optional[_Lengths] = None, *, hx: Optional[npt.ArrayLike] = None
    ) -> Tuple[_Array, _Array]:
        """Same as :meth:`forward`."""

    def backward(self, d_output: npt.ArrayLike, d_h_n: Optional[npt.ArrayLike] = None) -> _Array:
        """Backpropagation through time for the last :meth:`forward`; returns dL/dx."""
