#!/usr/bin/env python3
"""English→French: recur against PyTorch's translation tutorial, same data, same wall time.

The data is the tutorial's: Tatoeba's fra.txt, normalised (lower case, ASCII, punctuation
split off, other symbols removed) and filtered (both sides under 10 words, English starting
"i am", "he is", ...). A seeded 10% of the pairs is held out. Both systems train on the rest
for the same number of seconds and translate the held-out English greedily; `recur bleu`
scores both outputs against the same references (sacreBLEU's 13a BLEU, chrF).

PyTorch's model is the tutorial's code as published (seq2seq_translation_tutorial.py,
batched version): GRU encoder and decoder of 128 units, Bahdanau attention, dropout 0.1,
batches of 32 padded to 10 steps, Adam 0.001, NLL loss over every padded step, teacher
forcing. recur trains `recur train --task seq2seq` with the flags below.

Usage: bench/seq2seq_tutorial.py [--minutes 5] [--recur target/release/recur]
           [--data ../shared/data/tatoeba-eng-fra/fra.txt] [--out /tmp/s2s] [--threads 2]
           [--filter tutorial|none] [-- extra recur train flags]
Needs PyTorch (not in CI).
"""
import argparse, json, os, random, re, subprocess, sys, time, unicodedata

import torch
import torch.nn as nn
import torch.nn.functional as F

here = os.path.dirname(os.path.abspath(__file__))
ap = argparse.ArgumentParser()
ap.add_argument("--minutes", type=float, default=5.0)
ap.add_argument("--recur", default=os.path.join(here, "..", "target", "release", "recur"))
ap.add_argument("--data", default=os.path.join(here, "..", "..", "shared", "data", "tatoeba-eng-fra", "fra.txt"))
ap.add_argument("--out", default="/tmp/s2s-compare")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--filter", default="tutorial", choices=["tutorial", "none"])
ap.add_argument("--skip-torch", action="store_true")
ap.add_argument("recur_flags", nargs="*")
args = ap.parse_args()
os.makedirs(args.out, exist_ok=True)
torch.set_num_threads(args.threads)
torch.manual_seed(1)

# ---------------------------------------------------------------- the tutorial's data
# The tutorial's filter keeps sentences under 10 words; without it, pairs under 30 words are
# kept (0.3% of fra.txt is longer), and the tutorial's model pads to 30 steps.
MAX_LENGTH = 10 if args.filter == "tutorial" else 30
eng_prefixes = ("i am ", "i m ", "he is", "he s ", "she is", "she s ", "you are", "you re ",
                "we are", "we re ", "they are", "they re ")


def unicodeToAscii(s):
    return "".join(c for c in unicodedata.normalize("NFD", s) if unicodedata.category(c) != "Mn")


def normalizeString(s):
    s = unicodeToAscii(s.lower().strip())
    s = re.sub(r"([.!?])", r" \1", s)
    s = re.sub(r"[^a-zA-Z!?]+", r" ", s)
    return s.strip()


pairs = []
for line in open(args.data, encoding="utf-8"):
    cols = line.rstrip("\n").split("\t")
    if len(cols) < 2:
        continue
    eng, fra = normalizeString(cols[0]), normalizeString(cols[1])
    if not eng or not fra:
        continue
    if not (len(eng.split(" ")) < MAX_LENGTH and len(fra.split(" ")) < MAX_LENGTH):
        continue
    if args.filter == "tutorial" and not eng.startswith(eng_prefixes):
        continue
    pairs.append((eng, fra))
random.Random(5).shuffle(pairs)
n_test = len(pairs) // 10
test, train = pairs[:n_test], pairs[n_test:]
for name, ps in [("train.tsv", train), ("test.tsv", test)]:
    with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
        f.writelines(f"{e}\t{r}\n" for e, r in ps)
with open(os.path.join(args.out, "test.eng"), "w") as f:
    f.writelines(e + "\n" for e, _ in test)
with open(os.path.join(args.out, "test.fra"), "w") as f:
    f.writelines(r + "\n" for _, r in test)
print(f"{len(pairs)} pairs ({args.filter} filter): {len(train)} train, {len(test)} held out", flush=True)
seconds = args.minutes * 60


def score(hyp_file):
    out = subprocess.run([args.recur, "bleu", hyp_file, os.path.join(args.out, "test.fra"), "--json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


results = {}
# ---------------------------------------------------------------- recur
run = os.path.join(args.out, "recur-run")
flags = args.recur_flags or ["--val-fraction", "0.05", "--cell", "gru", "--hidden", "256", "--embed", "128",
                             "--batch", "64", "--lr", "0.002", "--dropout", "0.3", "--label-smoothing", "0.1",
                             "--attention", "bahdanau"]
cmd = [args.recur, "train", "--task", "seq2seq", "--data", os.path.join(args.out, "train.tsv"),
       "--time", str(args.minutes), "--out", run, "--overwrite",
       "--threads", str(args.threads)] + flags
print("$", " ".join(cmd), flush=True)
t0 = time.time()
log = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
m = re.search(r"done: (\d+) steps \((\d+) epochs\) in ([\d.]+) s", log)
steps, secs = int(m.group(1)), float(m.group(3))
batch = int(flags[flags.index("--batch") + 1]) if "--batch" in flags else 64
hyp = os.path.join(args.out, "recur.fra")
t1 = time.time()
with open(os.path.join(args.out, "test.eng")) as src, open(hyp, "w") as out:
    subprocess.run([args.recur, "translate", "--model", os.path.join(run, "model.safetensors")],
                   stdin=src, stdout=out, check=True)
results["recur"] = dict(score(hyp), train_seconds=secs, sentences_per_s=steps * batch / secs,
                        translate_seconds=time.time() - t1, flags=" ".join(flags))
print("recur:", json.dumps(results["recur"]), flush=True)

# ---------------------------------------------------------------- the tutorial's model
if not args.skip_torch:
    SOS_token, EOS_token = 0, 1

    class Lang:
        def __init__(self):
            self.word2index, self.index2word, self.n_words = {}, {0: "SOS", 1: "EOS"}, 2

        def addSentence(self, s):
            for w in s.split(" "):
                if w not in self.word2index:
                    self.word2index[w] = self.n_words
                    self.index2word[self.n_words] = w
                    self.n_words += 1

    input_lang, output_lang = Lang(), Lang()
    for e, r in train:
        input_lang.addSentence(e)
        output_lang.addSentence(r)

    def ids(lang, s):
        return [lang.word2index[w] for w in s.split(" ") if w in lang.word2index]

    n = len(train)
    input_ids = torch.zeros(n, MAX_LENGTH, dtype=torch.long)
    target_ids = torch.zeros(n, MAX_LENGTH, dtype=torch.long)
    for i, (e, r) in enumerate(train):
        a, b = ids(input_lang, e)[:MAX_LENGTH - 1] + [EOS_token], ids(output_lang, r)[:MAX_LENGTH - 1] + [EOS_token]
        input_ids[i, :len(a)] = torch.tensor(a)
        target_ids[i, :len(b)] = torch.tensor(b)

    class EncoderRNN(nn.Module):
        def __init__(self, input_size, hidden_size, dropout_p=0.1):
            super().__init__()
            self.embedding = nn.Embedding(input_size, hidden_size)
            self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True)
            self.dropout = nn.Dropout(dropout_p)

        def forward(self, input):
            return self.gru(self.dropout(self.embedding(input)))

    class BahdanauAttention(nn.Module):
        def __init__(self, hidden_size):
            super().__init__()
            self.Wa, self.Ua, self.Va = nn.Linear(hidden_size, hidden_size), nn.Linear(hidden_size, hidden_size), nn.Linear(hidden_size, 1)

        def forward(self, query, keys):
            scores = self.Va(torch.tanh(self.Wa(query) + self.Ua(keys))).squeeze(2).unsqueeze(1)
            weights = F.softmax(scores, dim=-1)
            return torch.bmm(weights, keys), weights

    class AttnDecoderRNN(nn.Module):
        def __init__(self, hidden_size, output_size, dropout_p=0.1):
            super().__init__()
            self.embedding = nn.Embedding(output_size, hidden_size)
            self.attention = BahdanauAttention(hidden_size)
            self.gru = nn.GRU(2 * hidden_size, hidden_size, batch_first=True)
            self.out = nn.Linear(hidden_size, output_size)
            self.dropout = nn.Dropout(dropout_p)

        def forward(self, encoder_outputs, encoder_hidden, target_tensor=None):
            batch_size = encoder_outputs.size(0)
            decoder_input = torch.empty(batch_size, 1, dtype=torch.long).fill_(SOS_token)
            decoder_hidden, outs = encoder_hidden, []
            for i in range(MAX_LENGTH):
                out, decoder_hidden, _ = self.forward_step(decoder_input, decoder_hidden, encoder_outputs)
                outs.append(out)
                if target_tensor is not None:
                    decoder_input = target_tensor[:, i].unsqueeze(1)
                else:
                    decoder_input = out.topk(1)[1].squeeze(-1).detach()
            return F.log_softmax(torch.cat(outs, dim=1), dim=-1), decoder_hidden

        def forward_step(self, input, hidden, encoder_outputs):
            embedded = self.dropout(self.embedding(input))
            context, w = self.attention(hidden.permute(1, 0, 2), encoder_outputs)
            output, hidden = self.gru(torch.cat((embedded, context), dim=2), hidden)
            return self.out(output), hidden, w

    hidden_size, batch_size = 128, 32
    encoder, decoder = EncoderRNN(input_lang.n_words, hidden_size), AttnDecoderRNN(hidden_size, output_lang.n_words)
    eo, do = torch.optim.Adam(encoder.parameters(), lr=0.001), torch.optim.Adam(decoder.parameters(), lr=0.001)
    criterion = nn.NLLLoss()
    start, seen, epoch = time.time(), 0, 0
    while time.time() - start < seconds:
        epoch += 1
        perm = torch.randperm(n)
        for lo in range(0, n, batch_size):
            if time.time() - start >= seconds:
                break
            idx = perm[lo:lo + batch_size]
            inp, tgt = input_ids[idx], target_ids[idx]
            eo.zero_grad(); do.zero_grad()
            enc_out, enc_hidden = encoder(inp)
            dec_out, _ = decoder(enc_out, enc_hidden, tgt)
            loss = criterion(dec_out.view(-1, dec_out.size(-1)), tgt.view(-1))
            loss.backward()
            eo.step(); do.step()
            seen += len(idx)
    torch_secs = time.time() - start
    encoder.eval(); decoder.eval()
    hyp = os.path.join(args.out, "torch.fra")
    t1 = time.time()
    with torch.no_grad(), open(hyp, "w") as f:
        for e, _ in test:
            x = torch.tensor([(ids(input_lang, e)[:MAX_LENGTH - 1] + [EOS_token])])
            enc_out, enc_hidden = encoder(x)
            dec_out, _ = decoder(enc_out, enc_hidden)
            words = []
            for i in dec_out.argmax(-1)[0].tolist():
                if i == EOS_token:
                    break
                words.append(output_lang.index2word[i])
            f.write(" ".join(words) + "\n")
    results["pytorch_tutorial"] = dict(score(hyp), train_seconds=torch_secs, sentences_per_s=seen / torch_secs,
                                       epochs=epoch, translate_seconds=time.time() - t1)
    print("pytorch tutorial:", json.dumps(results["pytorch_tutorial"]), flush=True)

print("\n| system | held-out BLEU | chrF | exact match | training sentences/s | training s |")
print("|---|---|---|---|---|---|")
for k, r in results.items():
    print(f"| {k} | {r['bleu']:.2f} | {r['chrf']:.2f} | {r['exact_match']:.3f} | {r['sentences_per_s']:.0f} | {r['train_seconds']:.0f} |")
json.dump(results, open(os.path.join(args.out, "results.json"), "w"), indent=1)
