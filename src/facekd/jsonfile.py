"""JSON files that may come from anywhere (checkpoint metas, search states, genotypes):
read as UTF-8, parsed, and checked, with one line naming the file and the fix."""
import json

from .errors import FaceKDError


def read_json(path, what, fix, where=None):
    """The parsed JSON of ``path``; else FaceKDError "``where``: not a readable ``what`` (cause); ``fix``".

    ``where`` names the file in errors (default: ``path``)."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FaceKDError(f"{where or path}: not a readable {what} ({exc}); {fix}") from None


def read_json_object(path, what, fix, where=None):
    """:func:`read_json` of a file that must hold one JSON object."""
    value = read_json(path, what, fix, where)
    if not isinstance(value, dict):
        raise FaceKDError(f"{where or path}: expected a JSON object ({what}), got a {type(value).__name__}; {fix}")
    return value
