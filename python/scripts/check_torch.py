"""Cross-check recur.nn's RNN, LSTM and GRU against torch.nn, forward and
backward. Not part of CI: it needs PyTorch as well as recur and NumPy.

    PYTHONPATH=/path/to/venv/lib/python3.X/site-packages python3 python/scripts/check_torch.py

Every case builds a torch layer from a fixed seed, loads its state_dict
into the recur layer, runs both on the same input (padded sequences go
through pack_padded_sequence / pad_packed_sequence on the torch side),
backpropagates the same random upstream gradient
(loss = sum(out*g) + sum(h_n*gh) [+ sum(c_n*gc)]) and compares the
output, h_n (c_n), dL/dx, dL/dh0 (dL/dc0) and every parameter gradient by
max |a - b| / max(1, |b|), b torch's value: at most 1e-5 in float32 and
1e-10 in float64. Then a recur layer's state_dict is loaded into torch and
the outputs compared. One line per case; the exit status is 1 if any case
fails.

Options: -q prints failures and the summary only; -k SUBSTR runs the
cases whose name contains SUBSTR.
"""

import itertools
import sys

import numpy as np
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import recur

TOL = {np.float32: 1e-5, np.float64: 1e-10}
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}
T, B, I, H = 6, 4, 3, 5
# Ragged lengths, unsorted (enforce_sorted=False), with a sequence of one
# step: "ragged" has one sequence of all T steps, "short" none (the last
# steps are padding in every sequence).
LENGTHS = {"full": None, "ragged": [4, 6, 1, 3], "short": [2, 5, 1, 3]}

CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


def worst(a, b):
    """max |a - b| / max(1, |b|) over the elements (inf on a shape mismatch)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b))))


def torch_layer(cell, dtype, layers, bidir, batch_first, bias, seed):
    torch.manual_seed(seed)
    kw = dict(num_layers=layers, bias=bias, batch_first=batch_first, bidirectional=bidir,
              dtype=TORCH_DTYPE[dtype])
    if cell.startswith("rnn_"):
        return torch.nn.RNN(I, H, nonlinearity=cell[4:], **kw)
    return {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](I, H, **kw)


def recur_layer(cell, dtype, layers, bidir, batch_first, bias, seed=0, **extra):
    kw = dict(num_layers=layers, bias=bias, batch_first=batch_first, bidirectional=bidir,
              dtype=dtype, seed=seed, **extra)
    if cell.startswith("rnn_"):
        return recur.nn.RNN(I, H, nonlinearity=cell[4:], **kw)
    return {"lstm": recur.nn.LSTM, "gru": recur.nn.GRU}[cell](I, H, **kw)


def run_torch(layer, x, h0, lengths, batch_first):
    """(output, h_n, c_n or None), padded outputs zero, as torch gives them."""
    if lengths is not None:
        packed = pack_padded_sequence(x, torch.tensor(lengths), batch_first=batch_first,
                                      enforce_sorted=False)
        out, hx = layer(packed, h0)
        steps = x.shape[1 if batch_first else 0]
        out, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=steps)
    else:
        out, hx = layer(x, h0)
    if isinstance(hx, tuple):
        return out, hx[0], hx[1]
    return out, hx, None


def case_name(cell, dtype, layers, bidir, batch_first, bias, given_h0, lens, tag=None):
    parts = [tag or cell, precision(dtype), f"L{layers}",
             "bi" if bidir else "uni", "batch_first" if batch_first else "time_major",
             "bias" if bias else "nobias", "h0" if given_h0 else "no_h0",
             lens]
    return " ".join(parts)


def check_case(cell, dtype, layers, bidir, batch_first, bias, given_h0, lens, seed, **extra):
    """{quantity: error} of one forward + backward comparison."""
    lstm = cell == "lstm"
    D = 2 if bidir else 1
    rng = np.random.RandomState(seed)
    tl = torch_layer(cell, dtype, layers, bidir, batch_first, bias, seed)
    rl = recur_layer(cell, dtype, layers, bidir, batch_first, bias, seed=seed + 1, **extra)
    sd = {k: v.detach().numpy() for k, v in tl.state_dict().items()}
    rl.load_state_dict(sd)

    xshape = (B, T, I) if batch_first else (T, B, I)
    x = rng.standard_normal(xshape).astype(dtype)
    sshape = (layers * D, B, H)
    h0 = rng.standard_normal(sshape).astype(dtype) if given_h0 else np.zeros(sshape, dtype)
    c0 = rng.standard_normal(sshape).astype(dtype) if given_h0 else np.zeros(sshape, dtype)
    lengths = LENGTHS[lens]
    yshape = (B, T, D * H) if batch_first else (T, B, D * H)
    g = rng.standard_normal(yshape).astype(dtype)
    gh = rng.standard_normal(sshape).astype(dtype)
    gc = rng.standard_normal(sshape).astype(dtype)

    # torch. Without a given state torch runs with None; dL/dh0 then comes
    # from a second run from explicit zeros (the same computation).
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    h0t = torch.from_numpy(h0.copy()).requires_grad_(True)
    c0t = torch.from_numpy(c0.copy()).requires_grad_(True)
    state = ((h0t, c0t) if lstm else h0t) if given_h0 else None
    out, hn, cn = run_torch(tl, xt, state, lengths, batch_first)
    loss = (out * torch.from_numpy(g)).sum() + (hn * torch.from_numpy(gh)).sum()
    if lstm:
        loss = loss + (cn * torch.from_numpy(gc)).sum()
    loss.backward()
    t_grads = {k: p.grad.detach().numpy().copy() for k, p in tl.named_parameters()}
    if not given_h0:
        tl.zero_grad()
        h0t = torch.from_numpy(h0.copy()).requires_grad_(True)
        c0t = torch.from_numpy(c0.copy()).requires_grad_(True)
        zeros = (h0t, c0t) if lstm else h0t
        o2, h2, c2 = run_torch(tl, torch.from_numpy(x.copy()), zeros, lengths, batch_first)
        l2 = (o2 * torch.from_numpy(g)).sum() + (h2 * torch.from_numpy(gh)).sum()
        if lstm:
            l2 = l2 + (c2 * torch.from_numpy(gc)).sum()
        l2.backward()

    # recur
    rstate = ((h0, c0) if lstm else h0) if given_h0 else None
    r_out, r_hx = rl(x, rstate, lengths=lengths)
    r_dx = rl.backward(g, (gh, gc) if lstm else gh)

    errs = {}
    if r_out.dtype != dtype:
        errs["output dtype"] = float("inf")
    errs["output"] = worst(r_out, out.detach().numpy())
    if lstm:
        errs["h_n"] = worst(r_hx[0], hn.detach().numpy())
        errs["c_n"] = worst(r_hx[1], cn.detach().numpy())
        errs["dh0"] = worst(rl.d_h0[0], h0t.grad.numpy())
        errs["dc0"] = worst(rl.d_h0[1], c0t.grad.numpy())
    else:
        errs["h_n"] = worst(r_hx, hn.detach().numpy())
        errs["dh0"] = worst(rl.d_h0, h0t.grad.numpy())
    errs["dx"] = worst(r_dx, xt.grad.numpy())
    r_grads = rl.grads
    if sorted(r_grads) != sorted(t_grads):
        errs["grad names"] = float("inf")
    for k, v in t_grads.items():
        errs["d" + k] = worst(r_grads[k], v) if k in r_grads else float("inf")
    # NaN (a NaN in either result) fails the case.
    return {k: (float("inf") if np.isnan(v) else v) for k, v in errs.items()}


def check_into_torch(cell, dtype, layers, bidir, bias, seed):
    """A recur layer's state_dict loaded into torch gives recur's output."""
    lstm = cell == "lstm"
    rl = recur_layer(cell, dtype, layers, bidir, False, bias, seed=seed)
    tl = torch_layer(cell, dtype, layers, bidir, False, bias, seed + 1000)
    sd = rl.state_dict()
    tl.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})  # strict
    rng = np.random.RandomState(seed)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    r_out, r_hx = rl(x)
    with torch.no_grad():
        out, hn, cn = run_torch(tl, torch.from_numpy(x), None, None, False)
    errs = {"output": worst(r_out, out.numpy())}
    if lstm:
        errs["h_n"] = worst(r_hx[0], hn.numpy())
        errs["c_n"] = worst(r_hx[1], cn.numpy())
    else:
        errs["h_n"] = worst(r_hx, hn.numpy())
    for k, v in tl.state_dict().items():
        if not np.array_equal(v.numpy(), sd[k]):
            errs["param " + k] = float("inf")
    return errs


QUIET = "-q" in sys.argv


def run_case(name, tol, results, check, *args, **kw):
    """Runs one check and prints its line; a crash fails the case."""
    try:
        errs = check(*args, **kw)
    except Exception as e:
        errs = {f"{type(e).__name__}: {e}": float("inf")}
    key = max(errs, key=lambda k: errs[k])
    w = errs[key]
    ok = w <= tol
    results.append(ok)
    if not (ok and QUIET):
        print(f"{name:<62} worst {w:9.2e} ({key})  {'pass' if ok else 'FAIL'}", flush=True)


def differs(*args, **kw):
    """Error 0 when the recur layer's output is far (> 1e-3) from torch's."""
    w = check_case(*args, **kw)["output"]
    return {f"output differs by {w:.1e}": 0.0 if w > 1e-3 else float("inf")}


def precision(dtype):
    return "f32" if dtype == np.float32 else "f64"


def main():
    only = sys.argv[sys.argv.index("-k") + 1] if "-k" in sys.argv else None
    torch.set_num_threads(1)
    results = []
    seed = 0
    # 1. torch -> recur, forward and backward, every combination.
    for cell, dtype, layers, bidir, batch_first, bias, given_h0, lens in itertools.product(
        CELLS, (np.float32, np.float64), (1, 2), (False, True), (False, True), (True, False),
        (False, True), tuple(LENGTHS),
    ):
        seed += 1
        name = case_name(cell, dtype, layers, bidir, batch_first, bias, given_h0, lens)
        if not only or only in name:
            run_case(name, TOL[dtype], results, check_case,
                     cell, dtype, layers, bidir, batch_first, bias, given_h0, lens, seed)

    # 2. recur.nn.GRU(reset_after=True), said explicitly, is torch's GRU;
    #    reset_after=False is another cell, so it must differ from torch's.
    for dtype, layers, bidir, lens in itertools.product(
        (np.float32, np.float64), (1, 2), (False, True), tuple(LENGTHS)
    ):
        seed += 1
        name = case_name("gru", dtype, layers, bidir, True, True, True, lens, tag="gru(reset_after=True)")
        if not only or only in name:
            run_case(name, TOL[dtype], results, check_case,
                     "gru", dtype, layers, bidir, True, True, True, lens, seed, reset_after=True)
    for dtype in (np.float32, np.float64):
        seed += 1
        name = f"gru(reset_after=False) differs from torch's GRU {precision(dtype)}"
        if not only or only in name:
            run_case(name, TOL[dtype], results, differs,
                     "gru", dtype, 1, False, False, True, True, "full", seed, reset_after=False)

    # 3. recur -> torch: the state_dict loads (strict) and the outputs agree.
    for cell, dtype, layers, bidir, bias in itertools.product(
        CELLS, (np.float32, np.float64), (1, 2), (False, True), (True, False)
    ):
        seed += 1
        name = " ".join(["into torch", cell, precision(dtype), f"L{layers}", "bi" if bidir else "uni",
                         "bias" if bias else "nobias"])
        if not only or only in name:
            run_case(name, TOL[dtype], results, check_into_torch, cell, dtype, layers, bidir, bias, seed)

    failed = results.count(False)
    print(f"{len(results) - failed} of {len(results)} cases pass, {failed} fail")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
