#!/usr/bin/env python3
"""HF/PyTorch fine-tuning baseline for the `base` row of ernie-ft's strategy table (no adv, R-Drop, layer
decay or averaging): the same model, data and hyper-parameters as `ernie-ft train --task T`, so that the
FINAL dev accuracy per seed can be set beside ernie-ft's.

What matches `ernie-ft train` (crates/train/src/{config,trainer}.rs):
  - model: a directory with config.json, model.safetensors and tokenizer.json (or vocab.txt);
    --model, else $ERNIE_FT_MODEL, else ../shared/models/e5-small-zh. Pooler and classifier, when the
    checkpoint lacks them, are created with N(0, initializer_range=0.02) weights and zero biases (HF's init),
    drawn after torch.manual_seed(--head-seed) so every seed starts from the same head.
  - data: CLUE JSON lines under --data, else $ERNIE_FT_DATA, else ../shared/data: <task>/train.json (else
    train.partial.json), <task>/dev.json; labels in the order of <task>/labels.json when present (IFLYTEK,
    TNEWS), else of first appearance in the train file (AFQMC). AFQMC is a pair task (sentence1, sentence2).
  - inputs: the tokenizer's template, longest-first truncation to --max-len tokens special tokens included,
    batches padded to their longest row.
  - task defaults: IFLYTEK lr 5e-5, batch 32, hidden dropout 0.0; AFQMC lr 3e-5, batch 16, hidden dropout
    0.1; others lr 3e-5, batch 32, hidden dropout 0.1; all: 3 epochs, max length 128, warmup ratio 0.1,
    attention dropout from the model config.
  - optimisation: AdamW (betas 0.9/0.999, eps 1e-8, weight decay 0.01 except biases and LayerNorm; fused on
    CUDA), linear warmup over ceil(ratio * steps) then linear decay to 0 (HF get_linear_schedule_with_warmup),
    gradient clipping at global norm 1.0, the last partial batch of an epoch kept.
  - evaluation on dev at the end of every epoch (and after the last step); the reported figure is the FINAL
    model's dev accuracy; the best during training is a separate field.
What differs: the data order (torch's permutation, seeded with the run seed) and the dropout masks; on CUDA
the forward runs under bf16 autocast with fp32 weights (--precision).

Output: one JSON line per seed, then a summary line {"summary": true, "accuracy_mean": ..., ...}, on stdout
and in --out (a JSON file with all of them).
  python3 scripts/gpu/finetune_torch.py --task afqmc --seeds 1,2,3
  python3 scripts/gpu/finetune_torch.py --task iflytek --device cpu --train-limit 32 --dev-limit 32 --max-steps 2
A run longer than one sitting: --state-dir DIR (resumable: rerun the same command; Ctrl-C saves and stops).
"""
import argparse
import json
import math
import os
import signal
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))

PRESETS = {
    "iflytek": dict(text_a="sentence", text_b=None, label="label", labels_file="labels.json"),
    "tnews": dict(text_a="sentence", text_b=None, label="label", labels_file="labels.json"),
    "afqmc": dict(text_a="sentence1", text_b="sentence2", label="label", labels_file=None),
}
DEFAULTS = {
    "iflytek": dict(lr=5e-5, batch_size=32, hidden_dropout=0.0),
    "afqmc": dict(lr=3e-5, batch_size=16, hidden_dropout=0.1),
}
OTHER = dict(lr=3e-5, batch_size=32, hidden_dropout=0.1)


def resolve(flag, env, default_rel):
    if flag:
        return flag
    if os.environ.get(env):
        return os.environ[env]
    return os.path.join(REPO, "..", default_rel)


def read_jsonl(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as e:
                    sys.exit(f"error: {path}:{n}: malformed JSON: {e}")
    return out


def label_str(v):
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise ValueError(f"label must be a string or an integer, found {v!r}")
    return str(v)


def pick(task_dir, names):
    for n in names:
        p = os.path.join(task_dir, n)
        if os.path.isfile(p):
            if n == "train.partial.json":
                print(f"note: {os.path.join(task_dir, 'train.json')} not found; using {p}", file=sys.stderr)
            return p
    sys.exit(f"error: none of {', '.join(names)} found in {task_dir}")


class Tok:
    """tokenizer.json through the `tokenizers` library (what ernie-ft reads), else a WordPiece vocab.txt."""

    def __init__(self, model_dir, max_len):
        tj = os.path.join(model_dir, "tokenizer.json")
        if os.path.isfile(tj):
            from tokenizers import Tokenizer
            self.tok = Tokenizer.from_file(tj)
            self.tok.no_padding()
            self.tok.enable_truncation(max_length=max_len, strategy="longest_first")
            self.fast = None
        else:
            from transformers import BertTokenizerFast
            self.fast = BertTokenizerFast(vocab_file=os.path.join(model_dir, "vocab.txt"), do_lower_case=True)
            self.tok = None
        self.max_len = max_len

    def encode(self, a, b):
        """(ids, type_ids) lists for texts a and (optional) b."""
        if self.tok is not None:
            inputs = list(zip(a, b)) if b is not None else a
            encs = self.tok.encode_batch(inputs, add_special_tokens=True)
            return [e.ids for e in encs], [e.type_ids for e in encs]
        enc = self.fast(a, b, truncation="longest_first", max_length=self.max_len, add_special_tokens=True)
        return enc["input_ids"], enc.get("token_type_ids") or [[0] * len(x) for x in enc["input_ids"]]


# ernie-ft's --holdout split (crates/data/src/clue/dataset.rs `split_holdout`, seed HOLDOUT_SEED of
# crates/train/src/trainer.rs): the same examples are held out here.
HOLDOUT_SEED = 1234
MASK64 = (1 << 64) - 1


def splitmix_permutation(n, seed):
    """Fisher-Yates over 0..n driven by SplitMix64, as ernie-ft's `permutation` (bit for bit)."""
    state = seed

    def next_u64():
        nonlocal state
        state = (state + 0x9E3779B97F4A7C15) & MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    order = list(range(n))
    for i in range(n - 1, 0, -1):
        j = (next_u64() * (i + 1)) >> 64
        order[i], order[j] = order[j], order[i]
    return order


def split_holdout(rows, fraction, seed=HOLDOUT_SEED):
    """(train rows, held-out rows), both in file order: round(fraction * n) rows chosen by the seed."""
    n = len(rows)
    n_hold = math.floor(n * min(max(fraction, 0.0), 1.0) + 0.5)  # Rust's f64::round for positive values
    held = set(splitmix_permutation(n, seed)[:n_hold])
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def load_split(path, spec, labels, tok, limit, rows=None):
    rows = read_jsonl(path) if rows is None else rows
    if limit is not None:
        rows = rows[:limit]
    a = [r.get(spec["text_a"], "") for r in rows]
    b = [r.get(spec["text_b"], "") for r in rows] if spec["text_b"] else None
    index = {l: i for i, l in enumerate(labels)}
    y = []
    for n, r in enumerate(rows, 1):
        lab = label_str(r.get(spec["label"]))
        if lab not in index:
            sys.exit(f"error: {path}:{n}: label {lab!r} is not in the label set")
        y.append(index[lab])
    ids, types = tok.encode(a, b)
    return ids, types, y


def collate(torch, ids, types, y, idx, pad_id, device):
    L = max(len(ids[i]) for i in idx)
    n = len(idx)
    t_ids = torch.full((n, L), pad_id, dtype=torch.long)
    t_types = torch.zeros((n, L), dtype=torch.long)
    t_mask = torch.zeros((n, L), dtype=torch.long)
    for r, i in enumerate(idx):
        k = len(ids[i])
        t_ids[r, :k] = torch.tensor(ids[i])
        t_types[r, :k] = torch.tensor(types[i])
        t_mask[r, :k] = 1
    return (t_ids.to(device, non_blocking=True), t_types.to(device, non_blocking=True),
            t_mask.to(device, non_blocking=True), torch.tensor([y[i] for i in idx], device=device))


def macro_f1(pred, gold, classes):
    """Over the classes present in gold or predictions (sklearn's average="macro"; ernie-ft's metrics.rs)."""
    tp, fp, fn = [0] * classes, [0] * classes, [0] * classes
    for p, g in zip(pred, gold):
        if p == g:
            tp[p] += 1
        else:
            fp[p] += 1
            fn[g] += 1
    present = [c for c in range(classes) if tp[c] + fp[c] + fn[c] > 0]
    if not present:
        return 0.0
    return sum(2 * tp[c] / (2 * tp[c] + fp[c] + fn[c]) for c in present) / len(present)


def evaluate(torch, model, dev, pad_id, device, autocast, batch_size, classes):
    import torch.nn.functional as F
    ids, types, y = dev
    model.eval()
    preds, loss_sum = [], 0.0
    with torch.no_grad():
        for s in range(0, len(y), batch_size):
            idx = list(range(s, min(s + batch_size, len(y))))
            i, t, m, lab = collate(torch, ids, types, y, idx, pad_id, device)
            with autocast():
                logits = model(input_ids=i, token_type_ids=t, attention_mask=m).logits.float()
            loss_sum += float(F.cross_entropy(logits, lab, reduction="sum"))
            preds.extend(logits.argmax(-1).tolist())
    model.train()
    acc = sum(int(p == g) for p, g in zip(preds, y)) / max(len(y), 1)
    return dict(accuracy=acc, macro_f1=macro_f1(preds, y, classes), loss=loss_sum / max(len(y), 1), examples=len(y))


def run_seed(args, seed, spec, labels, train, dev, pad_id):
    import torch
    import torch.nn.functional as F
    from transformers import AutoConfig, AutoModelForSequenceClassification

    dev_name = args.device
    cuda = dev_name == "cuda"
    precision = args.precision or ("bf16" if cuda else "fp32")
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]

    def autocast():
        if amp is None:
            return torch.autocast(device_type=dev_name, enabled=False)
        return torch.autocast(device_type=dev_name, dtype=amp)

    cfg = AutoConfig.from_pretrained(args.model, num_labels=len(labels))
    cfg.hidden_dropout_prob = args.hidden_dropout
    if args.attention_dropout is not None:
        cfg.attention_probs_dropout_prob = args.attention_dropout
    if hasattr(cfg, "classifier_dropout"):
        cfg.classifier_dropout = None  # the dropout before the classifier is the hidden dropout, as in ernie-ft
    torch.manual_seed(args.head_seed)  # the head the checkpoint lacks: the same for every run seed
    model = AutoModelForSequenceClassification.from_pretrained(args.model, config=cfg, attn_implementation=args.attn,
                                                               dtype=torch.float32)
    model.to(dev_name).train()
    torch.manual_seed(seed)
    if cuda:
        torch.cuda.manual_seed_all(seed)
        torch.cuda.reset_peak_memory_stats()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if name.endswith(".bias") or "LayerNorm" in name or "layernorm" in name else decay).append(p)
    groups = [dict(params=decay, weight_decay=args.weight_decay), dict(params=no_decay, weight_decay=0.0)]
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, **({"fused": True} if cuda else {}))
    n = len(train[2])
    steps_per_epoch = math.ceil(n / args.batch_size)
    total = args.max_steps if args.max_steps is not None else steps_per_epoch * args.epochs
    warmup = math.ceil(total * args.warmup_ratio)

    def factor(step):  # ernie_optim::LinearSchedule::factor (HF get_linear_schedule_with_warmup)
        if step < warmup:
            return step / max(warmup, 1)
        return max(0.0, (total - step) / max(total - warmup, 1))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    fwd = torch.compile(model) if args.compile else model
    params = [p for p in model.parameters()]
    history, step, train_s, samples = [], 0, 0.0, 0
    epochs = args.epochs if args.max_steps is None else 10 ** 9
    last_loss = float("nan")
    start_epoch, start_pos, loss_sum, seen = 0, 0, 0.0, 0
    state_path = os.path.join(args.state_dir, f"seed{seed}.pt") if args.state_dir else None
    # What a saved state must agree with to be continued.
    settings = dict(task=args.task, seed=seed, head_seed=args.head_seed, lr=args.lr, batch_size=args.batch_size,
                    epochs=args.epochs, max_steps=args.max_steps, max_len=args.max_len, warmup_ratio=args.warmup_ratio,
                    weight_decay=args.weight_decay, max_grad_norm=args.max_grad_norm,
                    hidden_dropout=args.hidden_dropout, holdout=args.holdout, train_examples=n, precision=precision,
                    model=os.path.abspath(args.model))
    if state_path and os.path.isfile(state_path):
        st = torch.load(state_path, map_location=dev_name, weights_only=False)
        if st["settings"] != settings:
            diff = {k: (st["settings"].get(k), v) for k, v in settings.items() if st["settings"].get(k) != v}
            sys.exit(f"error: {state_path}: saved with other settings (saved, now): {diff}; remove it to start over")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        torch.set_rng_state(st["rng"])
        if cuda and st.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(st["cuda_rng"])
        (history, step, train_s, samples, last_loss) = (st["history"], st["step"], st["train_seconds"], st["samples"],
                                                        st["last_loss"])
        start_epoch, start_pos, loss_sum, seen = st["epoch"], st["position"], st["loss_sum"], st["seen"]
        print(f"seed {seed}: resuming from {state_path} (update {step} of {total})", file=sys.stderr, flush=True)

    def save_state(epoch, position, loss_sum, seen):
        """Everything the loop needs to continue bit for bit: weights, optimizer, schedule, RNG, data position."""
        st = dict(settings=settings, model=model.state_dict(), optimizer=opt.state_dict(),
                  scheduler=sched.state_dict(), rng=torch.get_rng_state(),
                  cuda_rng=torch.cuda.get_rng_state_all() if cuda else None, history=history, step=step,
                  train_seconds=train_s, samples=samples, last_loss=last_loss, epoch=epoch, position=position,
                  loss_sum=float(loss_sum), seen=seen)
        os.makedirs(args.state_dir, exist_ok=True)
        tmp = state_path + ".tmp"
        torch.save(st, tmp)
        os.replace(tmp, state_path)  # never a partial state file

    stop = []  # set by SIGINT/SIGTERM: finish the step, save, exit 130
    if state_path:
        def on_signal(signum, _frame):
            stop.append(signum)
            print(f"signal {signum}: stopping after this step", file=sys.stderr, flush=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
    updates_this_run = 0
    for epoch in range(start_epoch, epochs):
        if step >= total:
            break
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=g).tolist()
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        first = start_pos if epoch == start_epoch else 0
        if first == 0:
            loss_sum, seen = 0.0, 0
        for s in range(first, n, args.batch_size):
            if step >= total:
                break
            idx = order[s:s + args.batch_size]
            i, t, m, lab = collate(torch, *train, idx, pad_id, dev_name)
            with autocast():
                logits = fwd(input_ids=i, token_type_ids=t, attention_mask=m).logits.float()
            loss = F.cross_entropy(logits, lab)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            updates_this_run += 1
            samples += len(idx)
            loss_sum += loss.detach() * len(idx)
            seen += len(idx)
            more_in_epoch = s + args.batch_size < n and step < total
            halt = stop or (args.stop_after is not None and updates_this_run >= args.stop_after)
            if state_path and more_in_epoch and (halt or (args.save_every and step % args.save_every == 0)):
                if cuda:
                    torch.cuda.synchronize()
                train_s += time.perf_counter() - t0
                save_state(epoch, s + args.batch_size, loss_sum, seen)
                t0 = time.perf_counter()
                if halt:
                    print(f"seed {seed}: stopped after update {step}; state in {state_path} (rerun to continue)",
                          file=sys.stderr, flush=True)
                    sys.exit(130)
        if cuda:
            torch.cuda.synchronize()
        train_s += time.perf_counter() - t0
        last_loss = float(loss_sum) / max(seen, 1)
        m = evaluate(torch, model, dev, pad_id, dev_name, autocast, args.eval_batch_size, len(labels))
        history.append(dict(step=step, epoch=step / steps_per_epoch, dev=m))
        print(f"seed {seed} epoch {epoch + 1}: train loss {last_loss:.4f}, dev accuracy {m['accuracy']:.4f} "
              f"macro-F1 {m['macro_f1']:.4f} ({step} steps)", file=sys.stderr, flush=True)
        if state_path and step < total:
            save_state(epoch + 1, 0, 0.0, 0)
            if stop or (args.stop_after is not None and updates_this_run >= args.stop_after):
                print(f"seed {seed}: stopped after update {step}; state in {state_path} (rerun to continue)",
                      file=sys.stderr, flush=True)
                sys.exit(130)
    best = max(history, key=lambda h: h["dev"]["accuracy"]) if history else None
    final = history[-1]["dev"] if history else None
    return dict(
        engine="pytorch", task=args.task, row="base", seed=seed, head_seed=args.head_seed, lr=args.lr,
        batch_size=args.batch_size, epochs=args.epochs, max_len=args.max_len, warmup_ratio=args.warmup_ratio,
        weight_decay=args.weight_decay, max_grad_norm=args.max_grad_norm, hidden_dropout=args.hidden_dropout,
        attention_dropout=model.config.attention_probs_dropout_prob, precision=precision, compile=args.compile,
        device=torch.cuda.get_device_name() if cuda else f"cpu ({torch.get_num_threads()} threads)",
        torch=torch.__version__, train_examples=n, dev_examples=len(dev[2]), steps=step,
        final_dev_accuracy=final["accuracy"] if final else None, final_dev_macro_f1=final["macro_f1"] if final else None,
        best_dev_accuracy_during_training=best["dev"]["accuracy"] if best else None, history=history,
        train_loss_last_epoch=last_loss, train_seconds=train_s, seconds_per_step=train_s / max(step, 1),
        samples_per_second=samples / max(train_s, 1e-9),
        peak_memory_bytes=torch.cuda.max_memory_allocated() if cuda else None,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="iflytek")
    ap.add_argument("--model", help="model dir [$ERNIE_FT_MODEL, else ../shared/models/e5-small-zh]")
    ap.add_argument("--data", help="data dir holding <task>/ [$ERNIE_FT_DATA, else ../shared/data]")
    ap.add_argument("--train", help="training file [<data>/<task>/train.json, else train.partial.json]")
    ap.add_argument("--dev", help="dev file [<data>/<task>/dev.json]")
    ap.add_argument("--labels", help="label list, JSON lines [labels.json beside the train file for presets]")
    ap.add_argument("--text-a-key")
    ap.add_argument("--text-b-key")
    ap.add_argument("--label-key")
    ap.add_argument("--seeds", default="1,2,3", help="comma list of run seeds [%(default)s]")
    ap.add_argument("--head-seed", type=int, default=0)
    ap.add_argument("--device", choices=["cuda", "cpu"])
    ap.add_argument("--precision", choices=["bf16", "fp16", "fp32"], help="autocast dtype [bf16 on cuda, fp32 on cpu]")
    ap.add_argument("--attn", default="sdpa", help="attn_implementation [%(default)s]")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--lr", type=float)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--warmup-ratio", type=float, default=0.1)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    ap.add_argument("--hidden-dropout", type=float)
    ap.add_argument("--attention-dropout", type=float, help="[the model config's]")
    ap.add_argument("--holdout", type=float, help="score on this fraction of TRAIN held out (ernie-ft's --holdout "
                    "split, the same examples), not on dev")
    ap.add_argument("--train-limit", type=int)
    ap.add_argument("--dev-limit", type=int)
    ap.add_argument("--max-steps", type=int)
    ap.add_argument("--eval-batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--out", help="write every seed's result and the summary to this JSON file")
    ap.add_argument("--state-dir", help="keep a training state per seed here (seed<k>.pt, written atomically at "
                    "every epoch end, every --save-every updates and on SIGINT/SIGTERM) and continue from it when "
                    "it exists; a finished seed's result is kept there too (seed<k>.json) and not recomputed")
    ap.add_argument("--save-every", type=int, help="with --state-dir: also save the state every N updates")
    ap.add_argument("--stop-after", type=int, help="with --state-dir: save and stop (exit 130) after N updates of "
                    "this invocation, to split a long run")
    args = ap.parse_args()

    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda but torch.cuda.is_available() is False")
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    task = args.task.lower()
    spec = dict(PRESETS.get(task, dict(text_a="sentence", text_b=None, label="label", labels_file=None)))
    if args.text_a_key:
        spec["text_a"] = args.text_a_key
    if args.text_b_key:
        spec["text_b"] = args.text_b_key
    if args.label_key:
        spec["label"] = args.label_key
    d = DEFAULTS.get(task, OTHER)
    args.lr = args.lr if args.lr is not None else d["lr"]
    args.batch_size = args.batch_size or d["batch_size"]
    args.hidden_dropout = args.hidden_dropout if args.hidden_dropout is not None else d["hidden_dropout"]
    args.model = resolve(args.model, "ERNIE_FT_MODEL", os.path.join("shared", "models", "e5-small-zh"))
    data = resolve(args.data, "ERNIE_FT_DATA", os.path.join("shared", "data"))
    if not os.path.isfile(os.path.join(args.model, "config.json")):
        sys.exit(f"error: {args.model}: no config.json (give --model DIR or set ERNIE_FT_MODEL)")
    task_dir = os.path.join(data, task)
    train_file = args.train or pick(task_dir, ["train.json", "train.partial.json"])
    dev_file = args.dev or pick(task_dir, ["dev.json"])
    labels_file = args.labels
    if labels_file is None and spec["labels_file"]:
        p = os.path.join(os.path.dirname(train_file), spec["labels_file"])
        labels_file = p if os.path.isfile(p) else None
    train_rows = read_jsonl(train_file)
    if labels_file:
        labels = [label_str(r[spec["label"]]) for r in read_jsonl(labels_file)]
    else:  # first appearance in the whole train file (before --train-limit), as ernie-ft does
        labels, seen = [], set()
        for r in train_rows:
            lab = label_str(r.get(spec["label"]))
            if lab not in seen:
                seen.add(lab)
                labels.append(lab)
    del train_rows
    tok = Tok(args.model, args.max_len)
    if args.holdout:
        train_part, held_out = split_holdout(read_jsonl(train_file), args.holdout)
        train = load_split(train_file, spec, labels, tok, args.train_limit, rows=train_part)
        dev = load_split(train_file, spec, labels, tok, args.dev_limit, rows=held_out)
        dev_file = f"{train_file} (held-out {args.holdout:g})"
    else:
        train = load_split(train_file, spec, labels, tok, args.train_limit)
        dev = load_split(dev_file, spec, labels, tok, args.dev_limit)
    with open(os.path.join(args.model, "config.json")) as f:
        pad_id = json.load(f).get("pad_token_id") or 0
    print(f"{task}: {len(train[2])} train / {len(dev[2])} dev examples, {len(labels)} labels, lr {args.lr}, "
          f"batch {args.batch_size}, hidden dropout {args.hidden_dropout}, model {args.model}, device {args.device}",
          file=sys.stderr, flush=True)
    results = []
    if (args.save_every or args.stop_after) and not args.state_dir:
        sys.exit("error: --save-every and --stop-after need --state-dir")
    for seed in [int(s) for s in args.seeds.split(",")]:
        done = os.path.join(args.state_dir, f"seed{seed}.json") if args.state_dir else None
        if done and os.path.isfile(done):
            with open(done) as f:
                r = json.load(f)
            print(f"seed {seed}: finished earlier ({done})", file=sys.stderr, flush=True)
        else:
            r = run_seed(args, seed, spec, labels, train, dev, pad_id)
            if done:
                with open(done + ".tmp", "w") as f:
                    json.dump(r, f, indent=1)
                os.replace(done + ".tmp", done)
                state = os.path.join(args.state_dir, f"seed{seed}.pt")
                if os.path.isfile(state):
                    os.remove(state)
        results.append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "history"}), flush=True)
    accs = [r["final_dev_accuracy"] * 100 for r in results if r["final_dev_accuracy"] is not None]
    summary = dict(summary=True, engine="pytorch", task=task, row="base", seeds=[r["seed"] for r in results],
                   accuracies=accs, accuracy_mean=statistics.mean(accs) if accs else None,
                   accuracy_std=statistics.stdev(accs) if len(accs) > 1 else 0.0,
                   seconds_per_step_mean=statistics.mean(r["seconds_per_step"] for r in results),
                   train_file=train_file, dev_file=dev_file, model=args.model)
    print(json.dumps(summary), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(summary=summary, runs=results), f, indent=1)


if __name__ == "__main__":
    main()
