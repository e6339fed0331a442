"""Person matching against each village's register, and the register kept between uploads.

A seminar's participants are matched with the persons already known in their village, in two
steps:

* `enrol`, inside the transaction that rebuilds the submission's records and indicators: an
  exact key is the same person; a new key is inserted and queued (`pending_person_matches`).
  A few indexed statements, whatever the village's size.
* `match_queued`, after that transaction: each queued person is compared with its village's
  persons, and a look-alike name (same birth year, or any year when one is missing) becomes a
  candidate for a coordinator. This grows with the village, which is why it is not part of the
  indicator update. Candidates change no count until a coordinator merges.

Reading a village's persons for every search made its cost grow with the programme, so each
thread keeps the villages it has read (`Register`, bounded by `MAX_CACHED_PERSONS`) and a
transaction trusts its copy only after checking it against the database:

* the persons this thread added in its last transaction are looked up by key (it may have
  rolled back); the years of any that are missing are dropped and read again;
* the number of persons of each birth year needed is counted (index-only); a year whose
  count differs from the copy's is read again.

Persons are never deleted and other transactions only add them, so once the copy holds
nothing the database lacks, equal counts mean equal sets. (A coordinator's merge changes a
person's `canonical_key`; matching does not read it.)

Owns no table of its own (`persons`, `pending_person_matches` and the person rows of
`duplicate_candidates` belong to `records`). Never HTTP, never indicators.
"""
import threading
import weakref
from collections import OrderedDict
from typing import NamedTuple

from sqlalchemy import delete, func, insert, or_, select

from ..extensions import chunks, db, insert_ignoring, write_transaction
from ..models import DuplicateCandidate, PendingPersonMatch, Person
from .matching import first_pass, likely_same_in, person_likeness

# Persons a thread keeps across transactions, over all its villages (the least recently used
# villages go first). Measured at about 450 bytes each: 50,000 is some 22 MB. In a served
# process only the derive worker's thread matches persons, so that is one register a process.
MAX_CACHED_PERSONS = 50_000
_PERSONS, _QUEUE = Person.__table__, PendingPersonMatch.__table__


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

    def note(self, village_key: str, added: list[PersonRow]) -> None:
        """Persons the caller's transaction inserted into a village: kept in its block, if the
        village is kept, so the next search need not read them back (`Block.begin` checks
        they were committed)."""
        block = self.blocks.get(village_key)
        if block is None:
            return
        # Called after the insert: a key a rolled-back transaction left in the copy and this
        # one inserted again looks committed to `begin`; marking it added again has the next
        # transaction check it once more.
        block.begin(db.session().get_transaction())
        for person in added:
            if person.key in block.keys:
                block.added[person.key] = person.birth_year
            else:
                block.add(person)


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


_ENQUEUE = insert(_QUEUE)


def enrol(participants: list[dict], village_key: str, grantee_id: int | None,
          submission_id: int | None = None) -> int:
    """Insert the persons of a register that are new to their village and queue them for the
    look-alike search (`match_queued`); returns how many were new.

    Exact keys only, so the cost is a few indexed statements whatever the village's size: this
    runs in the transaction that rebuilds the submission's records and indicators. The look-
    alike search compares with the whole village, so it runs after that transaction.
    """
    rows = {}
    for p in participants:
        rows.setdefault(p["person_key"], {
            "key": p["person_key"], "name_key": p["name_key"], "display_name": p["full_name"],
            "birth_year": p["birth_year"], "village_key": village_key, "canonical_key": p["person_key"]})
    if not rows:
        return 0
    # DO NOTHING: a known person is skipped (and one a concurrent PostgreSQL transaction added
    # meanwhile); RETURNING names the persons this statement inserted.
    inserted = set(db.session.scalars(insert_ignoring(_PERSONS, ("key",), returning=("key",)), list(rows.values())))
    new = [row for key, row in rows.items() if key in inserted]  # in the register's order
    if new:
        db.session.execute(_ENQUEUE, [
            {"person_key": row["key"], "village_key": village_key, "grantee_id": grantee_id,
             "submission_id": submission_id} for row in new])
        register().note(village_key, [PersonRow(row["key"], row["name_key"], row["display_name"], row["birth_year"])
                                      for row in new])
    return len(new)


class _Queued(NamedTuple):
    id: int
    grantee_id: int | None
    village_key: str
    person: PersonRow


def match_queued(limit: int = 10**9, batch: int = 200, only=()) -> int:
    """Search look-alikes for queued persons (those of the submissions `only`, or any); returns
    how many were searched. Look-alikes become person candidates for a coordinator.

    Each person is compared with every person of its village that arrived before it (or the
    same year and the unknown one, see `Block.groups`); one queued after it is left for its own
    turn, which compares it with this one, so every pair is found once, from the side of the
    later person, whose grantee the candidate is given to, as a search inside the derive
    transaction did. The comparisons run in a read transaction; the candidates are written and
    the queue rows deleted in a short write transaction that first claims the rows, so what
    another process claimed meanwhile is left to it and SQLite's write lock is held only for
    the writes.
    """
    done = 0
    while done < limit:
        size = min(batch, limit - done)
        queued = _queued(size, only)
        if not queued:
            break
        found = _search(queued)
        # Not durable: a lost commit brings the queue rows back and the search is done again.
        with write_transaction(durable=False):
            claimed = set(db.session.scalars(select(_QUEUE.c.id).where(
                _QUEUE.c.id.in_([q.id for q in queued])).with_for_update(skip_locked=True)))
            if claimed:
                db.session.execute(delete(_QUEUE).where(_QUEUE.c.id.in_(sorted(claimed))))
            by_grantee: dict[int | None, dict] = {}
            for pair, (score, reason, queue_id, grantee_id) in found.items():
                if queue_id in claimed:
                    by_grantee.setdefault(grantee_id, {})[pair] = (score, reason)
            for grantee_id, pairs in by_grantee.items():
                _record_candidates(pairs, grantee_id)
        done += len(queued)
        if len(queued) < size:
            break
    db.session.commit()  # end the last read transaction
    return done


def _queued(size: int, only) -> list[_Queued]:
    query = select(_QUEUE.c.id, _QUEUE.c.grantee_id, _QUEUE.c.village_key, _PERSONS.c.key, _PERSONS.c.name_key,
                   _PERSONS.c.display_name, _PERSONS.c.birth_year).join(_PERSONS, _PERSONS.c.key == _QUEUE.c.person_key)
    if only:
        query = query.where(_QUEUE.c.submission_id.in_(list(only)))
    db.session.commit()  # a fresh read transaction: what was committed since is seen
    # Village by village, each in arrival order: a backlog (after a rebuild of every record)
    # then reads each village once, as the register keeps the village in use. Which of two
    # persons is "later" is told by the queue id, not by when it is searched.
    query = query.order_by(_QUEUE.c.village_key, _QUEUE.c.id).limit(size)
    return [_Queued(id, grantee, village, PersonRow(*person))
            for id, grantee, village, *person in db.session.execute(query)]


def _search(queued: list[_Queued]) -> dict[tuple[str, str], tuple[float, str, int, int | None]]:
    """The look-alike pairs of these queued persons: {(key, key): (score, reason, queue id,
    grantee)}, each pair from the side of the person queued later."""
    by_village: dict[str, list[_Queued]] = {}
    for q in queued:
        by_village.setdefault(q.village_key, []).append(q)
    passed = []  # (queued person, the groups it was compared with, what passed the first pass)
    for village_key, rows in by_village.items():
        block = village_block(village_key, {q.person.birth_year for q in rows})
        for q in rows:
            groups = block.groups(q.person.birth_year)
            passed.append((q, groups, first_pass(q.person, groups)))
    # Of the persons that passed, those still queued (in any submission) wait for their own
    # turn, which compares them with this one. Looked up for what passed only: a backlog's
    # queue can hold a village's every person.
    keys = {groups[g][0][index].key for _q, groups, hits in passed for scorer in hits for _s, g, index in scorer}
    waiting = {}
    for chunk in chunks(sorted(keys), 500):
        waiting.update(db.session.execute(select(_QUEUE.c.person_key, _QUEUE.c.id).where(
            _QUEUE.c.person_key.in_(chunk))).all())
    found = {}
    for q, groups, hits in passed:
        person = q.person

        def later(other, queue_id=q.id, key=person.key):
            return other.key == key or waiting.get(other.key, 0) > queue_id
        for other in likely_same_in(hits, groups, skip=later):
            score = person_likeness(person.name_key, other.name_key, person.birth_year, other.birth_year)
            if score is not None:
                pair = tuple(sorted((person.key, other.key)))
                found[pair] = (score, _reason(person, other, score), q.id, q.grantee_id)
    return found


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
