#!/usr/bin/env python3
"""Real-length prediction speed: `ernie-ft predict` against an equivalent PyTorch/HF loop, end to end.

Both read the same JSON-lines FILE with a checkpoint written by `ernie-ft train` (HF-loadable), tokenize at
the checkpoint's max length, group the lines the way `ernie-ft predict` does (windows of batch x 64 lines,
each window sorted shortest first, then cut into batches padded to their longest row), run the eval forward
to the logits, and write {"id", "label"} per line in input order. Both are timed as whole processes (start
to output written, model load included), one after the other, with the same thread count; the PyTorch
process also reports its time after loading (`loop_s`). The predicted labels of the two are compared.

Usage:
  scripts/bench_predict.py CKPT FILE [--batch-size 64] [--threads 2] [--rounds 1]
                           [--ernie-ft target/release/ernie-ft] [--python PYTHON]
Prints one JSON line per engine and round, then a summary. PYTHON needs torch and transformers (the venv
of scripts/bench_cpu_ratio.sh).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WINDOW_BATCHES = 64  # ernie_train::eval::WINDOW_BATCHES


def torch_predict(ckpt, path, out, batch_size, threads):
    """The PyTorch side, run in its own process (`--torch-worker`)."""
    t0 = time.perf_counter()
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(threads)
    meta = json.loads((Path(ckpt) / "ernie_ft.json").read_text())
    task, max_len = meta["task"], meta["max_len"]
    key_a, key_b = task["text_a_key"], task.get("text_b_key")
    tok = AutoTokenizer.from_pretrained(ckpt)
    model = AutoModelForSequenceClassification.from_pretrained(ckpt, dtype=torch.float32).eval()
    id2label = model.config.id2label
    t_loaded = time.perf_counter()
    rows = [json.loads(line) for line in open(path, encoding="utf-8-sig") if line.strip()]
    window = batch_size * WINDOW_BATCHES
    with open(out, "w", encoding="utf-8") as f, torch.no_grad():
        for w0 in range(0, len(rows), window):
            win = rows[w0 : w0 + window]
            a = [r[key_a] for r in win]
            b = [r[key_b] for r in win] if key_b else None
            enc = tok(a, b, truncation=True, max_length=max_len)
            order = sorted(range(len(win)), key=lambda i: len(enc["input_ids"][i]))
            labels = [None] * len(win)
            for s in range(0, len(order), batch_size):
                idx = order[s : s + batch_size]
                batch = tok.pad({k: [enc[k][i] for i in idx] for k in enc.keys()}, return_tensors="pt")
                logits = model(**batch).logits
                for i, c in zip(idx, logits.argmax(-1).tolist()):
                    labels[i] = id2label[c]
            for r, lab in zip(win, labels):
                f.write(json.dumps({"id": r.get("id"), "label": lab}, ensure_ascii=False) + "\n")
    t_end = time.perf_counter()
    return {"load_s": t_loaded - t0, "loop_s": t_end - t_loaded, "lines": len(rows)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ckpt", type=Path)
    ap.add_argument("file", type=Path)
    ap.add_argument("--batch-size", type=int, default=64, help="as `ernie-ft predict --batch-size` (default 64)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1, help="rounds, alternating the engines (default 1)")
    ap.add_argument("--ernie-ft", default=None, help="[default: target/release/ernie-ft]")
    ap.add_argument("--python", default=sys.executable, help="Python with torch + transformers")
    ap.add_argument("--torch-worker", nargs=2, metavar=("OUT", "JSON"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_worker:
        r = torch_predict(str(a.ckpt), a.file, a.torch_worker[0], a.batch_size, a.threads)
        Path(a.torch_worker[1]).write_text(json.dumps(r))
        return 0
    if not (a.ckpt / "ernie_ft.json").is_file():
        print(f"{a.ckpt}/ernie_ft.json: not found (not an ernie-ft checkpoint)", file=sys.stderr)
        return 2
    binary = a.ernie_ft or str(Path(__file__).resolve().parent.parent / "target" / "release" / "ernie-ft")
    lines = sum(1 for line in open(a.file, encoding="utf-8-sig") if line.strip())
    results = {"ernie-ft": [], "PyTorch": []}
    with tempfile.TemporaryDirectory() as tmp:
        outs = {}
        for rnd in range(a.rounds):
            for engine in ("ernie-ft", "PyTorch"):
                out = os.path.join(tmp, f"{engine}.jsonl")
                info = os.path.join(tmp, "torch.json")
                if engine == "ernie-ft":
                    cmd = [binary, "predict", "--model", str(a.ckpt), "--test", str(a.file), "--output", out,
                           "--batch-size", str(a.batch_size), "--threads", str(a.threads)]
                else:
                    cmd = [a.python, __file__, str(a.ckpt), str(a.file), "--batch-size", str(a.batch_size),
                           "--threads", str(a.threads), "--torch-worker", out, info]
                env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), RAYON_NUM_THREADS=str(a.threads))
                t = time.perf_counter()
                p = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                wall = time.perf_counter() - t
                if p.returncode != 0:
                    print(f"{engine} failed ({p.returncode}):\n{p.stderr}", file=sys.stderr)
                    return 1
                row = {"engine": engine, "round": rnd + 1, "file": str(a.file), "lines": lines,
                       "batch_size": a.batch_size, "threads": a.threads, "wall_s": round(wall, 3),
                       "lines_per_s": round(lines / wall, 2)}
                if engine == "PyTorch":
                    row.update(json.loads(Path(info).read_text()))
                    row["loop_lines_per_s"] = round(lines / row["loop_s"], 2)
                print(json.dumps(row), flush=True)
                results[engine].append(row)
                outs[engine] = [json.loads(line)["label"] for line in open(out, encoding="utf-8")]
        same = sum(x == y for x, y in zip(outs["ernie-ft"], outs["PyTorch"]))
    med = {e: sorted(r["lines_per_s"] for r in rs)[len(rs) // 2] for e, rs in results.items()}
    print(f"\n{a.file}: {lines} lines, batch {a.batch_size}, {a.threads} threads; end to end (median of "
          f"{a.rounds}): ernie-ft {med['ernie-ft']:.1f} lines/s, PyTorch {med['PyTorch']:.1f} lines/s, "
          f"ratio {med['ernie-ft'] / med['PyTorch']:.2f}; same label on {same} of {lines} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
