"""The training run: data, symbol, parameters, Module over N contexts, the step loop."""
import logging
import os
import time

import mxnet as mx
import numpy as np

from .. import losses, native, symbols
from ..data import labels
from ..data.recordio import RecordDataset
from ..errors import FaceKDError, mxnet_cause
from ..evaluation import verification
from ..symbols import flops
from ..symbols.shapes import infer_shape
from ..atomic import check_writable_dir
from ..checkpoints import checkpoint_name, load_arrays, load_checkpoint, load_params
from ..embedder import Embedder
from . import cluster_watch, optimizer
from .callbacks import CheckpointPolicy, LrBatchEpochLog, SpeedLog, VerifyAndSave
from .checkpoint import RESUME, clear_run_leftovers, refuse_overwrite, resume_point, save_set, settled_params
from .contexts import get_contexts
from .online_teacher import ScheduledTeacherIter, schedule_teacher_dim
from .schedule import StepScheduler, parse_lr_steps
from .settings import resolve
from .signals import StopRequest
from .teacher_centres import load_teacher_centres
from .partial_fc import class_sampler


def open_training_set(cfg, spec):
    """The training set of ``cfg.dataset_path``, checked against the label kind of loss ``spec``."""
    folder = cfg.dataset_path
    if not os.path.isdir(folder):
        raise FaceKDError(f"dataset folder {folder} does not exist; give --data-dir "
                          "(make one with data_prepare/make_synthetic.py)")
    dataset = RecordDataset(folder)
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
    if dataset.num_identities and dataset.num_classes > 2 * dataset.num_identities:
        logging.warning("%s: property declares %d classes but the set has %d identities: the class "
                        "matrix is %.0fx larger than needed, which slows every step; write the class "
                        "count into property", os.path.join(folder, "property"), dataset.num_classes,
                        dataset.num_identities, dataset.num_classes / dataset.num_identities)
    return dataset


def teacher_source(cfg, dataset):
    """(dimension of the teacher vectors, where they come from): the scheduled teacher of
    ``--teacher-schedule``, else the soft labels of the dataset (0 for class labels)."""
    if cfg.get("teacher_schedule"):
        return (schedule_teacher_dim(cfg.teacher_schedule, dataset.image_size),
                f"--teacher-schedule {cfg.teacher_schedule}")
    return dataset.layout.teacher_dim, f"the soft labels of {dataset.rec_path}"


def check_teacher_dim(settings, spec, source):
    """Methods that compare student and teacher embeddings need the same dimension."""
    if spec.needs_teacher_dim and settings.teacher_dim != settings.emb_size:
        raise FaceKDError(f"--loss {settings.loss} compares student and teacher embeddings: {source} gives "
                          f"{settings.teacher_dim}-d teacher vectors but --emb-size is {settings.emb_size}; "
                          f"set --emb-size {settings.teacher_dim}")


def build_symbols(settings):
    """(training symbol, deployable embedding symbol)."""
    embedding = symbols.get_symbol(settings)
    label = mx.sym.Variable("softmax_label")
    return losses.build_head(embedding, label, settings), embedding


def log_network_size(embedding, settings):
    params = flops.count_params(embedding)
    ops = flops.count_flops(embedding, mode=symbols.get_network(settings.network).flops_mode)
    logging.info("Network params: %.3fM", params / 1e6)
    logging.info("Network FLOPs: %s", flops.format_flops(ops))
    return params, ops


def initial_params(settings, args, spec, prefix):
    """(arg_params, aux_params, fixed names) from --resume / --pretrained and the teacher's centres."""
    arg_params, aux_params, fixed = {}, {}, []
    if settings.resume_params is not None:
        arg_params, aux_params = load_params(settings.resume_params)
        logging.info("resuming from %s at step %d", settings.resume_params[:-len(".params")],
                     settings.begin_step)
    elif args.pretrained:
        _, arg_params, aux_params = load_checkpoint(args.pretrained, args.pretrained_epoch)
        logging.info("loaded pretrained %s", checkpoint_name(args.pretrained, args.pretrained_epoch))
    if spec.teacher_centres:
        centres = load_teacher_centres(settings.teacher, settings.num_classes, settings.emb_size,
                                       settings.teacher_flag)
        arg_params = dict(arg_params)
        arg_params[spec.teacher_centres] = mx.nd.array(centres)
        fixed.append(spec.teacher_centres)
        logging.info("teacher centres %s from %s, frozen", spec.teacher_centres, settings.teacher)
    return arg_params, aux_params, fixed


def check_input_size(embedding, settings):
    """The network must take the dataset's images (e.g. y1's 7x7 GDC needs 112x112)."""
    h, w = settings.image_shape[:2]
    try:
        infer_shape(embedding, data=(1, 3, h, w))
    except mx.base.MXNetError as exc:
        nh, nw = symbols.get_network(settings.network).input_size
        raise FaceKDError(f"--network {settings.network} cannot take the {h}x{w} images of "
                          f"{settings.dataset_path} ({mxnet_cause(exc)}); align the faces to its input "
                          f"size, {nh}x{nw}, and rebuild the dataset") from None


def check_loaded_shapes(symbol, data_shapes, label_shapes, arg_params, aux_params, source, devices):
    """Weights loaded from ``source`` must have the shapes this run's graph gives them (the graph is
    bound per device: each gets 1/``devices`` of the iterator's batch)."""
    shapes = {name: (shape[0] // devices,) + tuple(shape[1:]) for name, shape in data_shapes + label_shapes}
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


def prepare_run_folder(prefix, ckpt, resume):
    """Before any work: the run folder can take checkpoints, holds no leftovers of a killed save,
    and a new run does not overwrite an earlier run's checkpoints."""
    if ckpt:
        check_writable_dir(os.path.dirname(prefix), "--models-root")
    clear_run_leftovers(prefix)
    if not resume:
        refuse_overwrite(prefix)


class Trainer:
    """One training run: its settings (fixed once), data, graph and Module; :meth:`run` trains."""

    def __init__(self, cfg, args):
        self.args = args
        self.spec = losses.get_loss(cfg.loss)
        self.lr_steps = parse_lr_steps(cfg.lr_steps)
        if args.seed is not None:
            mx.random.seed(args.seed)
            np.random.seed(args.seed)
        self.contexts = get_contexts(args.cpu_contexts, work="training")
        self.prefix = run_prefix(cfg)
        prepare_run_folder(self.prefix, cfg.ckpt, args.resume)
        self.dataset = open_training_set(cfg, self.spec)
        teacher_dim, source = teacher_source(cfg, self.dataset)
        resume = self._resume_point() if args.resume else None
        self.settings = settings = resolve(cfg, self.dataset, teacher_dim, resume,
                                           native_unit_rows=native.unit_rows_available(self.contexts))
        check_teacher_dim(settings, self.spec, source)
        self.symbol, self.embedding = build_symbols(settings)
        check_input_size(self.embedding, settings)
        self.kv = mx.kvstore.create(settings.kvstore)
        self.watch = cluster_watch.watch_worker(self.kv)  # a lost machine stops the job, no hang
        self.batch_size = settings.per_batch_size * len(self.contexts)
        self.train_iter = self._make_iterator()
        self.begin_step = settings.begin_step
        self.arg_params, self.aux_params, self.fixed = initial_params(settings, args, self.spec, self.prefix)
        if resume is not None or args.pretrained:
            source = "--resume " + self.prefix if resume is not None else f"--pretrained {args.pretrained}"
            check_loaded_shapes(self.symbol, self.train_iter.provide_data, self.train_iter.provide_label,
                                self.arg_params, self.aux_params, source, len(self.contexts))
        self.classes = class_sampler(settings, self.spec, len(self.contexts), self.kv, args.seed)  # --sample-ratio
        self.module = self.schedule = None

    def _resume_point(self):
        point = resume_point(self.prefix)
        if point is not None and point.states_file is None:
            logging.info("--resume: %s has no optimizer state: SGD momentum starts from zero and a fresh "
                         "shuffle starts the epoch", point.stem)
        if point is None:
            raise FaceKDError(f"--resume: no complete checkpoint {self.prefix}-NNNN (.params with its .json "
                              f"and {os.path.basename(self.prefix)}-symbol.json) to resume from")
        return point

    # ------------------------------------------------------------------ set-up
    def _make_iterator(self):
        from ..data import iterators, triplet

        s = self.settings
        image_size = tuple(s.image_shape[:2])
        common = dict(part_index=self.kv.rank, num_parts=self.kv.num_workers, seed=self.args.seed)
        if self.spec.iterator == "triplet":
            # mines with the student: bound without weights, the trainer hands them over per bag
            embedder = Embedder(self.embedding, {}, {}, self.contexts, self.batch_size, image_size=image_size)
            return triplet.TripletIter(
                self.dataset, embedder, per_device_batch=s.per_batch_size, num_devices=len(self.contexts),
                images_per_identity=s.images_per_identity, bag_size=s.triplet_bag_size,
                alpha=s.triplet_alpha, max_ap=s.triplet_max_ap, rand_mirror=s.data_rand_mirror,
                decode_threads=self.args.decode_threads, **common)
        face = iterators.FaceImageIter(
            self.dataset, batch_size=self.batch_size, data_shape=(3,) + image_size,
            shuffle=True, rand_mirror=s.data_rand_mirror, color_jitter=s.data_color,
            cutoff=s.data_cutoff, images_filter=s.data_images_filter,
            decode_threads=self.args.decode_threads, **common)
        if s.get("teacher_schedule"):
            return ScheduledTeacherIter(face, s.teacher_schedule, self.contexts, self.batch_size, image_size)
        return face

    def _make_module(self):
        s = self.settings
        module = mx.mod.Module(self.symbol, context=self.contexts, data_names=self.classes.data_names(["data"]),
                               label_names=["softmax_label"], fixed_param_names=self.fixed)
        module.bind(data_shapes=self.classes.data_shapes(self.train_iter.provide_data),
                    label_shapes=self.train_iter.provide_label, for_training=True)
        module.init_params(initializer=symbols.network_initializer(s), arg_params=self.arg_params,
                           aux_params=self.aux_params, allow_missing=True, allow_extra=True)
        workers = self.kv.num_workers if "dist" in self.kv.type and "sync" in self.kv.type else 1
        self.schedule = StepScheduler(s.lr, self.lr_steps, begin_step=self.begin_step)
        # The optimizer sets the scheduler's base_lr to learning_rate: pass the base, not the current lr.
        optimizer.init_sgd(module, self.classes.kvstore(self.kv, len(self.contexts)), len(self.contexts),
                           learning_rate=s.lr, momentum=s.mom,
                           wd=s.wd, rescale_grad=1.0 / (len(self.contexts) * workers),
                           lr_scheduler=self.schedule, begin_num_update=self.begin_step)
        return module

    def _make_verifier(self):
        s = self.settings
        paths = verification.find_targets(s.dataset_path, s.val_targets)
        image_size = tuple(s.image_shape[:2])
        targets = [verification.load_target(p, image_size) for p in paths]
        vbatch = self.args.verification_batch_size or s.per_batch_size
        # Bound without weights: every round copies the module's current ones.
        embedder = Embedder(self.embedding, {}, {}, self.contexts, vbatch * len(self.contexts),
                            image_size=image_size) if targets else None
        exclude = [self.spec.teacher_centres] if self.spec.teacher_centres == "teacher_fc7_weight" else []
        policy = CheckpointPolicy(s.ckpt)
        policy.restore(s.resume_meta)
        return VerifyAndSave(self.prefix, policy, targets, embedder, self.embedding,
                             vbatch * len(self.contexts), exclude_params=exclude,
                             meta=dict(network=s.network, loss=s.loss, dataset=s.dataset))

    def _start_epoch(self, epoch, resumed):
        """A new epoch; an iterator that runs the student (triplet mining) first gets its weights.

        Returns the batches already done in it: those of the saved data position when the run
        resumes inside ``epoch``, else 0.
        """
        if self.train_iter.needs_weights:
            self.train_iter.set_weights(*settled_params(self.module))
        position = self.settings.resume_position if resumed else None
        if position is not None and self.settings.resume_states is not None:
            self.train_iter.restore(epoch, position)
            return int(position["batch"])
        self.train_iter.reset()
        return 0

    def _restore_optimizer(self):
        """SGD momentum of the resumed set, when it has it (every worker of a parameter-server job reads it)."""
        path = self.settings.resume_states
        if path is None:
            return
        optimizer.restore_optimizer_states(self.module, len(self.contexts), self.kv,
                                           load_arrays(path, "optimizer state"), path)

    def save_resume_set(self, step, epoch, batches_done, policy):
        """The run's latest state: weights, momentum, data position; what --resume continues from."""
        s = self.settings
        states = optimizer.optimizer_state_arrays(self.module, len(self.contexts), self.kv)
        arg_params, aux_params = settled_params(self.module)
        exclude = {self.spec.teacher_centres} if self.spec.teacher_centres == "teacher_fc7_weight" else set()
        meta = dict(network=s.network, loss=s.loss, dataset=s.dataset, step=step, epoch=epoch,
                    position=self.train_iter.position(batches_done), devices=len(self.contexts),
                    **policy.state())
        save_set(self.prefix, RESUME, self.embedding, {k: v for k, v in arg_params.items() if k not in exclude},
                 aux_params, meta, states)

    def _check_finite(self, step, objective):
        """Stop before the update of a step whose loss is not finite, saying what likely caused it.

        (An update can also overflow with a finite loss; then the next step's loss is not finite,
        and no checkpoint is written meanwhile: ``checkpoint.check_finite_params``.)"""
        # per device, unmerged: merging would concatenate every output, the (B x C) matrices too
        values = np.concatenate([out.asnumpy().ravel()
                                 for out in self.module.get_outputs(merge_multi_context=False)[objective]])
        if np.isfinite(values).all():
            return
        s = self.settings
        margins = ", ".join(f"{k} {s[k]:g}" for k in ("loss_s", "loss_m1", "loss_m2", "loss_m3", "Mmax")
                            if isinstance(s.get(k), (int, float)))
        raise FaceKDError(f"step {step}: the loss is {', '.join(f'{v:g}' for v in values)} (per device); training "
                          f"stopped before this step's update, and the checkpoints written so far (all finite) are "
                          f"kept. Likely causes: --lr {s.lr:g} too high for this network, or a margin too large "
                          f"for the scale ({margins}); resume with a lower --lr (--resume --lr ...)")

    # ------------------------------------------------------------------ run
    def run(self):
        s = self.settings
        log_network_size(self.embedding, s)
        logging.info("contexts %s, batch %d (%d per device), %d images, %d classes, loss %s",
                     self.contexts, self.batch_size, s.per_batch_size, self.dataset.num_images,
                     s.num_classes, s.loss)
        self.module = self._make_module()
        self._restore_optimizer()
        if self.kv.num_workers > 1:
            logging.info("worker %d of %d (kvstore %s): reading shard %d of the images",
                         self.kv.rank, self.kv.num_workers, self.kv.type, self.kv.rank)
        # Across machines every worker holds the same weights: the first one verifies and saves.
        verifier = self._make_verifier() if self.kv.rank == 0 else None
        saves = verifier is not None and s.ckpt != 0
        metric = mx.metric.CompositeEvalMetric(losses.head_metrics(self.symbol))
        objective = losses.objective_index(self.symbol)
        speedometer = SpeedLog.for_run(s, self.train_iter, self.batch_size)  # logs the total steps
        lr_log = LrBatchEpochLog(self.schedule)
        step = self.begin_step
        last_verified = None
        start = time.time()
        epoch, done = s.begin_epoch, 0
        finished = bool(s.max_steps and step >= s.max_steps)
        if finished:
            logging.info("step %d already reaches --max-steps %d: nothing to train", step, s.max_steps)
        with StopRequest() as stop:
            for epoch in range(s.begin_epoch, s.begin_epoch if finished else s.end_epoch):
                done = self._start_epoch(epoch, resumed=epoch == s.begin_epoch)
                metric.reset()
                for nbatch, batch in enumerate(self.train_iter, start=done):
                    step += 1
                    batch = self.classes.prepare(batch, step)  # Partial FC: this step's sampled classes
                    self.module.forward_backward(batch)
                    self.module.update_metric(metric, batch.label)
                    self._check_finite(step, objective)
                    self.module.update()
                    done = nbatch + 1
                    speedometer(mx.model.BatchEndParam(epoch=epoch, nbatch=nbatch, eval_metric=metric,
                                                       locals=None))
                    lr_log(step, nbatch, epoch)
                    if step % s.verbose == 0 and verifier is not None:
                        verifier(step, self.module)
                        last_verified = step
                        if saves:
                            self.save_resume_set(step, epoch, done, verifier.policy)
                    if (s.max_steps and step >= s.max_steps) or stop.requested:
                        break
                if (s.max_steps and step >= s.max_steps) or stop.requested:
                    break
            if stop.requested:
                if saves:
                    self.save_resume_set(step, epoch, done, verifier.policy)
                    logging.info("stopped at step %d, resume with --resume", step)
                else:
                    logging.info("stopped at step %d; nothing saved (--ckpt 0, or not the first worker)", step)
            elif last_verified != step and step > self.begin_step and s.ckpt and verifier is not None:
                verifier(step, self.module)
                self.save_resume_set(step, epoch, done, verifier.policy)
        logging.info("finished %d steps in %.1fs", step - self.begin_step, time.time() - start)
        self.final_step = step
        if self.watch is not None:
            self.watch.finish()
        return verifier


def setup_logging():
    """INFO lines as bare messages (the format users grep), unless logging is already set up."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)


def main(argv=None, script_config=None):
    """``script_config``: the config.py beside the running train.py (read when --config is not given)."""
    from .args import parse_args
    from .run_log import RunLog

    setup_logging()
    with RunLog() as run_log:  # <run folder>/train.log, once the run is accepted
        args, cfg = parse_args(argv, script_config)
        logging.info("config: tables from %s", cfg.config_file)
        logging.info("called with %s", vars(args))
        trainer = Trainer(cfg, args)
        run_log.open(trainer.prefix, append=args.resume, write=trainer.kv.rank == 0)
        trainer.run()
    return 0
