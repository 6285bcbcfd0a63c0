"""Per-step callbacks: the speed line with the time left, the lr-batch-epoch line and the
verify-then-maybe-save round."""
import logging
import time
from collections import deque

from ..evaluation import verification
from .checkpoint import save_checkpoint, settled_params


def format_duration(seconds):
    """``H:MM:SS`` (hours not wrapped into days): 3723.4 -> ``1:02:03``."""
    total = int(round(max(0.0, seconds)))
    return "%d:%02d:%02d" % (total // 3600, total // 60 % 60, total % 60)


class RunLength:
    """How long a run is: the smaller of ``--max-steps`` (0 = no limit) and ``--end-epoch`` x the
    batches of an epoch. ``batches_per_epoch`` is None when epochs differ in size and are known
    only once started (a triplet epoch is one mined bag)."""

    def __init__(self, max_steps, end_epoch, batches_per_epoch=None):
        self.max_steps = int(max_steps)
        self.end_epoch = int(end_epoch)
        self.batches_per_epoch = batches_per_epoch

    def steps_left(self, step, epoch, batches_done, batches_per_epoch=None):
        """Steps left after global ``step``, ``batches_done`` batches into (0-based) ``epoch`` of
        ``batches_per_epoch`` batches (default: the run's; for triplets, the current bag's, an
        estimate for the bags to come); None when nothing bounds the run."""
        per_epoch = batches_per_epoch or self.batches_per_epoch
        limits = []
        if self.max_steps:
            limits.append(self.max_steps - step)
        if per_epoch:
            limits.append(per_epoch - batches_done + (self.end_epoch - epoch - 1) * per_epoch)
        return max(0, min(limits)) if limits else None

    def describe(self, step=0, epoch=0, batches_done=0):
        """The start line, e.g. ``total steps: 3000 (the smaller of --max-steps 3000 and
        --end-epoch 10000 x 37 batches per epoch = 370000)``; ``step`` > 0 for a resumed run."""
        done = f"; {step} done" if step else ""
        left = self.steps_left(step, epoch, batches_done)
        if not self.batches_per_epoch:
            bags = f"--end-epoch {self.end_epoch} triplet bags, whose batches are known as each is mined"
            if left is None:
                return f"total steps: not known in advance ({bags}; --max-steps 0: no limit){done}"
            return f"total steps: at most {step + left} (--max-steps {self.max_steps}; {bags}){done}"
        epochs = (f"--end-epoch {self.end_epoch} x {self.batches_per_epoch} batches per epoch "
                  f"= {self.end_epoch * self.batches_per_epoch}")
        how = (f"the smaller of --max-steps {self.max_steps} and {epochs}" if self.max_steps
               else f"{epochs}; --max-steps 0: no limit")
        return f"total steps: {step + left} ({how}){done}{f', {left} to go' if step else ''}"


class SpeedLog:
    """insightface's speed line, as MXNet's ``Speedometer(batch_size, frequent, auto_reset=True)``
    writes it, followed by the estimated time left:

        Epoch[0] Batch [20-40]\tSpeed: 512.31 samples/sec\tacc=0.012500\tlossvalue=21.403000\tTime left: 1:02:03

    Called once per step (after the step), as the Speedometer: the first batch of an epoch
    (or of the process) only starts the clock; then every ``frequent`` batches a line. The
    time left is the steps left (:class:`RunLength`) times the seconds per step of the last
    few logged intervals; the first step of an epoch (its start: reshuffle, triplet mining)
    is never timed, as in the Speedometer. ``epoch_batches()`` gives the current epoch's
    batch count (it changes with every triplet bag).
    """

    WINDOW = 5  # logged intervals the time left averages over

    def __init__(self, batch_size, frequent, length, epoch_batches=lambda: None, begin_step=0,
                 clock=time.monotonic):
        self.batch_size = batch_size
        self.frequent = frequent
        self.length = length
        self.epoch_batches = epoch_batches
        self.step = begin_step
        self.clock = clock
        self.init = False
        self.tic = 0.0
        self.tic_count = 0  # the batch the clock started at
        self.last_count = 0
        self.recent = deque(maxlen=self.WINDOW)  # (batches, seconds) of the last intervals

    @classmethod
    def for_run(cls, settings, train_iter, batch_size):
        """The speed log of a run over ``train_iter``; logs the run's total steps first."""
        length = RunLength(settings.max_steps, settings.end_epoch, getattr(train_iter, "batches_per_epoch", None))
        position = settings.get("resume_position") or {}
        logging.info(length.describe(settings.begin_step, settings.begin_epoch, int(position.get("batch", 0))))
        return cls(batch_size, settings.frequent, length, lambda: getattr(train_iter, "batches_per_epoch", None),
                   begin_step=settings.begin_step)

    def time_left(self, epoch, batches_done):
        """``H:MM:SS`` from the recent speed, or ``no limit``."""
        left = self.length.steps_left(self.step, epoch, batches_done, self.epoch_batches())
        if left is None:
            return "no limit"
        batches = sum(b for b, _ in self.recent)
        seconds = sum(s for _, s in self.recent)
        return format_duration(left * seconds / batches) if batches else "unknown"

    def __call__(self, param):
        self.step += 1
        count = param.nbatch
        if self.last_count > count:  # a new epoch: its first batch only starts the clock
            self.init = False
        self.last_count = count
        if not self.init:
            self.init = True
            self.tic, self.tic_count = self.clock(), count
            return
        if count % self.frequent:
            return
        elapsed = self.clock() - self.tic
        # the speed as the Speedometer reports it (as if `frequent` batches); the time left from the
        # batches really timed (fewer after a start inside an interval, e.g. --resume mid-epoch)
        self.recent.append((count - self.tic_count, elapsed))
        speed = self.frequent * self.batch_size / elapsed if elapsed > 0 else float("inf")
        pairs = []
        if param.eval_metric is not None:
            pairs = param.eval_metric.get_name_value()
            param.eval_metric.reset_local()
        msg = "Epoch[%d] Batch [%d-%d]\tSpeed: %.2f samples/sec" + "\t%s=%f" * len(pairs) + "\tTime left: %s"
        logging.info(msg, param.epoch, count - self.frequent, count, speed, *sum(pairs, ()),
                     self.time_left(param.epoch, count + 1))
        self.tic, self.tic_count = self.clock(), count


class LrBatchEpochLog:
    """Logs ``lr-batch-epoch: <lr> <batch> <epoch>`` every ``every`` batches (insightface habit).

    The rate is the schedule's at the global step (the one the optimizer used for that step).
    """

    def __init__(self, schedule, every=1000):
        self.schedule = schedule
        self.every = every

    def __call__(self, step, nbatch, epoch):
        if nbatch % self.every == self.every - 1:
            logging.info("lr-batch-epoch: %g %d %d", self.schedule.lr_at(step), nbatch, epoch)


class CheckpointPolicy:
    """Decides whether and under which number a verification round saves (``--ckpt``).

    0 never saves; 1 saves when highest, numbered by the round counter; 2 always
    saves, numbered by the round counter; 3 saves when highest, always as epoch 1.
    "Highest" is judged on the last target, ties broken by the sum over targets.
    With no targets every round counts as highest.
    """

    def __init__(self, ckpt):
        if ckpt not in (0, 1, 2, 3):
            from ..errors import FaceKDError
            raise FaceKDError(f"--ckpt must be 0, 1, 2 or 3, got {ckpt}")
        self.ckpt = ckpt
        self.rounds = 0
        self.highest_last = 0.0
        self.highest_sum = 0.0

    def state(self):
        return dict(rounds=self.rounds, highest_last=self.highest_last, highest_sum=self.highest_sum)

    def restore(self, meta):
        """Continue numbering and "highest" from a checkpoint's meta (``--resume``)."""
        self.rounds = int(meta.get("rounds", 0))
        self.highest_last = float(meta.get("highest_last", 0.0))
        self.highest_sum = float(meta.get("highest_sum", 0.0))

    def judge(self, accuracies):
        """Record one round; returns (is_highest, save_number or None)."""
        self.rounds += 1
        if not accuracies:
            is_highest = True
        else:
            last, total = accuracies[-1], sum(accuracies)
            is_highest = False
            if last > self.highest_last or (last == self.highest_last and total >= self.highest_sum):
                is_highest = True
                self.highest_last = last
                self.highest_sum = total
        number = {0: None,
                  1: self.rounds if is_highest else None,
                  2: self.rounds,
                  3: 1 if is_highest else None}[self.ckpt]
        return is_highest, number


class VerifyAndSave:
    """Every ``verbose`` steps: verification on each target, then a save per ``CheckpointPolicy``."""

    def __init__(self, prefix, policy, targets, embedder, deploy_symbol, batch_size,
                 exclude_params=(), meta=None):
        self.prefix = prefix
        self.policy = policy
        self.targets = targets
        self.embedder = embedder
        self.deploy_symbol = deploy_symbol
        self.batch_size = batch_size
        self.exclude_params = set(exclude_params)
        self.meta = meta or {}
        self.history = []  # (step, {target: acc})
        self.saved = []
        if not targets:
            logging.info("no verification targets found: every verification round counts as highest "
                         "and the checkpoint policy saves on it")

    def __call__(self, step, module):
        arg_params, aux_params = settled_params(module)
        accuracies = []
        record = {}
        if self.targets:
            self.embedder.set_params(arg_params, aux_params)
            for vset in self.targets:
                result = verification.evaluate(self.embedder, vset, self.batch_size)
                for line in verification.format_log(vset.name, step, result):
                    logging.info(line)
                accuracies.append(result.acc)
                record[vset.name] = result.acc
        is_highest, number = self.policy.judge(accuracies)
        if accuracies:
            logging.info("[%d]Accuracy-Highest: %1.5f", step, self.policy.highest_last)
        self.history.append((step, record))
        if number is not None:
            logging.info("saving %d", number)
            keep = {k: v for k, v in arg_params.items() if k not in self.exclude_params}
            meta = dict(self.meta, step=step, accuracies=record, highest=is_highest, **self.policy.state())
            save_checkpoint(self.prefix, number, self.deploy_symbol, keep, aux_params, meta)
            self.saved.append(number)
        return is_highest
