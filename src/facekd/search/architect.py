"""The architecture gradient of DARTS, first or second order, and the architecture step.

First order: the gradient of the loss of an architecture-half batch L_val(w, alpha) with
respect to alpha at the current weights w.

Second order (DARTS' unrolled gradient): the gradient of L_val(w', alpha) where
w' = w - xi * grad_w L_train(w, alpha) is one virtual SGD step on a weight-half batch
(xi the current weight learning rate). By the chain rule it is

    grad_alpha L_val(w', alpha) - xi * H grad_w' L_val(w', alpha),    H = d/dalpha grad_w L_train(w, alpha),

and the Hessian-vector product is taken by central differences:
H v ~ (grad_alpha L_train(w + eps v, alpha) - grad_alpha L_train(w - eps v, alpha)) / (2 eps),
eps = 0.01 / ||v||. That is four forward-backward passes per architecture step, against one.
The weights are restored exactly afterwards (only the BatchNorm running statistics have
seen the extra batches, as in DARTS).
"""
import math

import mxnet as mx

ORDERS = ("first", "second")
HVP_SCALE = 0.01  # eps = HVP_SCALE / ||grad_w' L_val(w', alpha)|| (DARTS)


class Architect:
    """Computes the architecture gradient on ``supernet`` and applies it with ``optimizer`` (Adam)."""

    def __init__(self, supernet, optimizer, order="first", hvp_scale=HVP_SCALE):
        if order not in ORDERS:
            raise ValueError(f"order {order!r}")
        self.net, self.optimizer, self.order, self.hvp_scale = supernet, optimizer, order, float(hvp_scale)

    # ------------------------------------------------------------------ gradients
    def first_order(self, arch_batch):
        """({alpha: gradient}, loss, acc) at the current weights."""
        loss, acc = self.net.forward_backward(*arch_batch)
        grads = {n: g.copy() for n, g in self.net.gradients(self.net.alpha_names).items()}
        return grads, loss, acc

    def _weights(self):
        return {n: self.net.array(n) for n in self.net.weight_names}

    def _set_weights(self, base, direction=None, scale=0.0):
        """Master weights = base + scale * direction (every device); exactly ``base`` without a direction."""
        for name, weight in self._weights().items():
            weight[:] = base[name] if direction is None else base[name] + scale * direction[name]
        self.net.broadcast(self.net.weight_names)

    def _alpha_grads_at(self, train_batch):
        self.net.forward_backward(*train_batch)
        return {n: g.copy() for n, g in self.net.gradients(self.net.alpha_names).items()}

    def second_order(self, train_batch, arch_batch, xi):
        """({alpha: unrolled gradient}, loss, acc); loss and acc of the architecture batch at w'."""
        net = self.net
        base = {n: w.copy() for n, w in self._weights().items()}
        net.forward_backward(*train_batch)
        train_grad = {n: g.copy() for n, g in net.gradients(net.weight_names).items()}
        self._set_weights(base, train_grad, -xi)  # w' = w - xi grad_w L_train(w, alpha)
        loss, acc = net.forward_backward(*arch_batch)
        dalpha = {n: g.copy() for n, g in net.gradients(net.alpha_names).items()}
        dw = {n: g.copy() for n, g in net.gradients(net.weight_names).items()}
        norm = math.sqrt(sum(float(mx.nd.sum(mx.nd.square(g)).asscalar()) for g in dw.values()))
        if norm > 0:
            eps = self.hvp_scale / norm
            self._set_weights(base, dw, eps)
            plus = self._alpha_grads_at(train_batch)
            self._set_weights(base, dw, -eps)
            minus = self._alpha_grads_at(train_batch)
            for name in dalpha:
                dalpha[name] -= xi * (plus[name] - minus[name]) / (2 * eps)
        self._set_weights(base)  # restore w
        return dalpha, loss, acc

    def gradient(self, train_batch, arch_batch, xi):
        """The architecture gradient of this architect's order: ({alpha: gradient}, loss, acc)."""
        if self.order == "second":
            return self.second_order(train_batch, arch_batch, xi)
        return self.first_order(arch_batch)

    # ------------------------------------------------------------------ the step
    def step(self, train_batch, arch_batch, xi):
        """One Adam step of the architecture weights; returns (loss, acc) of the architecture batch."""
        grads, loss, acc = self.gradient(train_batch, arch_batch, xi)
        self.optimizer.update({n: self.net.array(n) for n in self.net.alpha_names}, grads)
        self.net.broadcast(self.net.alpha_names)
        return loss, acc
