"""Benchmark: seconds per training step of the backbone alone and with every loss head.

For each row a Module is bound for training as the trainer binds it (kvstore
``cfg.kvstore``, SGD with momentum and weight decay, the teacher centres given
row-normalised and fixed); forward + backward + update is timed step by step,
each step on a fresh random batch made outside the clock and closed by
``mx.nd.waitall()``: the median of --steps after --warmup.

Row ``backbone`` is the network with a trivial loss (the mean of the embedding).
The machine is shared, so a head row binds the backbone as well and alternates
timed steps between the two: its overhead is the median over the step pairs of
(head s/sample) / (backbone s/sample of the step beside it), minus one (the
triplet heads take a batch divisible by 3: 63 for 64); "backbone" is the median
of those backbone steps. Each row runs in a fresh process: "peak MiB" is that
process's peak resident memory after the head's warm-up, before the backbone is
bound beside it (MXNet and Python included; row ``idle`` is that floor).

    python bench/train_step.py                                  # y1, batch 64, 85,742 classes, all heads
    python bench/train_step.py --num-classes 10000 --heads arcface,margin_distillation
"""
import argparse
import json
import multiprocessing
import os
import resource
import time

import numpy as np

from facekd.atomic import atomic_path
from facekd.errors import FaceKDError, run_cli

BACKBONE = "backbone"
BACKBONE_LOSS = "arcface"  # any table: the backbone row only reads the network settings
IDLE = "idle"
# Overhead targets (fraction of the backbone step) from the performance issue.
TARGETS = {"margin_distillation": 0.18, "arcface": 0.40}
DEFAULT_TARGET = 0.50


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--network", default="y1")
    p.add_argument("--per-batch-size", type=int, default=64, help="per-device batch")
    p.add_argument("--num-classes", type=int, default=85742)
    p.add_argument("--heads", default="all", help="comma-separated loss names, or 'all'")
    p.add_argument("--steps", type=int, default=10, help="timed steps per row (median reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--lr", type=float, default=1e-4,
                   help="SGD learning rate (momentum and weight decay from the config)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="", help="also write the rows to this JSON file")
    return p.parse_args(argv)


def head_config(args, loss):
    from facekd.config import generate_config

    cfg = generate_config(args.network, "emore", BACKBONE_LOSS if loss == BACKBONE else loss)
    cfg.num_classes = args.num_classes
    cfg.teacher_dim = cfg.emb_size
    batch = args.per_batch_size
    if loss != BACKBONE:
        from facekd import losses

        if losses.get_loss(loss).iterator == "triplet":
            batch -= batch % 3
            if batch < 3:
                raise FaceKDError(f"--per-batch-size {args.per_batch_size}: the triplet heads need >= 3")
    cfg.per_batch_size = batch
    return cfg


def build_symbol(cfg, loss):
    import mxnet as mx

    from facekd import losses, symbols

    embedding = symbols.get_symbol(cfg)
    if loss == BACKBONE:
        return mx.sym.Group([mx.sym.BlockGrad(embedding),
                             mx.sym.MakeLoss(mx.sym.mean(embedding), name="trivial_loss")])
    return losses.build_head(embedding, mx.sym.Variable("softmax_label"), cfg)


def random_batch(rng, cfg, soft):
    """One DataBatch of random pixels 0..255 and random (hard or soft) labels."""
    import mxnet as mx

    b = cfg.per_batch_size
    h, w = cfg.image_shape[:2]
    data = rng.uniform(0, 255, size=(b, 3, h, w)).astype(np.float32)
    cls = rng.integers(0, cfg.num_classes, size=b).astype(np.float32)
    if soft:
        teacher = rng.standard_normal((b, cfg.teacher_dim)).astype(np.float32)
        label = np.concatenate([teacher, cls[:, None]], axis=1)
    else:
        label = cls
    return mx.io.DataBatch(data=[mx.nd.array(data)], label=[mx.nd.array(label)])


def bind_row(args, loss, rng):
    """(Module bound for training as the trainer binds it, config, soft labels?) of one row."""
    import mxnet as mx

    from facekd import losses, symbols
    from facekd.training import optimizer

    cfg = head_config(args, loss)
    spec = None if loss == BACKBONE else losses.get_loss(loss)
    soft = spec is not None and spec.label == "soft"
    b = cfg.per_batch_size
    fixed = [spec.teacher_centres] if spec is not None and spec.teacher_centres else []
    labels = [("softmax_label", (b, cfg.teacher_dim + 1) if soft else (b,))] if spec else None
    module = mx.mod.Module(build_symbol(cfg, loss), context=[mx.cpu()], data_names=["data"],
                           label_names=[n for n, _ in labels or []], fixed_param_names=fixed)
    module.bind(data_shapes=[("data", (b, 3) + tuple(cfg.image_shape[:2]))], label_shapes=labels,
                for_training=True)
    arg_params = {}
    if fixed:  # the trainer hands the teacher's centres over row-normalised, once
        centres = rng.standard_normal((cfg.num_classes, cfg.teacher_dim))
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        arg_params[fixed[0]] = mx.nd.array(centres.astype(np.float32))
    module.init_params(initializer=symbols.network_initializer(cfg), arg_params=arg_params,
                       allow_missing=True)
    optimizer.init_sgd(module, mx.kvstore.create(cfg["kvstore"]), 1, learning_rate=args.lr,
                       momentum=cfg["mom"], wd=cfg["wd"], rescale_grad=1.0)
    return module, cfg, soft


def timed_step(module, cfg, loss, soft, rng):
    """Seconds of forward + backward + update on a fresh random batch (made outside the clock)."""
    import mxnet as mx

    batch = random_batch(rng, cfg, soft)
    if loss == BACKBONE:
        batch.label = None
    mx.nd.waitall()
    start = time.perf_counter()
    module.forward_backward(batch)
    module.update()
    mx.nd.waitall()
    return time.perf_counter() - start


def measure_row(args, loss):
    """Bind, warm up and time one row; returns a dict (runs in its own process).

    A head row also binds the backbone row's module after its own warm-up (so its peak
    memory is the head's alone) and alternates timed steps between the two: the machine
    is shared, and only steps taken side by side compare fairly.
    """
    if loss == IDLE:
        return dict(row=IDLE, peak_mib=peak_mib())
    rng = np.random.default_rng(args.seed)
    module, cfg, soft = bind_row(args, loss, rng)
    for _ in range(args.warmup):
        timed_step(module, cfg, loss, soft, rng)
    peak = peak_mib()
    rows = [(module, cfg, loss, soft)]
    if loss != BACKBONE:
        base, base_cfg, _ = bind_row(args, BACKBONE, rng)
        for _ in range(args.warmup):
            timed_step(base, base_cfg, BACKBONE, False, rng)
        rows.append((base, base_cfg, BACKBONE, False))
    times = [[] for _ in rows]
    for _ in range(args.steps):
        for k, row in enumerate(rows):
            times[k].append(timed_step(*row, rng))
    finite = all(np.isfinite(o.asnumpy()).all() for o in module.get_outputs())
    out = dict(row=loss, batch=cfg.per_batch_size, seconds=float(np.median(times[0])),
               min=float(np.min(times[0])), max=float(np.max(times[0])), finite=bool(finite),
               peak_mib=peak)
    out["times"] = times[0]
    if len(rows) > 1:
        ratios = [(h / cfg.per_batch_size) / (b / rows[1][1].per_batch_size) for h, b in zip(*times)]
        out.update(backbone_seconds=float(np.median(times[1])), backbone_batch=rows[1][1].per_batch_size,
                   backbone_times=times[1], overhead=float(np.median(ratios)) - 1.0)
    return out


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _child(args, loss, conn):
    try:
        conn.send(("ok", measure_row(args, loss)))
    except BaseException as exc:  # reported by the parent as one line
        conn.send(("error", f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"))
    finally:
        conn.close()


def run_row(args, loss):
    """``measure_row`` in a fresh spawned process (own peak memory, no allocator carry-over)."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(args, loss, child))
    proc.start()
    child.close()
    try:
        status, value = parent.recv()
    except EOFError:
        status, value = "error", f"the benchmark process died (exit code {proc.join() or proc.exitcode})"
    proc.join()
    if status != "ok":
        raise FaceKDError(f"row {loss}: {value}")
    return value


def format_table(rows):
    lines = [f"{'row':<26}{'batch':>6}{'s/step':>8}{'min':>7}{'max':>7}{'samples/s':>10}"
             f"{'backbone':>9}{'overhead':>9}{'target':>7}{'':>5}{'peak MiB':>9}"]
    for r in rows:
        if r["row"] == IDLE:
            lines.append(f"{IDLE:<26}{'':>68}{r['peak_mib']:>9.0f}")
            continue
        base = frac = target = verdict = ""
        if "backbone_seconds" in r:
            value, limit = r["overhead"], TARGETS.get(r["row"], DEFAULT_TARGET)
            base, frac, target = f"{r['backbone_seconds']:.3f}", f"{100 * value:.1f}%", f"{100 * limit:.0f}%"
            verdict = "ok" if value <= limit else "OVER"
        flag = "" if r.get("finite", True) else "  non-finite outputs!"
        lines.append(f"{r['row']:<26}{r['batch']:>6}{r['seconds']:>8.3f}{r['min']:>7.3f}{r['max']:>7.3f}"
                     f"{r['batch'] / r['seconds']:>10.1f}{base:>9}{frac:>9}{target:>7}{verdict:>5}"
                     f"{r['peak_mib']:>9.0f}{flag}")
    return "\n".join(lines)


def main(argv=None):
    from tqdm import tqdm

    from facekd import losses

    args = parse_args(argv)
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")  # the spawned rows inherit it
    if args.per_batch_size < 1 or args.num_classes < 1 or args.steps < 1 or args.warmup < 0:
        raise FaceKDError("--per-batch-size, --num-classes and --steps must be >= 1, --warmup >= 0")
    names = losses.LOSSES.names() if args.heads == "all" else [
        h.strip() for h in args.heads.split(",") if h.strip()]
    unknown = [n for n in names if n not in losses.LOSSES]
    if unknown or not names:
        raise FaceKDError(f"--heads {args.heads!r}: unknown loss {', '.join(unknown) or '(none given)'}; "
                          f"valid: all, {', '.join(losses.LOSSES.names())}")
    rows_wanted = [IDLE, BACKBONE] + names
    rows = []
    for loss in tqdm(rows_wanted, desc="rows", unit="row"):
        rows.append(run_row(args, loss))
    print(f"network {args.network}, per-device batch {args.per_batch_size}, {args.num_classes} classes, "
          f"median of {args.steps} steps after {args.warmup} warm-ups, forward+backward+update")
    print(format_table(rows))
    if args.json:
        with atomic_path(args.json) as tmp, open(tmp, "w") as f:
            json.dump(dict(args=vars(args), rows=rows), f, indent=1)
    return 0


if __name__ == "__main__":
    run_cli(main)
