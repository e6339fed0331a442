"""docs/security.md's roles × verbs table is the one `auth.policy` enforces: a verb given or taken
away in the code without the document (or the other way round) fails here."""
import re
from pathlib import Path

from fieldsync.auth.policy import ROLE_ACTIONS

DOC = Path(__file__).resolve().parent.parent / "docs" / "security.md"


def test_the_documented_table_is_the_enforced_one():
    text = DOC.read_text(encoding="utf-8")
    table = text.split("<!-- roles-verbs:start -->")[1].split("<!-- roles-verbs:end -->")[0]
    lines = [line for line in table.strip().splitlines() if line.startswith("|")]
    roles = [cell.strip() for cell in lines[0].strip("|").split("|")][1:]
    assert roles == list(ROLE_ACTIONS)
    documented = {role: set() for role in roles}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        verb = re.sub(r"`", "", cells[0])
        for role, cell in zip(roles, cells[1:]):
            if cell == "✓":
                documented[role].add(verb)
    assert documented == {role: set(verbs) for role, verbs in ROLE_ACTIONS.items()}
