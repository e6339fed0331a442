"""The submissions pages (being built)."""
from . import bp  # noqa: F401
