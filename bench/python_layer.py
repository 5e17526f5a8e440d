#!/usr/bin/env python3
"""The cost of calling a recur layer from Python: recur.nn.LSTM against the
same forward and forward + backward timed inside Rust (`recur bench layer`),
in one run on one machine.

    python3 bench/python_layer.py [--hidden 512 --batch 64 --steps 100 --threads 2]

Needs the package installed (`pip install ./python`) and the binary built
(`cargo build --release`). Prints both medians and the overhead in percent.
"""

import argparse
import json
import os
import statistics
import subprocess
import time

import numpy as np

import recur


def median_time(f, repeats):
    f()  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--rounds", type=int, default=3, help="alternate Rust and Python this many times")
    ap.add_argument("--binary", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "recur"))
    a = ap.parse_args()
    h, b, t = a.hidden, a.batch, a.steps
    os.environ["RAYON_NUM_THREADS"] = str(a.threads)
    lstm = recur.nn.LSTM(h, h, seed=0).eval()
    x = (((np.arange(t * b * h) % 97) / 97.0) - 0.5).astype(np.float32).reshape(t, b, h)
    dy = np.full((t, b, h), 0.01, np.float32)

    def fwd():
        lstm(x)

    def both():
        lstm(x)
        lstm.backward(dy)

    rows = []
    for _ in range(a.rounds):
        out = subprocess.run(
            [a.binary, "bench", "layer", "--cell", "lstm", "--hidden", str(h), "--batch", str(b),
             "--steps", str(t), "--threads", str(a.threads), "--repeats", str(a.repeats), "--json"],
            check=True, capture_output=True, text=True,
        ).stdout
        rust = json.loads(out.strip().splitlines()[-1])
        py_f = median_time(fwd, a.repeats)
        py_b = median_time(both, a.repeats)
        rows.append((rust["forward_s"], py_f, rust["forward_backward_s"], py_b))
    rf, pf, rb, pb = (statistics.median(c) for c in zip(*rows))
    print(f"LSTM {h}x1, batch {b}, {t} steps, {a.threads} threads, median of {a.rounds} rounds x {a.repeats} runs")
    print(f"{'':22}{'Rust (s)':>10}{'Python (s)':>12}{'overhead':>10}")
    print(f"{'forward':22}{rf:10.4f}{pf:12.4f}{100 * (pf / rf - 1):9.1f}%")
    print(f"{'forward + backward':22}{rb:10.4f}{pb:12.4f}{100 * (pb / rb - 1):9.1f}%")


if __name__ == "__main__":
    main()
