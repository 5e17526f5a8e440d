#!/usr/bin/env bash
# recur vs PyTorch on the same machine in the same run: tokens/s per config
# and the recur/PyTorch ratio. Needs `pip install torch safetensors` (about
# 5 GB; never in CI) and ../shared/bench/pytorch_baseline.py beside the project.
# Usage: bench/compare.sh [THREADS] [extra args for both, e.g. --steps 10]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
shift || true
baseline=../shared/bench/pytorch_baseline.py
[ -f "$baseline" ] || { echo "error: $baseline not found" >&2; exit 2; }
python3 -c "import torch" 2>/dev/null || { echo "error: PyTorch is not installed (pip install torch safetensors)" >&2; exit 2; }
cargo build --release -q -p recur-cli
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 "$baseline" --threads "$threads" --json "$tmp/torch.json" "$@" > /dev/null
./target/release/recur bench --threads "$threads" --json "$@" > "$tmp/recur.jsonl"
python3 - "$tmp/torch.json" "$tmp/recur.jsonl" <<'PY'
import json, sys
torch = {r["name"]: r for r in json.load(open(sys.argv[1]))}
rows = [json.loads(l) for l in open(sys.argv[2])]
print(f"{'config':18} | {'train tok/s':>23} {'ratio':>6} | {'infer tok/s':>23} {'ratio':>6} | {'gen tok/s':>19} {'ratio':>6} | recur GFLOP/s")
print(f"{'':18} | {'recur':>11} {'torch':>11} {'':>6} | {'recur':>11} {'torch':>11} {'':>6} | {'recur':>9} {'torch':>9} {'':>6} |")
for r in rows:
    t = torch.get(r["name"])
    if t is None:
        continue
    cells = []
    for k in ("train_tok_s", "infer_tok_s", "gen_tok_s"):
        w = 9 if k == "gen_tok_s" else 11
        cells.append(f"{r[k]:{w}.0f} {t[k]:{w}.0f} {r[k] / t[k]:5.2f}x")
    print(f"{r['name']:18} | " + " | ".join(cells) + f" | {r['train_gflops']:6.1f}")
PY
