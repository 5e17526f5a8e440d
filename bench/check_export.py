#!/usr/bin/env python3
"""Loads a `recur export` of a classifier or tagger into the PyTorch module of
crates/recur/tests/fixtures/torch-models/make_model_fixtures.py with
load_state_dict(strict=True), and compares its predictions with `recur predict`.

Not part of CI: needs `pip install torch safetensors numpy`.
Usage: check_export.py RECUR_BINARY MODEL.safetensors DATA_FILE
(DATA_FILE: label<TAB>text lines for a text classifier.)
"""
import json, subprocess, sys, tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

root = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(root / "crates/recur/tests/fixtures/torch-models"))
from make_model_fixtures import Classifier, Tagger  # noqa: E402

CELLS = {"lstm": "LSTM", "gru": "GRU", "rnn-tanh": "RNN_TANH", "rnn-relu": "RNN_RELU"}


def main():
    recur, model, data = sys.argv[1:4]
    out = Path(tempfile.mkdtemp())
    subprocess.run([recur, "export", "--model", model, "--out", str(out)], check=True)
    meta = json.load(open(out / "meta.json"))
    c, m = meta["config"], meta["meta"]
    if c["chars"] or c["learned_init"] or c["residual"] or c["pooling"] == "attention":
        sys.exit("the PyTorch fixture modules have no character encoder, learned state, residual or attention pooling")
    cell, V, E = CELLS[c["cell"]], c["input"]["tokens"]["vocab"], c["input"]["tokens"]["embed"]
    H, L, bi, C = c["hidden"], c["layers"], c["bidirectional"], c["outputs"]
    if c["task"] == "classify":
        net = Classifier(cell, V, E, H, L, bi, c["pooling"], C)
    else:
        net = Tagger(cell, V, E, H, L, bi, C)
    net.load_state_dict(load_file(out / "state_dict.safetensors"), strict=True)
    net = net.double().eval()
    print(f"load_state_dict(strict=True): ok ({sum(p.numel() for p in net.parameters())} parameters)")
    if c["task"] != "classify":
        return
    # Same words as recur's reader: `recur predict` prints the texts back.
    pred = subprocess.run([recur, "predict", "--model", model, "--data", data], check=True,
                          capture_output=True, text=True).stdout.splitlines()[1:]
    index = {w: i for i, w in enumerate(m["words"])}
    agree = 0
    for row in pred:
        label, prob, text = row.split("\t", 2)
        # recur's tokenizer lowercases and splits punctuation; MR is already tokenised.
        ids = [index.get(w, 1) for w in text.lower().split()]
        x = torch.tensor([ids])
        with torch.no_grad():
            p = torch.softmax(net(x, torch.tensor([len(ids)])), -1)[0]
        agree += m["labels"][int(p.argmax())] == label
    print(f"PyTorch agrees with recur predict on {agree}/{len(pred)} examples")


if __name__ == "__main__":
    main()
