"""Person matching with the village registers a thread keeps between transactions: what
another process adds is seen, what a rolled-back transaction added is not trusted, a warm
register reads no person rows again, and the cache stays within its bound."""
import pytest
from sqlalchemy import create_engine, event, select

from fieldsync.extensions import db, write_transaction
from fieldsync.models import DuplicateCandidate, Person
from fieldsync.records import persons
from fieldsync.records.derive import person_key
from fieldsync.records.names import normalise_name

VILLAGE = "kant"


def participant(name, year=2008, village=VILLAGE):
    key = normalise_name(name)
    return {"full_name": name, "name_key": key, "birth_year": year, "person_key": person_key(key, year, village)}


def enrol(*people, village=VILLAGE):
    with write_transaction():
        return persons.enrol([participant(*p) if isinstance(p, tuple) else participant(p) for p in people],
                             village, None)


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
    """How many statements read person rows (not counts) since the last reset."""
    seen = []

    def listen(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "persons.display_name" in statement:
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
        assert person_reads == []  # a village with nobody yet: counted, nothing to read
        assert enrol("Aigul Asanova", "Kanat Sydykov") == 1  # the first is known already
        assert person_reads == []  # the copy was current: counted, not read again
        other_process("Bakyt Osmonov")
        # The copy is one short of the database: the year is read again, so the exact key is
        # known and the look-alike is found.
        assert enrol("Bakyt Osmonov", "Bakyt Osmanov") == 1
        assert len(person_reads) == 1
        assert (normalise_name("Bakyt Osmanov"), normalise_name("Bakyt Osmonov")) in person_candidates()
        assert db.session.scalar(select(Person.key).where(Person.key == participant("Bakyt Osmanov")["person_key"]))


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
        assert enrol("Aigul Asanova", village="kant") == 0
        assert person_reads == []  # and it is used


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
        # Villages the current transaction has used are kept to its end, whatever the bound.
        with write_transaction():
            for village in ("naryn", "talas", "kant"):
                persons.enrol([participant("Aigul Asanova", village=village)], village, None)
            assert list(register.blocks) == ["naryn", "talas", "kant"]
        enrol("Kanat Sydykov", village="osh")  # the next transaction trims them
        assert list(register.blocks) == ["osh"]
