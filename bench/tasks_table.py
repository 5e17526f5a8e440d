#!/usr/bin/env python3
"""Markdown tables from the JSON lines of bench/tasks.sh.

Usage: python3 bench/tasks_table.py results.jsonl
"""
import json, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]


def cell(r):
    name = r["cell"]
    if r.get("teacher_forcing"):
        name += " (teacher forcing)"
    return name


def solved(r):
    if r["solved_at_step"] is None:
        return "no"
    s = f"step {r['solved_at_step']}"
    return s if r["solved"] else s + " (lost again by the end)"


print("| task | cell | T / delay | params | metric at the end | solved |")
print("|---|---|---|---|---|---|")
for r in rows:
    t = r["task"]
    if t == "binary-addition":
        what = f"delay {r['delay']}"
        metric = f"64-bit accuracy {r['test_accuracy']:.3f}"
    elif t == "adding":
        what = f"T = {r['length']}"
        metric = f"MSE {r['test_mse']:.4f} (baseline {r['baseline_mse']:.3f})"
    else:
        what = f"T = {r['length']}"
        metric = f"symbol accuracy {r['test_accuracy']:.3f} (loss {r['test_loss']:.3f}, baseline {r['baseline_loss']:.3f})"
    print(f"| {t} | {cell(r)} | {what} | {r['params']} | {metric} | {solved(r)} |")
