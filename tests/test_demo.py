"""`demo load` reproduces the evaluation's reported figures, grantee by grantee.

The figures are data in the project (`forms/demo/reported_results.csv`, each row quoting the
evaluation's sentence), so this test needs nothing outside the repository.
"""
import csv
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import func, select

from fieldsync.extensions import db
from fieldsync.models import Event, Submission, SubmissionDef

pytestmark = pytest.mark.slow
REPORTED = Path(__file__).resolve().parent.parent / "forms" / "demo" / "reported_results.csv"


def reported():
    figures = defaultdict(int)
    with REPORTED.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            assert row["quote"].strip(), row  # every figure cites the evaluation
            figures[(row["grantee"], row["indicator"], row["disaggregation"], row["period"])] += int(row["value"])
    return figures


def test_demo_reproduces_the_evaluation(app, client, cli, make_user):
    result = cli("demo", "load")
    assert result.exit_code == 0, result.output
    assert "resent" in result.output
    coordinator = make_user("coordinator")
    figures = reported()
    assert len({k[0] for k in figures}) >= 15
    mismatches = []
    for period in sorted({k[3] for k in figures}):
        body = client.get(f"/v1/projects/1/indicator-values?period={period}", headers=coordinator).get_json()
        got = {(v["orgUnit"], v["dataElement"], v["categoryOptionCombo"], v["period"]): v["value"]
               for v in body["dataValues"]}
        for key, expected in figures.items():
            if key[3] == period and got.get(key) != str(expected):
                mismatches.append((key, expected, got.get(key)))
    assert mismatches == []

    with app.app_context():
        # Resends made no second submission; the seminar from two phones was merged, with why.
        assert db.session.scalar(select(func.count()).select_from(Submission)) == \
            db.session.scalar(select(func.count()).select_from(SubmissionDef))
        merged = db.session.scalars(select(Event).where(Event.merged_into.is_not(None))).all()
        assert len(merged) == 1 and "same persons" in merged[0].merge_reason
    # The same students, spelled differently a month later, are the same persons.
    chinek = client.get("/v1/projects/1/indicator-values?orgUnit=chinek&dataElement=participants_reached,"
                        "unique_participants", headers=coordinator).get_json()["dataValues"]
    totals = {v["dataElement"]: int(v["value"]) for v in chinek if v["categoryOptionCombo"] == "total"}
    registered = totals["participants_reached"]
    assert totals["unique_participants"] < registered

    again = cli("demo", "load")  # deterministic: the same submissions, so nothing new
    assert "created" not in again.output.split(":")[1]
    assert cli("indicators", "recompute").output.strip().endswith("drift from the incremental values: 0 cell(s).")
