#!/usr/bin/env bash
# Runs the long-memory results table of docs/long-memory.md: every line of
# output is one `recur task --json` object. Takes about 30 minutes on 2 cores.
# Usage: bash bench/tasks.sh [RECUR_BINARY] > results.jsonl
set -euo pipefail
recur=${1:-target/release/recur}
run() { "$recur" task "$@" --json; }

# Binary addition: 8-bit training, 64-bit test; with and without delay.
for cell in tanh relu irnn lstm gru jordan; do
  for delay in 0 3; do run binary-addition --cell "$cell" --delay "$delay"; done
done
run binary-addition --cell jordan --teacher-forcing
# Adding problem.
for len in 100 200 400; do
  for cell in tanh irnn lstm gru; do run adding --cell "$cell" --length "$len"; done
done
run adding --cell jordan --length 100
# Copy task.
for len in 50 100; do
  for cell in tanh lstm gru; do run copy --cell "$cell" --length "$len"; done
done
