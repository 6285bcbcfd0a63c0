"""A dist_sync worker of test_partial_fc_dist.py: a small sampled arcface head, trained a few steps
on this worker's own batches; writes its samples, weights and momentum to ``OUT/worker-<rank>.npz``.

    DMLC_ROLE=worker ... python tests/training/partial_fc_worker.py OUT
"""
import os
import sys

import numpy as np

C, D, IN, B, STEPS = 40, 8, 5, 4, 3  # B images per worker (per device of the one-process reference)
RATIO, SEED = 0.5, 11


def settings(per_device_batch):
    from facekd.config import generate_config
    from facekd.training.settings import Settings

    cfg = generate_config("y1", "emore", "arcface")
    cfg.update(num_classes=C, emb_size=D, per_batch_size=per_device_batch, sample_ratio=RATIO, loss_s=16.0)
    return Settings(cfg)


def batches(rank):
    """Worker ``rank``'s batches: its own images and classes (worker 0: 0..19, worker 1: 20..39)."""
    rng = np.random.default_rng(100 + rank)
    return [(rng.standard_normal((B, IN)).astype(np.float32),
             rng.integers(20 * rank, 20 * rank + 20, B).astype(np.float32)) for _ in range(STEPS)]


def start_params():
    rng = np.random.default_rng(0)
    return {"fc1_weight": rng.standard_normal((D, IN)).astype(np.float32),
            "fc7_weight": rng.standard_normal((C, D)).astype(np.float32)}


def bind(contexts, kv):
    """(Module as the trainer sets it up, its class sampler) over ``contexts`` with ``kv``."""
    import mxnet as mx

    from facekd.losses import build_head, get_loss
    from facekd.training import optimizer
    from facekd.training.partial_fc import class_sampler

    workers = kv.num_workers if "dist" in kv.type else 1
    cfg = settings(B)
    classes = class_sampler(cfg, get_loss("arcface"), len(contexts), kv, seed=SEED)
    embedding = mx.sym.FullyConnected(mx.sym.Variable("data"), num_hidden=D, no_bias=True, name="fc1")
    module = mx.mod.Module(build_head(embedding, mx.sym.Variable("softmax_label"), cfg), context=contexts,
                           data_names=classes.data_names(["data"]), label_names=["softmax_label"])
    total = B * len(contexts)
    module.bind(data_shapes=classes.data_shapes([mx.io.DataDesc("data", (total, IN))]),
                label_shapes=[mx.io.DataDesc("softmax_label", (total,))], for_training=True)
    module.init_params(arg_params={k: mx.nd.array(v) for k, v in start_params().items()})
    optimizer.init_sgd(module, classes.kvstore(kv, len(contexts)), len(contexts), learning_rate=0.5,
                       momentum=0.9, wd=0.01, rescale_grad=1.0 / (len(contexts) * workers))
    return module, classes


def train(module, classes, kv, steps, contexts):
    """Run ``steps`` [(x, y)]; returns {samples, fc1_weight, fc7_weight, mom}."""
    import mxnet as mx

    from facekd.training import optimizer

    samples = []
    for step, (x, y) in enumerate(steps, start=1):
        batch = classes.prepare(mx.io.DataBatch(data=[mx.nd.array(x)], label=[mx.nd.array(y)]), step)
        samples.append(batch.data[1].asnumpy())
        module.forward_backward(batch)
        module.update()
    mx.nd.waitall()
    weights = module.get_params()[0]
    return dict(samples=np.array(samples), fc1_weight=weights["fc1_weight"].asnumpy(),
                fc7_weight=weights["fc7_weight"].asnumpy(),
                mom=optimizer.optimizer_state_arrays(module, contexts, kv)["mom:fc7_weight"].asnumpy())


def main(out):
    import facekd  # noqa: F401 (thread settings before mxnet)
    import mxnet as mx

    kv = mx.kvstore.create("dist_sync")
    module, classes = bind([mx.cpu()], kv)
    result = train(module, classes, kv, batches(kv.rank), 1)
    np.savez(os.path.join(out, f"worker-{kv.rank}.npz"), **result)


if __name__ == "__main__":
    main(sys.argv[1])
