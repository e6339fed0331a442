"""Records derived from submissions (events, participants, persons, assessments, interviews,
services) and record-level deduplication (event merging, person matching, candidates).

Owns the record tables and `duplicate_candidates`. Pure parts: `derive` (submission values
-> records), `matching` (the dedup rules), `names` (normalisation). `store` does the
database side, with `persons` for matching participants against each village's persons:
exact keys as records are rebuilt, look-alikes from a queue after (a register of villages kept
between transactions). May use models and formats; never HTTP, never indicators.
"""
from flask import current_app

from ..extensions import db
from ..models import PendingRecord
from ..signals import submissions_changed


def queue(submission_id: int) -> None:
    """Ask for a submission's records to be rebuilt; call inside the transaction that changed it."""
    if db.session.get(PendingRecord, submission_id) is None:
        db.session.add(PendingRecord(submission_id=submission_id))
        db.session.flush()


def announce(*submission_ids: int) -> None:
    """After the commit: tell whoever listens that these queued submissions wait."""
    submissions_changed.send(current_app._get_current_object(), submission_ids=submission_ids)
