"""The trainer's SGD: MXNet's SGD with momentum, large tensors through the threaded kernel.

MXNet 1.9's ``SGD`` sends every dense update through ``multi_sgd_mom_update``, whose
CPU kernel runs on one thread: for the 85,742 x 512 fc7 matrix of an MS1M head that
is about 66 ms a step on the 2-core development machine, where ``sgd_mom_update``
(OpenMP) does the same update in about half the time. :class:`FaceSGD` updates
tensors of at least :data:`LARGE_TENSOR` elements one by one with the single-tensor
kernels and leaves the rest to MXNet's aggregated path. Both kernels compute

    mom = momentum * mom - lr * (rescale_grad * clip(grad) + wd * weight);  weight += mom

so the numbers are MXNet's SGD's; lr_mult / wd_mult, the lr scheduler and
multi-precision (fp16 weights, left to MXNet) behave as in ``sgd``. A row_sparse
gradient (Partial FC's sampled class centres, ``--sample-ratio``) takes the same
single-tensor kernel with ``lazy_update``: only its rows, their momentum and their
weight decay move.
"""
import os
import pickle
import tempfile

# Import the class itself: a parameter server unpickles this optimizer while `import mxnet`
# is still running (see facekd.training.schedule).
from mxnet.ndarray import sgd_mom_update, sgd_update
from mxnet.optimizer.optimizer import SGD, Optimizer

NAME = "facesgd"  # the name Module.init_optimizer is given
LARGE_TENSOR = 1 << 20  # elements; a classifier matrix is tens of millions, a conv kernel a few thousand


@Optimizer.register
class FaceSGD(SGD):
    """``sgd`` with tensors of >= :data:`LARGE_TENSOR` elements (and row_sparse gradients, lazily)
    updated by the threaded single-tensor kernel."""

    def _update_impl(self, indices, weights, grads, states, multi_precision=False):
        if not isinstance(indices, (tuple, list)):
            indices, weights, grads, states = [indices], [weights], [grads], [states]
        large = [k for k, (w, g) in enumerate(zip(weights, grads))
                 if not multi_precision and w.stype == "default"
                 and (g.stype == "row_sparse" or (w.size >= LARGE_TENSOR and g.stype == "default"))]
        if not large:
            return super()._update_impl(indices, weights, grads, states, multi_precision)
        small = [k for k in range(len(indices)) if k not in large]
        if small:
            super()._update_impl([indices[k] for k in small], [weights[k] for k in small],
                                 [grads[k] for k in small], [states[k] for k in small], multi_precision)
        for k in large:
            self._update_large(indices[k], weights[k], grads[k], states[k])
        return None

    def _update_large(self, index, weight, grad, state):
        self._update_count([index])
        lr, wd = self._get_lrs([index])[0], self._get_wds([index])[0]
        # lazy_update: with a row_sparse gradient only its rows (and their momentum) are updated
        kwargs = dict(rescale_grad=self.rescale_grad, lr=lr, wd=wd, lazy_update=True)
        if self.clip_gradient:
            kwargs["clip_gradient"] = self.clip_gradient
        if state is not None:
            sgd_mom_update(weight, grad, state, out=weight, momentum=self.momentum, **kwargs)
        else:
            sgd_update(weight, grad, out=weight, **kwargs)


def updates_on_kvstore(kvstore, num_devices):
    """Whether SGD runs inside the kvstore (one updater that all devices share) or in this process.

    * one device, no parameter server: the Module updates its weights in place, without a
      copy of every weight and gradient through the store each step (Module's own rule for
      a kvstore given by name; the trainer holds a KVStore object for rank and worker count);
    * ``dist_*``: every worker applies the update itself to the summed gradient, and the
      servers only sum. The momentum then lives in each worker (the same in all of them,
      as the summed gradient is), so worker 0 saves it with its checkpoint and every worker
      restores it on ``--resume``; with the update on the servers it could not be read;
    * several devices of one machine: on the kvstore, unless ``MXNET_UPDATE_ON_KVSTORE=0``.
    """
    if "dist" in kvstore.type or num_devices == 1:
        return False
    return os.environ.get("MXNET_UPDATE_ON_KVSTORE", "1") != "0"


def init_sgd(module, kvstore, num_devices, **optimizer_params):
    """``module.init_optimizer`` with :class:`FaceSGD`, as the trainer and the benchmarks set it up.

    ``num_devices``: the contexts the Module is bound on. Where the update runs:
    :func:`updates_on_kvstore`. Under a parameter server every worker then starts from
    worker 0's weights (pulled from the servers), whatever its own initialisation drew.
    """
    local = num_devices == 1 and "dist" not in kvstore.type
    saved = os.environ.get("MXNET_UPDATE_ON_KVSTORE")
    os.environ["MXNET_UPDATE_ON_KVSTORE"] = "1" if updates_on_kvstore(kvstore, num_devices) else "0"
    try:  # Module reads the variable while it sets up the kvstore
        module.init_optimizer(kvstore=None if local else kvstore, optimizer=NAME,
                              optimizer_params=optimizer_params)
    finally:
        if saved is None:
            del os.environ["MXNET_UPDATE_ON_KVSTORE"]
        else:
            os.environ["MXNET_UPDATE_ON_KVSTORE"] = saved
    if "dist" in kvstore.type:
        arg_params, aux_params = module.get_params()
        for name in _parameter_names(module):  # the keys Module initialised in the kvstore
            kvstore.pull(name, out=arg_params[name])
        module.set_params(arg_params, aux_params)


# ----------------------------------------------------------------------------- optimizer state on disk
# MXNet keeps SGD's momentum in its updater (on the kvstore when several devices share one) and
# saves it as a pickle. A checkpoint folder may come from anywhere and a pickle runs code, so the
# momentum is stored here as a plain NDArray file (``mx.nd.save``) keyed by parameter name; the
# pickle MXNet's loader wants is made in this process from the checked arrays.
STATE_PREFIX = "mom:"


def _parameter_names(module):
    """The graph's arguments that are not inputs, in Module's order."""
    inputs = {d[0] for d in module.data_shapes} | {d[0] for d in (module.label_shapes or [])}
    return [n for n in module.symbol.list_arguments() if n not in inputs]


def _updater_indices(module, num_devices, kvstore):
    """{parameter name: [updater keys]} as MXNet's Module keys its updates: the parameter name
    when the kvstore updates, else one key per device copy (position * devices + device)."""
    names = _parameter_names(module)
    if updates_on_kvstore(kvstore, num_devices):
        return {n: [n] for n in names}
    return {n: [i * num_devices + k for k in range(num_devices)] for i, n in enumerate(names)}


def optimizer_state_arrays(module, num_devices, kvstore):
    """{``mom:<name>``: momentum NDArray} of a Module whose optimizer :func:`init_sgd` set up."""
    import mxnet as mx

    fd, tmp = tempfile.mkstemp(suffix=".states")
    os.close(fd)
    try:
        module.save_optimizer_states(tmp)
        with open(tmp, "rb") as f:
            states = pickle.loads(f.read())  # written by this process a moment ago
    finally:
        os.remove(tmp)
    out = {}
    for name, indices in _updater_indices(module, num_devices, kvstore).items():
        state = states.get(indices[0])  # the copies of several devices are equal
        if state is not None:  # None: no momentum (mom 0), or not updated yet
            out[STATE_PREFIX + name] = state.as_in_context(mx.cpu())
    return out


def restore_optimizer_states(module, num_devices, kvstore, arrays, source):
    """Put momentum saved by :func:`optimizer_state_arrays` back; shapes checked against the weights."""
    from ..errors import FaceKDError

    weights = module.get_params()[0]
    index_of = _updater_indices(module, num_devices, kvstore)
    states = {}
    for key, value in arrays.items():
        name = key[len(STATE_PREFIX):] if key.startswith(STATE_PREFIX) else None
        if name not in index_of or name not in weights:
            raise FaceKDError(f"{source}: {key!r} is not the momentum of a parameter of this run's graph; "
                              "the state belongs to another network: resume from a matching checkpoint")
        if tuple(value.shape) != tuple(weights[name].shape):
            raise FaceKDError(f"{source}: momentum of {name} has shape {tuple(value.shape)}, the weight "
                              f"has {tuple(weights[name].shape)}; the state belongs to another run")
        for index in index_of[name]:
            states[index] = value.copy()
    fd, tmp = tempfile.mkstemp(suffix=".states")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pickle.dumps(states))  # made here from the checked arrays
        module.load_optimizer_states(tmp)
    finally:
        os.remove(tmp)
