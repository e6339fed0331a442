"""What a background export reads: the submissions its user may export, through the one scoped
reader (`review.reader`), in id batches, each with its `__system` block as ODK Central's CSV
writes it (with `key`). A job's query is built when it runs, from the user who asked for it, so
a user whose role or grantee changed meanwhile exports what they may see now.
"""
from ..review import reader

BATCH = 500


def count(query) -> int:
    return reader.count(query)


def batches(query, after_id: int | None = None, size: int = BATCH):
    """Lists of (submission, __system block), oldest first, `size` at a time; keyset on the id so
    a caller may commit between batches (and resume after the last id it wrote)."""
    for page in reader.batches(query, size, after_id, oldest_first=True):
        yield reader.with_system(page, key=True)
