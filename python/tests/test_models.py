"""Training, saving and loading every model kind, and their errors."""

import math
import os
import random

import numpy as np
import pytest

import recur

FAST = dict(hidden=24, embed=16, layers=1, seed=1)


def sentiment(n, seed):
    rng = random.Random(seed)
    good, bad, filler = ["good", "great", "fine", "superb"], ["bad", "awful", "poor", "dull"], ["the", "film", "was", "a", "plot"]
    X, y = [], []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        words = [rng.choice(filler) for _ in range(rng.randint(2, 5))]
        words.insert(rng.randint(0, len(words)), rng.choice(good if label == "pos" else bad))
        X.append(" ".join(words))
        y.append(label)
    return X, y


def test_language_model_fits_generates_scores_saves_and_loads(tmp_path):
    text = "the cat sat on the mat. the dog sat on the log. " * 40
    events = []
    lm = recur.LanguageModel(**FAST, steps=60, batch=4, seq_len=16, lr=0.01)
    assert lm.fit(text, callback=events.append) is lm
    assert [e["step"] for e in events if e["event"] == "step"] == list(range(1, 61))
    assert any(e["event"] == "eval" and "val_loss" in e for e in events)
    assert lm.history_ and lm.history_[-1]["step"] == 60
    before = recur.LanguageModel(**FAST, steps=1, batch=4, seq_len=16).fit(text)
    assert lm.score(text[:200]) > before.score(text[:200])
    ev = lm.evaluate(text[:200])
    assert ev["perplexity"] == pytest.approx(np.exp(ev["loss"]))
    out = lm.generate("the ", length=30, temperature=0.5, seed=7)
    assert isinstance(out, str) and len(out) == 30
    assert lm.generate("the ", 30, seed=7, temperature=0.5) == out
    assert lm.generate("the", 10, greedy=True) == lm.generate("the", 10, greedy=True)
    path = tmp_path / "lm.safetensors"
    lm.save(path)
    back = recur.load(path)
    assert isinstance(back, recur.LanguageModel)
    assert back.generate("the ", 30, temperature=0.5, seed=7) == out
    sd = back.to_torch_state_dict()
    assert {"encoder.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0", "decoder.weight", "decoder.bias"} <= set(sd)
    assert sd["rnn.weight_hh_l0"].shape == (4 * 24, 24)
    assert back.num_params == sum(v.size for v in sd.values())


def test_same_seed_same_model():
    text = "abcabcabd " * 60
    a = recur.LanguageModel(**FAST, steps=20, batch=4, seq_len=8).fit(text)
    b = recur.LanguageModel(**FAST, steps=20, batch=4, seq_len=8).fit(text)
    sa, sb = a.to_torch_state_dict(), b.to_torch_state_dict()
    assert all(np.array_equal(sa[k], sb[k]) for k in sa)


def test_callback_false_stops_training_early():
    seen = []

    def cb(e):
        seen.append(e["step"])
        return np.bool_(e["step"] < 5)  # any false value stops; None goes on

    lm = recur.LanguageModel(**FAST, steps=200, batch=4, seq_len=8)
    lm.fit("hello there general kenobi " * 30, callback=cb)
    assert max(seen) == 5


def test_callback_exception_propagates():
    def cb(e):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        recur.LanguageModel(**FAST, steps=50, batch=4, seq_len=8).fit("abc abd " * 200, callback=cb)


def test_keyboard_interrupt_stops_cleanly():
    def cb(e):
        if e["step"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        recur.LanguageModel(**FAST, steps=50, batch=4, seq_len=8).fit("abc abd " * 200, callback=cb)
    # The process goes on and trains again.
    recur.LanguageModel(**FAST, steps=2, batch=4, seq_len=8).fit("abc abd " * 200)


def test_classifier_on_texts(tmp_path):
    X, y = sentiment(300, 1)
    Xt, yt = sentiment(100, 2)
    clf = recur.Classifier(**FAST, epochs=8, lr=0.01)
    assert clf.fit(X, y, validation=(Xt, yt)) is clf
    assert set(clf.classes_) == {"pos", "neg"}
    assert clf.score(Xt, yt) > 0.9
    p = clf.predict_proba(Xt)
    assert p.shape == (100, 2) and np.allclose(p.sum(axis=1), 1)
    assert list(clf.predict(Xt)) == list(clf.classes_[p.argmax(axis=1)])
    clf.save(tmp_path / "c.safetensors")
    back = recur.load(tmp_path / "c.safetensors")
    assert isinstance(back, recur.Classifier)
    assert np.allclose(back.predict_proba(Xt), p)
    assert {"embedding.weight", "rnn.weight_ih_l0", "head.weight", "head.bias"} <= set(back.to_torch_state_dict())


def test_classifier_on_series_keeps_label_types():
    rng = np.random.default_rng(0)
    X, y = [], []
    for _ in range(120):
        k = int(rng.integers(0, 2))
        t = int(rng.integers(8, 16))
        base = np.sin(np.arange(t) * (0.3 if k else 1.2))[:, None]
        X.append(np.hstack([base, rng.standard_normal((t, 1)) * 0.1]))
        y.append(k)
    clf = recur.Classifier(**FAST, epochs=15, lr=0.01).fit(X[:90], y[:90])
    pred = clf.predict(X[90:])
    assert all(isinstance(v, int) for v in pred)
    assert clf.score(X[90:], y[90:]) > 0.8


def test_regressor_on_texts_and_series():
    rng = random.Random(3)
    value = {"one": 1.0, "two": 2.0, "three": 3.0, "zero": 0.0}
    X = [" ".join(rng.choice(list(value)) for _ in range(rng.randint(1, 4))) for _ in range(300)]
    y = [sum(value[w] for w in x.split()) for x in X]
    reg = recur.Regressor(**FAST, epochs=30, lr=0.01).fit(X[:250], y[:250])
    assert reg.score(X[250:], y[250:]) > 0.8
    assert reg.predict(X[250:]).shape == (50,)
    nprng = np.random.default_rng(1)
    S = [nprng.standard_normal((int(nprng.integers(3, 8)), 1)) for _ in range(200)]
    t = [float(s.sum()) for s in S]
    reg = recur.Regressor(**FAST, epochs=30, lr=0.01).fit(S[:160], t[:160])
    assert reg.score(S[160:], t[160:]) > 0.7


def test_tagger(tmp_path):
    rng = random.Random(4)
    lexicon = {"the": "DET", "a": "DET", "dog": "NOUN", "cat": "NOUN", "runs": "VERB", "sleeps": "VERB", "big": "ADJ"}
    words = list(lexicon)
    X = [[rng.choice(words) for _ in range(rng.randint(2, 7))] for _ in range(300)]
    y = [[lexicon[w] for w in s] for s in X]
    tagger = recur.Tagger(**FAST, epochs=10, lr=0.01).fit(X[:250], y[:250])
    assert tagger.score(X[250:], y[250:]) > 0.95
    pred = tagger.predict([["the", "big", "dog", "sleeps"]])
    assert pred == [["DET", "ADJ", "NOUN", "VERB"]]
    tagger.save(tmp_path / "t.safetensors")
    assert recur.load(tmp_path / "t.safetensors").predict([["a", "cat"]]) == tagger.predict([["a", "cat"]])


def test_seq2seq_reverses_words(tmp_path):
    rng = random.Random(5)
    vocab = ["a", "b", "c", "d", "e"]
    pairs = []
    for _ in range(400):
        s = [rng.choice(vocab) for _ in range(rng.randint(1, 4))]
        pairs.append((" ".join(s), " ".join(reversed(s))))
    m = recur.Seq2Seq(**FAST, attention="dot", epochs=25, lr=0.01, dropout=0.0, label_smoothing=0.0)
    m.fit(pairs[:350], validation=pairs[350:])
    assert m.translate("a b c") == "c b a"
    hyps = m.translate(["a b", "c d e"], beam=3, nbest=2, return_attention=True)
    assert len(hyps) == 2 and len(hyps[0]) == 2
    text, score, att = hyps[1][0]
    assert text == "e d c" and att.shape[1] == 3
    srcs, refs = zip(*pairs[350:])
    assert m.score(srcs, refs) > 80
    m.save(tmp_path / "s.safetensors")
    assert recur.load(tmp_path / "s.safetensors").translate(["d e"]) == m.translate(["d e"])


def test_bad_arguments_and_files():
    with pytest.raises(TypeError, match="unexpected keyword argument 'hiden'"):
        recur.LanguageModel(hiden=3)
    with pytest.raises(ValueError, match="cell: unknown cell 'tree'"):
        recur.LanguageModel(cell="tree", steps=1).fit("abcabc " * 50)
    with pytest.raises(ValueError, match="hidden"):
        recur.LanguageModel(hidden="wide").fit("abc " * 100)
    with pytest.raises(ValueError, match="not fitted"):
        recur.Classifier().predict(["x"])
    with pytest.raises(ValueError, match="different lengths"):
        recur.Classifier().fit(["a b", "c"], ["x"])
    with pytest.raises(ValueError, match="as many tags as tokens"):
        recur.Tagger().fit([["a", "b"]], [["X"]])
    with pytest.raises(ValueError, match=r"X\[1\]: expected a \[T, C\] array"):
        recur.Classifier().fit([np.zeros((3, 1)), np.zeros((2, 2, 2))], [0, 1])
    with pytest.raises(ValueError, match="text: expected a non-empty str"):
        recur.LanguageModel().fit("")
    with pytest.raises(FileNotFoundError):
        recur.load("/nonexistent/model.safetensors")


def test_hostile_model_file_is_a_recur_error(tmp_path):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":1}        garbage")
    with pytest.raises(recur.RecurError, match="bad.safetensors"):
        recur.load(p)
    assert issubclass(recur.RecurError, Exception)


def test_data_errors_name_the_example():
    with pytest.raises(ValueError, match=r"X\[1\]: the text has no words"):
        recur.Classifier(**FAST, steps=1).fit(["good film", "   "], ["a", "b"])
    with pytest.raises(ValueError, match=r"pairs\[0\]: source and target must be non-empty"):
        recur.Seq2Seq(**FAST, steps=1).fit([("a", " ")])
    clf = recur.Classifier(**FAST, steps=2).fit(*sentiment(40, 9))
    with pytest.raises(ValueError, match=r"X\[1\]: the text has no words"):
        clf.predict(["good", ""])


def test_baseline_language_models_fit_generate_and_evaluate(tmp_path):
    text = "the cat sat on the mat. the dog sat on the log. " * 40
    ngram = recur.LanguageModel(model="ngram", order=4).fit(text)
    ev = ngram.evaluate(text[:300])
    assert 0 < ev["loss"] < math.log(20)
    assert ngram.generate("the ", 25, seed=3) == ngram.generate("the ", 25, seed=3)
    path = tmp_path / "ng.safetensors"
    ngram.save(path)
    back = recur.load(path)
    assert back.evaluate(text[:300])["loss"] == ev["loss"]
    with pytest.raises(ValueError, match="PyTorch counterpart"):
        back.to_torch_state_dict()
    window = recur.LanguageModel(model="window", context=6, hidden=16, embed=8, steps=40, batch=4, seq_len=16, lr=0.01).fit(text)
    assert window.score(text[:300]) > -math.log(20)
    assert len(window.generate("the ", 20, seed=1)) == 20
