#!/usr/bin/env bash
# Conditioned generation on MR: a word-level decoder conditioned on the review's label
# (its initial state), sampled for each label, and the samples labelled by an MR classifier
# trained on the same reviews. Prints the classifier's accuracy on the samples: how often a
# sample reads as the label it was generated for. Not part of CI.
#
# Usage: bench/conditioned_mr.sh [OUT]   (RECUR, MR and EPOCHS override the defaults)
set -euo pipefail
R=${RECUR:-target/release/recur}
MR=${MR:-../shared/data/mr}
OUT=${1:-/tmp/mr-conditioned}
EPOCHS=${EPOCHS:-8}
mkdir -p "$OUT"
[ -f "$OUT/classifier/model.safetensors" ] || time "$R" train --task classify --data "$MR" --encoding windows-1252 --out "$OUT/classifier" --overwrite \
  | tail -3
time "$R" train --condition label --condition-mode "${MODE:-init}" --data "$MR" --encoding windows-1252 \
  --level word --min-count 2 --cell lstm --hidden 512 --embed 256 --dropout 0.3 --label-smoothing 0 --batch 64 \
  --epochs "$EPOCHS" --out "$OUT/lm" --overwrite | tail -3
labels="neg pos"  # the class files' extensions, as the classifier names them
: > "$OUT/samples.tsv"
for l in $labels; do
  "$R" generate --model "$OUT/lm/model.safetensors" --condition "$l" --count 250 --length 40 \
    --temperature 0.8 --top-k 20 --seed "${SEED:-7}" | sed "s/^/$l\t/" >> "$OUT/samples.tsv"
done
echo "samples per label:"; cut -f1 "$OUT/samples.tsv" | sort | uniq -c
for l in $labels; do grep -m2 "^$l" "$OUT/samples.tsv"; done
"$R" eval --model "$OUT/classifier/model.safetensors" --data "$OUT/samples.tsv" --json
