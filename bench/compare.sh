#!/usr/bin/env bash
# recur vs PyTorch on the same machine in the same run: tokens/s per config
# and the recur/PyTorch ratio. Needs `pip install torch safetensors` (about
# 5 GB; never in CI) and ../shared/bench/pytorch_baseline.py beside the project.
# Usage: bench/compare.sh [THREADS] [--precision f32|bf16|int8] [extra args for both, e.g. --steps 10]
#
# With --precision bf16 or int8, inference and generation run in that
# precision on both sides (PyTorch: autocast, or quantize_dynamic) and are
# compared with PyTorch f32 and with PyTorch in the same precision, all in
# one run. With bf16 training does too (PyTorch: autocast); int8 training
# stays f32 on both sides and is left out.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
shift || true
precision=f32
if [ "${1:-}" = "--precision" ]; then
    precision=${2:?--precision needs f32, bf16 or int8}
    shift 2
fi
baseline=../shared/bench/pytorch_baseline.py
[ -f "$baseline" ] || { echo "error: $baseline not found" >&2; exit 2; }
python3 -c "import torch" 2>/dev/null || { echo "error: PyTorch is not installed (pip install torch safetensors)" >&2; exit 2; }
cargo build --release -q -p recur-cli
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ "$precision" = f32 ]; then
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
    exit 0
fi
# One config at a time, all four measurements back to back, so a change in
# the machine's load between configs touches every column alike.
configs=$(./target/release/recur bench --help | grep -o 'char-[a-z0-9x-]*\|word-[a-z0-9x-]*' | sort -u)
: > "$tmp/rows.jsonl"
for c in $configs; do
    # (PyTorch's deprecation warnings for quantize_dynamic go to /dev/null.)
    python3 "$baseline" --threads "$threads" --only "$c" --json "$tmp/t32.json" "$@" > /dev/null 2>&1
    python3 "$baseline" --threads "$threads" --only "$c" --precision "$precision" --json "$tmp/tp.json" "$@" > /dev/null 2>&1
    ./target/release/recur bench --threads "$threads" --config "$c" --json "$@" > "$tmp/r32.json"
    ./target/release/recur bench --threads "$threads" --config "$c" --precision "$precision" --json "$@" > "$tmp/rp.json"
    python3 - "$tmp" >> "$tmp/rows.jsonl" <<'PY'
import json, sys
d = sys.argv[1]
t32, tp = json.load(open(f"{d}/t32.json"))[0], json.load(open(f"{d}/tp.json"))[0]
r32, rp = json.load(open(f"{d}/r32.json")), json.load(open(f"{d}/rp.json"))
print(json.dumps({"name": rp["name"], "t32": t32, "tp": tp, "r32": r32, "rp": rp}))
PY
done
python3 - "$tmp/rows.jsonl" "$precision" <<'PY'
import json, sys
p = sys.argv[2]
rows = [json.loads(l) for l in open(sys.argv[1])]
kinds = (["train_tok_s"] if p == "bf16" else []) + ["infer_tok_s", "gen_tok_s"]
print(f"recur {p} against PyTorch f32 and PyTorch {p}, tokens/s (recur f32 for reference)")
print(f"{'config':18} | " + " | ".join(
    f"{k.split('_')[0] + ': recur ' + p:>13} {'f32':>9} {'torch f32':>10} {'torch ' + p:>10} {'÷f32':>6} {'÷' + p:>6}" for k in kinds))
for r in rows:
    cells = []
    for k in kinds:
        a, b, c, e = r["rp"][k], r["r32"][k], r["t32"][k], r["tp"][k]
        cells.append(f"{a:13.0f} {b:9.0f} {c:10.0f} {e:10.0f} {a / c:5.2f}x {a / e:5.2f}x")
    print(f"{r['name']:18} | " + " | ".join(cells))
PY
