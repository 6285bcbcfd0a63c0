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

The margin heads normalise their trainable centres with ``facekd_unit_rows`` (``facekd.native``,
built on first use) when it loads, as the trainer does on CPU; ``--no-native`` times the
stock-operator graph instead.

Partial FC (``--sample-ratio r``): every head that can sample its class centres gets a
second row ``<head> r=<r>`` beside its full one, bound and stepped as the trainer does
it (the sample and the remapped labels are drawn inside the clock, from the step's
labels); ``--scale-classes N`` adds the row ``arcface r=<r> C=<N>``, the same head at N
classes, and lines comparing its step with the arcface rows at --num-classes (the full
head and the same r).

    python bench/train_step.py                                  # y1, batch 64, 85,742 classes, all heads
    python bench/train_step.py --num-classes 10000 --heads arcface,margin_distillation
    python bench/train_step.py --heads arcface,margin_distillation --sample-ratio 0.1 --scale-classes 1000000
"""
import argparse
import json
import multiprocessing
import os
import resource
import time
from dataclasses import dataclass

import numpy as np

from facekd.atomic import atomic_path
from facekd.errors import FaceKDError, run_cli

BACKBONE = "backbone"
BACKBONE_LOSS = "arcface"  # any table: the backbone row only reads the network settings
IDLE = "idle"
# Overhead targets (fraction of the backbone step) from the performance issues.
TARGETS = {"margin_distillation": 0.18, "arcface": 0.40}
SAMPLED_TARGETS = {"margin_distillation": 0.08, "arcface": 0.08}  # Partial FC at r = 0.1
DEFAULT_TARGET = 0.50
SCALE_HEAD = "arcface"
SCALE_TARGET = 1.3  # the scale row's step against the arcface rows (full and sampled) at --num-classes


@dataclass(frozen=True)
class Row:
    """One row of the table: a loss head (or backbone / idle), its sampling ratio and class count."""
    loss: str
    ratio: float = 1.0
    num_classes: int = 0  # 0: --num-classes
    scale: bool = False

    @property
    def name(self):
        if self.loss in (IDLE, BACKBONE) or self.ratio == 1.0:
            return self.loss
        return f"{self.loss} r={self.ratio:g}" + (f" C={self.num_classes}" if self.scale else "")

    def target(self):
        if self.scale:
            return None
        return (SAMPLED_TARGETS if self.ratio < 1.0 else TARGETS).get(self.loss, DEFAULT_TARGET)


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
    p.add_argument("--no-native", dest="native", action="store_false",
                   help="normalise the class centres with stock MXNet operators, not facekd.native's")
    p.add_argument("--sample-ratio", type=float, default=1.0,
                   help="Partial FC: also a row at this ratio beside every head that samples its centres")
    p.add_argument("--scale-classes", type=int, default=0,
                   help=f"also the {SCALE_HEAD} row at --sample-ratio with this many classes (e.g. 1000000)")
    p.add_argument("--json", default="", help="also write the rows to this JSON file")
    return p.parse_args(argv)


def head_config(args, row):
    import mxnet as mx

    from facekd import native
    from facekd.config import generate_config
    from facekd.losses.margin import NATIVE

    loss = row.loss
    cfg = generate_config(args.network, "emore", BACKBONE_LOSS if loss == BACKBONE else loss)
    cfg.num_classes = row.num_classes or args.num_classes
    cfg.sample_ratio = row.ratio
    cfg.teacher_dim = cfg.emb_size
    batch = args.per_batch_size
    if loss != BACKBONE:
        from facekd import losses

        if losses.get_loss(loss).iterator == "triplet":
            batch -= batch % 3
            if batch < 3:
                raise FaceKDError(f"--per-batch-size {args.per_batch_size}: the triplet heads need >= 3")
    cfg.per_batch_size = batch
    cfg[NATIVE] = args.native and native.unit_rows_available([mx.cpu()])
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


def bind_row(args, row, rng):
    """(Module bound for training as the trainer binds it, config, soft labels?, class sampler) of one row."""
    import mxnet as mx

    from facekd import losses, symbols
    from facekd.training import optimizer
    from facekd.training.partial_fc import AllClasses, class_sampler

    loss = row.loss
    cfg = head_config(args, row)
    spec = None if loss == BACKBONE else losses.get_loss(loss)
    soft = spec is not None and spec.label == "soft"
    b = cfg.per_batch_size
    kv = mx.kvstore.create(cfg["kvstore"])
    classes = AllClasses() if spec is None else class_sampler(cfg, spec, 1, kv, args.seed)
    fixed = [spec.teacher_centres] if spec is not None and spec.teacher_centres else []
    labels = [("softmax_label", (b, cfg.teacher_dim + 1) if soft else (b,))] if spec else None
    module = mx.mod.Module(build_symbol(cfg, loss), context=[mx.cpu()], data_names=classes.data_names(["data"]),
                           label_names=[n for n, _ in labels or []], fixed_param_names=fixed)
    module.bind(data_shapes=classes.data_shapes([mx.io.DataDesc("data", (b, 3) + tuple(cfg.image_shape[:2]))]),
                label_shapes=labels, for_training=True)
    arg_params = {}
    if fixed:  # the trainer hands the teacher's centres over row-normalised, once
        centres = rng.standard_normal((cfg.num_classes, cfg.teacher_dim))
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        arg_params[fixed[0]] = mx.nd.array(centres.astype(np.float32))
    module.init_params(initializer=symbols.network_initializer(cfg), arg_params=arg_params,
                       allow_missing=True)
    optimizer.init_sgd(module, classes.kvstore(kv, 1), 1, learning_rate=args.lr,
                       momentum=cfg["mom"], wd=cfg["wd"], rescale_grad=1.0)
    return module, cfg, soft, classes


class Stepper:
    """Timed steps of one bound row; counts its steps (the sampler draws per global step)."""

    def __init__(self, loss, module, cfg, soft, classes):
        self.module, self.cfg, self.loss, self.soft, self.classes = module, cfg, loss, soft, classes
        self.step = 0

    def __call__(self, rng):
        """Seconds of forward + backward + update on a fresh random batch (made outside the clock;
        a sampled head's sample is drawn inside it)."""
        import mxnet as mx

        batch = random_batch(rng, self.cfg, self.soft)
        if self.loss == BACKBONE:
            batch.label = None
        self.step += 1
        mx.nd.waitall()
        start = time.perf_counter()
        self.module.forward_backward(self.classes.prepare(batch, self.step))
        self.module.update()
        mx.nd.waitall()
        return time.perf_counter() - start


def measure_row(args, row):
    """Bind, warm up and time one row; returns a dict (runs in its own process).

    A head row also binds the backbone row's module after its own warm-up (so its peak
    memory is the head's alone) and alternates timed steps between the two: the machine
    is shared, and only steps taken side by side compare fairly.
    """
    if row.loss == IDLE:
        return dict(row=IDLE, peak_mib=peak_mib())
    rng = np.random.default_rng(args.seed)
    head = Stepper(row.loss, *bind_row(args, row, rng))
    for _ in range(args.warmup):
        head(rng)
    peak = peak_mib()
    steppers = [head]
    if row.loss != BACKBONE:
        base = Stepper(BACKBONE, *bind_row(args, Row(BACKBONE), rng))
        for _ in range(args.warmup):
            base(rng)
        steppers.append(base)
    times = [[] for _ in steppers]
    for _ in range(args.steps):
        for k, stepper in enumerate(steppers):
            times[k].append(stepper(rng))
    finite = all(np.isfinite(o.asnumpy()).all() for o in head.module.get_outputs())
    batch = head.cfg.per_batch_size
    out = dict(row=row.name, loss=row.loss, ratio=row.ratio, num_classes=int(head.cfg.num_classes),
               sampled_classes=head.classes.sample_size, target=row.target(), batch=batch,
               seconds=float(np.median(times[0])), min=float(np.min(times[0])), max=float(np.max(times[0])),
               finite=bool(finite), peak_mib=peak, native=bool(head.cfg.get("native_unit_rows")))
    out["times"] = times[0]
    if len(steppers) > 1:
        base_batch = steppers[1].cfg.per_batch_size
        ratios = [(h / batch) / (b / base_batch) for h, b in zip(*times)]
        out.update(backbone_seconds=float(np.median(times[1])), backbone_batch=base_batch,
                   backbone_times=times[1], overhead=float(np.median(ratios)) - 1.0)
    return out


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _child(args, row, conn):
    try:
        conn.send(("ok", measure_row(args, row)))
    except BaseException as exc:  # reported by the parent as one line
        conn.send(("error", f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"))
    finally:
        conn.close()


def run_row(args, row):
    """``measure_row`` in a fresh spawned process (own peak memory, no allocator carry-over)."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(args, row, child))
    proc.start()
    child.close()
    try:
        status, value = parent.recv()
    except EOFError:
        status, value = "error", f"the benchmark process died (exit code {proc.join() or proc.exitcode})"
    proc.join()
    if status != "ok":
        raise FaceKDError(f"row {row.name}: {value}")
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
            value, limit = r["overhead"], r.get("target")
            base, frac = f"{r['backbone_seconds']:.3f}", f"{100 * value:.1f}%"
            if limit is not None:
                target, verdict = f"{100 * limit:.0f}%", "ok" if value <= limit else "OVER"
        flag = "" if r.get("finite", True) else "  non-finite outputs!"
        lines.append(f"{r['row']:<26}{r['batch']:>6}{r['seconds']:>8.3f}{r['min']:>7.3f}{r['max']:>7.3f}"
                     f"{r['batch'] / r['seconds']:>10.1f}{base:>9}{frac:>9}{target:>7}{verdict:>5}"
                     f"{r['peak_mib']:>9.0f}{flag}")
    return "\n".join(lines)


def scale_lines(rows):
    """The scale row's step against the arcface rows of --num-classes (the full head, and the same ratio)."""
    lines = []
    for scale in (r for r in rows if r.get("scale")):
        for other in (r for r in rows if r.get("loss") == scale["loss"] and not r.get("scale")):
            factor = scale["seconds"] / other["seconds"]
            verdict = f" (target <= {SCALE_TARGET:g}x: {'met' if factor <= SCALE_TARGET else 'NOT met'})"
            lines.append(f"{scale['row']}: {scale['seconds']:.3f} s/step = {factor:.2f}x the {other['row']} step at "
                         f"{other['num_classes']} classes{verdict}; peak {scale['peak_mib'] / 1024:.1f} GiB")
    return lines


def rows_wanted(args, names):
    """[Row]: idle, backbone, each head (full, and sampled beside it), the scale row last."""
    from facekd import losses

    rows = [Row(IDLE), Row(BACKBONE)]
    for name in names:
        rows.append(Row(name))
        if args.sample_ratio < 1.0 and losses.get_loss(name).samples_centres:
            rows.append(Row(name, args.sample_ratio))
    if args.scale_classes:
        rows.append(Row(SCALE_HEAD, args.sample_ratio, args.scale_classes, scale=True))
    return rows


def main(argv=None):
    from tqdm import tqdm

    from facekd import losses

    args = parse_args(argv)
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")  # the spawned rows inherit it
    if args.per_batch_size < 1 or args.num_classes < 1 or args.steps < 1 or args.warmup < 0:
        raise FaceKDError("--per-batch-size, --num-classes and --steps must be >= 1, --warmup >= 0")
    if not 0 < args.sample_ratio <= 1 or args.scale_classes < 0:
        raise FaceKDError(f"--sample-ratio {args.sample_ratio:g} must be in (0, 1] and --scale-classes "
                          f"{args.scale_classes} >= 0 (0: no scale row)")
    names = losses.LOSSES.names() if args.heads == "all" else [
        h.strip() for h in args.heads.split(",") if h.strip()]
    unknown = [n for n in names if n not in losses.LOSSES]
    if unknown or not names:
        raise FaceKDError(f"--heads {args.heads!r}: unknown loss {', '.join(unknown) or '(none given)'}; "
                          f"valid: all, {', '.join(losses.LOSSES.names())}")
    wanted = rows_wanted(args, names)
    rows = []
    for row in tqdm(wanted, desc="rows", unit="row"):
        rows.append(dict(run_row(args, row), scale=row.scale))
    print(f"network {args.network}, per-device batch {args.per_batch_size}, {args.num_classes} classes, "
          f"median of {args.steps} steps after {args.warmup} warm-ups, forward+backward+update"
          + ("; rows r=: Partial FC, round(r x classes) centres a step" if args.sample_ratio < 1 else "")
          + "; trainable centres normalised by " + ("facekd_unit_rows (facekd.native)" if any(
              r.get("native") for r in rows) else "stock MXNet operators"))
    print(format_table(rows))
    for line in scale_lines(rows):
        print(line)
    if args.json:
        with atomic_path(args.json) as tmp, open(tmp, "w") as f:
            json.dump(dict(args=vars(args), rows=rows), f, indent=1)
    return 0


if __name__ == "__main__":
    run_cli(main)
