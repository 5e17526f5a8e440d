#!/usr/bin/env python3
"""Free-running Mackey-Glass prediction, the classic ESN benchmark (Jaeger 2001; Jaeger & Haas 2004).

Mackey-Glass tau=17 sampled every time unit (dt 0.1, subsample 10). Per trial:
a reservoir (its own seed) is driven by 1000 washout steps and 3000 training
steps (teacher-forced, horizon 1), then runs closed loop for 84 steps from the
end of the training data. NRMSE84 = sqrt(mean over trials of the squared
error at step 84 / variance of the series). Each trial starts at a different
place in one long series.

Needs a built `target/release/recur` and numpy; never run in CI.
Usage: bench/esn_jaeger.py [--trials 20] [recur esn fit options...]
"""
import argparse, os, subprocess, sys, tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECUR = os.path.join(ROOT, "target", "release", "recur")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--first-trial", type=int, default=0,
                    help="trial k uses seed k + 1 and the segment starting 500 k steps in; a later first trial gives fresh trials")
    ap.add_argument("--units", default="1000")
    ap.add_argument("--spectral-radius", default="1.0")
    ap.add_argument("--leak", default="1.0")
    ap.add_argument("--input-scaling", default="0.8")
    ap.add_argument("--connectivity", default="0.01")
    ap.add_argument("--input-connectivity", default="0.5")
    ap.add_argument("--bias", default="0.3")
    ap.add_argument("--ridge", default="1e-11")
    ap.add_argument("--shift", type=float, default=1.0, help="subtract this from the series (Jaeger & Haas centre it with tanh(x - 1))")
    ap.add_argument("--input-readout", action="store_true", help="put the input into the readout as well")
    a = ap.parse_args()
    washout, train, horizon = 1000, 3000, 84
    need = washout + train + horizon
    with tempfile.TemporaryDirectory() as tmp:
        full = os.path.join(tmp, "mg.csv")
        n_total = need + 500 * (a.first_trial + a.trials)
        subprocess.run([RECUR, "data", "mackey-glass", "--length", str(n_total + 1000), "--dt", "0.1",
                        "--subsample", "10", "--out", full], check=True)
        x = np.loadtxt(full, delimiter=",", skiprows=1)[1000:, 1] - a.shift  # drop the initial transient
        var = x.var()
        errs = []
        for k in range(a.first_trial, a.first_trial + a.trials):
            seg = x[500 * k: 500 * k + need]
            train_csv = os.path.join(tmp, "train.csv")
            np.savetxt(train_csv, seg[: washout + train], header="x", comments="", fmt="%.17g")
            model = os.path.join(tmp, "esn.safetensors")
            subprocess.run([RECUR, "esn", "fit", "--data", train_csv, "--out", model, "--washout", str(washout),
                            "--test-fraction", "0", "--seed", str(k + 1), "--units", a.units,
                            "--spectral-radius", a.spectral_radius, "--leak", a.leak,
                            "--input-scaling", a.input_scaling, "--connectivity", a.connectivity,
                            "--input-connectivity", a.input_connectivity, "--bias", a.bias, "--ridge", a.ridge]
                           + ([] if a.input_readout else ["--no-input-readout"]),
                           check=True, capture_output=True)
            out = subprocess.run([RECUR, "esn", "predict", "--model", model, "--data", train_csv,
                                  "--warmup", str(washout + train), "--generate", str(horizon)],
                                 check=True, capture_output=True, text=True).stdout
            pred = np.array([float(l.split(",")[1]) for l in out.strip().splitlines()[1:]])
            errs.append(pred[horizon - 1] - seg[washout + train + horizon - 1])
        errs = np.array(errs)
        nrmse84 = np.sqrt(np.mean(errs ** 2) / var)
        print(f"trials {a.trials}: NRMSE84 = {nrmse84:.3e} (log10 {np.log10(nrmse84):.2f}); "
              f"median |error at 84| = {np.median(np.abs(errs)):.2e}")


if __name__ == "__main__":
    sys.exit(main())
