"""The search's two optimisers over named NDArrays, and the weights' cosine-annealed learning rate.

* weights: SGD with momentum and weight decay (MXNet's ``sgd_mom_update``: v = m v - lr (g + wd w),
  w += v), the gradient clipped to a global L2 norm (DARTS: 5) first;
* architecture: Adam with L2 weight decay (``adam_update``), bias-corrected through the step
  size as MXNet's Adam does: lr_t = lr sqrt(1 - b2^t) / (1 - b1^t).

The states (momentum; Adam's means, variances and step count) are plain named arrays, saved
with the search's checkpoint as arrays (no pickled optimiser object).
"""
import math

import mxnet as mx


def cosine_lr(epoch, epochs, lr_max, lr_min):
    """Learning rate of ``epoch`` (0-based) of ``epochs``: cosine annealing from ``lr_max`` towards
    ``lr_min`` (PyTorch's CosineAnnealingLR stepped once per epoch, as DARTS and PocketNet)."""
    return lr_min + 0.5 * (lr_max - lr_min) * (1.0 + math.cos(math.pi * epoch / epochs))


def global_norm(grads):
    """L2 norm of all the arrays of ``grads`` (a dict) together, as a float."""
    squares = [mx.nd.sum(mx.nd.square(g)).as_in_context(mx.cpu()) for g in grads.values()]
    return math.sqrt(float(mx.nd.add_n(*squares).asscalar())) if squares else 0.0


def clip_scale(norm, max_norm):
    """Factor that brings a gradient of ``norm`` down to ``max_norm`` (1 when it is below; PyTorch's rule)."""
    return min(1.0, max_norm / (norm + 1e-6)) if max_norm > 0 else 1.0


class MomentumSGD:
    """SGD with momentum ``momentum`` and weight decay ``wd``; momentum states by parameter name."""

    def __init__(self, momentum, wd):
        self.momentum, self.wd = float(momentum), float(wd)
        self.states = {}

    def update(self, weights, grads, lr, rescale=1.0):
        """One step of every array of ``weights`` (name -> NDArray, updated in place) with ``grads``."""
        for name, weight in weights.items():
            mom = self.states.get(name)
            if mom is None:
                mom = self.states[name] = mx.nd.zeros_like(weight)
            mx.nd.sgd_mom_update(weight, grads[name], mom, lr=lr, momentum=self.momentum, wd=self.wd,
                                 rescale_grad=rescale, out=weight)

    def state_arrays(self):
        return {f"mom:{k}": v for k, v in self.states.items()}

    def load_state_arrays(self, arrays, like):
        """Momentum from :meth:`state_arrays`' names; ``like`` (name -> array) gives device and dtype."""
        self.states = {k[4:]: v.as_in_context(like[k[4:]].context).astype(like[k[4:]].dtype)
                       for k, v in arrays.items() if k.startswith("mom:") and k[4:] in like}


class Adam:
    """Adam (``beta1``, ``beta2``, ``epsilon``) with L2 weight decay ``wd``; states by parameter name."""

    def __init__(self, lr, beta1, beta2, wd, epsilon=1e-8):
        self.lr, self.beta1, self.beta2, self.wd, self.epsilon = float(lr), float(beta1), float(beta2), \
            float(wd), float(epsilon)
        self.steps = 0
        self.states = {}

    def update(self, weights, grads, rescale=1.0):
        """One step of every array of ``weights`` (updated in place) with ``grads``."""
        self.steps += 1
        t = self.steps
        lr = self.lr * math.sqrt(1.0 - self.beta2 ** t) / (1.0 - self.beta1 ** t)
        for name, weight in weights.items():
            state = self.states.get(name)
            if state is None:
                state = self.states[name] = (mx.nd.zeros_like(weight), mx.nd.zeros_like(weight))
            mean, var = state
            mx.nd.adam_update(weight, grads[name], mean, var, lr=lr, beta1=self.beta1, beta2=self.beta2,
                              epsilon=self.epsilon, wd=self.wd, rescale_grad=rescale, out=weight)

    def state_arrays(self):
        out = {}
        for name, (mean, var) in self.states.items():
            out[f"mean:{name}"], out[f"var:{name}"] = mean, var
        return out

    def load_state_arrays(self, arrays, like, steps):
        """States from :meth:`state_arrays`' names and the step count ``steps``."""
        self.steps = int(steps)
        self.states = {}
        for name, ref in like.items():
            if f"mean:{name}" in arrays and f"var:{name}" in arrays:
                self.states[name] = tuple(arrays[f"{kind}:{name}"].as_in_context(ref.context).astype(ref.dtype)
                                          for kind in ("mean", "var"))
