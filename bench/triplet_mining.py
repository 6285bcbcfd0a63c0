"""Benchmark: time to mine one triplet bag, and the share of it spent outside inference.

A bag is sampled, read, decoded, embedded (the embedder) and mined for
semi-hard triplets by facekd.data.triplet.TripletIter.mine_bag. The target is
total <= 1.6 x the embedding time. Embedders:

* ``synthetic``: a random projection of the pixels that also waits n / --ips
  seconds per call, like a GPU doing the inference (the CPU stays free);
* ``y1``: a freshly initialised MobileFaceNet (real inference on this machine's
  CPU; slow here, use a small --bag-size).

Examples::

    python bench/triplet_mining.py --bag-size 720                 # quick check
    python bench/triplet_mining.py --embedder y1 --bag-size 360
    python bench/triplet_mining.py --bag-size 7200                # the real size, once
"""
import argparse
import logging
import os
import tempfile
import time

import numpy as np
from tqdm import tqdm

from facekd.data.images import encode
from facekd.data.labels import make_soft
from facekd.data.recordio import RecordDataset, RecordDatasetWriter
from facekd.data.triplet import TripletIter
from facekd.errors import FaceKDError, run_cli

IMAGE = 112


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bag-size", type=int, default=7200, help="images per bag (triplet_bag_size)")
    p.add_argument("--images-per-identity", type=int, default=18)
    p.add_argument("--per-batch-size", type=int, default=180, help="triplet batch per device (3 x triplets)")
    p.add_argument("--alpha", type=float, default=0.35, help="semi-hard selection margin (triplet_alpha)")
    p.add_argument("--embedder", choices=("synthetic", "y1"), default="synthetic")
    p.add_argument("--ips", type=float, default=2000.0,
                   help="synthetic embedder speed, images/s (default: y1 on a GPU, roughly)")
    p.add_argument("--bags", type=int, default=1, help="bags to mine (the first one is reported too)")
    p.add_argument("--data-dir", default="", help="an existing dataset folder (default: generate one)")
    p.add_argument("--decode-threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def generate_dataset(folder, num_classes, per_class, seed):
    """Class-patterned 112x112 JPEGs with random 512-d soft labels (looks like a soft train.rec)."""
    rng = np.random.default_rng(seed)
    with RecordDatasetWriter(folder, num_classes=num_classes, image_size=(IMAGE, IMAGE)) as writer:
        for c in tqdm(range(num_classes), desc="generating bench dataset", unit="class"):
            base = rng.uniform(0, 255, size=(8, 8, 3))
            for _ in range(per_class):
                small = np.clip(base + rng.normal(0, 40, size=base.shape), 0, 255).astype(np.uint8)
                img = np.repeat(np.repeat(small, IMAGE // 8, axis=0), IMAGE // 8, axis=1)
                img = np.clip(img + rng.normal(0, 8, size=img.shape), 0, 255).astype(np.uint8)
                writer.add(make_soft(rng.normal(size=(1, 512)), [c])[0], encode(img, quality=90))


class SyntheticEmbedder:
    """Random projection of 4x-subsampled pixels, taking n / ips seconds per call (waiting, not computing)."""

    def __init__(self, ips, seed):
        self.ips = ips
        self.proj = np.random.default_rng(seed).normal(size=((IMAGE // 4) ** 2 * 3, 128)).astype(np.float32)

    def embed(self, images):
        t0 = time.perf_counter()
        emb = images[:, ::4, ::4].reshape(len(images), -1).astype(np.float32) @ self.proj
        time.sleep(max(0.0, len(images) / self.ips - (time.perf_counter() - t0)))
        return emb


def y1_embedder(batch_size):
    """A freshly initialised y1 (MobileFaceNet) cut at fc1_output, on the CPU contexts."""
    import mxnet as mx

    from facekd.config import generate_config
    from facekd.symbols import get_symbol, network_initializer
    from facekd.embedder import Embedder
    from facekd.training.contexts import get_contexts

    cfg = generate_config("y1", "synthetic", "arcface")
    symbol = get_symbol(cfg)
    module = mx.mod.Module(symbol, data_names=["data"], label_names=None, context=mx.cpu())
    module.bind(data_shapes=[("data", (1, 3, IMAGE, IMAGE))], for_training=False)
    module.init_params(network_initializer(cfg))
    arg_params, aux_params = module.get_params()
    return Embedder(symbol, arg_params, aux_params, get_contexts(), batch_size)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.bag_size < 1 or args.bags < 1:
        raise FaceKDError("--bag-size and --bags must be >= 1")
    batch = args.per_batch_size
    bag_size = args.bag_size - args.bag_size % batch or batch
    if bag_size != args.bag_size:
        logging.info("--bag-size %d rounded to %d (a multiple of --per-batch-size %d)",
                     args.bag_size, bag_size, batch)
    embedder = (SyntheticEmbedder(args.ips, args.seed) if args.embedder == "synthetic"
                else y1_embedder(min(batch, 60)))
    with tempfile.TemporaryDirectory(prefix="facekd-bench-") as tmp:
        folder = args.data_dir
        if not folder:
            folder = os.path.join(tmp, "data")
            per_class = args.images_per_identity
            generate_dataset(folder, -(-bag_size // per_class) + 2, per_class, args.seed)
        with RecordDataset(folder) as dataset, \
                TripletIter(dataset, embedder, batch_size=batch, bag_size=bag_size,
                            images_per_identity=args.images_per_identity, alpha=args.alpha,
                            data_shape=(3,) + tuple(dataset.image_size), seed=args.seed,
                            decode_threads=args.decode_threads) as triplets:
            rows = []
            for _ in range(args.bags):
                triplets.mine_bag()
                rows.append(dict(triplets.stats))
    for i, s in enumerate(rows):
        print(f"bag {i}: {s['images']} images, {s['classes']} classes, {s['triplets']} triplets, "
              f"{s['batches']} batches | total {s['total_seconds']:.2f}s = embed {s['embed_seconds']:.2f}s "
              f"+ read/decode wait {s['read_seconds']:.2f}s + select {s['select_seconds']:.2f}s")
    total = np.mean([s["total_seconds"] for s in rows])
    embed = np.mean([s["embed_seconds"] for s in rows])
    ratio = total / embed if embed > 0 else float("inf")
    print(f"embedder {args.embedder}: {total:.2f} s per {bag_size}-image bag, {embed:.2f} s inference, "
          f"outside inference {100 * (total - embed) / total:.1f}%, total/inference {ratio:.2f}x "
          f"(target <= 1.6x: {'met' if ratio <= 1.6 else 'NOT met'})")


if __name__ == "__main__":
    run_cli(main)
