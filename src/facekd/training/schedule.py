"""Learning-rate schedule that lives in the optimizer (so parameter servers run it too)."""
import logging

# Import the class itself: a parameter server unpickles this scheduler while `import mxnet`
# is still running, when `mx.lr_scheduler` is not yet an attribute of the package.
from mxnet.lr_scheduler import LRScheduler

from ..errors import FaceKDError


def parse_lr_steps(text):
    """'100000,160000,220000' -> [100000, 160000, 220000] (strictly increasing, positive)."""
    if isinstance(text, (list, tuple)):
        steps = [int(s) for s in text]
    else:
        try:
            steps = [int(s) for s in str(text).split(",") if s.strip()]
        except ValueError:
            raise FaceKDError(f"--lr-steps must be comma-separated integers, got {text!r}") from None
    if any(s <= 0 for s in steps) or steps != sorted(set(steps)):
        raise FaceKDError(f"--lr-steps must be increasing positive step numbers, got {text!r}")
    return steps


class StepScheduler(LRScheduler):
    """Multiply the learning rate by ``factor`` at each global step in ``steps``.

    ``num_update`` is the optimizer's update count, i.e. the global step (from 1).
    Logs ``lr change to <lr>`` when it changes, as insightface users expect.
    """

    def __init__(self, base_lr, steps, factor=0.1, begin_step=0):
        super().__init__(base_lr=base_lr)
        self.steps = list(steps)
        self.factor = factor
        self._current = self.lr_at(begin_step + 1)  # resuming: no "change" for steps already passed

    def lr_at(self, step):
        passed = sum(1 for s in self.steps if step > s)
        return self.base_lr * self.factor ** passed

    def __call__(self, num_update):
        lr = self.lr_at(num_update)
        if lr != self._current:
            self._current = lr
            logging.info("lr change to %g", lr)
        return lr
