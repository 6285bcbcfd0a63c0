"""The training run: data, symbol, parameters, Module over N contexts, the step loop."""
import logging
import os
import time

import mxnet as mx
import numpy as np

from .. import losses, symbols
from ..data import labels
from ..data.recordio import RecordDataset
from ..errors import FaceKDError, mxnet_cause
from ..evaluation import verification
from ..symbols import flops
from ..symbols.shapes import infer_shape
from ..checkpoints import load_checkpoint
from ..embedder import Embedder
from .callbacks import CheckpointPolicy, LrBatchEpochLog, VerifyAndSave
from ..atomic import check_writable_dir
from .checkpoint import clear_run_leftovers, refuse_overwrite, resume_point
from .teacher_centres import load_teacher_centres
from .contexts import get_contexts
from . import optimizer
from .online_teacher import ScheduledTeacherIter
from .schedule import StepScheduler, parse_lr_steps


def open_training_set(cfg):
    """The training set of ``cfg.dataset_path``, checked against the loss's label kind."""
    folder = cfg.dataset_path
    if not os.path.isdir(folder):
        raise FaceKDError(f"dataset folder {folder} does not exist; give --data-dir "
                          "(make one with data_prepare/make_synthetic.py)")
    dataset = RecordDataset(folder)
    spec = losses.get_loss(cfg.loss)
    soft = dataset.layout.kind == labels.SOFT
    online = bool(cfg.get("teacher_schedule"))
    if online and not spec.online_teacher:
        raise FaceKDError(f"--teacher-schedule runs a teacher on every batch; --loss {cfg.loss} does not "
                          "take per-batch teacher vectors (use template_kd)")
    if spec.label == "soft" and not soft and not online:
        raise FaceKDError(f"--loss {cfg.loss} needs soft labels (teacher embedding + class id) but "
                          f"{dataset.rec_path} has class labels; build a soft dataset with "
                          "data_prepare/save_embeddings.py --model TEACHER --data-dir IN --out OUT")
    if spec.label == "hard" and soft:
        raise FaceKDError(f"--loss {cfg.loss} takes class labels but {dataset.rec_path} has soft labels "
                          f"(width {dataset.layout.width}); use a distillation loss or the hard-label dataset")
    cfg.teacher_dim = dataset.layout.teacher_dim
    cfg.num_classes = dataset.num_classes  # the data's `property` is the truth
    if dataset.num_identities and dataset.num_classes > 2 * dataset.num_identities:
        logging.warning("%s: property declares %d classes but the set has %d identities: the class "
                        "matrix is %.0fx larger than needed, which slows every step; write the class "
                        "count into property", os.path.join(folder, "property"), dataset.num_classes,
                        dataset.num_identities, dataset.num_classes / dataset.num_identities)
    return dataset


def check_teacher_dim(cfg, spec, source):
    """Methods that compare student and teacher embeddings need the same dimension."""
    if spec.needs_teacher_dim and cfg.teacher_dim != cfg.emb_size:
        raise FaceKDError(f"--loss {cfg.loss} compares student and teacher embeddings: {source} gives "
                          f"{cfg.teacher_dim}-d teacher vectors but --emb-size is {cfg.emb_size}; "
                          f"set --emb-size {cfg.teacher_dim}")


def build_symbols(cfg):
    """(training symbol, deployable embedding symbol)."""
    embedding = symbols.get_symbol(cfg)
    label = mx.sym.Variable("softmax_label")
    return losses.build_head(embedding, label, cfg), embedding


def log_network_size(embedding, cfg):
    params = flops.count_params(embedding)
    # PocketNet's published figures also count BatchNorm, PReLU and pooling.
    ops = flops.count_flops(embedding, mode="pocketnet" if cfg.net_name == "pocketnet" else "conv_fc")
    logging.info("Network params: %.3fM", params / 1e6)
    logging.info("Network FLOPs: %s", flops.format_flops(ops))
    return params, ops


def initial_params(cfg, args, spec):
    """(arg_params, aux_params, fixed names, begin step) from --pretrained/--resume/teacher."""
    arg_params, aux_params, begin_step, fixed = {}, {}, 0, []
    prefix = run_prefix(cfg)
    if args.resume:
        point = resume_point(prefix)
        if point is None:
            raise FaceKDError(f"--resume: no complete checkpoint {prefix}-NNNN (.params with its .json and "
                              f"{os.path.basename(prefix)}-symbol.json) to resume from")
        epoch, meta = point
        _, arg_params, aux_params = load_checkpoint(prefix, epoch)
        begin_step = meta["step"]
        cfg.resume_meta = meta
        logging.info("resuming from %s-%04d at step %d", prefix, epoch, begin_step)
    elif args.pretrained:
        _, arg_params, aux_params = load_checkpoint(args.pretrained, args.pretrained_epoch)
        logging.info("loaded pretrained %s-%04d", args.pretrained, args.pretrained_epoch)
    if spec.teacher_centres:
        centres = load_teacher_centres(cfg.teacher, cfg.num_classes, cfg.emb_size, cfg.teacher_flag)
        arg_params = dict(arg_params)
        arg_params[spec.teacher_centres] = mx.nd.array(centres)
        fixed.append(spec.teacher_centres)
        logging.info("teacher centres %s from %s, frozen", spec.teacher_centres, cfg.teacher)
    return arg_params, aux_params, fixed, begin_step


def check_input_size(embedding, cfg):
    """The network must take the dataset's images (e.g. y1's 7x7 GDC needs 112x112)."""
    h, w = cfg.image_shape[:2]
    try:
        infer_shape(embedding, data=(1, 3, h, w))
    except mx.base.MXNetError as exc:
        raise FaceKDError(f"--network {cfg.network} cannot take the {h}x{w} images of {cfg.dataset_path} "
                          f"({mxnet_cause(exc)}); align the faces to the network's input size "
                          "(112x112 for every network here) and rebuild the dataset") from None


def check_loaded_shapes(symbol, data_shapes, label_shapes, arg_params, aux_params, source):
    """Weights loaded from ``source`` must have the shapes this run's graph gives them."""
    shapes = dict(data_shapes + label_shapes)
    arg_shapes, _, aux_shapes = infer_shape(symbol, **shapes)
    expected = dict(zip(symbol.list_arguments(), arg_shapes))
    expected.update(zip(symbol.list_auxiliary_states(), aux_shapes))
    for name, value in list(arg_params.items()) + list(aux_params.items()):
        want = expected.get(name)
        if want is not None and tuple(value.shape) != tuple(want):
            raise FaceKDError(f"{source}: {name} has shape {tuple(value.shape)}, this run's graph needs "
                              f"{tuple(want)}; the checkpoint was trained with another --network, --emb-size "
                              "or class count: give one of the same network and sizes")


def run_prefix(cfg):
    return os.path.join(cfg.models_root, f"{cfg.network}-{cfg.loss}-{cfg.dataset}", "model")


class Trainer:
    """One training run, set up from the merged config and the parsed flags."""

    def __init__(self, cfg, args):
        self.cfg, self.args = cfg, args
        self.spec = losses.get_loss(cfg.loss)
        self.lr_steps = parse_lr_steps(cfg.lr_steps)
        if args.seed is not None:
            mx.random.seed(args.seed)
            np.random.seed(args.seed)
        self.contexts = get_contexts(args.cpu_contexts)
        self.prefix = run_prefix(cfg)
        self._prepare_run_folder(cfg, args)
        self.dataset = open_training_set(cfg)
        self.kv = mx.kvstore.create(cfg.kvstore)
        self.batch_size = cfg.per_batch_size * len(self.contexts)
        self.train_iter = self._make_iterator()
        source = f"the soft labels of {self.dataset.rec_path}"
        if cfg.get("teacher_schedule"):
            self.train_iter = ScheduledTeacherIter(self.train_iter, cfg.teacher_schedule, self.contexts,
                                                   self.batch_size, tuple(cfg.image_shape[:2]))
            cfg.teacher_dim = self.train_iter.teacher_dim
            source = f"--teacher-schedule {cfg.teacher_schedule}"
        check_teacher_dim(cfg, self.spec, source)
        self.symbol, self.embedding = build_symbols(cfg)
        check_input_size(self.embedding, cfg)
        self.arg_params, self.aux_params, self.fixed, self.begin_step = initial_params(cfg, args, self.spec)
        if args.resume or args.pretrained:
            source = "--resume " + self.prefix if args.resume else f"--pretrained {args.pretrained}"
            check_loaded_shapes(self.symbol, self.train_iter.provide_data, self.train_iter.provide_label,
                                self.arg_params, self.aux_params, source)

    @staticmethod
    def _prepare_run_folder(cfg, args):
        """Before any work: the run folder can take checkpoints, holds no leftovers of a killed save,
        and a new run does not overwrite an earlier run's checkpoints."""
        prefix = run_prefix(cfg)
        if cfg.ckpt:
            check_writable_dir(os.path.dirname(prefix), "--models-root")
        clear_run_leftovers(prefix)
        if not args.resume:
            refuse_overwrite(prefix)

    # ------------------------------------------------------------------ set-up
    def _make_iterator(self):
        from ..data import iterators, triplet

        cfg = self.cfg
        common = dict(part_index=self.kv.rank, num_parts=self.kv.num_workers, seed=self.args.seed)
        if self.spec.iterator == "triplet":
            self._mining_embedder = None
            return triplet.TripletIter(
                self.dataset, per_device_batch=cfg.per_batch_size, num_devices=len(self.contexts),
                images_per_identity=cfg.images_per_identity, bag_size=cfg.triplet_bag_size,
                alpha=cfg.triplet_alpha, max_ap=cfg.triplet_max_ap, embed_fn=self._embed_for_mining, before_bag=self._refresh_mining,
                rand_mirror=cfg.data_rand_mirror, decode_threads=self.args.decode_threads, **common)
        return iterators.FaceImageIter(
            self.dataset, batch_size=self.batch_size, data_shape=(3,) + tuple(cfg.image_shape[:2]),
            shuffle=True, rand_mirror=cfg.data_rand_mirror, color_jitter=cfg.data_color,
            cutoff=cfg.data_cutoff, images_filter=cfg.data_images_filter,
            decode_threads=self.args.decode_threads, **common)

    def _refresh_mining(self):
        """Before each triplet bag: the mining embedder takes the student's current weights."""
        if self._mining_embedder is None:
            self._mining_embedder = Embedder(self.embedding, {}, {}, self.contexts, self.batch_size,
                                             image_size=tuple(self.cfg.image_shape[:2]))
        if getattr(self, "module", None) is not None and self.module.params_initialized:
            self._mining_embedder.set_params(*self.module.get_params())

    def _embed_for_mining(self, images):
        """The current student's embeddings of a chunk of the bag (inference, bound once)."""
        return self._mining_embedder.embed(images)

    def _make_module(self):
        cfg = self.cfg
        module = mx.mod.Module(self.symbol, context=self.contexts, data_names=["data"],
                               label_names=["softmax_label"], fixed_param_names=self.fixed)
        module.bind(data_shapes=self.train_iter.provide_data, label_shapes=self.train_iter.provide_label,
                    for_training=True)
        module.init_params(initializer=symbols.network_initializer(cfg), arg_params=self.arg_params,
                           aux_params=self.aux_params, allow_missing=True, allow_extra=True)
        workers = self.kv.num_workers if "dist" in self.kv.type and "sync" in self.kv.type else 1
        scheduler = StepScheduler(cfg.lr, self.lr_steps, begin_step=self.begin_step)
        # The optimizer sets the scheduler's base_lr to learning_rate: pass the base, not the current lr.
        optimizer.init_sgd(module, self.kv, len(self.contexts), learning_rate=cfg.lr, momentum=cfg.mom,
                           wd=cfg.wd, rescale_grad=1.0 / (len(self.contexts) * workers),
                           lr_scheduler=scheduler, begin_num_update=self.begin_step)
        return module

    def _make_verifier(self):
        cfg = self.cfg
        paths = verification.find_targets(cfg.dataset_path, cfg.val_targets)
        image_size = tuple(cfg.image_shape[:2])
        targets = [verification.load_target(p, image_size) for p in paths]
        vbatch = self.args.verification_batch_size or cfg.per_batch_size
        # Bound without weights: every round copies the module's current ones.
        embedder = Embedder(self.embedding, {}, {}, self.contexts, vbatch * len(self.contexts),
                            image_size=image_size) if targets else None
        exclude = [self.spec.teacher_centres] if self.spec.teacher_centres == "teacher_fc7_weight" else []
        policy = CheckpointPolicy(cfg.ckpt)
        policy.restore(cfg.get("resume_meta") or {})
        return VerifyAndSave(self.prefix, policy, targets, embedder, self.embedding,
                             vbatch * len(self.contexts), exclude_params=exclude,
                             meta=dict(network=cfg.network, loss=cfg.loss, dataset=cfg.dataset))

    # ------------------------------------------------------------------ run
    def run(self):
        cfg = self.cfg
        log_network_size(self.embedding, cfg)
        logging.info("contexts %s, batch %d (%d per device), %d images, %d classes, loss %s",
                     self.contexts, self.batch_size, cfg.per_batch_size, self.dataset.num_images,
                     cfg.num_classes, cfg.loss)
        self.module = self._make_module()
        if self.kv.num_workers > 1:
            logging.info("worker %d of %d (kvstore %s): reading shard %d of the images",
                         self.kv.rank, self.kv.num_workers, self.kv.type, self.kv.rank)
        # Across machines every worker holds the same weights: the first one verifies and saves.
        verifier = self._make_verifier() if self.kv.rank == 0 else None
        metric = mx.metric.CompositeEvalMetric(self.spec.metrics(cfg))
        speedometer = mx.callback.Speedometer(self.batch_size, cfg.frequent, auto_reset=True)
        lr_log = LrBatchEpochLog(self.module._optimizer)
        step = self.begin_step
        last_verified = None
        start = time.time()
        for epoch in range(cfg.end_epoch):
            self.train_iter.reset()
            metric.reset()
            for nbatch, batch in enumerate(self.train_iter):
                step += 1
                self.module.forward_backward(batch)
                self.module.update()
                self.module.update_metric(metric, batch.label)
                speedometer(mx.model.BatchEndParam(epoch=epoch, nbatch=nbatch, eval_metric=metric,
                                                   locals=None))
                lr_log(nbatch, epoch)
                if step % cfg.verbose == 0 and verifier is not None:
                    verifier(step, self.module)
                    last_verified = step
                if cfg.max_steps and step >= cfg.max_steps:
                    break
            if cfg.max_steps and step >= cfg.max_steps:
                break
        if last_verified != step and cfg.ckpt and verifier is not None:
            verifier(step, self.module)
        logging.info("finished %d steps in %.1fs", step - self.begin_step, time.time() - start)
        self.final_step = step
        return verifier


def setup_logging():
    """INFO lines as bare messages (the format users grep), unless logging is already set up."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)


def main(argv=None):
    from .args import parse_args

    setup_logging()
    args, cfg = parse_args(argv)
    logging.info("called with %s", vars(args))
    Trainer(cfg, args).run()
    return 0
