"""Embed images with a model cut at ``fc1_output``, in batches over one or more devices.

One implementation for every consumer: the trainer's verification and triplet mining,
the data-preparation scripts (teacher embeddings for soft labels) and the evaluation
commands. The graph is bound once for a fixed batch; the batch is split across the
given contexts; a last partial batch is padded and the padding dropped.
"""
import json

import numpy as np

from .checkpoints import checkpoint_paths, load_checkpoint
from .errors import FaceKDError, mxnet_cause
from .symbols.shapes import infer_shape

EMBEDDING_OUTPUT = "fc1_output"


def parse_image_size(text, flag="--image-size"):
    """``"112,112"`` -> ``(112, 112)`` (height, width of the network input)."""
    try:
        size = tuple(int(v) for v in str(text).split(","))
    except ValueError:
        size = ()
    if len(size) != 2 or min(size) < 1:
        raise FaceKDError(f"{flag} {text!r}: expected 'height,width', e.g. 112,112")
    return size


def cut_at_embedding(symbol, name="model"):
    """The sub-graph ending at ``fc1_output``."""
    internals = symbol.get_internals()
    outputs = internals.list_outputs()
    if EMBEDDING_OUTPUT not in outputs:
        raise FaceKDError(f"{name} has no {EMBEDDING_OUTPUT} (the embedding must be a BatchNorm named "
                          f"'fc1'); graph outputs: {', '.join(symbol.list_outputs())}")
    return internals[EMBEDDING_OUTPUT]


def embedding_size(symbol, image_size=(112, 112), name="model"):
    """Dimension d of the ``fc1_output`` of ``symbol`` for images of ``image_size``."""
    import mxnet as mx

    h, w = image_size
    try:
        _, out_shapes, _ = infer_shape(cut_at_embedding(symbol, name), data=(1, 3, h, w))
    except mx.base.MXNetError as exc:
        raise FaceKDError(f"{name}: the graph does not accept input (1, 3, {h}, {w}) "
                          f"({mxnet_cause(exc)}); check the image size") from None
    return int(out_shapes[0][1])


def flatten_fc_inputs(symbol):
    """The same graph with an explicit Flatten in front of every flattening FullyConnected.

    Numerically identical (FullyConnected flattens its input anyway). It works around an MXNet
    1.9.1 bug of the CPU (MKLDNN) fused inference graph: a FullyConnected fed directly by a
    4-D convolution output (MobileFaceNet's and PocketNet's ``pre_fc1``) fails from the second
    forward on with "We can't generate TBlob for MKLDNN data". Disabling the fusion instead
    (MXNET_SUBGRAPH_BACKEND=NONE) costs about a quarter of the CPU throughput.
    """
    import mxnet as mx

    graph = json.loads(symbol.tojson())
    nodes, remap = [], {}
    for old, node in enumerate(graph["nodes"]):
        inputs = [[remap[i], j, v] for i, j, v in node.get("inputs", [])]
        flattens = str(node.get("attrs", {}).get("flatten", "True")).lower() in ("true", "1")
        if node["op"] == "FullyConnected" and flattens and nodes[inputs[0][0]]["op"] != "Flatten":
            nodes.append({"op": "Flatten", "name": f"{node['name']}_flatten_input", "inputs": [inputs[0]]})
            inputs[0] = [len(nodes) - 1, 0, 0]
        remap[old] = len(nodes)
        nodes.append(dict(node, inputs=inputs))
    if len(nodes) == len(graph["nodes"]):
        return symbol
    graph["nodes"] = nodes
    graph["arg_nodes"] = [remap[i] for i in graph["arg_nodes"]]
    graph["heads"] = [[remap[i], j, v] for i, j, v in graph["heads"]]
    graph.pop("node_row_ptr", None)
    return mx.sym.load_json(json.dumps(graph))


class Embedder:
    """A model cut at ``fc1_output``, bound once for ``batch_size`` over ``contexts``.

    Empty ``arg_params`` and ``aux_params`` bind the graph without weights (a trainer fills
    them from its module with :meth:`set_params`); otherwise every weight must be present.
    """

    def __init__(self, symbol, arg_params, aux_params, contexts, batch_size, image_size=(112, 112),
                 name="model"):
        import mxnet as mx

        if not isinstance(contexts, (list, tuple)):
            contexts = [contexts]
        contexts = list(contexts)
        if not contexts:
            raise FaceKDError(f"{name}: no device contexts given")
        batch_size = int(batch_size)
        if batch_size < len(contexts):
            raise FaceKDError(f"--batch-size {batch_size} is smaller than the {len(contexts)} device "
                              f"contexts; use at least one image per context")
        self.name = name
        self.contexts = contexts
        self.batch_size = batch_size
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.symbol = flatten_fc_inputs(cut_at_embedding(symbol, name))
        self.data_shape = (batch_size, 3) + self.image_size
        try:
            arg_shapes, out_shapes, aux_shapes = infer_shape(self.symbol, data=self.data_shape)
        except mx.base.MXNetError as exc:
            raise FaceKDError(f"{name}: the graph does not accept input {self.data_shape} "
                              f"({mxnet_cause(exc)}); check the image size") from None
        if arg_shapes is None:
            raise FaceKDError(f"{name}: cannot infer the shapes of the graph for input {self.data_shape}")
        if len(out_shapes[0]) != 2:
            raise FaceKDError(f"{name}: {EMBEDDING_OUTPUT} has shape {out_shapes[0]}, expected (batch, d)")
        self.emb_size = int(out_shapes[0][1])
        self._arg_shapes = {n: tuple(s) for n, s in zip(self.symbol.list_arguments(), arg_shapes)
                            if n != "data"}
        self._aux_shapes = {n: tuple(s) for n, s in zip(self.symbol.list_auxiliary_states(), aux_shapes)}
        self._bind()
        # one staging array per embedder, reused by every forward: a fresh 4·B·3·H·W-byte
        # array per batch churns the allocator and makes the peak memory vary from run to run
        self._buffer = np.zeros(self.data_shape, dtype=np.float32)
        self._input = mx.nd.zeros(self.data_shape, dtype=np.float32)
        self._ready = False
        if arg_params or aux_params:  # empty weights: bound now, filled later by set_params
            self.set_params(arg_params, aux_params)

    @classmethod
    def from_checkpoint(cls, prefix, epoch, contexts, batch_size, image_size=(112, 112)):
        """Load ``prefix,epoch`` and bind it."""
        symbol, arg_params, aux_params = load_checkpoint(prefix, epoch)
        return cls(symbol, arg_params, aux_params, contexts, batch_size, image_size,
                   name=checkpoint_paths(prefix, epoch)[0])

    def _bind(self):
        import mxnet as mx

        self._module = mx.mod.Module(self.symbol, data_names=["data"], label_names=None,
                                     context=self.contexts)
        self._module.bind(data_shapes=[("data", self.data_shape)], for_training=False)
        self._forwarded = False

    def set_params(self, arg_params, aux_params):
        """Copy the weights the cut graph needs (extra entries such as ``fc7_weight`` are ignored)."""
        import mxnet as mx

        if self._forwarded:
            # MXNet 1.9.1's fused CPU inference graph (MKLDNN) keeps the FullyConnected weights
            # of its first forward; new weights need a fresh binding.
            self._bind()
        args = self._checked(arg_params or {}, self._arg_shapes, "parameter")
        auxs = self._checked(aux_params or {}, self._aux_shapes, "auxiliary state")
        self._module.set_params({k: v if isinstance(v, mx.nd.NDArray) else mx.nd.array(v)
                                 for k, v in args.items()},
                                {k: v if isinstance(v, mx.nd.NDArray) else mx.nd.array(v)
                                 for k, v in auxs.items()},
                                allow_missing=False, force_init=True, allow_extra=False)
        self._ready = True

    def _checked(self, params, shapes, what):
        missing = [n for n in shapes if n not in params]
        if missing:
            raise FaceKDError(f"{self.name}: {what} {', '.join(missing[:5])} missing from the weights "
                              f"({len(missing)} missing); the checkpoint does not match the graph")
        for n, shape in shapes.items():
            got = tuple(params[n].shape)
            if got != shape:
                raise FaceKDError(f"{self.name}: {what} {n} has shape {got}, the graph expects {shape} "
                                  f"for {self.image_size[0]}x{self.image_size[1]} images; check the image "
                                  f"size and that the weights belong to this graph")
        return {n: params[n] for n in shapes}

    def embed(self, images):
        """Raw ``fc1`` output (N, d) float32 of uint8 RGB (N, H, W, 3) or float (N, 3, H, W) images."""
        import mxnet as mx

        if not self._ready:
            raise FaceKDError(f"{self.name}: no weights yet; call set_params before embed")
        images = self._check_images(images)
        n = images.shape[0]
        out = np.empty((n, self.emb_size), dtype=np.float32)
        nhwc = images.dtype == np.uint8
        bs = self.batch_size
        for start in range(0, n, bs):
            stop = min(start + bs, n)
            count = stop - start
            chunk = images[start:stop]
            self._buffer[:count] = chunk.transpose(0, 3, 1, 2) if nhwc else chunk
            if count < bs:
                self._buffer[count:] = 0.0
            self._input[:] = self._buffer
            self._module.forward(mx.io.DataBatch(data=[self._input]), is_train=False)
            self._forwarded = True
            out[start:stop] = self._module.get_outputs()[0].asnumpy()[:count]
        return out

    def _check_images(self, images):
        images = np.asarray(images)
        h, w = self.image_size
        if images.ndim == 4 and images.dtype == np.uint8 and images.shape[1:] == (h, w, 3):
            return images
        if images.ndim == 4 and images.dtype != np.uint8 and images.shape[1:] == (3, h, w):
            if not np.issubdtype(images.dtype, np.floating):
                raise FaceKDError(f"{self.name}: images of dtype {images.dtype}; pass uint8 NHWC or float NCHW")
            return images
        raise FaceKDError(f"{self.name}: images of shape {images.shape} and dtype {images.dtype}; expected "
                          f"uint8 RGB (N, {h}, {w}, 3) or float (N, 3, {h}, {w}) (resize to {h}x{w} first)")
