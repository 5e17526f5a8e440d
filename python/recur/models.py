"""Trained models with scikit-learn's conventions: construct with the
options of ``recur train`` as keywords, ``fit``, then ``predict``,
``score``, ``save``; :func:`load` brings any saved model back.

Training runs the same code as the ``recur`` command, so a model trained
here equals one trained by ``recur train`` with the same options and data.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _recur

__all__ = ["LanguageModel", "Classifier", "Tagger", "Regressor", "Seq2Seq", "load"]

Callback = Callable[[Dict[str, Any]], Optional[bool]]

# Options that fit() sets from its arguments, and options of file formats
# that in-memory data does not have.
_RESERVED = {
    "data", "task", "valid", "out", "resume", "overwrite", "json", "folds", "encoding",
    "column", "target", "features", "horizon", "window", "holdout", "log", "relative",
    "condition", "condition_mode", "help",
}


def _options() -> Dict[str, Tuple[bool, str]]:
    return {name: (takes, help) for name, takes, help in _recur.train_options() if name not in _RESERVED}


class _Trained:
    """What every model shares: options, training, saving."""

    _task: Optional[str] = None
    _kind = ""

    def __init__(self, **options: Any) -> None:
        known = _options()
        for k in options:
            if k not in known:
                raise TypeError(
                    f"{type(self).__name__}() got an unexpected keyword argument {k!r}; "
                    f"the options are: {', '.join(sorted(known))}"
                )
        self._opts: Dict[str, Any] = dict(options)
        self._model: Optional[Any] = None
        self._bytes: Optional[bytes] = None
        self.history_: List[Dict[str, Any]] = []

    # scikit-learn's estimator protocol.
    def get_params(self, deep: bool = True) -> Dict[str, Any]:
        """The constructor's options."""
        return dict(self._opts)

    def set_params(self, **options: Any) -> "_Trained":
        """Changes options for the next fit; returns self."""
        type(self).__init__(self, **{**self._opts, **options})
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._opts.items())
        return f"{type(self).__name__}({args})"

    def _argv(self) -> List[str]:
        known = _options()
        argv: List[str] = []
        for k, v in self._opts.items():
            flag = "--" + k.replace("_", "-")
            takes = known[k][0]
            if not takes:
                if v:
                    argv.append(flag)
            elif isinstance(v, bool):
                argv += [flag, "true" if v else "false"]
            elif isinstance(v, (list, tuple)):
                argv += [flag, ",".join(str(x) for x in v)]
            else:
                argv += [flag, str(v)]
        return argv

    def _run(self, write: Callable[[str], List[str]], callback: Optional[Callback]) -> None:
        """Writes the data into a temporary folder (``write`` gives the
        data arguments), trains into it, and keeps the best model."""
        if callback is not None and not callable(callback):
            raise TypeError("callback: expected a callable taking a dict")
        with tempfile.TemporaryDirectory(prefix="recur-") as d:
            args = write(d)
            out = os.path.join(d, "run")
            argv = args + ["--out", out] + self._argv()
            if self._task is not None:
                argv = ["--task", self._task] + argv
            _recur.train(argv, callback)
            path = os.path.join(out, "model.safetensors")
            if not os.path.exists(path):
                # Stopped by the callback before any evaluation.
                path = os.path.join(out, "last.safetensors")
            self._model = _recur.Model.load(path)
            with open(path, "rb") as f:
                self._bytes = f.read()
            self.history_ = []
            metrics = os.path.join(out, "metrics.jsonl")
            if os.path.exists(metrics):
                with open(metrics, encoding="utf-8") as f:
                    self.history_ = [json.loads(line) for line in f if line.strip()]

    def _fitted(self) -> Any:
        if self._model is None:
            raise ValueError(f"this {type(self).__name__} is not fitted yet: call fit first")
        return self._model

    @property
    def num_params(self) -> int:
        """The number of parameters."""
        return int(self._fitted().num_params)

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Writes the model file (safetensors, as ``recur train`` writes
        it), through a temporary file and a rename."""
        self._fitted()
        path = os.fspath(path)
        tmp = f"{path}.tmp-{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                f.write(self._bytes or b"")
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def to_torch_state_dict(self) -> Dict[str, np.ndarray]:
        """The parameters under the names of the PyTorch reference models
        (``encoder.weight``, ``rnn.weight_ih_l0``, …), as float32 arrays:
        ``model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})``."""
        return dict(self._fitted().torch_state_dict())


def _clean(text: str, what: str) -> str:
    if not isinstance(text, str):
        raise ValueError(f"{what}: expected a string, got {type(text).__name__}")
    # Lines and tabs are the files' separators; to the word reader they
    # are whitespace like any other.
    return text.replace("\r", " ").replace("\n", " ").replace("\t", " ")


def _text(x: Any, what: str) -> str:
    """A text example: at least one word."""
    t = _clean(x, what)
    if not t.strip():
        raise ValueError(f"{what}: the text has no words")
    return t


def _label(v: Any, what: str) -> str:
    s = str(v)
    if not s or s != s.strip() or any(c in s for c in "\t\n\r"):
        raise ValueError(f"{what}: label {v!r} must be non-empty, without tabs, newlines or edge spaces")
    return s


def _is_texts(X: Sequence[Any]) -> bool:
    return len(X) > 0 and all(isinstance(x, str) for x in X)


def _series(X: Sequence[Any], what: str) -> List[np.ndarray]:
    out = []
    for i, x in enumerate(X):
        a = np.asarray(x, dtype=np.float64)
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
            raise ValueError(f"{what}[{i}]: expected a [T, C] array, got shape {np.shape(x)}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{what}[{i}]: holds NaN or infinite values")
        out.append(a)
    if len({a.shape[1] for a in out}) > 1:
        raise ValueError(f"{what}: every series must have the same number of channels C")
    return out


def _write_ts(path: str, X: List[np.ndarray], labels: Optional[List[str]], values: Optional[List[float]]) -> None:
    c = X[0].shape[1]
    head = [
        "@problemName recur",
        "@timeStamps false",
        "@missing false",
        f"@univariate {'true' if c == 1 else 'false'}",
        f"@dimensions {c}",
        "@equalLength false",
    ]
    if labels is not None:
        for l in labels:
            if any(ch.isspace() or ch in ":," for ch in l):
                raise ValueError(f"y: label {l!r} of a series may not hold spaces, ':' or ','")
        head.append("@classLabel true " + " ".join(sorted(set(labels))))
    elif values is not None:
        head.append("@targetLabel true")
    else:
        head.append("@classLabel false")
    head.append("@data")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(head) + "\n")
        for i, a in enumerate(X):
            dims = [",".join(repr(float(v)) for v in a[:, k]) for k in range(c)]
            tail = labels[i] if labels is not None else (repr(float(values[i])) if values is not None else None)
            f.write(":".join(dims + ([tail] if tail is not None else [])) + "\n")


def _check_len(X: Sequence[Any], y: Sequence[Any]) -> None:
    if len(X) != len(y):
        raise ValueError(f"X and y have different lengths ({len(X)} and {len(y)})")
    if len(X) == 0:
        raise ValueError("X: no examples")


class LanguageModel(_Trained):
    """A character or word language model (``level='char'`` or ``'word'``).

    ``LanguageModel(hidden=256, layers=2, cell='lstm', epochs=5).fit(text)``;
    then :meth:`generate` and :meth:`score`.
    """

    _kind = "language-model"

    def fit(self, text: str, callback: Optional[Callback] = None) -> "LanguageModel":
        """Trains on ``text`` (the last ``val_fraction`` held out); returns
        self. ``callback(event)`` gets a dict after every step and
        evaluation; returning False stops training early."""
        if not isinstance(text, str) or not text:
            raise ValueError("text: expected a non-empty str")

        def write(d: str) -> List[str]:
            p = os.path.join(d, "corpus.txt")
            with open(p, "w", encoding="utf-8") as f:
                f.write(text)
            return ["--data", p, "--sample-length", "0"]

        self._run(write, callback)
        return self

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
        if length < 0:
            raise ValueError(f"length: expected >= 0, got {length}")
        return str(self._fitted().generate(prime, int(length), float(temperature), top_k, top_p, bool(greedy), int(seed)))

    def evaluate(self, text: str) -> Dict[str, float]:
        """Mean cross-entropy (nats per token), perplexity and bits per
        token of predicting every token of ``text`` from those before it."""
        loss, n = self._fitted().evaluate_text(text)
        return {"loss": loss, "perplexity": math.exp(loss), "bits_per_token": loss / math.log(2), "predictions": n}

    def score(self, text: str) -> float:
        """Mean log-likelihood per token of ``text`` (higher is better)."""
        return -self.evaluate(text)["loss"]


class _Sequences(_Trained):
    """Classifier and regressor: texts or [T, C] series in, one output each."""

    def _write_xy(self, d: str, name: str, X: Sequence[Any], y: Sequence[Any]) -> str:
        raise NotImplementedError

    def fit(
        self,
        X: Sequence[Any],
        y: Sequence[Any],
        validation: Optional[Tuple[Sequence[Any], Sequence[Any]]] = None,
        callback: Optional[Callback] = None,
    ) -> "_Sequences":
        """Trains on texts (a list of str) or series (a list of ``[T, C]``
        arrays) with their targets; ``validation=(X_val, y_val)`` is the
        held-out set (otherwise ``val_fraction`` of X). Returns self."""
        _check_len(X, y)
        self._texts = _is_texts(X)
        if validation is not None:
            _check_len(*validation)

        def write(d: str) -> List[str]:
            args = ["--data", self._write_xy(d, "train", X, y)]
            if validation is not None:
                args += ["--valid", self._write_xy(d, "valid", *validation)]
            return args

        self._run(write, callback)
        return self

    def _outputs(self, X: Sequence[Any]) -> np.ndarray:
        m = self._fitted()
        X = list(X)
        if len(X) == 0:
            return np.zeros((0, 0), dtype=np.float32)
        if _is_texts(X):
            out = m.predict_texts([_clean(x, f"X[{i}]") for i, x in enumerate(X)])
        else:
            out = m.predict_series([a.astype(np.float32) for a in _series(X, "X")])
        return np.asarray(out, dtype=np.float32)


class Classifier(_Sequences):
    """A sequence classifier (text or time series).

    ``Classifier(pooling='max', epochs=10).fit(texts, labels).predict(texts)``;
    :attr:`classes_` holds the labels in output order.
    """

    _task = "classify"
    _kind = "classifier"
    # A label's text → the value fit was given (kept for predict).
    _original: Dict[str, Any] = {}

    def _write_xy(self, d: str, name: str, X: Sequence[Any], y: Sequence[Any]) -> str:
        labels = [_label(v, f"y[{i}]") for i, v in enumerate(y)]
        self._original = {**self._original, **{str(v): v for v in y}}
        if _is_texts(X):
            p = os.path.join(d, f"{name}.txt")
            with open(p, "w", encoding="utf-8") as f:
                for i, (x, l) in enumerate(zip(X, labels)):
                    f.write(f"{l}\t{_text(x, f'X[{i}]')}\n")
        else:
            p = os.path.join(d, f"{name}.ts")
            _write_ts(p, _series(X, "X"), labels, None)
        return p

    def fit(
        self,
        X: Sequence[Any],
        y: Sequence[Any],
        validation: Optional[Tuple[Sequence[Any], Sequence[Any]]] = None,
        callback: Optional[Callback] = None,
    ) -> "Classifier":
        """Trains on texts (a list of str) or series (a list of ``[T, C]``
        arrays) with their labels (any values; :meth:`predict` gives them
        back); ``validation=(X_val, y_val)`` is the held-out set (otherwise
        ``val_fraction`` of X). Returns self."""
        self._original = {}
        super().fit(X, y, validation, callback)
        return self

    @property
    def classes_(self) -> np.ndarray:
        """The classes, in the order of :meth:`predict_proba`'s columns."""
        names = self._fitted().labels
        orig = self._original
        return np.array([orig.get(n, n) for n in names], dtype=object if orig else None)

    def decision_function(self, X: Sequence[Any]) -> np.ndarray:
        """The logits ``[N, classes]``."""
        return np.asarray(self._outputs(X))

    def predict_proba(self, X: Sequence[Any]) -> np.ndarray:
        """Class probabilities ``[N, classes]`` (softmax of the logits)."""
        z = self._outputs(X).astype(np.float64)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return np.asarray(z / z.sum(axis=1, keepdims=True))

    def predict(self, X: Sequence[Any]) -> np.ndarray:
        """The most likely class of each sequence."""
        return np.asarray(self.classes_[np.argmax(self._outputs(X), axis=1)])

    def score(self, X: Sequence[Any], y: Sequence[Any]) -> float:
        """Accuracy."""
        _check_len(X, y)
        return float(np.mean([str(a) == str(b) for a, b in zip(self.predict(X), y)]))


class Regressor(_Sequences):
    """A sequence regressor: one value per text or ``[T, C]`` series."""

    _task = "regress"
    _kind = "regressor"

    def _write_xy(self, d: str, name: str, X: Sequence[Any], y: Sequence[Any]) -> str:
        vals = np.asarray(y, dtype=np.float64)
        if vals.ndim != 1:
            raise ValueError(f"y: expected one value per sequence, got shape {vals.shape}")
        if not np.all(np.isfinite(vals)):
            raise ValueError("y: holds NaN or infinite values")
        if _is_texts(X):
            p = os.path.join(d, f"{name}.txt")
            with open(p, "w", encoding="utf-8") as f:
                for i, (x, v) in enumerate(zip(X, vals)):
                    f.write(f"{float(v)!r}\t{_text(x, f'X[{i}]')}\n")
        else:
            p = os.path.join(d, f"{name}.ts")
            _write_ts(p, _series(X, "X"), None, list(vals))
        return p

    def predict(self, X: Sequence[Any]) -> np.ndarray:
        """The predicted value of each sequence ``[N]``."""
        return self._outputs(X)[:, 0].astype(np.float64)

    def score(self, X: Sequence[Any], y: Sequence[Any]) -> float:
        """The coefficient of determination R²."""
        _check_len(X, y)
        t = np.asarray(y, dtype=np.float64)
        p = self.predict(X)
        ss = float(np.sum((t - t.mean()) ** 2))
        return 1.0 - float(np.sum((t - p) ** 2)) / ss if ss > 0 else float("nan")


class Tagger(_Trained):
    """A sequence tagger (part of speech): a tag for every token."""

    _task = "tag"
    _kind = "tagger"

    @staticmethod
    def _write(path: str, X: Sequence[Sequence[str]], y: Sequence[Sequence[str]]) -> None:
        with open(path, "w", encoding="utf-8") as f:
            for i, (words, tags) in enumerate(zip(X, y)):
                if len(words) != len(tags) or not words:
                    raise ValueError(f"X[{i}] and y[{i}]: expected as many tags as tokens, at least one")
                for k, (w, t) in enumerate(zip(words, tags)):
                    w = str(w)
                    if not w or any(c in w for c in "\t\n\r"):
                        raise ValueError(f"X[{i}][{k}]: a token must be non-empty, without tabs or newlines")
                    t = _label(t, f"y[{i}][{k}]")
                    f.write(f"{k + 1}\t{w}\t_\t{t}\t_\t_\t_\t_\t_\t_\n")
                f.write("\n")

    def fit(
        self,
        X: Sequence[Sequence[str]],
        y: Sequence[Sequence[str]],
        validation: Optional[Tuple[Sequence[Sequence[str]], Sequence[Sequence[str]]]] = None,
        callback: Optional[Callback] = None,
    ) -> "Tagger":
        """Trains on sentences (lists of tokens) with a tag per token;
        returns self."""
        _check_len(X, y)

        def write(d: str) -> List[str]:
            p = os.path.join(d, "train.conllu")
            self._write(p, X, y)
            args = ["--data", p]
            if validation is not None:
                v = os.path.join(d, "valid.conllu")
                self._write(v, *validation)
                args += ["--valid", v]
            return args

        self._run(write, callback)
        return self

    @property
    def classes_(self) -> List[str]:
        """The tags, in output order."""
        return list(self._fitted().labels)

    def predict(self, X: Sequence[Sequence[str]]) -> List[List[str]]:
        """A tag for every token of every sentence."""
        m = self._fitted()
        X = [[str(w) for w in s] for s in X]
        if not X:
            return []
        tags = m.labels
        out = []
        for s, flat in zip(X, m.predict_tokens(X)):
            logits = np.asarray(flat, dtype=np.float32).reshape(len(s), len(tags))
            out.append([tags[k] for k in np.argmax(logits, axis=1)])
        return out

    def score(self, X: Sequence[Sequence[str]], y: Sequence[Sequence[str]]) -> float:
        """Token accuracy."""
        _check_len(X, y)
        pred = self.predict(X)
        right = sum(a == b for p, t in zip(pred, y) for a, b in zip(p, t))
        return right / max(1, sum(len(t) for t in y))


class Seq2Seq(_Trained):
    """An encoder–decoder with attention (translation and other string to
    string tasks): ``Seq2Seq(attention='bahdanau').fit(pairs)``, then
    :meth:`translate`."""

    _task = "seq2seq"
    _kind = "seq2seq"

    @staticmethod
    def _write(path: str, pairs: Iterable[Tuple[str, str]]) -> None:
        n = 0
        with open(path, "w", encoding="utf-8") as f:
            for i, pair in enumerate(pairs):
                if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                    raise ValueError(f"pairs[{i}]: expected a (source, target) pair")
                s, t = (_clean(x, f"pairs[{i}]") for x in pair)
                if not s.strip() or not t.strip():
                    raise ValueError(f"pairs[{i}]: source and target must be non-empty")
                f.write(f"{s}\t{t}\n")
                n += 1
        if n == 0:
            raise ValueError("pairs: no examples")

    def fit(
        self,
        pairs: Sequence[Tuple[str, str]],
        validation: Optional[Sequence[Tuple[str, str]]] = None,
        callback: Optional[Callback] = None,
    ) -> "Seq2Seq":
        """Trains on (source, target) string pairs; returns self."""

        def write(d: str) -> List[str]:
            p = os.path.join(d, "train.tsv")
            self._write(p, pairs)
            args = ["--data", p]
            if validation is not None:
                v = os.path.join(d, "valid.tsv")
                self._write(v, validation)
                args += ["--valid", v]
            return args

        self._run(write, callback)
        return self

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
        """Translates one string (giving a str) or a list (giving a list).
        With ``nbest`` > 1, each becomes a list of the best hypotheses;
        with ``return_attention``, each hypothesis is ``(text, score,
        attention [output steps, source tokens])``."""
        one = isinstance(sources, str)
        srcs: List[str] = [sources] if isinstance(sources, str) else list(sources)
        if not srcs:
            return []
        out = self._fitted().translate(
            [_clean(s, f"sources[{i}]") for i, s in enumerate(srcs)],
            int(beam), int(nbest), float(length_penalty), bool(sample), float(temperature),
            top_k, top_p, int(seed), float(max_ratio), bool(keep_unk),
        )
        res = []
        for hyps in out:
            items = [h if return_attention else h[0] for h in hyps]
            res.append(items if nbest > 1 else items[0])
        return res[0] if one else res

    predict = translate

    def score(self, sources: Sequence[str], references: Sequence[str]) -> float:
        """Corpus BLEU of the greedy translations (sacreBLEU's defaults)."""
        _check_len(sources, references)
        return float(_recur.bleu(self.translate(list(sources)), [str(r) for r in references]))


_KINDS = {c._kind: c for c in (LanguageModel, Classifier, Tagger, Regressor, Seq2Seq)}


def load(path: Union[str, "os.PathLike[str]"]) -> _Trained:
    """Loads a model file written by :meth:`save` or by ``recur train``,
    as the class of its kind."""
    path = os.fspath(path)
    m = _recur.Model.load(path)
    obj = _KINDS[m.kind].__new__(_KINDS[m.kind])
    _Trained.__init__(obj)
    obj._model = m
    with open(path, "rb") as f:
        obj._bytes = f.read()
    return obj
