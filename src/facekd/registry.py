"""A name -> object registry used for networks and losses (no if/elif chains)."""
from .errors import FaceKDError


class Registry:
    """Maps names to entries; unknown names fail with the list of valid ones."""

    def __init__(self, kind, flag):
        self.kind = kind  # e.g. "network"
        self.flag = flag  # e.g. "--network"
        self._entries = {}

    def register(self, name, entry):
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = entry
        return entry

    def get(self, name):
        try:
            return self._entries[name]
        except KeyError:
            raise FaceKDError(
                f"unknown {self.kind} {name!r} for {self.flag}; valid: {', '.join(self.names())}"
            ) from None

    def names(self):
        return sorted(self._entries)

    def __contains__(self, name):
        return name in self._entries
