"""Running under gunicorn: logs that never write device tokens.

A device's token sits in its URL (`/v1/key/{token}/…`), so a plain access log would hand every
device credential to whoever can read the logs. This logger writes `/v1/key/***/…` instead.
"""
import re

from gunicorn.glogging import Logger

TOKEN_IN_PATH = re.compile(r"/key/[^/?\s]+")
TOKEN_IN_QUERY = re.compile(r"([?&]st=)[^&\s]+")


def redact(text: str) -> str:
    return TOKEN_IN_QUERY.sub(r"\1***", TOKEN_IN_PATH.sub("/key/***", text))


class RedactingLogger(Logger):
    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U", "q"):
            if key in atoms and isinstance(atoms[key], str):
                atoms[key] = redact(atoms[key])
        return atoms

    # gunicorn's own error lines ("Error handling request /v1/key/…") name the path too.
    def _redacted(self, method, msg, *args, **kwargs):
        args = tuple(redact(a) if isinstance(a, str) else a for a in args)
        return method(redact(msg) if isinstance(msg, str) else msg, *args, **kwargs)

    def error(self, msg, *args, **kwargs):
        return self._redacted(super().error, msg, *args, **kwargs)

    def warning(self, msg, *args, **kwargs):
        return self._redacted(super().warning, msg, *args, **kwargs)

    def info(self, msg, *args, **kwargs):
        return self._redacted(super().info, msg, *args, **kwargs)

    def exception(self, msg, *args, **kwargs):
        return self._redacted(super().exception, msg, *args, **kwargs)


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas for this process and the workers it forks.

    glibc gives each thread that allocates concurrently an arena of its own (up to 8 per core),
    and memory freed in one is rarely returned or reused by another, so a threaded worker's
    resident memory creeps up under a long mixed load (the soak test measured it). Two arenas
    keep threads sharing, at no measurable cost here. Same effect as MALLOC_ARENA_MAX=2, which
    would have to be set before the process starts; mallopt works from inside it. Does nothing
    (False) where the C library is not glibc."""
    import ctypes
    import ctypes.util
    M_ARENA_MAX = -8
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False
