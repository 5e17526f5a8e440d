#!/usr/bin/env python3
"""PyTorch CPU baseline for the sequence models: sentences/s of a BiLSTM tagger
and a BiLSTM classifier of the same sizes as recur's defaults, on the same data.

  tagger     : word embedding 128 (+ a character BiLSTM, embedding 32, 64 per
               direction, over each word) -> 2-layer BiLSTM 128 -> linear, per word;
               UD English EWT train sentences.
  classifier : word embedding 128 -> 1-layer BiLSTM 128 -> max pooling -> linear;
               MR movie reviews.

Batches of 32 sentences cut from length-sorted pools (as recur buckets them),
packed with pack_padded_sequence. train: forward, masked cross-entropy, backward,
clip 5, Adam. infer: forward under no_grad. Prints JSON lines
{"name", "train_sent_s", "infer_sent_s"}; medians over --steps batches.
Not part of CI: needs `pip install torch`.
Usage: seq_baseline.py [--threads N] [--steps S] [--data ../shared/data]
"""
import argparse, json, random, statistics, time
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def conllu_sentences(path):
    sents, cur = [], []
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if not line:
            if cur:
                sents.append(cur)
            cur = []
        elif not line.startswith("#"):
            cols = line.split("\t")
            if cols[0].isdigit():
                cur.append((cols[1], cols[3]))
    if cur:
        sents.append(cur)
    return sents


def mr_sentences(d):
    out = []
    for f, label in (("rt-polarity.pos", 1), ("rt-polarity.neg", 0)):
        for line in open(d / f, encoding="windows-1252"):
            if line.strip():
                out.append((line.split(), label))
    return out


class CharWord(nn.Module):
    def __init__(self, vocab, embed, hidden):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.rnn = nn.LSTM(embed, hidden, bidirectional=True, batch_first=True)

    def forward(self, chars, lengths):
        packed = pack_padded_sequence(self.embedding(chars), lengths, batch_first=True, enforce_sorted=False)
        _, (h, _) = self.rnn(packed)
        return torch.cat([h[0], h[1]], dim=1)


class Tagger(nn.Module):
    def __init__(self, V, C, E=128, H=128, L=2, CE=32, CH=64, tags=17):
        super().__init__()
        self.embedding = nn.Embedding(V, E)
        self.chars = CharWord(C, CE, CH)
        self.rnn = nn.LSTM(E + 2 * CH, H, L, bidirectional=True, batch_first=True, dropout=0.25)
        self.drop = nn.Dropout(0.25)
        self.head = nn.Linear(2 * H, tags)

    def forward(self, words, lengths, spell, spell_len, spell_of):
        x = torch.cat([self.embedding(words), self.chars(spell, spell_len)[spell_of]], dim=2)
        packed = pack_padded_sequence(self.drop(x), lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=words.shape[1])
        return self.head(self.drop(out))


class Classifier(nn.Module):
    def __init__(self, V, E=128, H=128, classes=2):
        super().__init__()
        self.embedding = nn.Embedding(V, E)
        self.rnn = nn.LSTM(E, H, bidirectional=True, batch_first=True)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(2 * H, classes)

    def forward(self, words, lengths):
        T = words.shape[1]
        packed = pack_padded_sequence(self.drop(self.embedding(words)), lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
        mask = (torch.arange(T)[None, :] < lengths[:, None])[:, :, None]
        return self.head(self.drop(out.masked_fill(~mask, float("-inf")).max(1).values))


def buckets(items, key, batch, rng):
    idx = list(range(len(items)))
    rng.shuffle(idx)
    out = []
    for p in range(0, len(idx), batch * 50):
        pool = sorted(idx[p:p + batch * 50], key=lambda i: key(items[i]))
        out += [pool[k:k + batch] for k in range(0, len(pool), batch)]
    rng.shuffle(out)
    return out


def timed(fn, batches, warm=3):
    for b in batches[:warm]:
        fn(b)
    ts, sents = [], []
    for b in batches[warm:]:
        t = time.perf_counter()
        fn(b)
        ts.append(time.perf_counter() - t)
        sents.append(len(b))
    return statistics.median([n / t for n, t in zip(sents, ts)])


def tagger_bench(data, steps):
    sents = conllu_sentences(data / "ud-english-ewt/en_ewt-ud-train.conllu")
    wv, cv, tv = {}, {}, {}
    for s in sents:
        for w, t in s:
            wv.setdefault(w.lower(), len(wv) + 2)
            tv.setdefault(t, len(tv))
            for ch in w:
                cv.setdefault(ch, len(cv) + 2)
    m = Tagger(len(wv) + 2, len(cv) + 2, tags=len(tv))
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    lossf = nn.CrossEntropyLoss(ignore_index=-100)
    batches = buckets(sents, len, 32, random.Random(1))[: steps + 3]

    def tensors(b):
        ss = [sents[i] for i in b]
        T = max(len(s) for s in ss)
        words = torch.zeros(len(ss), T, dtype=torch.long)
        tags = torch.full((len(ss), T), -100, dtype=torch.long)
        spell_idx, spellings = {}, []
        spell_of = torch.zeros(len(ss), T, dtype=torch.long)
        for i, s in enumerate(ss):
            for j, (w, t) in enumerate(s):
                words[i, j] = wv[w.lower()]
                tags[i, j] = tv[t]
                key = w[:12] + w[-12:] if len(w) > 24 else w
                if key not in spell_idx:
                    spell_idx[key] = len(spellings)
                    spellings.append([cv[c] for c in key])
                spell_of[i, j] = spell_idx[key]
        CL = max(len(x) for x in spellings)
        spell = torch.zeros(len(spellings), CL, dtype=torch.long)
        for k, x in enumerate(spellings):
            spell[k, : len(x)] = torch.tensor(x)
        return words, torch.tensor([len(s) for s in ss]), spell, torch.tensor([len(x) for x in spellings]), spell_of, tags

    prepared = {tuple(b): tensors(b) for b in batches}

    def train(b):
        words, lengths, spell, sl, so, tags = prepared[tuple(b)]
        opt.zero_grad(set_to_none=True)
        logits = m(words, lengths, spell, sl, so)
        loss = lossf(logits.reshape(-1, logits.shape[-1]), tags.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 5.0)
        opt.step()

    def infer(b):
        words, lengths, spell, sl, so, _ = prepared[tuple(b)]
        with torch.no_grad():
            m(words, lengths, spell, sl, so)

    m.train()
    tr = timed(train, batches)
    m.eval()
    return {"name": "tagger", "train_sent_s": tr, "infer_sent_s": timed(infer, batches)}


def classifier_bench(data, steps):
    items = mr_sentences(data / "mr")
    wv = {}
    for ws, _ in items:
        for w in ws:
            wv.setdefault(w, len(wv) + 2)
    m = Classifier(len(wv) + 2)
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    lossf = nn.CrossEntropyLoss()
    batches = buckets(items, lambda x: len(x[0]), 32, random.Random(1))[: steps + 3]

    def tensors(b):
        ss = [items[i] for i in b]
        T = max(len(s[0]) for s in ss)
        words = torch.zeros(len(ss), T, dtype=torch.long)
        for i, (ws, _) in enumerate(ss):
            words[i, : len(ws)] = torch.tensor([wv[w] for w in ws])
        return words, torch.tensor([len(s[0]) for s in ss]), torch.tensor([s[1] for s in ss])

    prepared = {tuple(b): tensors(b) for b in batches}

    def train(b):
        words, lengths, labels = prepared[tuple(b)]
        opt.zero_grad(set_to_none=True)
        loss = lossf(m(words, lengths), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 5.0)
        opt.step()

    def infer(b):
        words, lengths, _ = prepared[tuple(b)]
        with torch.no_grad():
            m(words, lengths)

    m.train()
    tr = timed(train, batches)
    m.eval()
    return {"name": "classifier", "train_sent_s": tr, "infer_sent_s": timed(infer, batches)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    data = Path(a.data)
    for r in (tagger_bench(data, a.steps), classifier_bench(data, a.steps)):
        r["threads"] = a.threads
        r["torch"] = torch.__version__
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
