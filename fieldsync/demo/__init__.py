"""The demo dataset: submissions that reproduce what the PHT evaluation reports per grantee.

`forms/demo/reported_results.csv` holds the evaluation's figures (each row quotes its
sentence). `plan` turns them into the records a grantee's staff would have sent (events with
registers or headcounts, needs assessments, consultations), and `load` sends every one
through `ingest.receive`, the same path a phone uses, from one device per grantee. On the
way it does what real devices do: resends some submissions, records one seminar from two
phones, and spells the same people differently in different seminars. Deterministic: the
same seed gives the same submissions, so `demo load` run twice adds nothing.
"""
import csv
import random
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import select

from ..auth import accounts
from ..extensions import db
from ..ingest import Upload, receive
from ..models import AppUser, Grantee
from ..xlsform import queries as form_queries
from .instances import fill_instance

SEED = 2005
START, END = date(2004, 9, 1), date(2005, 8, 31)
FIRST = ["Aigul", "Ainura", "Aizada", "Asel", "Bakyt", "Bermet", "Chynara", "Dinara", "Elnura", "Gulnara",
         "Jyldyz", "Kanat", "Kubanychbek", "Meerim", "Nurlan", "Nurzhan", "Saltanat", "Talant", "Tilek",
         "Urmat", "Zarina", "Aibek", "Azamat", "Baktygul", "Cholpon", "Emil", "Jamila", "Mirlan", "Nazgul",
         "Ruslan"]
FEMALE = {"Aigul", "Ainura", "Aizada", "Asel", "Bermet", "Chynara", "Dinara", "Elnura", "Gulnara", "Jyldyz",
          "Meerim", "Saltanat", "Zarina", "Baktygul", "Cholpon", "Jamila", "Nazgul"}
LAST = ["Asanov", "Osmonov", "Tokonov", "Abdraimov", "Sadykov", "Mamytov", "Jumabaev", "Isakov", "Toktogulov",
        "Bekov", "Usenov", "Kadyrov", "Sultanov", "Almazbekov", "Ismailov", "Karimov", "Turdubaev", "Zhakypov"]
VILLAGES = {
    "bishkek": ["Bishkek"], "osh_city": ["Osh"],
    "chuy": ["Kant", "Ivanovka", "Kemin", "Belovodskoe", "Sokuluk", "Kara-Balta"],
    "issyk_kul": ["Karakol", "Cholpon-Ata", "Tyup", "Ananyevo", "Bokonbaevo"],
    "naryn": ["Naryn", "Kochkor", "At-Bashy", "Chaek"],
    "talas": ["Talas", "Kyzyl-Adyr", "Pokrovka", "Bakai-Ata"],
    "jalal_abad": ["Bazar-Korgon", "Suzak", "Kerben", "Toktogul", "Massy"],
    "osh": ["Nookat", "Aravan", "Kara-Suu", "Gulcha", "Uzgen"],
    "batken": ["Leilek", "Isfana", "Kadamjay", "Batken", "Samarkandek"],
}
# Cyrillic spellings a second trainer might use for the same people.
CYRILLIC = {"Aigul": "Айгүл", "Asel": "Асель", "Bakyt": "Бакыт", "Nurlan": "Нурлан", "Zarina": "Зарина",
            "Asanov": "Асанов", "Osmonov": "Осмонов", "Sadykov": "Садыков", "Tokonov": "Токонов"}


@dataclass
class Event:
    event_type: str
    day: date
    village: str
    topic: str
    participants: list = field(default_factory=list)  # (full_name, sex, birth_year, category)
    headcount_female: int = 0
    headcount_male: int = 0
    materials: int = 0


@dataclass
class Service:
    day: date
    channel: str
    service_type: str
    client_code: str
    is_victim: bool
    sex: str


@dataclass
class GranteePlan:
    code: str
    region: str
    events: list = field(default_factory=list)
    assessments: list = field(default_factory=list)  # dates
    services: list = field(default_factory=list)


def reported(path: Path) -> dict[str, dict[tuple, int]]:
    """grantee -> (indicator, coc, period) -> value, the figures in the evaluation."""
    figures: dict[str, dict[tuple, int]] = defaultdict(lambda: defaultdict(int))
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            figures[row["grantee"]][(row["indicator"], row["disaggregation"], row["period"])] += int(row["value"])
    return figures


def _days(rng, count, period=""):
    start, end = (date(int(period), 1, 1), date(int(period), 12, 31)) if period else (START, END)
    span = (end - start).days
    return sorted(start + timedelta(days=rng.randrange(span + 1)) for _ in range(count))


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _person(rng, used: set, village: str, years: range, category: str) -> tuple:
    """A new person for this village: (full name, sex, birth year, category), never one the
    plan already has, so the demo's own people are distinct unless made alike on purpose."""
    while True:
        first, last, year = rng.choice(FIRST), rng.choice(LAST), rng.choice(years)
        name = f"{first} {last}{'a' if first in FEMALE else ''}"
        if (name, year, village) not in used:
            used.add((name, year, village))
            return name, "female" if first in FEMALE else "male", year, category


def plan_grantee(code: str, region: str, figures: dict[tuple, int], rng: random.Random) -> GranteePlan:
    plan = GranteePlan(code=code, region=region)
    get = lambda indicator, coc="total", period="": figures.get((indicator, coc, period), 0)  # noqa: E731
    types = {coc: n for (ind, coc, _p), n in figures.items() if ind == "events_held" and coc != "total"}
    trainers = get("trainers_prepared")
    if trainers and not types.get("tot"):
        types["tot"] = 1  # the evaluation counts trainers; they were trained at some TOT
    reached = get("participants_reached")
    female_target = get("participants_reached", "female")
    materials = get("materials_distributed")
    if (reached or materials) and not types:
        types["performance" if reached else "campaign"] = 1
    villages = VILLAGES[region]
    count = sum(types.values())
    days = _days(rng, count)
    kinds = [t for t, n in sorted(types.items()) for _ in range(n)]
    for i, (kind, day) in enumerate(zip(kinds, days)):
        plan.events.append(Event(kind, day, villages[i % len(villages)],
                                 "trafficking_risks" if kind != "tot" else "victim_support"))
    # Trainers are registered by name at the TOT events; everybody else as registers (small
    # seminars) or headcounts (plays, campaigns, large meetings).
    tots = [e for e in plan.events if e.event_type == "tot"]
    used: set = set()
    for event, n in zip(tots, _split(trainers, len(tots)) if tots else []):
        event.participants = [_person(rng, used, event.village, range(1960, 1986), "teacher") for _ in range(n)]
    others = [e for e in plan.events if e.event_type != "tot"] or plan.events
    remaining = max(reached - trainers, 0)
    shares = _split(remaining, len(others)) if others else []
    for event, share in zip(others, shares):
        named = min(share, 25 if event.event_type in ("seminar", "training", "roundtable") else 0)
        event.participants += [_person(rng, used, event.village, range(1986, 1992), "student")
                               for _ in range(named)]
        rest = share - named
        event.headcount_female, event.headcount_male = rest // 2 + rest % 2, rest // 2
    _fix_female(plan.events, female_target, reached, rng, used)
    for event, amount in zip(plan.events, _split(materials, len(plan.events)) if plan.events else []):
        event.materials = amount
    plan.assessments = _days(rng, get("needs_assessments"))
    plan.services = _services(code, figures, rng)
    return plan


def _fix_female(events, female_target: int, reached: int, rng, used: set) -> None:
    """Make the women counted equal the reported figure, when the evaluation gives one."""
    if not female_target or female_target > reached:
        return
    female = sum(e.headcount_female + sum(1 for p in e.participants if p[1] == "female") for e in events)
    for event in events:
        if female == female_target:
            break
        if female > female_target:
            move = min(event.headcount_female, female - female_target)
            event.headcount_female -= move
            event.headcount_male += move
            female -= move
        else:
            move = min(event.headcount_male, female_target - female)
            event.headcount_male -= move
            event.headcount_female += move
            female += move
    for event in events:  # registered women beyond the figure: register men instead
        for i, (name, sex, year, category) in enumerate(event.participants):
            if female <= female_target:
                return
            if sex == "female":
                while True:
                    replacement = _person(rng, used, event.village, range(year, year + 1), category)
                    if replacement[1] == "male":
                        break
                event.participants[i] = replacement
                female -= 1


def _services(code: str, figures: dict[tuple, int], rng: random.Random) -> list[Service]:
    total = figures.get(("consultations_provided", "total", ""), 0)
    channels = {coc: n for (ind, coc, _p), n in figures.items() if ind == "consultations_provided" and coc != "total"}
    service_types = {(coc, p): n for (ind, coc, p), n in figures.items() if ind == "services_provided"}
    victims = figures.get(("victims_assisted", "total", ""), 0)
    count = max(total, sum(channels.values()), sum(service_types.values()), victims)
    channel_list = [c for c, n in sorted(channels.items()) for _ in range(n)]
    channel_list += ["in_person"] * (count - len(channel_list))
    typed = [(t, p) for (t, p), n in sorted(service_types.items()) for _ in range(n)]
    typed += [("information", "")] * (count - len(typed))
    services = []
    for i in range(count):
        service_type, period = typed[i]
        day = _days(rng, 1, period)[0]
        victim = i < victims
        # Victims keep one pseudonymous code each; other clients come once or twice.
        client = f"{code[:3].upper()}V{i:03d}" if victim else f"{code[:3].upper()}C{rng.randrange(10**6):06d}"
        services.append(Service(day, channel_list[i], service_type, client, victim, rng.choice(["female", "male"])))
    return services


def _instance_id(rng) -> str:
    return f"uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"


def _respell(name: str) -> str:
    """How a second trainer writes the same person: Cyrillic, surname first, capitals."""
    first, last = name.split()
    base = last.rstrip("a") if last.endswith("ova") or last.endswith("eva") else last
    suffix = "а" if base != last else ""
    if first in CYRILLIC and base in CYRILLIC:
        return f"{CYRILLIC[base]}{suffix} {CYRILLIC[first]}"
    return f"{last.upper()} {first}"


def submissions(project_id: int, path: Path, seed: int = SEED):
    """Every submission of the demo, in order:
    (grantee code, form id, values, instance id, copies sent, device name or None)."""
    rng = random.Random(seed)
    grantees = {g.code: g for g in db.session.scalars(select(Grantee).where(Grantee.project_id == project_id))}
    for code, figures in sorted(reported(path).items()):
        grantee = grantees[code]
        plan = plan_grantee(code, grantee.region_code, figures, rng)
        twin = _design_duplicates(plan) if code == "chinek" else None
        for n, event in enumerate(plan.events):
            values = {
                "grantee": code, "event_type": event.event_type, "event_date": event.day.isoformat(),
                "region": grantee.region_code, "rayon": None, "village": event.village, "topic": event.topic,
                "language": "ky", "trainer_name": "Demo trainer", "register_participants":
                    "yes" if event.participants else "no",
                "participant": [{"full_name": p[0], "sex": p[1], "birth_year": p[2], "category": p[3]}
                                for p in event.participants],
                "headcount_female": event.headcount_female, "headcount_male": event.headcount_male,
                "materials_distributed": event.materials}
            # Every fifth submission is resent, as after a response lost on a village link.
            yield code, "seminar_attendance", values, _instance_id(rng), 2 if n % 5 == 0 else 1, None
            if event is twin:
                # The co-trainer's phone recorded the same seminar, the register in another order.
                again = {**values, "participant": list(reversed(values["participant"]))}
                yield code, "seminar_attendance", again, _instance_id(rng), 1, f"{code} co-trainer"
        for day in plan.assessments:
            yield code, "needs_assessment", {
                "grantee": code, "region": grantee.region_code, "village": VILLAGES[grantee.region_code][0],
                "interview_date": day.isoformat(), "consent": "yes", "respondent_sex": rng.choice(["female", "male"]),
                "respondent_age": rng.randrange(18, 70), "household_size": rng.randrange(2, 9),
                "members_abroad": rng.randrange(0, 2), "plans_to_migrate": rng.choice(["yes", "no", "unsure"]),
                "knows_trafficking_risks": rng.choice(["yes", "no"]), "knows_hotline": rng.choice(["yes", "no"]),
                "priority_needs": "employment legal_info"}, _instance_id(rng), 1, None
        for service in plan.services:
            yield code, "consultation_log", {
                "grantee": code, "service_date": service.day.isoformat(), "channel": service.channel,
                "service_type": service.service_type, "client_sex": service.sex, "client_age_group": "18_35",
                "client_is_victim": "yes" if service.is_victim else "no", "client_code": service.client_code,
            }, _instance_id(rng), 1, None


def _design_duplicates(plan: GranteePlan) -> Event | None:
    """Make two seminars of one village share their students, the second register typed in
    another spelling (same persons), and return the first: it is also sent from a second phone."""
    seminars = [e for e in plan.events if e.event_type == "seminar" and len(e.participants) >= 6]
    by_village = defaultdict(list)
    for event in seminars:
        by_village[event.village].append(event)
    pairs = [events for _village, events in sorted(by_village.items()) if len(events) >= 2]
    if not pairs:
        return None
    first, later = pairs[0][0], pairs[0][1]
    for i, (name, sex, year, category) in enumerate(first.participants[:len(later.participants)]):
        later.participants[i] = (_respell(name), sex, year, category)
    return first


def load(project_id: int, path: Path, seed: int = SEED) -> dict:
    """Send the demo through ingest; returns counts of what happened."""
    outcomes = defaultdict(int)
    devices: dict[str, AppUser] = {}
    forms = {}

    def send(code, form_id, values, instance_id, copies, device_name=None):
        key = device_name or code
        if key not in devices:
            name = f"demo {key}"
            devices[key] = accounts.app_user_by_name(project_id, name) or accounts.create_app_user(
                project_id, name, code, evaluator=False)
        if form_id not in forms:
            forms[form_id] = form_queries.form_by_xml_id(project_id, form_id).current_version.xml
        xml = fill_instance(forms[form_id], values, instance_id)
        actor = accounts.actor_for_app_user(devices[key])
        for _ in range(copies):
            received = receive(project_id, actor, Upload(xml=xml, device_id=f"demo:{key}",
                                                         user_agent="FieldSync demo"), max_bytes=10_000_000,
                               announce=False)
            outcomes[received.outcome] += 1

    for item in submissions(project_id, path, seed):
        send(*item)
    return dict(outcomes)
