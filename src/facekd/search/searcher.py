"""The search run: supernet, the two halves, the bilevel loop, and what each epoch writes.

Each step (DARTS' order): an architecture step on a batch of the architecture half (first
or second order, ``architect``), then a weight step on a batch of the weight half
(SGD, gradient clipped). Each epoch writes ``genotype-NNNN.json`` (and ``genotype.json``,
the latest), ``alphas-NNNN.png`` (and ``alphas.png``) and the resumable state; the
log has insightface's speed lines (``Epoch[e] Batch [a-b] Speed: ... samples/sec``,
weight-half ``acc`` and ``lossvalue``, architecture-half ``arch_acc`` and ``arch_lossvalue``).
"""
import glob
import logging
import os
import resource
import shutil
import time

import mxnet as mx
import numpy as np

from .. import symbols
from ..atomic import atomic_path, check_writable_dir, clear_leftovers
from ..data.recordio import RecordDataset
from ..errors import FaceKDError
from ..symbols import flops, genotypes
from ..training.contexts import get_contexts
from ..training.signals import StopRequest
from . import checkpoint
from .architect import Architect
from .args import parse_args, resolve
from .data import half_iterators
from .derive import derive, softmax
from .heatmap import write_heatmap
from .network import ALPHAS, supernet_symbol
from .optim import Adam, MomentumSGD, clip_scale, cosine_lr, global_norm
from .space import PRIMITIVES
from .supernet import Supernet

GENOTYPE = "genotype"
ALPHAS_PNG = "alphas"


def epoch_file(out, stem, epoch, ext):
    return os.path.join(out, f"{stem}-{epoch:04d}{ext}")


def prepare_out(out, resume):
    """``out`` can take the search's files; a new search does not overwrite an earlier one's
    (the folder itself is made when the first epoch is written)."""
    check_writable_dir(out, "--out")
    clear_leftovers(os.path.join(glob.escape(out), "*"))
    if resume:
        return
    earlier = sorted(glob.glob(os.path.join(glob.escape(out), f"{GENOTYPE}*.json")))
    if checkpoint.has_state(out) or earlier:
        names = [os.path.basename(p) for p in earlier[:3]] or [os.path.basename(checkpoint.resume_stem(out))]
        raise FaceKDError(f"--out {out} already holds a search ({', '.join(names)}); continue it with --resume, "
                          "or give another --out")


class RunningMean(mx.metric.EvalMetric):
    """Mean of a scalar per step (the speed line's ``acc``, ``lossvalue``, ...)."""

    def update_value(self, value, weight=1):
        self.sum_metric += value * weight
        self.global_sum_metric += value * weight
        self.num_inst += weight
        self.global_num_inst += weight

    def update(self, labels, preds):  # pragma: no cover - fed through update_value
        raise NotImplementedError


class Search:
    """One search: its settings (fixed once), the halves, the supernet and the optimisers."""

    def __init__(self, args):
        self.args = args
        mx.random.seed(args.seed)
        np.random.seed(args.seed)
        self.contexts = get_contexts(args.cpu_contexts)
        if not os.path.isdir(args.data_dir):
            raise FaceKDError(f"--data-dir {args.data_dir} does not exist; make a dataset with "
                              "data_prepare/face2rec2.py (or data_prepare/make_synthetic.py)")
        prepare_out(args.out, args.resume)
        self.dataset = RecordDataset(args.data_dir)
        self.train_iter = self.arch_iter = None
        try:
            self._build(args)
        except BaseException:
            self.close()
            raise

    def _build(self, args):
        self.s = s = resolve(args, self.dataset, len(self.contexts))
        if args.resume:  # the saved search must be this one before anything is built
            checkpoint.read_meta(args.out, s)
        self.symbol, self.embedding = supernet_symbol(s)
        self.net = Supernet(self.symbol, self.contexts, s.per_batch_size, (3,) + s.input_size)
        self.weight_opt = MomentumSGD(s.w_momentum, s.w_wd)
        self.arch_opt = Adam(s.alpha_lr, s.alpha_betas[0], s.alpha_betas[1], s.alpha_wd)
        self.architect = Architect(self.net, self.arch_opt, s.order)
        self.train_iter, self.arch_iter = half_iterators(self.dataset, s.batch_size, s.seed, s.rand_mirror,
                                                         s.decode_threads)
        self.steps_per_epoch = min(self.train_iter.batches_per_epoch, self.arch_iter.batches_per_epoch)
        self.begin_epoch, self.step = 0, 0
        if args.resume:
            self._restore()
        else:
            self.net.initialize("pytorch")

    # ------------------------------------------------------------------ state
    def _settings_record(self):
        s = self.s
        keys = list(checkpoint.FIXED) + ["order", "epochs", "data_dir", "input_size", "w_lr", "w_lr_min",
                                         "alpha_lr", "loss_s", "loss_m1", "loss_m2", "loss_m3"]
        return {k: (list(s[k]) if isinstance(s.get(k), tuple) else s.get(k)) for k in keys}

    def _restore(self):
        meta, args, aux, states = checkpoint.load(self.args.out, self.s)
        where = checkpoint.resume_stem(self.args.out) + ".params"
        self.net.set_params(args, aux, where)
        weights = {n: self.net.array(n) for n in self.net.weight_names}
        alphas = {n: self.net.array(n) for n in self.net.alpha_names}
        self.weight_opt.load_state_arrays(states, weights)
        self.arch_opt.load_state_arrays(states, alphas, meta["adam_steps"])
        self.begin_epoch, self.step = meta["epoch"], meta["step"]
        positions = meta["positions"]
        for name, it in (("weights", self.train_iter), ("architecture", self.arch_iter)):
            if name in positions:  # the shuffles continue where the saved search left them
                it.restore(self.begin_epoch - 1, positions[name])
        logging.info("resuming the search in %s after epoch %d (step %d)", self.args.out, self.begin_epoch,
                     self.step)

    def alphas(self):
        """{cell type: raw alpha matrix (NumPy)}."""
        return {kind: self.net.array(name).asnumpy() for kind, name in ALPHAS.items()}

    def _write_epoch(self, epoch):
        """The genotype, the heat map and the resume set after ``epoch`` epochs (1-based)."""
        s, out = self.s, self.args.out
        alphas = self.alphas()
        genotype = derive(alphas, s.nodes)
        weights = {kind: softmax(a) for kind, a in alphas.items()}
        record = dict(epoch=epoch, step=self.step, primitives=list(PRIMITIVES),
                      weights={k: np.round(w, 6).tolist() for k, w in weights.items()},
                      settings=self._settings_record())
        for path in (epoch_file(out, GENOTYPE, epoch, ".json"), os.path.join(out, GENOTYPE + ".json")):
            genotypes.save(genotype, path, record)
        title = f"search epoch {epoch}/{s.epochs}, {s.layers} cells of C={s.init_channels}, {s.order} order"
        png = write_heatmap(epoch_file(out, ALPHAS_PNG, epoch, ".png"), weights, genotype, s.nodes, title)
        with atomic_path(os.path.join(out, ALPHAS_PNG + ".png")) as tmp:
            shutil.copyfile(png, tmp)
        positions = {"weights": self.train_iter.position(self.train_iter.batches_per_epoch),
                     "architecture": self.arch_iter.position(self.arch_iter.batches_per_epoch)}
        checkpoint.save(out, self.net, self.weight_opt, self.arch_opt,
                        dict(epoch=epoch, step=self.step, positions=positions, settings=self._settings_record()))
        logging.info("genotype after epoch %d: %s", epoch, genotypes.describe(genotype))
        return genotype

    # ------------------------------------------------------------------ steps
    def weight_step(self, batch, lr):
        net, s = self.net, self.s
        loss, acc = net.forward_backward(*batch)
        grads = net.gradients(net.weight_names)
        scale = clip_scale(global_norm(grads), s.w_grad_clip) if s.w_grad_clip else 1.0
        self.weight_opt.update({n: net.array(n) for n in net.weight_names}, grads, lr, rescale=scale)
        net.broadcast(net.weight_names)
        return loss, acc

    def _log_sizes(self):
        s = self.s
        shape = (1, 3) + s.input_size
        logging.info("supernet: %d cells of C=%d, %d nodes, stem %dC, %d primitives per edge, images %dx%d "
                     "(dataset %dx%d)", s.layers, s.init_channels, s.nodes, s.stem_multiplier, len(PRIMITIVES),
                     s.image_size[0], s.image_size[1], s.input_size[0], s.input_size[1])
        logging.info("Network params: %.3fM (architecture: %d)", flops.count_params(self.embedding, shape) / 1e6,
                     sum(int(np.prod(self.net.array(n).shape)) for n in self.net.alpha_names))
        logging.info("Network FLOPs: %s", flops.format_flops(
            flops.count_flops(self.embedding, shape, mode=symbols.get_network("pocketnet").flops_mode)))
        logging.info("contexts %s, batch %d per half (%d per device), halves of %d and %d images, %d steps "
                     "per epoch, %d classes, loss %s, %s-order architecture gradient", self.contexts,
                     s.batch_size, s.per_batch_size, len(self.train_iter.keys), len(self.arch_iter.keys),
                     self.steps_per_epoch, s.num_classes, s.loss, s.order)

    def _check_finite(self, value, what):
        if not np.isfinite(value):
            raise FaceKDError(f"step {self.step}: the {what} loss is {value:g}; the search stopped before writing "
                              f"this epoch (the last epoch's files are kept). Lower --w-lr (now {self.s.w_lr:g}) "
                              f"or the head's scale --loss-s, and --resume")

    def run(self, progress=True):
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        s = self.s
        os.makedirs(self.args.out, exist_ok=True)
        self._log_sizes()
        metrics = [RunningMean(n) for n in ("acc", "lossvalue", "arch_acc", "arch_lossvalue")]
        metric = mx.metric.CompositeEvalMetric(metrics)
        speedometer = mx.callback.Speedometer(s.batch_size, s.frequent, auto_reset=True)
        start, done = time.time(), 0
        genotype = None
        with StopRequest() as stop, logging_redirect_tqdm():
            for epoch in range(self.begin_epoch, s.epochs):
                lr = cosine_lr(epoch, s.epochs, s.w_lr, s.w_lr_min)
                logging.info("search epoch %d/%d: weight lr %g", epoch + 1, s.epochs, lr)
                self.train_iter.reset()
                self.arch_iter.reset()
                metric.reset()
                began = time.time()
                bar = tqdm(total=self.steps_per_epoch, desc=f"search epoch {epoch + 1}/{s.epochs}", unit="step",
                           disable=not progress, leave=False)
                for nbatch, (train, arch) in enumerate(zip(self.train_iter, self.arch_iter)):
                    train_batch = (train.data[0], train.label[0])
                    arch_batch = (arch.data[0], arch.label[0])
                    arch_loss, arch_acc = self.architect.step(train_batch, arch_batch, lr)
                    loss, acc = self.weight_step(train_batch, lr)
                    self.step += 1
                    values = [float(v.asscalar()) if v is not None else float("nan")
                              for v in (acc, loss, arch_acc, arch_loss)]
                    self._check_finite(values[1], "weight-half")
                    self._check_finite(values[3], "architecture-half")
                    for m, v in zip(metrics, values):
                        m.update_value(v, s.batch_size)
                    speedometer(mx.model.BatchEndParam(epoch=epoch, nbatch=nbatch, eval_metric=metric, locals=None))
                    bar.update()
                    if nbatch + 1 >= self.steps_per_epoch or stop.requested:
                        break
                bar.close()
                if stop.requested:
                    logging.info("stopped in epoch %d at step %d; --resume continues after epoch %d", epoch + 1,
                                 self.step, epoch)
                    break
                genotype = self._write_epoch(epoch + 1)
                done += 1
                logging.info("search epoch %d: %.1f s, peak memory %.0f MB", epoch + 1, time.time() - began,
                             peak_rss_mb())
        logging.info("searched %d epochs in %.1fs", done, time.time() - start)
        return genotype

    def close(self):
        for it in (self.train_iter, self.arch_iter):
            if it is not None:
                it.close()
        self.dataset.close()


def peak_rss_mb():
    """Peak resident memory of this process (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv=None):
    from ..training.trainer import setup_logging

    setup_logging()
    args = parse_args(argv)
    logging.info("called with %s", vars(args))
    search = Search(args)
    try:
        search.run(progress=not args.no_progress)
    finally:
        search.close()
    return 0
