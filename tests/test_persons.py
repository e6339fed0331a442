"""Person matching in its two steps (exact keys in the derive transaction, the look-alike
search queued after it), with the village registers a thread keeps between transactions: what
another process adds is seen, what a rolled-back transaction added is not trusted, a warm
register reads no person rows again, and the cache stays within its bound."""
import pytest
from sqlalchemy import create_engine, event, func, select

from fieldsync.extensions import db, write_transaction
from fieldsync.models import DuplicateCandidate, Grantee, PendingPersonMatch, Person
from fieldsync.records import persons
from fieldsync.records.derive import person_key
from fieldsync.records.names import normalise_name

VILLAGE = "kant"


def participant(name, year=2008, village=VILLAGE):
    key = normalise_name(name)
    return {"full_name": name, "name_key": key, "birth_year": year, "person_key": person_key(key, year, village)}


def enrol(*people, village=VILLAGE):
    """As the derive step does: the exact step in a write transaction, then the search."""
    with write_transaction():
        new = persons.enrol([participant(*(p if isinstance(p, tuple) else (p,)), village=village) for p in people],
                            village, None)
    persons.match_queued()
    return new


@pytest.fixture
def other_process(app):
    """A second connection to the same database, as another worker process would have."""
    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])

    def add(name, year=2008, village=VILLAGE):
        p = participant(name, year, village)
        with engine.begin() as conn:
            conn.execute(Person.__table__.insert().values(
                key=p["person_key"], name_key=p["name_key"], display_name=name, birth_year=year,
                village_key=village, canonical_key=p["person_key"]))
    yield add
    engine.dispose()


@pytest.fixture
def person_reads(app):
    """How many statements read a village's person rows (not counts, not the queued persons'
    own rows) since the last reset."""
    seen = []

    def listen(conn, cursor, statement, parameters, context, executemany):
        if (statement.lstrip().upper().startswith("SELECT") and "persons.display_name" in statement
                and "pending_person_matches" not in statement):
            seen.append(statement)
    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", listen)
        yield seen
        event.remove(db.engine, "before_cursor_execute", listen)


def person_candidates():
    return {(c.key_a.split("|")[0], c.key_b.split("|")[0]) for c in db.session.scalars(
        select(DuplicateCandidate).where(DuplicateCandidate.kind == "person"))}


def test_a_warm_register_reads_no_person_rows_and_sees_what_another_process_added(app, other_process, person_reads):
    with app.app_context():
        assert enrol("Aigul Asanova", "Nurlan Toktogulov") == 2
        assert len(person_reads) == 1  # a village new to this thread: read once
        person_reads.clear()
        assert enrol("Aigul Asanova", "Kanat Sydykov") == 1  # the first is known already
        assert person_reads == []  # the copy was kept current by the insert: counted, not read again
        other_process("Bakyt Osmonov")
        # The copy is one short of the database: the year is read again, so the look-alike of
        # the person another process added is found (the exact one is known by its key).
        assert enrol("Bakyt Osmonov", "Bakyt Osmanov") == 1
        assert len(person_reads) == 1
        assert (normalise_name("Bakyt Osmanov"), normalise_name("Bakyt Osmonov")) in person_candidates()
        assert db.session.scalar(select(Person.key).where(Person.key == participant("Bakyt Osmanov")["person_key"]))
        assert db.session.scalar(select(func.count()).select_from(PendingPersonMatch)) == 0


def test_the_derive_step_reads_no_person_rows_and_queues_the_search(app, other_process):
    """The transaction that rebuilds records and indicators never reads or counts a village's
    persons, however many it has: the search for look-alikes is queued for after it."""
    with app.app_context():
        for i in range(40):
            other_process(f"Aigul Asan{'ab'[i % 2]}ova{i}")
        reads = []

        def listen(conn, cursor, statement, parameters, context, executemany):
            if statement.lstrip().upper().startswith("SELECT") and "persons" in statement:
                reads.append(statement)
        event.listen(db.engine, "before_cursor_execute", listen)
        try:
            with write_transaction():
                assert persons.enrol([participant("Aigul Asanova1"), participant("Aigul Asanova2")], VILLAGE, None) == 2
        finally:
            event.remove(db.engine, "before_cursor_execute", listen)
        assert reads == []
        assert person_candidates() == set()
        queued = db.session.scalars(select(PendingPersonMatch.person_key).order_by(PendingPersonMatch.id)).all()
        assert queued == [participant("Aigul Asanova1")["person_key"], participant("Aigul Asanova2")["person_key"]]
        assert persons.match_queued() == 2
        names = person_candidates()
        assert (normalise_name("Aigul Asanova1"), normalise_name("Aigul Asanova2")) in names
        assert (normalise_name("Aigul Asanova1"), normalise_name("Aigul Asanova1")) not in names  # never itself
        assert db.session.scalar(select(func.count()).select_from(PendingPersonMatch)) == 0


def test_a_pair_is_found_once_from_the_later_person_with_its_grantee(app):
    """The earlier person's search skips a look-alike queued after it; the later one's finds
    the pair and gives it its own grantee, as a search inside its upload's transaction did."""
    with app.app_context():
        first, second = db.session.scalars(select(Grantee.id).order_by(Grantee.id).limit(2)).all()
        with write_transaction():
            persons.enrol([participant("Bakyt Osmonov")], VILLAGE, first, 101)
        with write_transaction():
            persons.enrol([participant("Bakyt Osmanov")], VILLAGE, second, 102)
        assert persons.match_queued(only=[101]) == 1
        assert person_candidates() == set()  # the later look-alike waits for its own turn
        assert persons.match_queued(only=[101]) == 0
        assert persons.match_queued(only=[102]) == 1
        [candidate] = db.session.scalars(select(DuplicateCandidate).where(DuplicateCandidate.kind == "person")).all()
        assert candidate.grantee_id == second and candidate.status == "open"


def test_queued_persons_another_process_searched_meanwhile_are_left_to_it(app, monkeypatch):
    """The search runs outside the write lock; the write transaction claims the queue rows
    first, and writes nothing for rows another process took between the two."""
    with app.app_context():
        with write_transaction():
            persons.enrol([participant("Bakyt Osmonov"), participant("Bakyt Osmanov")], VILLAGE, None)
        engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
        search = persons._search

        def search_then_lose_the_rows(queued):
            found = search(queued)
            assert found  # the pair was found
            with engine.begin() as conn:  # another process claims and finishes them meanwhile
                conn.execute(PendingPersonMatch.__table__.delete())
            return found
        monkeypatch.setattr(persons, "_search", search_then_lose_the_rows)
        try:
            assert persons.match_queued() == 2
        finally:
            engine.dispose()
        assert person_candidates() == set()


def test_what_a_rolled_back_transaction_added_is_not_trusted(app, other_process):
    with app.app_context():
        enrol("Aigul Asanova")
        with pytest.raises(RuntimeError):
            with write_transaction():
                persons.enrol([participant("Cholpon Abdieva")], VILLAGE, None)
                raise RuntimeError("the derive transaction failed")
        # Another process adds one person of the same year: the copy (Aigul, Cholpon) and the
        # database (Aigul, Dinara) now have as many; the lost Cholpon must still be seen as lost.
        other_process("Dinara Kasymova")
        assert db.session.scalar(select(Person.key).where(Person.name_key == normalise_name("Cholpon Abdieva"))) is None
        assert enrol("Cholpon Abdieva", "Dinara Kasymova") == 1
        assert db.session.scalar(select(Person.display_name).where(Person.name_key == normalise_name("Cholpon Abdieva"))) == \
            "Cholpon Abdieva"


def test_an_unknown_birth_year_compares_with_the_whole_village(app, other_process):
    with app.app_context():
        enrol(("Aigul Asanova", 2008))
        other_process("Aigul Asanova", 1990)  # another year of the same village, not in the copy
        assert enrol(("Aigul Asanova", None)) == 1
        names = person_candidates()
        assert ("aigul asanova", "aigul asanova") in names  # the same name: a missing birth year
        pairs = db.session.execute(select(DuplicateCandidate.key_a, DuplicateCandidate.key_b).where(
            DuplicateCandidate.kind == "person")).all()
        years = sorted(tuple(sorted(k.split("|")[1] for k in pair)) for pair in pairs)
        assert years == [("", "1990"), ("", "2008")]  # the unknown year against both known ones


def test_a_village_asked_for_once_is_not_kept(app, person_reads):
    with app.app_context():
        register = persons.register()
        enrol("Aigul Asanova", village="kant")
        enrol("Nurlan Toktogulov", village="tokmok")
        assert list(register.blocks) == ["tokmok"]  # kant was asked for once: let go
        enrol("Kanat Sydykov", village="kant")
        enrol("Aigul Asanova", village="naryn")
        assert list(register.blocks) == ["kant", "naryn"]  # kant's second time: kept
        person_reads.clear()
        assert enrol("Aigul Asanova", "Dinara Kasymova", village="kant") == 1
        assert person_reads == []  # and it is used, and kept current by the insert


def test_the_register_stays_within_its_bound(app):
    with app.app_context():
        register = persons.register()
        register.limit = 1  # persons: each village below has two
        register.asked.update(kant=5, tokmok=5, naryn=5, talas=5, osh=5)  # all asked for often
        enrol("Aigul Asanova", "Nurlan Toktogulov", village="kant")
        enrol("Aigul Asanova", "Nurlan Toktogulov", village="tokmok")
        assert list(register.blocks) == ["tokmok"]  # kant (least recently used) went first
        # A village read again after it was let go is as right as before.
        assert enrol("Aigul Asanova", "Kanat Sydykov", village="kant") == 1
        assert list(register.blocks) == ["kant"]
        # Villages one search has used are kept to its end, whatever the bound (a backlog's
        # search keeps what it read, as it would without the register).
        with write_transaction():
            for village in ("naryn", "talas", "kant"):
                persons.enrol([participant("Cholpon Abdieva", village=village)], village, None)
        assert persons.match_queued() == 3
        assert list(register.blocks) == ["kant", "naryn", "talas"]  # searched village by village
        enrol("Kanat Sydykov", village="osh")  # the next search trims them
        assert list(register.blocks) == ["osh"]


def test_a_backlog_is_searched_village_by_village(app, person_reads):
    """Persons queued from two villages in turn (a rebuild of every record queues them so) are
    searched one village after the other: with room for one village only, each is read once."""
    with app.app_context():
        persons.register().limit = 1
        with write_transaction():
            for name in ("Aigul Asanova", "Nurlan Toktogulov", "Kanat Sydykov"):
                for village in ("kant", "tokmok"):
                    persons.enrol([participant(name, village=village)], village, None)
        assert persons.match_queued(batch=2) == 6
        assert len(person_reads) == 2
