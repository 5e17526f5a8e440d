"""Trained models with scikit-learn's conventions: construct with the
options of ``recur train`` as keywords, ``fit``, then ``predict``,
``score``, ``save``; :func:`load` brings any saved model back."""

import os
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt
from typing_extensions import Self, TypeAlias

__all__ = ["LanguageModel", "Classifier", "Tagger", "Regressor", "Seq2Seq", "load"]

Callback: TypeAlias = Callable[[Dict[str, Any]], Optional[bool]]

class _Trained:
    """What every model shares: options, training, saving."""

    history_: List[Dict[str, Any]]

    def __init__(self, **options: Any) -> None: ...
    def get_params(self, deep: bool = True) -> Dict[str, Any]:
        """The constructor's options."""

    def set_params(self, **options: Any) -> Self:
        """Changes options for the next fit; returns self."""

    @property
    def num_params(self) -> int:
        """The number of parameters."""

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Writes the model file (safetensors, as ``recur train`` writes
        it), through a temporary file and a rename."""

    def to_torch_state_dict(self) -> Dict[str, npt.NDArray[np.float32]]:
        """The parameters under the names of the PyTorch reference models
        (``encoder.weight``, ``rnn.weight_ih_l0``, …), as float32 arrays."""

class LanguageModel(_Trained):
    """A character or word language model (``level='char'`` or ``'word'``)."""

    def fit(self, text: str, callback: Optional[Callback] = None) -> Self:
        """Trains on ``text`` (the last ``val_fraction`` held out); returns
        self. ``callback(event)`` gets a dict after every step and
        evaluation; returning False stops training early."""

    def generate(
        self,
        prime: str = "",
        length: int = 200,
        temperature: float = 1.0,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        greedy: bool = False,
        seed: int = 0,
    ) -> str:
        """``length`` tokens continuing ``prime`` (the prime not repeated),
        sampled at ``temperature`` within ``top_k``/``top_p``, or the most
        likely with ``greedy``."""

    def evaluate(self, text: str) -> Dict[str, float]:
        """Mean cross-entropy (nats per token), perplexity and bits per
        token of predicting every token of ``text`` from those before it."""

    def score(self, text: str) -> float:
        """Mean log-likelihood per token of ``text`` (higher is better)."""

class _Sequences(_Trained):
    """Classifier and regressor: texts or [T, C] series in, one output each."""

    def fit(
        self,
        X: Sequence[Any],
        y: Sequence[Any],
        validation: Optional[Tuple[Sequence[Any], Sequence[Any]]] = None,
        callback: Optional[Callback] = None,
    ) -> Self:
        """Trains on texts (a list of str) or series (a list of ``[T, C]``
        arrays) with their targets; ``validation=(X_val, y_val)`` is the
        held-out set (otherwise ``val_fraction`` of X). Returns self."""

class Classifier(_Sequences):
    """A sequence classifier (text or time series)."""

    def fit(
        self,
        X: Sequence[Any],
        y: Sequence[Any],
        validation: Optional[Tuple[Sequence[Any], Sequence[Any]]] = None,
        callback: Optional[Callback] = None,
    ) -> Self:
        """Trains on texts or ``[T, C]`` series with their labels; returns self."""

    @property
    def classes_(self) -> npt.NDArray[Any]:
        """The classes, in the order of :meth:`predict_proba`'s columns."""

    def decision_function(self, X: Sequence[Any]) -> npt.NDArray[np.float32]:
        """The logits ``[N, classes]``."""

    def predict_proba(self, X: Sequence[Any]) -> npt.NDArray[np.float64]:
        """Class probabilities ``[N, classes]`` (softmax of the logits)."""

    def predict(self, X: Sequence[Any]) -> npt.NDArray[Any]:
        """The most likely class of each sequence."""

    def score(self, X: Sequence[Any], y: Sequence[Any]) -> float:
        """Accuracy."""

class Regressor(_Sequences):
    """A sequence regressor: one value per text or ``[T, C]`` series."""

    def predict(self, X: Sequence[Any]) -> npt.NDArray[np.float64]:
        """The predicted value of each sequence ``[N]``."""

    def score(self, X: Sequence[Any], y: Sequence[Any]) -> float:
        """The coefficient of determination R²."""

class Tagger(_Trained):
    """A sequence tagger (part of speech): a tag for every token."""

    def fit(
        self,
        X: Sequence[Sequence[str]],
        y: Sequence[Sequence[str]],
        validation: Optional[Tuple[Sequence[Sequence[str]], Sequence[Sequence[str]]]] = None,
        callback: Optional[Callback] = None,
    ) -> Self:
        """Trains on sentences (lists of tokens) with a tag per token;
        returns self."""

    @property
    def classes_(self) -> List[str]:
        """The tags, in output order."""

    def predict(self, X: Sequence[Sequence[str]]) -> List[List[str]]:
        """A tag for every token of every sentence."""

    def score(self, X: Sequence[Sequence[str]], y: Sequence[Sequence[str]]) -> float:
        """Token accuracy."""

class Seq2Seq(_Trained):
    """An encoder–decoder with attention (translation and other string to
    string tasks): ``Seq2Seq(attention='bahdanau').fit(pairs)``, then
    :meth:`translate`."""

    def fit(
        self,
        pairs: Sequence[Tuple[str, str]],
        validation: Optional[Sequence[Tuple[str, str]]] = None,
        callback: Optional[Callback] = None,
    ) -> Self:
        """Trains on (source, target) string pairs; returns self."""

    def translate(
        self,
        sources: Union[str, Sequence[str]],
        beam: int = 1,
        nbest: int = 1,
        length_penalty: float = 0.6,
        sample: bool = False,
        temperature: float = 1.0,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        seed: int = 1,
        max_ratio: float = 2.0,
        keep_unk: bool = False,
        return_attention: bool = False,
    ) -> Any:
        """Translates one string (giving a str) or a list (giving a list);
        with ``nbest`` > 1 each becomes a list of hypotheses; with
        ``return_attention`` each hypothesis is ``(text, score, attention)``."""

    def predict(
        self,
        sources: Union[str, Sequence[str]],
        beam: int = 1,
        nbest: int = 1,
        length_penalty: float = 0.6,
        sample: bool = False,
        temperature: float = 1.0,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        seed: int = 1,
        max_ratio: float = 2.0,
        keep_unk: bool = False,
        return_attention: bool = False,
    ) -> Any:
        """Same as :meth:`translate`."""

    def score(self, sources: Sequence[str], references: Sequence[str]) -> float:
        """Corpus BLEU of the greedy translations (sacreBLEU's defaults)."""

def load(path: Union[str, "os.PathLike[str]"]) -> Union[LanguageModel, Classifier, Tagger, Regressor, Seq2Seq]:
    """Loads a model file written by :meth:`save` or by ``recur train``,
    as the class of its kind."""
