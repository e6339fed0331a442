"""The devices pages (being built)."""
from . import bp  # noqa: F401
