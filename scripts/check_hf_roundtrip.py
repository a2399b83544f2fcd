#!/usr/bin/env python3
"""Check that an ernie-ft checkpoint loads in HF transformers and computes the same logits.

Loads CKPT with AutoTokenizer.from_pretrained and AutoModelForSequenceClassification.from_pretrained,
computes the logits of the first N lines of a JSON-lines FILE in eval mode, runs
`ernie-ft predict --model CKPT --test <those lines> --output OUT --logits`, and compares the two.
Prints the max abs difference; exits 1 when it is above --tol (default 1e-4), 2 on a usage problem.

Usage:
  scripts/check_hf_roundtrip.py CKPT FILE [-n 32] [--text-a-key K] [--text-b-key K]
                                [--ernie-ft target/release/ernie-ft] [--tol 1e-4] [--threads 2]
The text keys and the max length default to the checkpoint's (ernie_ft.json); pairs are supported.
Needs torch and transformers (e.g. a venv with `pip install torch transformers`).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ckpt", type=Path, help="checkpoint directory written by ernie-ft train/average")
    ap.add_argument("file", type=Path, help="JSON-lines input (CLUE style)")
    ap.add_argument("-n", type=int, default=32, help="compare the first N lines (default 32)")
    ap.add_argument("--text-a-key", help="key of the (first) text [default: the checkpoint's task]")
    ap.add_argument("--text-b-key", help="key of the second text of a pair [default: the checkpoint's task]")
    ap.add_argument("--max-len", type=int, help="[default: the checkpoint's max_len]")
    ap.add_argument("--ernie-ft", default=None, help="the ernie-ft binary [default: target/release/ernie-ft]")
    ap.add_argument("--tol", type=float, default=1e-4, help="largest accepted abs difference (default 1e-4)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8, help="HF batch size (padded batches)")
    a = ap.parse_args()

    meta_path = a.ckpt / "ernie_ft.json"
    if not meta_path.is_file():
        print(f"{meta_path}: not found (not an ernie-ft checkpoint)", file=sys.stderr)
        return 2
    meta = json.loads(meta_path.read_text())
    task = meta["task"]
    key_a = a.text_a_key or task["text_a_key"]
    key_b = a.text_b_key if a.text_b_key is not None else task.get("text_b_key")
    max_len = a.max_len or meta["max_len"]
    root = Path(__file__).resolve().parent.parent
    binary = a.ernie_ft or str(root / "target" / "release" / "ernie-ft")

    rows = []
    with open(a.file, encoding="utf-8-sig") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
            if len(rows) == a.n:
                break
    if not rows:
        print(f"{a.file}: no JSON lines", file=sys.stderr)
        return 2
    texts_a = [r[key_a] for r in rows]
    texts_b = [r[key_b] for r in rows] if key_b else None

    # ernie-ft's logits, on exactly these lines.
    with tempfile.TemporaryDirectory() as tmp:
        test = Path(tmp) / "test.jsonl"
        # Under the checkpoint's keys (predict reads the texts the way the checkpoint's task says).
        lines = []
        for i in range(len(rows)):
            o = {task["text_a_key"]: texts_a[i]}
            if task.get("text_b_key"):
                o[task["text_b_key"]] = texts_b[i] if texts_b else ""
            lines.append(json.dumps(o, ensure_ascii=False) + "\n")
        test.write_text("".join(lines), encoding="utf-8")
        out = Path(tmp) / "pred.jsonl"
        cmd = [binary, "predict", "--model", str(a.ckpt), "--test", str(test), "--output", str(out), "--logits",
               "--threads", str(a.threads)]
        if a.max_len and a.max_len != meta["max_len"]:
            print("note: --max-len applies to HF only; ernie-ft predict uses the checkpoint's", file=sys.stderr)
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"ernie-ft predict failed ({r.returncode}):\n{r.stderr}", file=sys.stderr)
            return 2
        ours = [json.loads(l)["logits"] for l in out.read_text().splitlines() if l.strip()]

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(a.threads)
    tok = AutoTokenizer.from_pretrained(str(a.ckpt))
    model = AutoModelForSequenceClassification.from_pretrained(str(a.ckpt), dtype=torch.float32)
    model.eval()
    theirs = []
    with torch.no_grad():
        for i in range(0, len(rows), a.batch_size):
            sl = slice(i, i + a.batch_size)
            enc = tok(texts_a[sl], texts_b[sl] if texts_b else None, truncation="longest_first",
                      max_length=max_len, padding=True, return_tensors="pt")
            theirs.extend(model(**enc).logits.double().tolist())

    if len(ours) != len(theirs):
        print(f"ernie-ft gave {len(ours)} rows, HF {len(theirs)}", file=sys.stderr)
        return 1
    diff = max(abs(x - y) for o, t in zip(ours, theirs) for x, y in zip(o, t))
    argmax = lambda v: max(range(len(v)), key=v.__getitem__)
    agree = sum(argmax(o) == argmax(t) for o, t in zip(ours, theirs))
    print(f"{a.ckpt}: {len(rows)} examples of {a.file} ({type(tok).__name__}, {type(model).__name__}): "
          f"max abs logit diff {diff:.3e}, argmax agrees {agree}/{len(rows)}")
    if not diff <= a.tol:
        print(f"FAIL: above {a.tol:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
