#!/usr/bin/env python3
"""Tiny random ERNIE 3.0 models in the three formats ernie-ft reads, with HF reference logits.

    /tmp/hf-venv/bin/python scripts/make_ernie_fixtures.py            # write tests/fixtures/ernie3/
    /tmp/hf-venv/bin/python scripts/make_ernie_fixtures.py --check target/release/ernie-ft

Needs torch, transformers and numpy (e.g. `pip install torch transformers`); CI does not: the fixtures
and their reference logits are committed.

For each ERNIE 3.0 size (base, medium, mini, micro, nano) the published configuration is kept key for key
(type_vocab_size 4, task_type_vocab_size 3 or 16, use_task_id, the dropouts, max_position_embeddings
present, layer_norm_eps 1e-5 in the HF config) with tiny widths (hidden 8-16, 1-2 layers, 32 positions, an
80-token vocabulary) so the whole set stays a few hundred KB. One set of random weights per size is
written three ways:

  hf/      config.json (as nghuyong/ernie-3.0-*-zh write it) + model.safetensors + vocab.txt
  torch/   config.json + pytorch_model.bin written by torch.save (zip; mini: the legacy non-zip format;
           base: one tensor saved as a non-contiguous view; medium: LayerNorm gamma/beta names and a
           `cls.predictions` head, as ERNIE-Pytorch's convert.py writes; micro: an int64 position_ids buffer)
  paddle/  model_state.pdparams written with numpy + pickle in paddle.save's layout (a dict of numpy arrays
           under PaddleNLP names, Linear weights [in, out], the `StructuredToParameterName@@` table;
           base: protocol 2 with numpy.core globals as numpy 1.x writes them, others protocol 3/4;
           micro: names without the `ernie.` prefix; nano: a `cls.predictions` head), PaddleNLP's config
           (base: the older model_config.json, flat with init_class; medium: the same for a fine-tuned
           classifier, the base model's arguments under init_args;
           mini/micro/nano: config.json), tokenizer_config.json with PaddleNLP's ErnieTokenizer, vocab.txt
           (medium: `token<TAB>id` lines)

and nano also as float16 / bfloat16 pytorch_model.bin and float16 pdparams (dtypes/). reference.json holds
the inputs (input ids, token type ids, attention mask, task type ids) and the logits of HF transformers'
ErnieForSequenceClassification in eval mode: with task type 0 (what ernie-ft feeds), with other task types,
and with layer_norm_eps 1e-12 (to show that eps matters on these weights).

--check BIN: `BIN convert` each format of each size and load the result in HF (model and tokenizer): the
logits must match the reference within 1e-5; and `BIN train` 2 steps from the PaddleNLP directory, whose
output must load in HF too.
"""

import argparse
import collections
import copy
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, ErnieConfig, ErnieForSequenceClassification

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "ernie3")

# The characters of crates/cli/tests/common (the synthetic task), so the CLI tests can train on these models.
CHARS = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经"
# ERNIE's order: [PAD] [CLS] [SEP] [MASK] first, [UNK] later.
VOCAB = ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "，", "。"] + list(CHARS[:20]) + ["[UNK]"] + list(CHARS[20:]) + [
    "a", "b", "e", "h", "l", "o", "hello", "##llo", "##a", "##b"]

# PaddleNLP's ERNIE_PRETRAINED_INIT_CONFIGURATION for ernie-3.0-{base,medium,mini,micro,nano}-zh, key for key.
PUBLISHED = {
    "base": {"attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 768,
             "initializer_range": 0.02, "max_position_embeddings": 2048, "num_attention_heads": 12, "num_hidden_layers": 12,
             "task_type_vocab_size": 3, "type_vocab_size": 4, "use_task_id": True, "vocab_size": 40000},
    "medium": {"attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 768,
               "intermediate_size": 3072, "initializer_range": 0.02, "max_position_embeddings": 2048, "num_attention_heads": 12,
               "num_hidden_layers": 6, "task_type_vocab_size": 16, "type_vocab_size": 4, "use_task_id": True, "vocab_size": 40000},
    "mini": {"attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 384,
             "intermediate_size": 1536, "initializer_range": 0.02, "max_position_embeddings": 2048, "num_attention_heads": 12,
             "num_hidden_layers": 6, "task_type_vocab_size": 16, "type_vocab_size": 4, "use_task_id": True, "vocab_size": 40000},
    "micro": {"attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 384,
              "intermediate_size": 1536, "initializer_range": 0.02, "max_position_embeddings": 2048, "num_attention_heads": 12,
              "num_hidden_layers": 4, "task_type_vocab_size": 16, "type_vocab_size": 4, "use_task_id": True, "vocab_size": 40000},
    "nano": {"attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 312,
             "intermediate_size": 1248, "initializer_range": 0.02, "max_position_embeddings": 2048, "num_attention_heads": 12,
             "num_hidden_layers": 4, "task_type_vocab_size": 16, "type_vocab_size": 4, "use_task_id": True, "vocab_size": 40000},
}

# Tiny widths (FFN 4 x hidden, as in every published size).
TINY = {
    "base": dict(hidden_size=16, num_attention_heads=4, num_hidden_layers=2),
    "medium": dict(hidden_size=16, num_attention_heads=4, num_hidden_layers=1),
    "mini": dict(hidden_size=8, num_attention_heads=2, num_hidden_layers=2),
    "micro": dict(hidden_size=8, num_attention_heads=2, num_hidden_layers=1),
    "nano": dict(hidden_size=12, num_attention_heads=3, num_hidden_layers=1),
}
NUM_LABELS = 3
MAX_POS = 32


def tiny_paddle_config(size):
    """The published PaddleNLP config with tiny widths (every published key kept)."""
    c = dict(PUBLISHED[size])
    c.update(TINY[size])
    c["intermediate_size"] = 4 * c["hidden_size"]
    c["max_position_embeddings"] = MAX_POS
    c["vocab_size"] = len(VOCAB)
    return c


def hf_config(size):
    """What ERNIE-Pytorch's convert.py writes (the published nghuyong/ernie-3.0-*-zh config.json), for a
    sequence classifier."""
    c = tiny_paddle_config(size)
    c["layer_norm_eps"] = 1e-05
    c["model_type"] = "ernie"
    c["architectures"] = ["ErnieForSequenceClassification"]
    c["num_labels"] = NUM_LABELS
    return c


def random_state(model, seed):
    """Weights with O(1) activations and logits (so 1e-5 comparisons mean something) and embeddings of
    std 0.01, like trained ERNIE tables, so that the embedding LayerNorm's input variance is small and
    its eps matters."""
    g = torch.Generator().manual_seed(seed)
    sd = collections.OrderedDict()
    for name, p in model.state_dict().items():
        if "LayerNorm.weight" in name:
            v = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
        elif p.dim() == 1:
            v = 0.1 * torch.randn(p.shape, generator=g)
        elif "embeddings" in name:
            v = 0.01 * torch.randn(p.shape, generator=g)
        else:
            v = torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5
        sd[name] = v.to(torch.float32).contiguous()
    return sd


def build_model(size, eps=None):
    cfg = hf_config(size)
    if eps is not None:
        cfg = dict(cfg, layer_norm_eps=eps)
    return ErnieForSequenceClassification(ErnieConfig(**cfg)).eval()


# HF name -> PaddleNLP name (inverse of ernie-ft's map; ERNIE-Pytorch convert.py's build_params_map).
def paddle_name(hf, prefix="ernie."):
    if hf.startswith("classifier."):
        return hf
    body = hf[len("ernie."):]
    body = body.replace("embeddings.LayerNorm", "embeddings.layer_norm")
    if body.startswith("encoder.layer."):
        _, _, n, rest = body.split(".", 3)
        for a, b in [("attention.self.query", "self_attn.q_proj"), ("attention.self.key", "self_attn.k_proj"),
                     ("attention.self.value", "self_attn.v_proj"), ("attention.output.dense", "self_attn.out_proj"),
                     ("attention.output.LayerNorm", "norm1"), ("intermediate.dense", "linear1"),
                     ("output.dense", "linear2"), ("output.LayerNorm", "norm2")]:
            if rest.startswith(a + "."):
                body = f"encoder.layers.{n}.{b}{rest[len(a):]}"
                break
        else:
            raise ValueError(hf)
    return prefix + body


def is_linear_weight(hf):
    return hf.endswith(".weight") and ("encoder.layer." in hf and "LayerNorm" not in hf or "pooler.dense" in hf or hf == "classifier.weight")


def pdparams_bytes(sd, size, protocol, prefix="ernie.", extra=None, dtype=np.float32):
    """paddle.save(model.state_dict()) layout: {name: ndarray} + StructuredToParameterName@@."""
    d = {}
    table = {}
    for i, (hf, t) in enumerate(sd.items()):
        a = t.numpy().astype(dtype)
        if is_linear_weight(hf):
            a = np.ascontiguousarray(a.T)  # Paddle Linear stores [in, out]
        name = paddle_name(hf, prefix)
        d[name] = a
        table[name] = f"param_{i}"
    for k, v in (extra or {}).items():
        d[k] = v
    d["StructuredToParameterName@@"] = table
    b = pickle.dumps(d, protocol=protocol)
    if protocol == 2:
        # numpy 1.x (and the Paddle 2.x era) names the reconstructor numpy.core.multiarray; numpy 2 writes
        # numpy._core. GLOBAL is newline-terminated text in protocol 2, so the longer name fits.
        b = b.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        assert b"numpy.core.multiarray\n_reconstruct" in b
    back = pickle.loads(b)
    assert all(np.array_equal(back[k], v) for k, v in d.items() if isinstance(v, np.ndarray))
    return b


def torch_bin(sd, path, legacy=False):
    if legacy:
        torch.save(sd, path, _use_new_zipfile_serialization=False)
    else:
        torch.save(sd, path)


def reference(model_f, size, model_eps12):
    cfg = hf_config(size)
    rng = np.random.default_rng(7)
    n = len(VOCAB)
    ids0 = [1] + list(rng.integers(4, n, 3)) + [2] + list(rng.integers(4, n, 2)) + [2]
    ids1 = [1] + list(rng.integers(4, n, 3)) + [2]
    seq = len(ids0)
    input_ids = [ids0, ids1 + [0] * (seq - len(ids1))]
    token_type_ids = [[0] * 5 + [1] * 3, [0] * seq]
    attention_mask = [[1] * seq, [1] * len(ids1) + [0] * (seq - len(ids1))]
    tvs = cfg["task_type_vocab_size"]
    task_alt = [[1] * seq, [tvs - 1] * seq]

    def run(m, task):
        with torch.no_grad():
            out = m(input_ids=torch.tensor(input_ids), token_type_ids=torch.tensor(token_type_ids),
                    attention_mask=torch.tensor(attention_mask), task_type_ids=torch.tensor(task))
        return out.logits.tolist()

    zeros = [[0] * seq, [0] * seq]
    return {
        "input_ids": [[int(x) for x in r] for r in input_ids],
        "token_type_ids": token_type_ids,
        "attention_mask": attention_mask,
        "task_type_ids": zeros,
        "logits": run(model_f, zeros),
        "task_type_ids_alt": task_alt,
        "logits_task_alt": run(model_f, task_alt),
        "logits_eps_1e-12": run(model_eps12, zeros),
        "note": "HF transformers ErnieForSequenceClassification, float32, eval mode; task type 0 unless said",
    }


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def write_vocab(d, tabbed=False):
    lines = [f"{t}\t{i}" if tabbed else t for i, t in enumerate(VOCAB)]
    with open(os.path.join(d, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def generate(out):
    from safetensors.torch import save_file
    if os.path.isdir(out):
        shutil.rmtree(out)
    for k, size in enumerate(PUBLISHED):
        base = os.path.join(out, size)
        hf_dir, torch_dir, paddle_dir = (os.path.join(base, x) for x in ("hf", "torch", "paddle"))
        for d in (hf_dir, torch_dir, paddle_dir):
            os.makedirs(d)
        model = build_model(size)
        sd = random_state(model, 1000 + k)
        model.load_state_dict(sd)
        eps12 = build_model(size, eps=1e-12)
        eps12.load_state_dict(sd)

        # HF: config.json as the published conversions write it, safetensors.
        write_json(os.path.join(hf_dir, "config.json"), hf_config(size))
        save_file(sd, os.path.join(hf_dir, "model.safetensors"))
        write_vocab(hf_dir)

        # PyTorch.
        write_json(os.path.join(torch_dir, "config.json"), hf_config(size))
        tsd = collections.OrderedDict(sd)
        if size == "base":
            w = "ernie.encoder.layer.0.attention.self.query.weight"
            tsd[w] = sd[w].t().contiguous().t()  # same values, column-major strides
            assert not tsd[w].is_contiguous()
        if size == "medium":
            tsd = collections.OrderedDict(
                (k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"), v) for k, v in sd.items())
            h = tiny_paddle_config(size)["hidden_size"]
            tsd["cls.predictions.transform.dense.weight"] = torch.randn(h, h)
            tsd["cls.predictions.bias"] = torch.zeros(len(VOCAB))
        if size == "micro":
            tsd["ernie.embeddings.position_ids"] = torch.arange(MAX_POS).unsqueeze(0)
        torch_bin(tsd, os.path.join(torch_dir, "pytorch_model.bin"), legacy=(size == "mini"))
        write_vocab(torch_dir)

        # PaddleNLP.
        pcfg = tiny_paddle_config(size)
        extra = {}
        if size == "nano":
            h = pcfg["hidden_size"]
            extra = {"cls.predictions.transform.weight": np.random.default_rng(1).standard_normal((h, h)).astype(np.float32),
                     "cls.predictions.decoder_bias": np.zeros(len(VOCAB), np.float32)}
        protocol = {"base": 2, "medium": 4, "mini": 3, "micro": 4, "nano": 4}[size]
        prefix = "" if size == "micro" else "ernie."
        with open(os.path.join(paddle_dir, "model_state.pdparams"), "wb") as f:
            f.write(pdparams_bytes(sd, size, protocol, prefix, extra))
        if size == "base":
            # Older PaddleNLP model_config.json of a base model: its init arguments and class.
            write_json(os.path.join(paddle_dir, "model_config.json"), dict(pcfg, init_class="ErnieModel"))
        elif size == "medium":
            # ... and of a task model: the base model's arguments under init_args.
            write_json(os.path.join(paddle_dir, "model_config.json"),
                       {"init_args": [dict(pcfg, init_class="ErnieModel")], "init_class": "ErnieForSequenceClassification", "num_classes": NUM_LABELS})
        else:
            # PaddleNLP >= 2.5 config.json (ErnieConfig fields; no layer_norm_eps, as PaddleNLP ignores it).
            newer = dict(pcfg, architectures=["ErnieForSequenceClassification"], model_type="ernie", pad_token_id=0, pool_act="tanh",
                         fuse=False, task_id=0, enable_recompute=False, use_cache=False, dtype="float32", paddlenlp_version="2.5.2",
                         num_classes=NUM_LABELS)
            write_json(os.path.join(paddle_dir, "config.json"), newer)
        write_json(os.path.join(paddle_dir, "tokenizer_config.json"),
                   {"do_lower_case": True, "tokenizer_class": "ErnieTokenizer", "unk_token": "[UNK]", "sep_token": "[SEP]",
                    "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]", "model_max_length": MAX_POS})
        write_vocab(paddle_dir, tabbed=(size == "medium"))

        write_json(os.path.join(base, "reference.json"), reference(model, size, eps12))

        if size == "nano":
            for name, dt in (("torch_f16", torch.float16), ("torch_bf16", torch.bfloat16)):
                d = os.path.join(out, "dtypes", name)
                os.makedirs(d)
                write_json(os.path.join(d, "config.json"), hf_config(size))
                torch_bin(collections.OrderedDict((k, v.to(dt)) for k, v in sd.items()), os.path.join(d, "pytorch_model.bin"))
            d = os.path.join(out, "dtypes", "paddle_f16")
            os.makedirs(d)
            with open(os.path.join(d, "model_state.pdparams"), "wb") as f:
                f.write(pdparams_bytes(sd, size, 4, dtype=np.float16))
            shutil.copy(os.path.join(paddle_dir, "config.json"), d)

        # The three files hold the same numbers: check with the readers Python has.
        back = torch.load(os.path.join(torch_dir, "pytorch_model.bin"), weights_only=True)
        for k, v in sd.items():
            kk = k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta") if size == "medium" else k
            assert torch.equal(back[kk], v), k
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(out) for f in fs)
    print(f"wrote {out}: {total} bytes")
    for size in list(PUBLISHED) + ["dtypes"]:
        s = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(os.path.join(out, size)) for f in fs)
        print(f"  {size}: {s} bytes")


def hf_logits(model_dir, ref, task_key="task_type_ids"):
    m = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        out = m(input_ids=torch.tensor(ref["input_ids"]), token_type_ids=torch.tensor(ref["token_type_ids"]),
                attention_mask=torch.tensor(ref["attention_mask"]), task_type_ids=torch.tensor(ref[task_key]))
    return np.array(out.logits.tolist())


def check(binary, out):
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    binary = os.path.abspath(binary)
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for size in PUBLISHED:
            ref = json.load(open(os.path.join(out, size, "reference.json")))
            for fmt in ("hf", "torch", "paddle"):
                dst = os.path.join(tmp, f"{size}-{fmt}")
                subprocess.run([binary, "convert", "--from", os.path.join(out, size, fmt), "--out", dst], check=True, stderr=subprocess.DEVNULL)
                got = hf_logits(dst, ref)
                diff = float(np.abs(got - np.array(ref["logits"])).max())
                diff_t = float(np.abs(hf_logits(dst, ref, "task_type_ids_alt") - np.array(ref["logits_task_alt"])).max())
                tok = AutoTokenizer.from_pretrained(dst)
                enc = tok("我是HELLO", "的")["input_ids"]
                want = [VOCAB.index(t) for t in ["[CLS]", "我", "是", "hello", "[SEP]", "的", "[SEP]"]]
                assert enc == want, (size, fmt, enc, want)
                print(f"{size}/{fmt}: convert -> HF logits max |diff| {diff:.2e} (task types: {diff_t:.2e}); tokenizer ok")
                worst = max(worst, diff, diff_t)
        # train 2 steps from the PaddleNLP directory; the checkpoint must load in HF.
        rows = []
        for i in range(32):
            c = CHARS[(i * 7) % len(CHARS)] + CHARS[(i * 3 + 1) % len(CHARS)] + CHARS[i % 3]
            rows.append(json.dumps({"sentence": c, "label": ["甲", "乙", "丙"][i % 3]}, ensure_ascii=False))
        train = os.path.join(tmp, "train.jsonl")
        open(train, "w", encoding="utf-8").write("\n".join(rows) + "\n")
        for size in ("medium", "nano"):
            run_dir = os.path.join(tmp, f"run-{size}")
            subprocess.run([binary, "train", "--model", os.path.join(out, size, "paddle"), "--task", "synthetic", "--text-a-key", "sentence",
                            "--label-key", "label", "--train", train, "--dev", train, "--epochs", "1", "--batch-size", "16", "--max-len", "16",
                            "--output-dir", run_dir, "--threads", "2"], check=True, stderr=subprocess.DEVNULL)
            m = AutoModelForSequenceClassification.from_pretrained(run_dir)
            assert m.config.num_labels == 3 and m.config.layer_norm_eps == 1e-5 and m.config.use_task_id
            tok = AutoTokenizer.from_pretrained(run_dir)
            assert tok("我")["input_ids"] == [1, VOCAB.index("我"), 2]
            print(f"train from {size}/paddle: the checkpoint loads in HF (model and tokenizer)")
    print(f"worst |diff| {worst:.2e}")
    if worst > 1e-5:
        sys.exit(f"FAIL: {worst:.2e} > 1e-5")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--check", metavar="ERNIE_FT_BINARY", help="check `convert` output (and a trained checkpoint) in HF instead of generating")
    a = ap.parse_args()
    torch.manual_seed(0)
    if a.check:
        check(a.check, a.out)
    else:
        generate(a.out)


if __name__ == "__main__":
    main()
