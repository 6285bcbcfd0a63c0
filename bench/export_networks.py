"""Does every network of the registry export? Random weights, the real export command, parity checked.

For each network a checkpoint is made as training saves it (the graph cut at fc1, params with an
fc7_weight) with random weights, gammas, betas and PReLU slopes, and BatchNorm statistics measured
on a few faces of a small generated set, so that the embedding depends on the face as a trained
one does (with untouched statistics a random network's embedding is nearly constant, and parity
would check little). Then ``deploy/export.py`` runs on it as a user would run it, and the table
gives the export's wall time, the ONNX size and the parity distance.

    python bench/export_networks.py                          # the whole registry (r100: ~1-2 min alone)
    python bench/export_networks.py --networks y1,pocketnets128
"""
import argparse
import os
import re
import tempfile
import time

import numpy as np

import experiments as ex  # bench/experiments.py, beside this script
from facekd.errors import FaceKDError, run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARITY = re.compile(r"max cosine distance ([0-9.eE+-]+)")


def random_checkpoint(prefix, network, images, seed=0, classes=12):
    """``(prefix, 1)``: a checkpoint of ``network`` as training saves it, with random weights and the
    BatchNorm statistics of ``images`` (uint8 RGB NHWC), written by ``mx.model.save_checkpoint``."""
    import mxnet as mx

    from facekd.config import generate_config
    from facekd.symbols import get_symbol, network_initializer

    cfg = generate_config(network, "emore", "arcface", bn_mom=0.0)  # one batch gives the statistics
    symbol = get_symbol(cfg)
    data = mx.nd.array(np.asarray(images).transpose(0, 3, 1, 2).astype(np.float32))
    module = mx.mod.Module(symbol, data_names=["data"], label_names=None, context=mx.cpu())
    module.bind(data_shapes=[("data", data.shape)], for_training=False)
    mx.random.seed(seed)
    module.init_params(network_initializer(cfg))
    arg, aux = module.get_params()
    rng = np.random.RandomState(seed)
    for name in arg:
        if name.endswith("_gamma"):  # BatchNorm scales (fix_gamma ones too, as weight decay leaves them) and slopes
            arg[name] = mx.nd.array(rng.uniform(0.5, 1.5, arg[name].shape))
        elif name.endswith("_beta"):
            arg[name] = mx.nd.array(rng.uniform(-0.2, 0.2, arg[name].shape))
    executor = symbol.simple_bind(mx.cpu(), data=data.shape, grad_req="write")
    for name, value in list(arg.items()) + list(aux.items()):
        (executor.arg_dict if name in arg else executor.aux_dict)[name][:] = value
    executor.forward(is_train=True, data=data)  # MXNet's BatchNorm takes this batch's statistics ...
    executor.backward(mx.nd.ones(executor.outputs[0].shape))  # ... and stores them in the backward pass;
    mx.nd.waitall()  # that write is not ordered before a read of the arrays by the engine: wait for it
    aux = {name: value.copy() for name, value in executor.aux_dict.items()}
    arg["fc7_weight"] = mx.nd.array(rng.normal(0, 0.01, (classes, cfg.emb_size)))
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    mx.model.save_checkpoint(prefix, 1, symbol, arg, aux)
    return prefix, 1


def parse_args(argv=None):
    from facekd.symbols import NETWORKS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2])
    p.add_argument("--networks", default=",".join(NETWORKS.names()), help="comma-separated registry names")
    p.add_argument("--images", type=int, default=8, help="faces for the BatchNorm statistics and the parity check")
    p.add_argument("--out", default="", help="keep the checkpoints, exports and logs here (default: a temporary folder)")
    return p.parse_args(argv)


def main(argv=None):
    from facekd.data.synthetic import SyntheticParams, generate_synthetic
    from facekd.deploy.faces import sample_record_images
    from facekd.checkpoints import load_symbol
    from facekd.symbols import NETWORKS
    from facekd.symbols.flops import count_params

    args = parse_args(argv)
    networks = [n.strip() for n in args.networks.split(",") if n.strip()]
    for name in networks:
        NETWORKS.get(name)  # unknown names fail with the list of valid ones
    runner = ex.CommandRunner(ROOT)
    with tempfile.TemporaryDirectory(prefix="facekd-export-networks-") as tmp:
        work = os.path.abspath(args.out) if args.out else tmp
        data = os.path.join(work, "faces")
        if not os.path.isfile(os.path.join(data, "train.rec")):
            generate_synthetic(data, SyntheticParams(identities=8, images_per_identity=4, val_identities=2, pairs=2,
                                                     seed=0), workers=1, progress=False)
        faces = sample_record_images(data, args.images, "--images", (112, 112))
        rows = []
        for name in networks:
            start = time.perf_counter()
            prefix, epoch = random_checkpoint(os.path.join(work, "models", name, "model"), name, faces)
            made = time.perf_counter() - start
            out = os.path.join(work, "deploy", name)
            log = os.path.join(work, "logs", f"export-{name}.log")
            seconds = runner.run("deploy/export.py", ["--model", f"{prefix},{epoch}", "--out", out, "--data-dir", data,
                                                      "--num-images", args.images, "--batch-size", args.images,
                                                      "--overwrite"], log, label=f"export {name}")
            with open(log) as f:
                found = PARITY.search(f.read())
            if found is None:
                raise FaceKDError(f"{log}: no parity line")
            rows.append((name, count_params(load_symbol(prefix)), os.path.getsize(os.path.join(out, "model.onnx")), seconds,
                         float(found.group(1)), made))
    print("\n| network | parameters | model.onnx | export (s) | max cosine distance | random checkpoint (s) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, params, size, seconds, distance, made in rows:
        print(f"| {name} | {params:,} | {size / 1e6:.1f} MB | {seconds:.1f} | {distance:.2g} | {made:.1f} |")
    return 0


if __name__ == "__main__":
    run_cli(main)
