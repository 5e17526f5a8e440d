"""recur.nn layers against PyTorch's float64 fixtures, with NumPy alone."""

import glob
import os

import numpy as np
import pytest

import recur
from conftest import FIXTURES, read_safetensors

CASES = sorted(glob.glob(os.path.join(FIXTURES, "torch-rnn", "*.safetensors")))


def build(meta, dtype):
    mode = meta["mode"]
    kw = dict(
        num_layers=int(meta["num_layers"]),
        bidirectional=meta["bidirectional"].lower() == "true",
        dtype=dtype,
        seed=0,
    )
    i, h = int(meta["input_size"]), int(meta["hidden_size"])
    if mode == "RNN":
        return recur.nn.RNN(i, h, nonlinearity=meta["nonlinearity"], **kw)
    return {"LSTM": recur.nn.LSTM, "GRU": recur.nn.GRU}[mode](i, h, **kw)


def worst(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - b) / np.maximum(1.0, np.abs(b))))


@pytest.mark.parametrize("path", CASES, ids=[os.path.basename(p)[:-12] for p in CASES])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_pytorch(path, dtype):
    # f32: the H = 128 cases' recurrences expand, so rounding their inputs
    # to f32 alone moves the GRU's results by 1.1e-4 (see the README).
    wide = "wide" in path
    tol = 1e-10 if dtype == np.float64 else (2e-3 if wide else 1e-5)
    t, meta = read_safetensors(path)
    layer = build(meta, dtype)
    names = [k for k in t if k.startswith(("weight_", "bias_"))]
    layer.load_state_dict({k: t[k] for k in names})
    lstm = meta["mode"] == "LSTM"
    h0 = (t["h0"], t["c0"]) if lstm else t["h0"]
    y, h_n = layer(t["x"], h0)
    errs = {"y": worst(y, t["y"])}
    if lstm:
        errs["h_n"] = worst(h_n[0], t["h_n"])
        errs["c_n"] = worst(h_n[1], t["c_n"])
        dx = layer.backward(t["gy"], (t["gh_n"], t["gc_n"]))
        errs["h0"] = worst(layer.d_h0[0], t["grad.h0"])
        errs["c0"] = worst(layer.d_h0[1], t["grad.c0"])
    else:
        errs["h_n"] = worst(h_n, t["h_n"])
        dx = layer.backward(t["gy"], t["gh_n"])
        errs["h0"] = worst(layer.d_h0, t["grad.h0"])
    errs["x"] = worst(dx, t["grad.x"])
    grads = layer.grads
    assert sorted(grads) == sorted(names)
    for k in names:
        errs[k] = worst(grads[k], t["grad." + k])
    bad = {k: v for k, v in errs.items() if v > tol}
    assert not bad, bad


def test_state_dict_round_trip_and_attributes():
    a = recur.nn.GRU(3, 4, num_layers=2, bidirectional=True, seed=1)
    b = recur.nn.GRU(3, 4, num_layers=2, bidirectional=True, seed=2)
    assert not np.array_equal(a.weight_hh_l1_reverse, b.weight_hh_l1_reverse)
    b.load_state_dict(a.state_dict())
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    assert np.array_equal(a(x)[0], b(x)[0])
    assert a.weight_ih_l0.shape == (12, 3)
    assert list(a.state_dict())[:4] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]


def test_batch_first_lengths_and_no_bias():
    rng = np.random.default_rng(1)
    lstm = recur.nn.LSTM(3, 4, batch_first=True, bias=False, dtype=np.float64, seed=3)
    assert not any(k.startswith("bias") for k in lstm.state_dict())
    x = rng.standard_normal((2, 6, 3))
    y, (h, c) = lstm(x, lengths=[6, 2])
    assert y.shape == (2, 6, 4)
    # Past a sequence's length its output is zero and h_n is its last valid state.
    assert np.all(y[1, 2:] == 0)
    assert np.allclose(h[0, 1], y[1, 1])
    # Each row alone gives the same numbers.
    y1, (h1, _) = lstm(x[1:, :2])
    assert np.allclose(y1[0], y[1, :2]) and np.allclose(h1[0, 0], h[0, 1])
    # Batch-first backward returns batch-first gradients.
    y, _ = lstm(x)
    assert lstm.backward(np.ones_like(y)).shape == x.shape


def test_backward_accumulates_until_zero_grad_and_matches_finite_differences():
    rng = np.random.default_rng(2)
    rnn = recur.nn.RNN(2, 3, nonlinearity="relu", dtype=np.float64, seed=4)
    x = rng.standard_normal((4, 2, 2))
    g = rng.standard_normal((4, 2, 3))
    y, _ = rnn(x)
    dx = rnn.backward(g)
    first = rnn.grads["weight_hh_l0"].copy()
    rnn(x)
    rnn.backward(g)
    assert np.allclose(rnn.grads["weight_hh_l0"], 2 * first)
    rnn.zero_grad()
    assert not np.any(rnn.grads["weight_hh_l0"])
    # dL/dx by central differences, L = sum(y * g).
    eps = 1e-6
    for idx in [(0, 0, 0), (3, 1, 1), (2, 0, 1)]:
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        num = (np.sum(rnn(xp)[0] * g) - np.sum(rnn(xm)[0] * g)) / (2 * eps)
        assert abs(num - dx[idx]) < 1e-6 * max(1, abs(num))


def test_dropout_only_in_training_mode():
    x = np.ones((3, 2, 4), np.float32)
    gru = recur.nn.GRU(4, 5, num_layers=2, dropout=0.5, seed=5)
    assert gru.training
    a, b = gru(x)[0], gru(x)[0]
    assert not np.array_equal(a, b)
    gru.eval()
    assert np.array_equal(gru(x)[0], gru(x)[0])


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError, match="nonlinearity"):
        recur.nn.RNN(2, 3, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="hidden_size"):
        recur.nn.LSTM(2, 0)
    with pytest.raises(ValueError, match="dtype"):
        recur.nn.GRU(2, 3, dtype=np.int32)
    lstm = recur.nn.LSTM(2, 3)
    with pytest.raises(ValueError, match=r"input: expected shape \[T, B, 2\]"):
        lstm(np.zeros((4, 1, 5)))
    with pytest.raises(ValueError, match="3-d"):
        lstm(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="h0: expected shape"):
        lstm(np.zeros((4, 1, 2)), (np.zeros((2, 1, 3)), np.zeros((1, 1, 3))))
    with pytest.raises(ValueError, match="tuple"):
        lstm(np.zeros((4, 1, 2)), np.zeros((1, 1, 3)))
    with pytest.raises(ValueError, match="lengths"):
        lstm(np.zeros((4, 2, 2)), lengths=[5, 1])
    with pytest.raises(ValueError, match="forward first"):
        recur.nn.GRU(2, 3).backward(np.zeros((1, 1, 3)))
    with pytest.raises(ValueError, match="unexpected key 'weight_ih_l1'"):
        lstm.load_state_dict({**lstm.state_dict(), "weight_ih_l1": np.zeros((12, 3))})
    with pytest.raises(ValueError, match="missing key 'bias_hh_l0'"):
        sd = lstm.state_dict()
        del sd["bias_hh_l0"]
        lstm.load_state_dict(sd)
    with pytest.raises(ValueError, match=r"weight_hh_l0: expected shape \[12, 3\]"):
        lstm.load_state_dict({**lstm.state_dict(), "weight_hh_l0": np.zeros((3, 12))})


def test_torch_habits():
    lstm = recur.nn.LSTM(2, 3, seed=1)
    x = np.zeros((4, 1, 2), np.float32)
    h = (np.ones((1, 1, 3), np.float32), np.ones((1, 1, 3), np.float32))
    # hx is PyTorch's name for the initial state.
    assert np.array_equal(lstm(x, hx=h)[0], lstm(x, h)[0])
    # One backward per forward, as in PyTorch.
    y, _ = lstm(x)
    lstm.backward(np.ones_like(y))
    with pytest.raises(ValueError, match="forward first"):
        lstm.backward(np.ones_like(y))
    # A parameter is set through load_state_dict, never silently shadowed.
    with pytest.raises(AttributeError, match="load_state_dict"):
        lstm.weight_ih_l0 = np.zeros((12, 2))
    with pytest.raises(ValueError, match="seed"):
        recur.nn.RNN(2, 3, seed=-1)
    with pytest.raises(ValueError, match="lengths"):
        recur.nn.GRU(2, 3)(np.zeros((3, 2, 2)), lengths=[-1, 2])


def test_errors_pickle():
    import pickle

    e = pickle.loads(pickle.dumps(recur.RecurError("bad file")))
    assert isinstance(e, recur.RecurError) and str(e) == "bad file"
