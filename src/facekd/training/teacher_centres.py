"""The teacher's class centres: the row-normalised ``fc7_weight`` of a margin-loss checkpoint,
the frozen centres of margin_distillation and margin_base_with_T."""
import numpy as np

from ..checkpoints import checkpoint_paths, load_checkpoint, parse_model_arg
from ..errors import FaceKDError
from ..vectors import normalize_rows


def load_teacher_centres(teacher_arg, num_classes, emb_size, flag="--teacher"):
    """Row-normalised ``fc7_weight`` of the teacher checkpoint ``prefix,epoch``, checked.

    Raises FaceKDError when the checkpoint is missing, has no ``fc7_weight`` (an
    embedding-only cut), or its shape is not (num_classes, emb_size) of this run.
    """
    if not teacher_arg:
        raise FaceKDError("this loss needs the teacher's class centres: give --teacher prefix,epoch "
                          "(a checkpoint trained with a margin loss on the same classes)")
    prefix, epoch = parse_model_arg(teacher_arg, flag)
    try:
        _, arg_params, _ = load_checkpoint(prefix, epoch)
    except FaceKDError as exc:
        hint = "" if flag == "--teacher" else "; train that teacher first, or give --teacher prefix,epoch"
        raise FaceKDError(f"{flag} {teacher_arg}: {exc}{hint}") from None
    params_file = checkpoint_paths(prefix, epoch)[1]
    if "fc7_weight" not in arg_params:
        raise FaceKDError(f"teacher {params_file} has no fc7_weight (an embedding-only cut?); "
                          "give a training checkpoint that keeps the class centres")
    weight = arg_params["fc7_weight"].asnumpy().astype(np.float64)
    if weight.shape != (num_classes, emb_size):
        raise FaceKDError(f"teacher {params_file}: fc7_weight has shape {weight.shape}, this run needs "
                          f"({num_classes}, {emb_size}) (dataset classes, student --emb-size)")
    return normalize_rows(weight).astype(np.float32)
