"""Helpers of the training tests."""
import os


def link_training_files(src, dst):
    """A dataset folder with src's train.rec/.idx/property and no verification targets."""
    os.makedirs(dst, exist_ok=True)
    for name in ("train.rec", "train.idx", "property"):
        os.symlink(os.path.join(src, name), os.path.join(dst, name))
    return dst
