"""Benchmark: verification throughput (images/s, originals and flips counted) against simpler loops.

One model and one decoded target, four ways, each timed over the whole
protocol (embedding, then the 10-fold accuracy and VAL), in one run:

* ``facekd``: ``facekd.evaluation.verification.evaluate`` on an Embedder bound
  once (what the trainer's callback and recognition/eval/verification.py run):
  originals and their flips in the same batches, the decoded target kept;
* ``loop``: the straightforward loop, as insightface's verification.py runs it
  on a checkpoint: a Module of the embedding graph bound with Module's defaults
  (``mod.bind(data_shapes=...)``), one batch at a time, the originals in one
  forward and the flips in another, each copied back before the next batch;
* ``training-module``: insightface's train.py way, the same loop run on the
  arcface training Module itself (graph with the --num-classes fc7 head, bound
  for training with the same batch) in inference mode;
* ``loop-inference-bind`` (ablation): the same loop on an Embedder bound as
  facekd's (inference graph, oneDNN-fused): what flip batching alone adds.

Times are the best of --repeats evaluations, the methods interleaved. The 1.5x
target of the speed issue is checked against ``training-module``, the reference
implementation's own verification during training; the other ratios are printed
beside it (docs/performance.md discusses all three).

Decoding the .bin is timed on its own: facekd decodes a target once per run and
keeps it, where decoding per evaluation would add that time to every round.

    python bench/verification.py                                   # y1, fresh weights, 1,000 synthetic pairs
    python bench/verification.py --model ./models/y1-arcface-emore/model,1 --data-dir ../datasets/faces_emore --target lfw
"""
import argparse
import os
import tempfile
import time

import numpy as np

from facekd.errors import FaceKDError, run_cli

IMAGE = (112, 112)
# (row, what it stands for), in the order of the summary lines
BASELINES = (("training-module", "insightface train.py: the training Module, flips in separate forwards"),
             ("loop", "insightface verification.py: a default-bound Module, flips in separate forwards"),
             ("loop-inference-bind", "ablation: facekd's binding, flips in separate forwards"))
# The "straightforward one-batch-at-a-time loop without flip batching": the reference
# implementation's own verification during training (docs/performance.md).
TARGET_BASELINE = "training-module"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--network", default="y1", help="network of the freshly initialised model (no --model)")
    p.add_argument("--model", default="", help="prefix,epoch of a checkpoint (default: fresh --network)")
    p.add_argument("--data-dir", default="", help="folder holding <target>.bin (default: a synthetic target)")
    p.add_argument("--target", default="lfw")
    p.add_argument("--pairs", type=int, default=1000, help="pairs of the synthetic target")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward, as the trainer's")
    p.add_argument("--repeats", type=int, default=2, help="timed evaluations per method (best kept)")
    p.add_argument("--skip-training-module", action="store_true",
                   help="do not time the loop on the training Module (--num-classes wide fc7)")
    p.add_argument("--num-classes", type=int, default=85742)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def synthetic_target(path, pairs, seed):
    """A .bin of ``pairs`` pairs of smooth random 112x112 JPEGs (decoding costs as real faces do)."""
    import cv2

    from facekd.data.binfile import save_bin
    from facekd.data.images import encode

    rng = np.random.default_rng(seed)
    bins = []
    for _ in range(2 * pairs):
        small = rng.uniform(0, 255, size=(14, 14, 3)).astype(np.float32)
        rgb = cv2.resize(small, IMAGE[::-1], interpolation=cv2.INTER_CUBIC)
        rgb = np.clip(rgb + rng.normal(0, 6, size=rgb.shape), 0, 255).astype(np.uint8)
        bins.append(encode(rgb, quality=95))
    save_bin(path, bins, [bool(v) for v in rng.random(pairs) < 0.5])


def load_model(args):
    """(symbol, arg_params, aux_params) of --model, or of a freshly initialised --network."""
    import mxnet as mx

    from facekd.config import generate_config
    from facekd.symbols import get_symbol, network_initializer
    from facekd.checkpoints import load_checkpoint, parse_model_arg

    if args.model:
        return load_checkpoint(*parse_model_arg(args.model))
    cfg = generate_config(args.network, "synthetic", "arcface")
    symbol = get_symbol(cfg)
    module = mx.mod.Module(symbol, data_names=["data"], label_names=None, context=mx.cpu())
    module.bind(data_shapes=[("data", (1, 3) + IMAGE)], for_training=False)
    module.init_params(network_initializer(cfg))
    arg_params, aux_params = module.get_params()
    return symbol, arg_params, aux_params


def straightforward_embed(forward, images, batch):
    """(orig, flip) raw embeddings, one batch at a time: originals in one forward, flips in another."""
    n = len(images)
    outs = []
    for view in (images, images[:, :, ::-1]):
        parts = []
        for start in range(0, n, batch):
            parts.append(forward(view[start:start + batch]))
        outs.append(np.concatenate(parts))
    return outs[0], outs[1]


class DefaultModuleForward:
    """The embedding graph in a Module bound with Module's defaults, as insightface's verification.py binds it."""

    def __init__(self, symbol, arg_params, aux_params, batch):
        import mxnet as mx

        self.batch = batch
        self.module = mx.mod.Module(symbol, data_names=["data"], label_names=None, context=mx.cpu())
        self.module.bind(data_shapes=[("data", (batch, 3) + IMAGE)])
        self.module.set_params(arg_params, aux_params)

    def __call__(self, images):
        import mxnet as mx

        count = len(images)
        data = np.zeros((self.batch, 3) + IMAGE, dtype=np.float32)
        data[:count] = images.transpose(0, 3, 1, 2)
        self.module.forward(mx.io.DataBatch(data=[mx.nd.array(data)]), is_train=False)
        return self.module.get_outputs()[0].asnumpy()[:count]


class TrainingModuleForward:
    """The arcface training Module (network + fc7 head, bound for training) run in inference mode.

    insightface's train.py verifies with the Module it trains: every forward also computes
    the (batch x num_classes) fc7 product, on a graph bound for training.
    """

    def __init__(self, network, arg_params, aux_params, batch, num_classes):
        import mxnet as mx

        from facekd.config import generate_config
        from facekd.losses import build_head
        from facekd.symbols import get_symbol, network_initializer

        cfg = generate_config(network, "emore", "arcface", num_classes=num_classes, per_batch_size=batch)
        symbol = build_head(get_symbol(cfg), mx.sym.Variable("softmax_label"), cfg)
        self.batch = batch
        self.module = mx.mod.Module(symbol, data_names=["data"], label_names=["softmax_label"],
                                    context=mx.cpu())
        self.module.bind(data_shapes=[("data", (batch, 3) + IMAGE)],
                         label_shapes=[("softmax_label", (batch,))], for_training=True)
        self.module.init_params(network_initializer(cfg), arg_params=arg_params, aux_params=aux_params,
                                allow_missing=True)
        self.label = mx.nd.zeros((batch,))

    def __call__(self, images):
        import mxnet as mx

        count = len(images)
        data = np.zeros((self.batch, 3) + IMAGE, dtype=np.float32)
        data[:count] = images.transpose(0, 3, 1, 2)
        self.module.forward(mx.io.DataBatch(data=[mx.nd.array(data)], label=[self.label]), is_train=False)
        return self.module.get_outputs()[0].asnumpy()[:count]


def timed(fn, repeats=1):
    """(best seconds, last result) of ``repeats`` calls."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def methods(args, symbol, arg_params, aux_params, vset):
    """[(name, zero-argument evaluation)] of every compared way, each bound and warmed up."""
    import mxnet as mx

    from facekd.evaluation import verification
    from facekd.embedder import Embedder

    batch, images = args.batch_size, vset.images
    embedder = Embedder(symbol, arg_params, aux_params, [mx.cpu()], batch)
    forwards = {"loop": DefaultModuleForward(symbol, arg_params, aux_params, batch)}
    if not args.skip_training_module:
        forwards["training-module"] = TrainingModuleForward(args.network, arg_params, aux_params, batch,
                                                            args.num_classes)
    forwards["loop-inference-bind"] = Embedder(symbol, arg_params, aux_params, [mx.cpu()], batch).embed
    out = [("facekd", lambda: verification.evaluate(embedder, vset))]
    out += [(name, lambda f=forward: verification.evaluate(straightforward_embed(f, images, batch), vset))
            for name, forward in forwards.items()]
    for forward in [embedder.embed] + list(forwards.values()):
        forward(images[:batch])  # the first forward sets the graph up: untimed
    return out


def main(argv=None):
    from facekd.evaluation import verification

    args = parse_args(argv)
    if args.batch_size < 2 or args.pairs < 10 or args.repeats < 1:
        raise FaceKDError("--batch-size must be >= 2, --pairs >= 10, --repeats >= 1")
    if args.model and not args.skip_training_module:
        raise FaceKDError("the training-module row builds the training graph of --network: "
                          "add --skip-training-module when giving --model")
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")
    symbol, arg_params, aux_params = load_model(args)
    with tempfile.TemporaryDirectory(prefix="facekd-bench-") as tmp:
        path = os.path.join(args.data_dir, f"{args.target}.bin") if args.data_dir else None
        if path is None:
            path = os.path.join(tmp, f"{args.target}.bin")
            synthetic_target(path, args.pairs, args.seed)
        decode_seconds, vset = timed(lambda: verification.load_target(path, IMAGE, args.target,
                                                                    progress=False))
    n = len(vset.images)
    compared = methods(args, symbol, arg_params, aux_params, vset)
    best = {name: float("inf") for name, _ in compared}
    results = {}
    for _ in range(args.repeats):  # interleaved: the machine is shared
        for name, run in compared:
            seconds, results[name] = timed(run)
            best[name] = min(best[name], seconds)
    print(f"target {vset.name}: {n} images ({vset.num_pairs} pairs), decoded once in {decode_seconds:.2f} s "
          f"({n / decode_seconds:.0f} img/s); batch {args.batch_size}; best of {args.repeats}; "
          f"images/s count originals and flips")
    for name, _ in compared:
        print(f"{name:<21}{best[name]:8.2f} s{2 * n / best[name]:9.1f} img/s{best['loop'] / best[name]:7.2f}x"
              f"   acc {results[name].acc:.5f}")
    for name, what in BASELINES:
        if name in best:
            ratio = best[name] / best["facekd"]
            verdict = f" (target >= 1.5x: {'met' if ratio >= 1.5 else 'NOT met'})" if name == TARGET_BASELINE else ""
            print(f"facekd / {name}: {ratio:.2f}x  [{what}]{verdict}")


if __name__ == "__main__":
    run_cli(main)
