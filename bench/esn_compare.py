#!/usr/bin/env python3
"""recur vs ReservoirPy on the Mackey-Glass forecasting protocol of issue 6.

Needs `pip install reservoirpy==0.4.2` and a built `target/release/recur`; never run in CI.

Protocol: Mackey-Glass tau=17 (ReservoirPy's generator), rescaled to [-1, 1];
leak 0.3, spectral radius 1.25, input scaling 1, connectivity 0.1, input
connectivity 0.2, ridge 1e-8, 2000 training steps (the first 100 a warm-up left
out of the fit), then 2000 test steps, predicting H = 10 and 100 steps ahead.
NRMSE = RMSE / (max - min) of the truth. Both readouts use the reservoir state
and a constant (recur: --no-input-readout). Each side's wall time is the whole
process: recur's is its two commands (fit, then predict), CSV in and out
included; ReservoirPy's is reported twice: the same whole-process job (a
Python process that imports ReservoirPy, reads the CSV, fits, predicts and
writes a CSV), and its model construction, fit and run alone, timed inside
Python (import and CSV excluded, so the harder comparison for recur).

Usage: bench/esn_compare.py [--units 100 1000] [--seeds 1 2 3 4 5]   (medians over the seeds)
"""
import argparse, os, subprocess, sys, tempfile, time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECUR = os.path.join(ROOT, "target", "release", "recur")


def metrics(truth, pred):
    rmse = np.sqrt(np.mean((truth - pred) ** 2))
    nrmse = rmse / (truth.max() - truth.min())
    r2 = 1 - np.sum((truth - pred) ** 2) / np.sum((truth - truth.mean()) ** 2)
    return nrmse, r2


def series(n):
    from reservoirpy.datasets import mackey_glass
    x = mackey_glass(n, tau=17).ravel()
    return 2 * (x - x.min()) / (x.max() - x.min()) - 1


def reservoirpy_fit_predict(x, units, h, seed):
    """ReservoirPy on the protocol: fit on the first 2000 steps, predict the next 2000."""
    from reservoirpy.nodes import Reservoir, Ridge
    res = Reservoir(units=units, lr=0.3, sr=1.25, input_scaling=1.0, rc_connectivity=0.1,
                    input_connectivity=0.2, seed=seed)
    esn = res >> Ridge(ridge=1e-8)
    xin, yout = x[:-h, None], x[h:, None]
    esn.fit(xin[:2000], yout[:2000], warmup=100)
    return esn.run(xin[2000:4000]).ravel()


def run_reservoirpy(x, units, h, seed):
    """Model construction, fit and run, timed inside this (already importing) process."""
    import reservoirpy  # noqa: F401
    t0 = time.perf_counter()
    pred = reservoirpy_fit_predict(x, units, h, seed)
    return time.perf_counter() - t0, metrics(x[2000 + h:4000 + h], pred)


def reservoirpy_job(data, units, h, seed, out):
    """The whole-process job (run as `esn_compare.py --reservoirpy-job ...`): CSV in, fit, predict, CSV out."""
    x = np.loadtxt(data, skiprows=1)
    pred = reservoirpy_fit_predict(x, units, h, seed)
    np.savetxt(out, np.c_[np.arange(2000 + h, 4000 + h), pred], delimiter=",", header="step,prediction",
               comments="", fmt=["%d", "%.17g"])


def run_reservoirpy_process(x, units, h, seed, tmp):
    """The whole job as a process, like recur's: start, import, CSV in, fit, predict, CSV out."""
    data = os.path.join(tmp, "mg_rpy.csv")
    pred = os.path.join(tmp, "pred_rpy.csv")
    np.savetxt(data, x[: 4000 + h], header="x", comments="", fmt="%.17g")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, os.path.abspath(__file__), "--reservoirpy-job", data, str(units), str(h),
                    str(seed), pred], check=True, capture_output=True)
    dt = time.perf_counter() - t0
    p = np.loadtxt(pred, delimiter=",", skiprows=1)
    return dt, metrics(x[p[:, 0].astype(int)], p[:, 1])


def run_recur(x, units, h, seed, tmp):
    data = os.path.join(tmp, "mg.csv")
    train = os.path.join(tmp, "train.csv")
    model = os.path.join(tmp, "esn.safetensors")
    pred = os.path.join(tmp, "pred.csv")
    np.savetxt(data, x[: 4000 + h], header="x", comments="", fmt="%.17g")
    np.savetxt(train, x[: 2000 + h], header="x", comments="", fmt="%.17g")
    common = ["--units", str(units), "--leak", "0.3", "--spectral-radius", "1.25", "--input-scaling", "1",
              "--connectivity", "0.1", "--input-connectivity", "0.2", "--ridge", "1e-8", "--washout", "100",
              "--horizon", str(h), "--seed", str(seed), "--test-fraction", "0", "--no-input-readout"]
    t0 = time.perf_counter()
    subprocess.run([RECUR, "esn", "fit", "--data", train, "--out", model] + common, check=True, capture_output=True)
    # Predictions over the whole file from a zero state; the first 2000 rows
    # drive the reservoir exactly as in training.
    subprocess.run([RECUR, "esn", "predict", "--model", model, "--data", data, "--warmup", "2000", "--out", pred],
                   check=True, capture_output=True)
    dt = time.perf_counter() - t0
    p = np.loadtxt(pred, delimiter=",", skiprows=1)
    steps, values = p[:, 0].astype(int), p[:, 1]
    keep = steps < 4000 + h
    return dt, metrics(x[steps[keep]], values[keep])


def main():
    if len(sys.argv) == 7 and sys.argv[1] == "--reservoirpy-job":
        _, _, data, units, h, seed, out = sys.argv
        return reservoirpy_job(data, int(units), int(h), int(seed), out)
    ap = argparse.ArgumentParser()
    ap.add_argument("--units", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    a = ap.parse_args()
    x = series(4200)
    print(f"{'units':>5} {'H':>4} | {'recur NRMSE':>12} {'R2':>9} {'process s':>9} | {'ReservoirPy NRMSE':>17} {'R2':>9} "
          f"{'process s':>9} {'in-Python s':>11} | speed-up: process, vs in-Python")
    # One reservoir draw varies a lot: report the median over seeds.
    med = lambda v: float(np.median(v))
    with tempfile.TemporaryDirectory() as tmp:
        for units in a.units:
            for h in (10, 100):
                r = [run_recur(x, units, h, s, tmp) for s in a.seeds]
                p = [run_reservoirpy(x, units, h, s) for s in a.seeds]
                q = [run_reservoirpy_process(x, units, h, s, tmp) for s in a.seeds]
                rt, rn, rr = med([v[0] for v in r]), med([v[1][0] for v in r]), med([v[1][1] for v in r])
                pt, pn, pr = med([v[0] for v in p]), med([v[1][0] for v in p]), med([v[1][1] for v in p])
                qt, qn = med([v[0] for v in q]), med([v[1][0] for v in q])
                assert abs(qn - pn) <= 1e-6 * max(pn, 1e-12) + 1e-12, (qn, pn)  # the same job either way
                print(f"{units:>5} {h:>4} | {rn:12.3e} {rr:9.5f} {rt:9.3f} | {pn:17.3e} {pr:9.5f} {qt:9.3f} {pt:11.3f} | "
                      f"{qt / rt:5.1f}x, {pt / rt:4.1f}x")


if __name__ == "__main__":
    sys.exit(main())
