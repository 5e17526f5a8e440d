"""The native module."""

import os
from typing import Any, Callable, Dict, List, Literal, Optional, Sequence, Tuple, Union, final

import numpy as np
import numpy.typing as npt

__all__ = ["Layer", "Model", "train", "train_options", "bleu", "RecurError"]

# Arrays of the layer's own precision (float32 or float64; no conversion
# is made: an array of the other precision is a ValueError).
_FloatArray = npt.NDArray[np.floating[Any]]
_Kind = Literal["language-model", "classifier", "tagger", "regressor", "seq2seq"]

class RecurError(Exception):
    """An error of recur's that is not a bad argument or a missing file: bad data, a diverged run, a model file that is not one."""

@final
class Layer:
    """A stacked recurrent layer: the native side of `recur.nn.RNN`, `LSTM` and `GRU`, time-major."""

    def __new__(
        cls,
        cell: str,
        input: int,
        hidden: int,
        layers: int,
        bias: bool,
        dropout: float,
        bidirectional: bool,
        dtype: str,
        seed: int,
    ) -> "Layer":
        """`cell`: rnn-tanh, rnn-relu, lstm, gru or gru-reset-before; `dtype`: float32 or float64."""

    def forward(
        self,
        x: _FloatArray,
        h0: Optional[_FloatArray] = None,
        c0: Optional[_FloatArray] = None,
        lengths: Optional[Sequence[int]] = None,
        train: bool = False,
    ) -> Tuple[_FloatArray, _FloatArray, Optional[_FloatArray]]:
        """Runs the stack over `x` `[T, B, I]`: (output `[T, B, D·H]`, h_n, c_n or None) with states `[L·D, B, H]`."""

    def backward(
        self,
        d_output: _FloatArray,
        d_h_n: Optional[_FloatArray] = None,
        d_c_n: Optional[_FloatArray] = None,
    ) -> Tuple[_FloatArray, _FloatArray, Optional[_FloatArray]]:
        """Backpropagation through time for the last forward: adds the parameter gradients and returns (dx, dh0, dc0 or None)."""

    def state_dict(self) -> Dict[str, _FloatArray]:
        """The parameters under PyTorch's names, as copies."""

    def grads(self) -> Dict[str, _FloatArray]:
        """The gradients under the parameters' names, as copies."""

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Sets every parameter from a dict of arrays; the names and shapes must be exactly the layer's."""

    def zero_grad(self) -> None:
        """Sets every gradient to zero."""

@final
class Model:
    """A trained model of any kind, loaded from its file."""

    @staticmethod
    def load(path: Union[str, "os.PathLike[str]"]) -> "Model":
        """Loads a recur model file of any kind."""

    @property
    def kind(self) -> _Kind:
        """language-model, classifier, tagger, regressor or seq2seq."""

    @property
    def labels(self) -> List[str]:
        """The class or tag names, in output order (empty for other kinds)."""

    @property
    def num_params(self) -> int:
        """The number of parameters."""

    def generate(
        self,
        prime: str,
        length: int,
        temperature: float,
        top_k: Optional[int],
        top_p: Optional[float],
        greedy: bool,
        seed: int,
    ) -> str:
        """Language model: text continuing `prime`."""

    def evaluate_text(self, text: str) -> Tuple[float, int]:
        """Language model: (mean cross-entropy in nats, predictions) of `text`."""

    def predict_texts(self, texts: Sequence[str]) -> List[List[float]]:
        """Classifier or regressor on texts: `[O]` outputs per text (logits or values)."""

    def predict_tokens(self, sentences: Sequence[Sequence[str]]) -> List[List[float]]:
        """Tagger: `[T, O]` logits, flattened, per sentence of tokens."""

    def predict_series(self, series: Sequence[npt.NDArray[np.float32]]) -> List[List[float]]:
        """Classifier or regressor on series: `[O]` outputs per `[T, C]` array."""

    def translate(
        self,
        sources: Sequence[str],
        beam: int,
        nbest: int,
        length_penalty: float,
        sample: bool,
        temperature: float,
        top_k: Optional[int],
        top_p: Optional[float],
        seed: int,
        max_ratio: float,
        keep_unk: bool,
    ) -> List[List[Tuple[str, float, npt.NDArray[np.float32]]]]:
        """Seq2seq: the n-best translations of each source as (text, score, attention `[output steps, source tokens]`)."""

    def torch_state_dict(self) -> Dict[str, npt.NDArray[np.float32]]:
        """The model as PyTorch names its tensors (the fixtures' names), as a dict of float32 arrays."""

def train(args: Sequence[str], callback: Optional[Callable[[Dict[str, Any]], object]] = None) -> bool:
    """Runs `recur train ARGS` in this process: True if the run went to its end, False if `callback(event)` returned False to stop it early."""

def train_options() -> List[Tuple[str, bool, str]]:
    """The `recur train` options a Python model takes as keywords, as (name, takes a value, help) with names in snake case."""

def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (0–100) of hypotheses against one reference each, as sacreBLEU computes it by default (13a tokens, exp smoothing)."""
