"""Per-step callbacks: the lr-batch-epoch line and the verify-then-maybe-save round."""
import logging

from ..evaluation import verification
from .checkpoint import save_checkpoint, settled_params


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
