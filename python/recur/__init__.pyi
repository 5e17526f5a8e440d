"""recur: recurrent neural networks (RNN, LSTM, GRU) on the CPU, from Python.

- :mod:`recur.nn`: ``RNN``, ``LSTM`` and ``GRU`` layers with ``torch.nn``'s
  signatures and state_dict names, forward and backward over NumPy arrays.
- Models with scikit-learn's conventions: :class:`LanguageModel`,
  :class:`Classifier`, :class:`Tagger`, :class:`Regressor`,
  :class:`Seq2Seq`; :func:`load`.
"""

from . import nn as nn
from ._recur import RecurError as RecurError
from ._recur import bleu as bleu
from .models import Classifier as Classifier
from .models import LanguageModel as LanguageModel
from .models import Regressor as Regressor
from .models import Seq2Seq as Seq2Seq
from .models import Tagger as Tagger
from .models import load as load

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
