#!/usr/bin/env python3
"""Writes hand-made hostile safetensors files (the `checkpoint` target's
seeds, and the fixtures of crates/recur/tests/fuzz_regressions.rs) into the
folder given as the argument. Each must be refused with an error."""
import json
import struct
import sys
from pathlib import Path

F32 = struct.Struct("<f")


def st(header, data=b"", raw_header=None, length=None):
    """A safetensors file: u64 header length, JSON header, data."""
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    n = len(h) if length is None else length
    return struct.pack("<Q", n) + h + data


def lm(config=None, vocab=None, tensors=None, fmt="recur-lm"):
    """A recur-lm file with one 1-value tensor unless `tensors` is given."""
    meta = {"format": fmt}
    meta["config"] = config if config is not None else json.dumps(
        {"cell": "lstm", "vocab_size": 2, "embed": 1, "hidden": 1, "layers": 1, "dropout": 0.0})
    meta["vocab"] = vocab if vocab is not None else json.dumps({"level": "char", "tokens": ["a", "b"]})
    header = {"__metadata__": meta}
    data = b""
    for name, shape in (tensors or {"decoder.bias": [1]}).items():
        n = 1
        for s in shape:
            n *= s
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + 4 * n]}
        data += F32.pack(0.5) * n
    return st(header, data)


def esn(config, inputs="1", outputs="1", shape=(1, 10)):
    meta = {"format": "recur-esn", "config": json.dumps(config), "inputs": inputs,
            "outputs": outputs, "w_scale": "1.0"}
    n = shape[0] * shape[1]
    header = {"__metadata__": meta, "w_out": {"dtype": "F64", "shape": list(shape), "data_offsets": [0, 8 * n]}}
    return st(header, b"\0" * 8 * n)


ESN = {"units": 8, "connectivity": 0.1, "spectral_radius": 1.25, "leak": 0.3, "input_scaling": 1.0,
       "input_connectivity": 0.2, "bias": 0.0, "feedback": False, "feedback_scaling": 1.0,
       "ridge": 1e-8, "washout": 100, "horizon": 1, "seed": 1, "input_in_readout": True}

SEEDS = {
    "empty": b"",
    "short": b"\x08\0\0\0",
    "header-length-max": b"\xff" * 8 + b"{}",
    "header-length-past-end": st(None, raw_header=b'{"__metadata__":{}}', length=1 << 20),
    "header-not-utf8": st(None, raw_header=b'{"\xff\xfe": 1}'),
    "header-not-json": st(None, raw_header=b"[1, 2, 3"),
    "huge-shape": st({"w": {"dtype": "F32", "shape": [1 << 32, 1 << 32], "data_offsets": [0, 4]}}, b"\0" * 4),
    "shape-overflow": st({"w": {"dtype": "F32", "shape": [1 << 63, 4], "data_offsets": [0, 4]}}, b"\0" * 4),
    "offsets-past-end": st({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1 << 40]}}, b"\0" * 16),
    "offsets-reversed": st({"w": {"dtype": "F32", "shape": [0], "data_offsets": [16, 0]}}, b"\0" * 16),
    "offsets-overlap": st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                           "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12),
    "dtype-unknown": st({"w": {"dtype": "F7", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4),
    "dtype-i64": st({"__metadata__": {"format": "recur-lm"},
                                           "w": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8),
    "dtype-f16-in-f64-file": st({"__metadata__": {"format": "recur-esn"},
                                 "w_out": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4),
    "metadata-not-strings": st({"__metadata__": {"format": 5, "config": {"cell": "lstm"}}}),
    "lm-config-wrong-types": lm(config='{"cell": 3, "vocab_size": "two", "embed": [], "hidden": null, "layers": -1, "dropout": "x"}'),
    "lm-config-not-json": lm(config="{cell: lstm"),
    "lm-config-huge": lm(config=json.dumps({"cell": "lstm", "vocab_size": 2, "embed": 1 << 62, "hidden": 1 << 62,
                                            "layers": 1, "dropout": 0.0})),
    "lm-config-many-layers": lm(config=json.dumps({"cell": "gru", "vocab_size": 2, "embed": 1, "hidden": 1,
                                                   "layers": 1 << 60, "dropout": 0.0})),
    "lm-config-zero": lm(config=json.dumps({"cell": "lstm", "vocab_size": 2, "embed": 0, "hidden": 0,
                                            "layers": 0, "dropout": 0.0})),
    "lm-config-nan-dropout": lm(config='{"cell": "lstm", "vocab_size": 2, "embed": 1, "hidden": 1, "layers": 1, "dropout": NaN}'),
    "lm-vocab-wrong-types": lm(vocab='{"level": 5, "tokens": "ab"}'),
    "lm-vocab-level": lm(vocab='{"level": "byte", "tokens": ["a", "b"]}'),
    "lm-vocab-duplicate": lm(vocab='{"level": "char", "tokens": ["a", "a"]}'),
    "lm-vocab-empty": lm(vocab='{"level": "word", "tokens": []}'),
    "lm-vocab-size-mismatch": lm(vocab='{"level": "char", "tokens": ["a", "b", "c"]}'),
    "lm-no-format": st({"__metadata__": {"config": "{}"}}),
    "lm-wrong-format": lm(fmt="recur-seq-model"),
    "seq-config-huge": st({"__metadata__": {
        "format": "recur-seq-model",
        "config": json.dumps({"task": "classify", "input": {"tokens": {"vocab": 1 << 62, "embed": 1 << 62}},
                              "chars": None, "cell": "lstm", "hidden": 1 << 40, "layers": 1 << 20,
                              "bidirectional": True, "dropout": 0.0, "residual": False, "learned_init": False,
                              "pooling": "max", "outputs": 1 << 62, "per_step": False, "input_noise": 0.0}),
        "meta": "{}"}}),
    "seq-meta-wrong-types": st({"__metadata__": {"format": "recur-seq-model", "config": "{}",
                                                 "meta": '{"words": 1, "labels": {"a": 2}}'}}),
    "seq2seq-config-huge": st({"__metadata__": {
        "format": "recur-seq2seq-model",
        "config": json.dumps({"src_vocab": 4, "tgt_vocab": 4, "embed": 1 << 62, "cell": "lstm", "hidden": 1 << 62,
                              "layers": 1 << 62, "encoder_layers": 1, "bidirectional": True,
                              "attention": "general", "input_feeding": True, "reverse_source": False,
                              "dropout": 0.0, "decoder_only": False, "condition": None}),
        "meta": json.dumps({"src_tokens": ["<pad>", "<sos>", "<eos>", "<unk>"],
                            "tgt_tokens": ["<pad>", "<sos>", "<eos>", "<unk>"], "level": "word",
                            "condition_labels": [], "data": {}}),
        "training": json.dumps({"teacher_forcing": {"kind": "constant", "ratio": 1.0}, "label_smoothing": 0.1})}}),
    "seq2seq-keys-overflow": st({"__metadata__": {
        "format": "recur-seq2seq-model",
        "config": json.dumps({"src_vocab": 4, "tgt_vocab": 4, "embed": 1, "cell": "gru", "hidden": 1 << 63,
                              "layers": 1, "encoder_layers": 1, "bidirectional": True, "attention": "none",
                              "input_feeding": False, "reverse_source": False, "dropout": 0.0,
                              "decoder_only": False, "condition": None}),
        "meta": json.dumps({"src_tokens": ["<pad>", "<sos>", "<eos>", "<unk>"],
                            "tgt_tokens": ["<pad>", "<sos>", "<eos>", "<unk>"], "level": "word",
                            "condition_labels": [], "data": {}}),
        "training": json.dumps({"teacher_forcing": {"kind": "constant", "ratio": 1.0}, "label_smoothing": 0.1})}}),
    "seq-output-overflow": st({"__metadata__": {
        "format": "recur-seq-model",
        "config": json.dumps({"task": "classify", "input": {"tokens": {"vocab": 4, "embed": 1 << 63}},
                              "chars": {"vocab": 4, "embed": 1, "hidden": 1 << 62}, "cell": "rnn-tanh",
                              "hidden": 1 << 63, "layers": 1, "bidirectional": True, "dropout": 0.0,
                              "residual": False, "learned_init": False, "pooling": "max", "outputs": 1,
                              "per_step": False, "input_noise": 0.0}),
        "meta": "{}"}}),
    "seq2seq-meta-mismatch": st({"__metadata__": {
        "format": "recur-seq2seq-model",
        "config": json.dumps({"src_vocab": 9, "tgt_vocab": 4, "embed": 1, "cell": "gru", "hidden": 1,
                              "layers": 1, "encoder_layers": 1, "bidirectional": False, "attention": "none",
                              "input_feeding": False, "reverse_source": False, "dropout": 0.0,
                              "decoder_only": False, "condition": None}),
        "meta": json.dumps({"src_tokens": ["a"], "tgt_tokens": [], "level": "char",
                            "condition_labels": [], "data": {}}),
        "training": json.dumps({"teacher_forcing": {"kind": "linear", "k": -1}, "label_smoothing": 2})}}),
    "esn-units-huge": esn(dict(ESN, units=1 << 40)),
    "esn-units-large": esn(dict(ESN, units=100_000)),
    "esn-inputs-huge": esn(dict(ESN, input_in_readout=False), inputs=str(1 << 40), shape=(1, 9)),
    "esn-outputs-huge": esn(ESN, outputs=str(1 << 62)),
    "esn-config-wrong-types": esn(dict(ESN, units="8", leak=None)),
    "torch-one-dimensional": lm(fmt="", tensors={"encoder.weight": [3], "rnn.weight_hh_l0": [4, 1]}),
    "torch-rows-not-multiple": lm(fmt="", tensors={"encoder.weight": [2, 1], "rnn.weight_hh_l0": [5, 2]}),
    "torch-zero-hidden": lm(fmt="", tensors={"encoder.weight": [2, 1], "rnn.weight_hh_l0": [0, 0]}),
}

if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for name, data in SEEDS.items():
        (out / name).write_bytes(data)
