#!/usr/bin/env python3
"""PyTorch side of the GPU speed comparison with `ernie-ft bench` (see docs/gpu-runbook.md).

HF `BertForSequenceClassification` (e5-small shape) / `ErnieForSequenceClassification` (ernie-base shape,
task-type embeddings; Bert with type_vocab_size 4 where transformers has no Ernie) on RANDOM weights,
attn_implementation "sdpa", bf16 autocast with fp32 master weights, fused AdamW (lr 2e-5, weight decay 0.01,
none on biases and LayerNorm), gradient clipping at 1.0, dropout 0.1 (hidden and attention), random ids
with an all-ones mask: the same step as `ernie-ft bench --mode train`.

Strategies (one training step each):
  base   CE, one forward, one backward.
  rdrop  the batch concatenated with itself, one forward of 2B rows, CE over the 2B rows
         + alpha * 0.5 * (KL(p1||p2) + KL(p2||p1)) averaged over the B examples; one backward.
  adv    noise on the pre-softmax attention scores of every layer, through a custom attention function
         registered with transformers' AttentionInterface that computes the scores explicitly (SDPA's fused
         GPU kernels give no gradient for a float mask; base and rdrop keep SDPA):
         1. clean forward (noise 0), CE;
         2. probe forward with noise0 ~ N(0, sigma^2) on real keys (sigma 3.16e-3, as ernie-ft); the gradient of
            KL(p_clean.detach() || p_probe) with respect to the noise only (parameters' requires_grad off
            during the probe, so no weight gradient is computed, in eager or compiled graphs);
         3. delta = epsilon * g / ||g|| per example and layer (L2 over heads x queries x keys);
         4. adversarial forward with delta (detached); loss = CE + alpha * 0.5 * (KL(pc||pa) + KL(pa||pc)),
            one backward through both graphs.
         The probe and adversarial forwards reuse the clean forward's dropout masks (the RNG state is
         restored before each), as ernie-ft does; for that all three go through the same SDPA kernel (the
         clean one with a zero bias).
Baseline settings, stated in every output line: HF model with attn_implementation="sdpa" (adv: the explicit
attention above), bf16 autocast on CUDA with fp32 master weights, fused AdamW on CUDA (`fused_adamw`),
eager and torch.compile.
Modes: eager, compile (torch.compile(model, dynamic=False); the compilation happens in the warm-up steps and
is reported as compile_s, not timed).

Timing: CUDA events around each step, synchronised after each; `--warmup` steps first, then the median of
`--steps`. Peak memory: torch.cuda.max_memory_allocated since the configuration started (weights, grads,
AdamW state and activations). On the CPU (--device cpu, a smoke test): perf_counter and the process's peak
RSS. Model FLOPs per step: the formula of crates/cli/src/bench.rs (step_flops below).

One JSON line per configuration on stdout (and appended to --jsonl). Examples:
  python3 scripts/gpu/bench_speed_torch.py --device cuda --modes eager,compile            # the full matrix
  python3 scripts/gpu/bench_speed_torch.py --device cuda --shapes ernie-base --sizes 128x64 --strategies adv
  python3 scripts/gpu/bench_speed_torch.py --device cpu --tiny                             # smoke test
"""
import argparse
import gc
import json
import math
import os
import resource
import statistics
import sys
import time

SHAPES = {
    "e5-small": dict(model_type="bert", vocab_size=21356, hidden_size=384, num_hidden_layers=12, num_attention_heads=12,
                     intermediate_size=1536, max_position_embeddings=512, type_vocab_size=2),
    "ernie-base": dict(model_type="ernie", vocab_size=40000, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                       intermediate_size=3072, max_position_embeddings=512, type_vocab_size=4, use_task_id=True,
                       task_type_vocab_size=3),
    "tiny": dict(model_type="bert", vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=64, max_position_embeddings=512, type_vocab_size=2),
}
DEFAULT_SIZES = "128x32,128x64,512x8"  # SEQxBATCH
H100_BF16_DENSE_TFLOPS = 989.0
ADV_ATTN = "ernie_ft_adv_explicit"


def step_flops(shape, labels, batch, seq, strategy, mode):
    """Model FLOPs of one step: matrix products only (the formula of crates/cli/src/bench.rs)."""
    s = SHAPES[shape]
    L, H, I, C = s["num_hidden_layers"], s["hidden_size"], s["intermediate_size"], labels
    S = float(seq)

    def lin(rows):
        return 2.0 * rows * S * L * (4.0 * H * H + 2.0 * H * I) + 2.0 * rows * (H * H + H * C)

    def att(rows):
        return 4.0 * rows * L * S * S * H

    B = float(batch)
    if mode == "infer":
        return lin(B) + att(B)
    if strategy == "base":
        return 3.0 * (lin(B) + att(B))
    if strategy == "rdrop":
        return 3.0 * (lin(2 * B) + att(2 * B))
    if strategy == "adv":
        return 8.0 * lin(B) + 9.0 * att(B)
    raise ValueError(strategy)


def parse_sizes(text):
    out = []
    for item in text.split(","):
        seq, batch = item.lower().split("x")
        out.append((int(seq), int(batch)))
    return out


def rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def register_adv_attention():
    """Registers the attention function of the adv strategy: the pre-softmax scores computed explicitly
    (Q K^T * scale + mask + noise, softmax, dropout, times V) with a per-layer additive bias, the noise, passed
    down the model call as the keyword `adv_bias` (a list, one tensor per layer). Explicit rather than SDPA:
    the probe needs the gradient with respect to that bias, which SDPA's fused GPU kernels do not give for a
    float mask that requires grad (it failed there); explicit scores work on every device and precision."""
    import torch
    import torch.nn.functional as F
    from transformers import AttentionInterface

    def adv_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, adv_bias=None, **kwargs):
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        scores = torch.matmul(query, key.transpose(-1, -2)) * scale
        if adv_bias is not None:
            scores = scores + adv_bias[module._ernie_ft_layer].to(scores.dtype)
            if not torch.compiler.is_compiling():  # a call counter for the start-up check (eager only)
                module._ernie_ft_calls = getattr(module, "_ernie_ft_calls", 0) + 1
        if attention_mask is not None:
            if attention_mask.dtype == torch.bool:
                scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
            else:
                scores = scores + attention_mask.to(scores.dtype)
        probs = torch.softmax(scores.float(), dim=-1).to(value.dtype)
        probs = F.dropout(probs, p=dropout, training=module.training)
        out = torch.matmul(probs, value)
        return out.transpose(1, 2).contiguous(), None

    AttentionInterface.register(ADV_ATTN, adv_attention)


def build_model(shape, labels, attn, device, init_std=0.02):
    import torch
    import transformers
    s = dict(SHAPES[shape])
    model_type = s.pop("model_type")
    common = dict(num_labels=labels, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, classifier_dropout=None,
                  hidden_act="gelu", layer_norm_eps=1e-12, initializer_range=init_std)
    cls = None
    if model_type == "ernie":
        try:
            from transformers import ErnieConfig, ErnieForSequenceClassification
            cfg = ErnieConfig(**s, **common)
            cls = ErnieForSequenceClassification
        except ImportError:
            cls = None
    if cls is None:
        from transformers import BertConfig, BertForSequenceClassification
        s.pop("use_task_id", None)
        s.pop("task_type_vocab_size", None)
        cfg = BertConfig(**s, **common)
        cls = BertForSequenceClassification
    try:
        model = cls._from_config(cfg, attn_implementation=attn)
    except (TypeError, ValueError):
        cfg._attn_implementation = attn
        model = cls(cfg)
    model = model.to(device=device, dtype=torch.float32)
    # The adv attention function finds its layer's noise by this index.
    layers = model.base_model.encoder.layer
    for i, layer in enumerate(layers):
        layer.attention.self._ernie_ft_layer = i
    return model, cls.__name__


def make_optimizer(model, device):
    import torch
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if name.endswith(".bias") or "LayerNorm" in name or "layernorm" in name else decay).append(p)
    groups = [dict(params=decay, weight_decay=0.01), dict(params=no_decay, weight_decay=0.0)]
    fused = device == "cuda"
    try:
        return torch.optim.AdamW(groups, lr=2e-5, betas=(0.9, 0.999), eps=1e-8, fused=fused), fused
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=2e-5, betas=(0.9, 0.999), eps=1e-8), False


def sym_kl(la, lb):
    """0.5 * (KL(p||q) + KL(q||p)) per row, from log-probabilities."""
    return 0.5 * ((la.exp() - lb.exp()) * (la - lb)).sum(-1)


def adv_self_check(args, adv_parts, opt, params, layers, batch):
    """Checks the adv step itself and returns the report (ok: false on an implementation fault):
    - with epsilon 0 the adversarial forward reproduces the clean one bit for bit (same dropout masks);
    - each (layer, example) noise with a non-zero probe gradient has norm epsilon;
    - the loss is finite and every parameter gets a gradient.
    Diagnostics, not faults: `adv_max_logit_change` (how far the noise moved the logits) and
    `noise_grad_zero_fraction`, the share of (layer, example) pairs whose probe
    gradient is exactly 0 (then the noise is 0). With sigma 1e-5 that happens when the probe's effect on the
    logits is below the arithmetic's resolution: bf16 activations, or near-constant logits (HF's N(0, 0.02)
    random init; see --init-std)."""
    import torch
    eps = args.adv_epsilon
    loss, clean, adv, delta, kl = adv_parts()
    norms = torch.stack([d.flatten(1).norm(dim=1) for d in delta]).float()  # [layers, batch]
    nonzero = norms > 0
    args.adv_epsilon = 0.0
    try:
        _, clean0, adv0, _, _ = adv_parts()
    finally:
        args.adv_epsilon = eps
    zero_fraction = float(1.0 - nonzero.float().mean())
    checks = dict(
        zero_noise_reproduces_clean=bool(torch.equal(adv0, clean0)),
        noise_norm_is_epsilon=bool(torch.allclose(norms[nonzero], torch.full_like(norms[nonzero], eps), rtol=1e-2)),
        loss_finite=bool(torch.isfinite(loss)),
    )
    loss.backward()
    checks["all_params_get_grads"] = all(p.grad is not None for p in params)
    opt.zero_grad(set_to_none=True)
    ok = all(checks.values())
    if zero_fraction > 0:
        print(f"warning: adv probe gradient exactly 0 for {zero_fraction:.0%} of (layer, example) pairs "
              f"(sigma {args.adv_sigma}, precision {args.precision or 'default'}): no noise there", file=sys.stderr)
    return dict(self_check="adv", ok=ok, layers=layers, batch=batch, adv_sigma=args.adv_sigma,
                adv_epsilon=eps, probe_kl=float(kl.detach()), noise_grad_zero_fraction=zero_fraction,
                adv_max_logit_change=float((adv - clean).detach().abs().max()), **checks)


def one_config(args, shape, seq, batch, strategy, torch_mode):
    import torch
    import torch.nn.functional as F
    import transformers

    dev = args.device
    cuda = dev == "cuda"
    if cuda:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    if torch_mode == "compile":
        torch._dynamo.reset()
    precision = args.precision or ("bf16" if cuda else "fp32")
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    attn = ADV_ATTN if strategy == "adv" else args.attn
    model, model_class = build_model(shape, args.labels, attn, dev, args.init_std)
    train = args.mode == "train"
    model.train(train)
    cfg = model.config
    H, L = cfg.num_attention_heads, cfg.num_hidden_layers
    g = torch.Generator(device="cpu").manual_seed(args.seed)
    ids = torch.randint(0, cfg.vocab_size, (batch, seq), generator=g).to(dev)
    mask = torch.ones(batch, seq, dtype=torch.long, device=dev)
    tt = torch.zeros(batch, seq, dtype=torch.long, device=dev)
    labels = torch.randint(0, args.labels, (batch,), generator=g).to(dev)
    params = [p for p in model.parameters()]
    opt, fused = make_optimizer(model, dev) if train else (None, False)
    fwd = torch.compile(model, dynamic=False) if torch_mode == "compile" else model

    def autocast():
        if amp_dtype is None:
            return torch.autocast(device_type=dev, enabled=False)
        return torch.autocast(device_type=dev, dtype=amp_dtype)

    def logits_of(i, m, t, **kw):
        with autocast():
            return fwd(input_ids=i, attention_mask=m, token_type_ids=t, **kw).logits.float()

    def get_rng():
        return torch.cuda.get_rng_state() if cuda else torch.get_rng_state()

    def set_rng(state):
        (torch.cuda.set_rng_state if cuda else torch.set_rng_state)(state)

    def update(loss):
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    zero_bias = None
    if strategy == "adv":
        bias_dtype = amp_dtype or torch.float32
        zero_bias = [torch.zeros(batch, H, seq, seq, dtype=bias_dtype, device=dev)] * L
        key_mask = mask[:, None, None, :].float()

    state = {}

    def step_base():
        loss = F.cross_entropy(logits_of(ids, mask, tt), labels)
        update(loss)
        return loss.detach()

    def step_rdrop():
        logits = logits_of(torch.cat([ids, ids]), torch.cat([mask, mask]), torch.cat([tt, tt]))
        ce = F.cross_entropy(logits, torch.cat([labels, labels]))
        lp = logits.log_softmax(-1)
        loss = ce + args.rdrop_alpha * sym_kl(lp[:batch], lp[batch:]).mean()
        update(loss)
        return loss.detach()

    def adv_parts():
        rng = get_rng()
        clean = logits_of(ids, mask, tt, adv_bias=zero_bias)
        ce = F.cross_entropy(clean, labels)
        noise0 = [(torch.randn(batch, H, seq, seq, device=dev) * args.adv_sigma * key_mask).requires_grad_()
                  for _ in range(L)]
        for p in params:
            p.requires_grad_(False)
        try:
            set_rng(rng)
            probe = logits_of(ids, mask, tt, adv_bias=noise0)
            lc = clean.detach().log_softmax(-1)
            kl = (lc.exp() * (lc - probe.log_softmax(-1))).sum(-1).mean()
            grads = torch.autograd.grad(kl, noise0)
        finally:
            for p in params:
                p.requires_grad_(True)
        delta = []
        for gr in grads:
            n = gr.flatten(1).norm(dim=1)
            scale = torch.where(n > 0, args.adv_epsilon / n.clamp_min(1e-30), torch.zeros_like(n))
            delta.append((gr * scale.view(-1, 1, 1, 1)).detach())
        del grads, noise0
        set_rng(rng)
        adv = logits_of(ids, mask, tt, adv_bias=delta)
        loss = ce + args.adv_alpha * sym_kl(clean.log_softmax(-1), adv.log_softmax(-1)).mean()
        return loss, clean, adv, delta, kl

    def step_adv():
        loss = adv_parts()[0]
        update(loss)
        return loss.detach()

    def step_infer():
        with torch.no_grad():
            return logits_of(ids, mask, tt)[0, 0]

    step = step_infer if not train else {"base": step_base, "rdrop": step_rdrop, "adv": step_adv}[strategy]

    if strategy == "adv" and train:
        # Check once, eagerly, that the noise reaches every layer's attention (a transformers version whose
        # attention ignores the registered function would silently measure something else).
        for layer in model.base_model.encoder.layer:
            layer.attention.self._ernie_ft_calls = 0
        with torch.no_grad(), autocast():
            model(input_ids=ids, attention_mask=mask, token_type_ids=tt, adv_bias=zero_bias)
        calls = [layer.attention.self._ernie_ft_calls for layer in model.base_model.encoder.layer]
        if calls != [1] * L:
            raise RuntimeError(f"the adv attention function was not called once per layer ({calls}): this transformers "
                               f"version ({transformers.__version__}) does not route attention through AttentionInterface")

    if args.self_check and strategy == "adv" and train:
        return adv_self_check(args, adv_parts, opt, params, L, batch)

    if cuda:
        torch.cuda.synchronize()
    setup_s = time.perf_counter() - t0

    def timed():
        if cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            out = step()
            b.record()
            b.synchronize()
            return a.elapsed_time(b) / 1e3, out
        t = time.perf_counter()
        out = step()
        return time.perf_counter() - t, out

    warm = [timed()[0] for _ in range(args.warmup)]
    times, last = [], None
    for _ in range(args.steps):
        t, last = timed()
        times.append(t)
    med = statistics.median(times)
    flops = step_flops(shape, args.labels, batch, seq, strategy, args.mode)
    peak_tflops = args.peak_tflops if args.peak_tflops is not None else (H100_BF16_DENSE_TFLOPS if cuda else None)
    achieved = flops / med / 1e12
    s = SHAPES[shape]
    return dict(
        engine="pytorch", torch_mode=torch_mode,
        device=torch.cuda.get_device_name() if cuda else f"cpu ({torch.get_num_threads()} threads)",
        device_kind=dev, precision=precision, torch=torch.__version__, transformers=transformers.__version__,
        model_class=model_class, attn=attn, fused_adamw=fused,
        shape=shape, layers=s["num_hidden_layers"], hidden=s["hidden_size"], heads=s["num_attention_heads"],
        ffn=s["intermediate_size"], vocab=s["vocab_size"], labels=args.labels,
        parameters=sum(p.numel() for p in params),
        batch=batch, seq=seq, strategy=strategy, mode=args.mode, warmup=args.warmup, steps=args.steps,
        setup_s=setup_s, compile_s=sum(warm) if torch_mode == "compile" else None, warmup_s=warm, step_s=times,
        median_step_s=med, min_step_s=min(times), samples_per_s=batch / med, tokens_per_s=batch * seq / med,
        peak_memory_bytes=torch.cuda.max_memory_allocated() if cuda else rss_bytes(),
        peak_memory_reserved_bytes=torch.cuda.max_memory_reserved() if cuda else None,
        peak_memory_source="cuda_max_memory_allocated" if cuda else "host_rss",
        flops_per_step=flops, achieved_tflops=achieved, peak_tflops=peak_tflops,
        mfu=achieved / peak_tflops if peak_tflops else None,
        last_loss=float(last) if last is not None else None,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--shapes", default="e5-small,ernie-base", help="comma list of " + ", ".join(SHAPES))
    ap.add_argument("--shape", help="one shape (same as --shapes X)")
    ap.add_argument("--sizes", default=DEFAULT_SIZES, help="comma list of SEQxBATCH [%(default)s]")
    ap.add_argument("--seq", type=int, help="with --batch: one size instead of --sizes")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--strategies", default="base,adv,rdrop")
    ap.add_argument("--strategy", help="one strategy (same as --strategies X)")
    ap.add_argument("--modes", default="eager,compile", help="torch modes: eager, compile")
    ap.add_argument("--mode", default="train", choices=["train", "infer"])
    ap.add_argument("--tiny", action="store_true", help="smoke test: shape tiny, size 16x4, 1 warm-up + 2 steps")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--labels", type=int, default=2)
    ap.add_argument("--precision", choices=["bf16", "fp16", "fp32"], help="autocast dtype [bf16 on cuda, fp32 on cpu]")
    ap.add_argument("--attn", default="sdpa", help="attn_implementation of base and rdrop [%(default)s]")
    ap.add_argument("--peak-tflops", type=float, help="peak dense TFLOP/s for MFU [989 on cuda]")
    ap.add_argument("--adv-epsilon", type=float, default=1.0)
    ap.add_argument("--adv-alpha", type=float, default=1.0)
    ap.add_argument("--adv-sigma", type=float, default=10 ** -2.5,
                    help="std of the probe noise [3.16e-3: N(0, 1e-5) read as variance, ernie-ft's --adv-init-sigma]")
    ap.add_argument("--rdrop-alpha", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init-std", type=float, default=0.02, help="std of the random weights (HF's initializer_range)")
    ap.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="skip the configurations left once this many seconds have passed (reported as skipped)")
    ap.add_argument("--jsonl", help="also append each JSON line to this file")
    ap.add_argument("--self-check", action="store_true",
                    help="instead of timing adv, check its step (noise norms, mask reuse, gradients); exit 1 on failure")
    args = ap.parse_args()
    if args.tiny:
        args.shapes, args.sizes = "tiny", "16x4"
        args.warmup, args.steps = min(args.warmup, 1), min(args.steps, 2)
    if args.shape:
        args.shapes = args.shape
    if args.strategy:
        args.strategies = args.strategy
    if (args.seq is None) != (args.batch is None):
        ap.error("--seq and --batch go together")
    sizes = [(args.seq, args.batch)] if args.seq else parse_sizes(args.sizes)
    shapes = args.shapes.split(",")
    for s in shapes:
        if s not in SHAPES:
            ap.error(f"unknown shape {s} (one of {', '.join(SHAPES)})")
    strategies = args.strategies.split(",")
    modes = args.modes.split(",")

    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda but torch.cuda.is_available() is False")
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if "adv" in strategies:
        register_adv_attention()
    try:
        import torch._dynamo
        for knob in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit", "accumulated_recompile_limit"):
            if hasattr(torch._dynamo.config, knob):
                setattr(torch._dynamo.config, knob, max(getattr(torch._dynamo.config, knob), 64))
    except Exception:  # noqa: BLE001 - compile knobs are best effort
        pass

    start = time.perf_counter()
    failures = 0
    for torch_mode in modes:
        for shape in shapes:
            for seq, batch in sizes:
                for strategy in strategies:
                    key = dict(engine="pytorch", torch_mode=torch_mode, shape=shape, seq=seq, batch=batch,
                               strategy=strategy, mode=args.mode, device_kind=args.device)
                    if args.budget_s is not None and time.perf_counter() - start > args.budget_s:
                        r = dict(key, error=f"skipped: --budget-s {args.budget_s} spent")
                    else:
                        t = time.perf_counter()
                        try:
                            r = one_config(args, shape, seq, batch, strategy, torch_mode)
                        except Exception as e:  # noqa: BLE001 - one failed configuration must not stop the matrix
                            failures += 1
                            r = dict(key, error=f"{type(e).__name__}: {e}"[:2000])
                        r["wall_s"] = time.perf_counter() - t
                        if r.get("self_check") and not r["ok"]:
                            failures += 1
                    line = json.dumps(r)
                    print(line, flush=True)
                    if args.jsonl:
                        with open(args.jsonl, "a") as f:
                            f.write(line + "\n")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
