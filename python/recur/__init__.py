"""recur: recurrent neural networks (RNN, LSTM, GRU) on the CPU, from Python.

- :mod:`recur.nn`: ``RNN``, ``LSTM`` and ``GRU`` layers with ``torch.nn``'s
  signatures and state_dict names, forward and backward over NumPy arrays.
- Models with scikit-learn's conventions, trained by the same code as the
  ``recur`` command: :class:`LanguageModel`, :class:`Classifier`,
  :class:`Tagger`, :class:`Regressor`, :class:`Seq2Seq`; :func:`load`.

Errors carry the library's message: ``ValueError`` for bad arguments,
``FileNotFoundError``, and :class:`RecurError` for everything else.
"""

from . import nn
from ._recur import RecurError, bleu
from .models import Classifier, LanguageModel, Regressor, Seq2Seq, Tagger, load

__all__ = [
    "nn",
    "RecurError",
    "bleu",
    "LanguageModel",
    "Classifier",
    "Tagger",
    "Regressor",
    "Seq2Seq",
    "load",
]
