"""Benchmark: stepwise vs streaming soft-dataset preparation, end to end, plus streaming peak memory.

On one synthetic dataset and one teacher it times

* stepwise: bin_get_images -> save_embeddings (stepwise) -> save_lst -> face2rec2, and
* streaming: save_embeddings --data-dir/--out (read, embed and write overlapped),

checks the two ``train.rec`` files are byte-identical and prints images/s and their ratio.
Each path runs in a fresh process (so ``ru_maxrss`` is that path's own peak), for the
dataset and for one ``--scale`` times larger, to show the streaming peak stays flat.

Teachers (a freshly initialised checkpoint, d = 512):

* ``linear``: average pool + FC + BatchNorm fc1, i.e. almost free inference: the
  pipelines' own cost. With ``--gpu-ips R`` each forward also waits n / R seconds with
  the CPU idle, as when a GPU runs the teacher. ``--gpu-ips`` takes a list: the first
  value times both paths on both sizes (the memory check: at a GPU-like speed the runs
  last long enough for the peak to settle), every further value both paths on the base
  size (a sweep of teacher speeds in one run). Default 1500,0,400,3000: 400 img/s is
  ResNet-100 (24.2 GFLOPs per image) at about 60% of one V100's fp32 peak; 1500 and
  3000 img/s are faster teachers (several GPUs: save_embeddings.py runs over every
  CUDA_VISIBLE_DEVICES; or reduced-precision tensor cores); 0 is no wait at all.
* ``y1`` (or any facekd network name): real CPU inference of that network (slow here).

Each stepwise row is followed by its four steps' seconds (extract, embed, list, pack).

Examples::

    python bench/prepare.py                                   # 400 and 1600 images, linear @ 1500 img/s, no wait, 400, 3000
    python bench/prepare.py --gpu-ips 0                       # pure pipeline overhead only
    python bench/prepare.py --teacher y1 --identities 8 --scale 2
"""
import argparse
import multiprocessing
import os
import resource
import shutil
import time

import numpy as np

from facekd.errors import FaceKDError, run_cli

EMB = 512


def parse_speeds(text):
    """'1500,3000' -> [1500.0, 3000.0] (each >= 0)."""
    try:
        speeds = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated img/s values, got {text!r}") from None
    if not speeds or min(speeds) < 0:
        raise argparse.ArgumentTypeError(f"expected img/s values >= 0, got {text!r}")
    return list(dict.fromkeys(speeds))  # a repeated speed would overwrite its row


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    p.add_argument("--identities", type=int, default=40, help="classes of the base dataset")
    p.add_argument("--images-per-identity", type=int, default=10)
    p.add_argument("--scale", type=int, default=4, help="size factor of the second dataset (memory check)")
    p.add_argument("--teacher", default="linear", help="'linear' or a facekd network name (e.g. y1)")
    p.add_argument("--gpu-ips", type=parse_speeds, default=parse_speeds("1500,0,400,3000"),
                   help="simulated GPU throughputs of the teacher in img/s, comma-separated (0: no wait)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--cpu-contexts", type=int, default=1)
    p.add_argument("--out", default="bench/out/prepare", help="scratch folder (its bench outputs are replaced)")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- teacher

def linear_teacher_symbol():
    import mxnet as mx

    x = (mx.sym.Variable("data") - 127.5) * 0.0078125
    x = mx.sym.Pooling(x, kernel=(14, 14), stride=(14, 14), pool_type="avg", name="pool")
    x = mx.sym.FullyConnected(mx.sym.flatten(x), num_hidden=EMB, name="pre_fc1")
    return mx.sym.BatchNorm(x, fix_gamma=True, eps=2e-5, momentum=0.9, name="fc1")


def save_teacher(name, prefix):
    """A freshly initialised teacher checkpoint ``prefix,1``; returns the model argument."""
    import mxnet as mx

    if name == "linear":
        symbol, init = linear_teacher_symbol(), mx.init.Xavier(magnitude=2)
    else:
        from facekd.config import generate_config
        from facekd.symbols import get_symbol
        from facekd.symbols import network_initializer

        cfg = generate_config(name, "synthetic", "arcface", emb_size=EMB)
        symbol, init = get_symbol(cfg), network_initializer(cfg)
    mod = mx.mod.Module(symbol, data_names=["data"], label_names=None, context=mx.cpu())
    mod.bind(data_shapes=[("data", (1, 3, 112, 112))], for_training=False)
    mod.init_params(init)
    args, aux = mod.get_params()
    mx.model.save_checkpoint(prefix, 1, symbol, args, aux)
    return f"{prefix},1"


class GpuLikeEmbedder:
    """Wraps an Embedder so that a forward of n images lasts at least n / ips seconds (CPU idle)."""

    def __init__(self, embedder, ips):
        self.inner, self.ips = embedder, ips
        self.batch_size, self.emb_size = embedder.batch_size, embedder.emb_size

    def embed(self, images):
        start = time.perf_counter()
        out = self.inner.embed(images)
        if self.ips > 0:
            time.sleep(max(0.0, len(images) / self.ips - (time.perf_counter() - start)))
        return out


# ----------------------------------------------------------------------------- one measured run

def _stepwise(data, out, embedder):
    """The four scripts' functions in order; returns [(step, seconds)]."""
    from facekd.data import prepare
    from facekd.data.packing import pack_list

    work = out + "-work"
    images, labels, lst = os.path.join(work, "images"), os.path.join(work, "labels"), os.path.join(out, "train.lst")
    steps = [("extract", lambda: prepare.extract_images(data, work, progress=False)),
             ("embed", lambda: prepare.save_embeddings(embedder, images, labels, progress=False)),
             ("list", lambda: prepare.write_soft_lst(images, labels, lst, targets_dir=data, progress=False)),
             ("pack", lambda: pack_list(lst, progress=False))]
    timings = []
    for name, step in steps:
        start = time.perf_counter()
        step()
        timings.append((name, time.perf_counter() - start))
    return timings


def _streaming(data, out, embedder):
    from facekd.data.soft_dataset import build_soft_dataset

    build_soft_dataset(data, out, embedder, progress=False)
    return []


def measure(path, data, out, model, ips, batch_size, cpu_contexts, result):
    """Child process: load the teacher, warm it up, run one path; report seconds and peak RSS."""
    from facekd.data import prepare

    try:
        embedder = GpuLikeEmbedder(prepare.load_teacher(model, batch_size, cpu_contexts), ips)
        embedder.inner.embed(np.zeros((batch_size, 112, 112, 3), np.uint8))  # bind/warm-up, not timed
        start = time.perf_counter()
        steps = (_stepwise if path == "stepwise" else _streaming)(data, out, embedder)
        seconds = time.perf_counter() - start
        result.put((seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, steps, None))
    except BaseException as exc:  # reported by the parent
        result.put((None, None, None, f"{type(exc).__name__}: {exc}"))


def run_child(*args):
    ctx = multiprocessing.get_context("spawn")
    result = ctx.Queue()
    proc = ctx.Process(target=measure, args=args + (result,))
    proc.start()
    seconds, rss_mb, steps, error = result.get()
    proc.join()
    if error:
        raise FaceKDError(f"bench child ({args[0]}) failed: {error}")
    return seconds, rss_mb, steps


def same_file(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


# ----------------------------------------------------------------------------- main

def main(argv=None):
    from facekd.data.synthetic import SyntheticParams, generate_synthetic

    args = parse_args(argv)
    if args.scale < 2:
        raise FaceKDError(f"--scale must be >= 2 to compare memory across sizes, got {args.scale}")
    for name in ("teacher", "data-base", "data-large") + tuple(f"{p}-{s}{w}" for p in ("stepwise", "streaming")
                                                              for s in ("base", "large") for w in ("", "-work")):
        shutil.rmtree(os.path.join(args.out, name), ignore_errors=True)  # this bench's own outputs only
    os.makedirs(os.path.join(args.out, "teacher"))
    model = save_teacher(args.teacher, os.path.join(args.out, "teacher", "model"))
    sizes = {"base": args.identities, "large": args.identities * args.scale}
    rows = {}
    for label, identities in sizes.items():
        data = os.path.join(args.out, f"data-{label}")
        params = SyntheticParams(identities=identities, images_per_identity=args.images_per_identity,
                                 val_identities=2, pairs=2)
        generate_synthetic(data, params, progress=False)
        n = params.num_images
        for ips in args.gpu_ips if label == "base" else args.gpu_ips[:1]:
            for path in ("stepwise", "streaming"):
                out = os.path.join(args.out, f"{path}-{label}")
                shutil.rmtree(out, ignore_errors=True)
                shutil.rmtree(out + "-work", ignore_errors=True)
                seconds, rss, steps = run_child(path, data, out, model, ips, args.batch_size, args.cpu_contexts)
                rows[label, ips, path] = (n, seconds, rss)
                print(f"{label:5s} {speed_name(ips):>13s} {path:9s}: {n:6d} images in {seconds:7.2f} s = "
                      f"{n / seconds:7.1f} img/s, peak RSS {rss:7.1f} MB", flush=True)
                if steps:
                    print(" " * 30 + ", ".join(f"{name} {s:.2f} s ({1000 * s / n:.3f} ms/img)" for name, s in steps),
                          flush=True)
            if not same_file(os.path.join(args.out, f"stepwise-{label}", "train.rec"),
                             os.path.join(args.out, f"streaming-{label}", "train.rec")):
                raise FaceKDError(f"{label}: stepwise and streaming train.rec differ; the paths disagree")
    print(f"teacher {args.teacher} (d={EMB}), batch {args.batch_size}, outputs byte-identical")
    print(f"{'size':5s} {'teacher':>13s} {'streaming':>11s} {'stepwise':>11s} {'ratio':>7s}")
    for (label, ips, path), (n, t_stream, _) in sorted(rows.items(), key=lambda r: (r[0][0], -(r[0][1] or 1e9))):
        if path == "streaming":
            t_step = rows[label, ips, "stepwise"][1]
            print(f"{label:5s} {speed_name(ips):>13s} {n / t_stream:7.1f} img/s {n / t_step:7.1f} img/s "
                  f"{t_step / t_stream:6.2f}x")
    for path in ("streaming", "stepwise"):  # every base row is the same size: their spread is run-to-run noise
        base = [rss for (label, _, p), (_, _, rss) in rows.items() if label == "base" and p == path]
        n0 = rows["base", args.gpu_ips[0], path][0]
        n1, _, r1 = rows["large", args.gpu_ips[0], path]
        print(f"peak RSS {path}: {min(base):.1f}-{max(base):.1f} MB over {len(base)} runs at {n0} images, "
              f"{r1:.1f} MB at {n1} images")


def speed_name(ips):
    return f"{ips:.0f} img/s" if ips > 0 else "no wait"


if __name__ == "__main__":
    run_cli(main)
