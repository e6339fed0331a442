"""Person matching against each village's register, and the register kept between uploads.

A seminar's participants are matched with the persons already known in their village: an
exact key is the same person, a look-alike name (same birth year, or any year when one is
missing) becomes a candidate for a coordinator. Reading a village's persons for every upload
made an upload's cost grow with the programme, so each thread keeps the villages it has read
(`Register`, bounded by `MAX_CACHED_PERSONS`) and a transaction trusts its copy only after
checking it against the database:

* the persons this thread added in its last transaction are looked up by key (it may have
  rolled back); the years of any that are missing are dropped and read again;
* the number of persons of each birth year needed is counted (index-only); a year whose
  count differs from the copy's is read again.

Persons are never deleted and other transactions only add them, so once the copy holds
nothing the database lacks, equal counts mean equal sets. (A coordinator's merge changes a
person's `canonical_key`; matching does not read it, see `match`.)

Runs inside the caller's write transaction; owns no table of its own (`persons` and the
person rows of `duplicate_candidates` belong to `records`). Never HTTP, never indicators.
"""
import threading
import weakref
from collections import OrderedDict
from typing import NamedTuple

from sqlalchemy import func, or_, select

from ..extensions import db, dialect_insert
from ..models import DuplicateCandidate, Person
from .matching import likely_same_in, person_likeness

# Persons a thread keeps across transactions, over all its villages (the least recently used
# villages go first). Measured at about 450 bytes each: 50,000 is some 22 MB. In a served
# process only the derive worker's thread matches persons, so that is one register a process.
MAX_CACHED_PERSONS = 50_000


class PersonRow(NamedTuple):
    key: str
    name_key: str
    display_name: str
    birth_year: int | None


def _of_years(years):
    """Persons born in one of `years` (None in it: also those of unknown birth year)."""
    known = [year for year in years if year is not None]
    conditions = ([Person.birth_year.in_(known)] if known else []) + (
        [Person.birth_year.is_(None)] if None in years else [])
    return or_(*conditions)


class Block:
    """The persons of one village, grouped by birth year, with their names ready for
    rapidfuzz. Years are read on demand; `need` makes the asked-for years current for the
    caller's transaction."""

    def __init__(self, village_key: str):
        self.village_key = village_key
        self.keys: set[str] = set()
        self.by_year: dict[int | None, tuple[list, list, list]] = {}
        self.transaction = None
        self.checked: set[int | None] = set()  # years known current in this transaction
        self.whole = False  # every year checked in this transaction
        self.added: dict[str, int | None] = {}  # key -> year, added in this transaction

    def size(self) -> int:
        return len(self.keys)

    def begin(self, transaction) -> None:
        """Start trusting nothing for a new transaction, after dropping whatever the last one
        added and did not commit."""
        if self.transaction is transaction:
            return
        if self.added:
            present = set(db.session.scalars(select(Person.key).where(Person.key.in_(list(self.added)))))
            for year in {year for key, year in self.added.items() if key not in present}:
                self._forget(year)
        self.transaction, self.checked, self.whole, self.added = transaction, set(), False, {}

    def need(self, birth_years) -> "Block":
        """Make current every year a participant of these birth years is compared with: the
        same year and the unknown year, or every year when a birth year is unknown."""
        if self.whole:
            return self
        where = [Person.village_key == self.village_key]
        if None in birth_years:
            asked = None
        else:
            asked = ({*birth_years} | {None}) - self.checked
            if not asked:
                return self
            where.append(_of_years(asked))
        counts = dict(db.session.execute(select(Person.birth_year, func.count()).where(*where)
                                         .group_by(Person.birth_year)).all())
        years = set(counts) | set(self.by_year) if asked is None else asked
        stale = [year for year in years if counts.get(year, 0) != len(self.by_year.get(year, ((),))[0])]
        for year in stale:
            self._forget(year)
        fresh = [year for year in stale if counts.get(year)]
        if fresh:
            self._read(fresh)
        if asked is None:
            self.whole = True
        else:
            self.checked |= asked
        return self

    def _read(self, years) -> None:
        for row in db.session.execute(select(Person.key, Person.name_key, Person.display_name, Person.birth_year)
                                      .where(Person.village_key == self.village_key, _of_years(years))):
            self._keep(PersonRow(*row))

    def _forget(self, year) -> None:
        rows, _names, _squeezed = self.by_year.pop(year, ((), (), ()))
        self.keys.difference_update(row.key for row in rows)
        self.checked.discard(year)
        self.whole = False

    def _keep(self, person: PersonRow) -> None:
        self.keys.add(person.key)
        rows, names, squeezed = self.by_year.setdefault(person.birth_year, ([], [], []))
        rows.append(person)
        names.append(person.name_key)
        squeezed.append(person.name_key.replace(" ", ""))

    def add(self, person: PersonRow) -> None:
        """A person the caller's transaction inserts."""
        self._keep(person)
        self.added[person.key] = person.birth_year

    def groups(self, birth_year: int | None):
        """The (rows, names, names without spaces) a person of this birth year is compared
        with: the same year and the unknown year, or every year when the person's is unknown."""
        if birth_year is None:
            return list(self.by_year.values())
        return [self.by_year[y] for y in (birth_year, None) if y in self.by_year]


class Register:
    """One thread's blocks for one database, the most recently used last.

    A village is kept past its transaction only once a second transaction has asked for it:
    villages seen once (a one-off outreach event) would otherwise fill the register with
    persons nobody compares against again. Past `limit` persons, the least recently used
    villages are let go. Villages the current transaction has used are always kept to its
    end: a long transaction (a rebuild of every record) keeps what it read, as it would
    without the register, and is trimmed by the next one."""

    def __init__(self, limit: int = MAX_CACHED_PERSONS, remembered: int = 10_000):
        self.limit = limit
        self.blocks: OrderedDict[str, Block] = OrderedDict()
        self.asked: OrderedDict[str, int] = OrderedDict()  # village -> transactions that asked (bounded)
        self.remembered = remembered

    def block(self, village_key: str, birth_years) -> Block:
        session = db.session()
        session.connection()  # begun now (autobegin waits for a first statement), so it can be told apart
        transaction = session.get_transaction()
        block = self.blocks.pop(village_key, None) or Block(village_key)
        self.blocks[village_key] = block
        if block.transaction is not transaction:
            self.asked[village_key] = self.asked.pop(village_key, 0) + 1
            if len(self.asked) > self.remembered:
                self.asked.popitem(last=False)
        block.begin(transaction)
        block.need(birth_years)
        total = sum(b.size() for b in self.blocks.values())
        for village in list(self.blocks):  # the least recently used first
            other = self.blocks[village]
            if other.transaction is transaction:
                continue  # in use by this transaction: kept until it is over (else read again)
            if total > self.limit or self.asked.get(village, 0) < 2:
                del self.blocks[village]
                total -= other.size()
        return block


_local = threading.local()


def register() -> Register:
    """This thread's register for the session's database (an app's engine; a test's engines
    come and go, so they are held weakly)."""
    registers = getattr(_local, "registers", None)
    if registers is None:
        registers = _local.registers = weakref.WeakKeyDictionary()
    engine = db.session.get_bind()
    found = registers.get(engine)
    if found is None:
        found = registers[engine] = Register()
    return found


def village_block(village_key: str, birth_years) -> Block:
    return register().block(village_key, set(birth_years))


def enrol(participants: list[dict], village_key: str, grantee_id: int | None) -> int:
    """Match a register's participants against their village and insert the persons that are
    new; returns how many were. Look-alikes already known become person candidates.

    A C-speed first pass over the block keeps this cheap in a village with thousands of
    names; the exact score confirms. A new key is nobody's canonical key (a merge points at
    an existing person's key), so a look-alike is never one already merged into it.
    """
    block = village_block(village_key, {p["birth_year"] for p in participants})
    new, found = [], {}
    for participant in participants:
        key = participant["person_key"]
        if key in block.keys:
            continue
        person = PersonRow(key, participant["name_key"], participant["full_name"], participant["birth_year"])
        for other in likely_same_in(person, block.groups(person.birth_year)):
            score = person_likeness(person.name_key, other.name_key, person.birth_year, other.birth_year)
            if score is not None:
                found[tuple(sorted((key, other.key)))] = (score, _reason(person, other, score))
        block.add(person)
        new.append(participant)
    _record_candidates(found, grantee_id)
    if new:
        # DO NOTHING: a PostgreSQL transaction may have added the same person meanwhile.
        db.session.execute(dialect_insert(Person.__table__).on_conflict_do_nothing(index_elements=["key"]), [
            {"key": p["person_key"], "name_key": p["name_key"], "display_name": p["full_name"],
             "birth_year": p["birth_year"], "village_key": village_key, "canonical_key": p["person_key"]}
            for p in new])
    return len(new)


def _reason(person: PersonRow, other: PersonRow, score: float) -> str:
    return (f"Names {person.display_name!r} and {other.display_name!r} are alike ({score:.0f}%) in the same village"
            + ("" if person.birth_year and other.birth_year else "; a birth year is missing") + ".")


def _record_candidates(found: dict[tuple[str, str], tuple[float, str]], grantee_id: int | None) -> None:
    """New pairs become open candidates; open or put-aside ones are refreshed; decided ones
    stay as the coordinator left them. One query for all of a register's pairs."""
    if not found:
        return
    existing = {(c.key_a, c.key_b): c for c in db.session.scalars(select(DuplicateCandidate).where(
        DuplicateCandidate.kind == "person", DuplicateCandidate.key_a.in_(sorted({a for a, _b in found}))))}
    for (key_a, key_b), (score, reason) in sorted(found.items()):
        row = existing.get((key_a, key_b))
        if row is None:
            db.session.add(DuplicateCandidate(kind="person", key_a=key_a, key_b=key_b, grantee_id=grantee_id,
                                              score=score, reason=reason))
        elif row.status in ("open", "gone"):
            row.status, row.score, row.reason = "open", score, reason
