"""Reference data shipped with FieldSync: regions and the programme's grantees (CSV files
beside this module). The rayon list is `forms/media/rayons.csv`, because the same file is
served to devices as form media; one copy, so the phones and the database never disagree."""
import csv
from pathlib import Path

HERE = Path(__file__).resolve().parent


def read_csv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def regions() -> list[dict]:
    return read_csv(HERE / "regions.csv")


def grantees() -> list[dict]:
    return read_csv(HERE / "grantees.csv")
