"""Record-level deduplication rules, as pure functions (SPEC "Deduplication rules" 2 and 3).

Events: two seminar_attendance submissions of one grantee on one date are the same event
when type, normalised village and topic agree and either their registers overlap (at least
half of the smaller register is the same persons) or both are headcount-only with equal
totals. Weaker likenesses become candidates for a coordinator. A coordinator's decision
(merge / not a duplicate) overrides the rule for that pair, always.

Persons: exact agreement of normalised name, birth year and normalised village makes one
person (the person key); close fuzzy names in the same village and year become candidates.
"""
from dataclasses import dataclass, field

from rapidfuzz import fuzz, process

from .names import FUZZY_CANDIDATE_THRESHOLD, key_similarity, name_similarity

MERGED, NOT_DUPLICATE = "merged", "not_duplicate"
PREFILTER_MARGIN = 20.0


@dataclass
class EventView:
    instance_id: str
    order: int  # submission id: the earliest is the one a merged group is named after
    event_type: str | None
    village_key: str
    topic: str | None
    persons: frozenset  # canonical person keys of the register
    headcount: int

    @property
    def headcount_only(self) -> bool:
        return not self.persons


@dataclass
class Group:
    canonical: EventView
    members: list[EventView]
    reasons: dict[str, str] = field(default_factory=dict)  # instance id -> why it joined


@dataclass
class Candidate:
    key_a: str
    key_b: str
    score: float
    reason: str


def pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def same_event(a: EventView, b: EventView) -> str | None:
    """Why the rule merges these two events automatically, or None."""
    if (a.event_type, a.village_key, a.topic) != (b.event_type, b.village_key, b.topic):
        return None
    if a.headcount_only and b.headcount_only:
        if a.headcount == b.headcount:
            return f"same type, village, topic and date; both headcount-only with {a.headcount} people"
        return None
    if a.headcount_only or b.headcount_only:
        return None
    common = len(a.persons & b.persons)
    smaller = min(len(a.persons), len(b.persons))
    if common * 2 >= smaller:
        return (f"same type, village, topic and date; {common} of the smaller register's "
                f"{smaller} participants are the same persons")
    return None


def event_likeness(a: EventView, b: EventView) -> Candidate | None:
    """A weaker match worth a coordinator's look (never merged without one)."""
    if a.event_type != b.event_type:
        return None
    if a.persons and b.persons and a.village_key != b.village_key and not (a.persons & b.persons):
        return None  # two registers, no one in common, another village: two events
    reasons, score = [], 50.0
    if a.village_key == b.village_key:
        score += 20
    else:
        # A day with hundreds of events compares every pair: a C-speed ratio first, the
        # careful score only for the few that could pass.
        if fuzz.ratio(a.village_key, b.village_key) < FUZZY_CANDIDATE_THRESHOLD - PREFILTER_MARGIN:
            return None
        similarity = name_similarity(a.village_key, b.village_key)
        if similarity < FUZZY_CANDIDATE_THRESHOLD:
            return None
        reasons.append(f"villages alike ({similarity:.0f}%)")
        score += similarity / 10
    if a.topic != b.topic:
        reasons.append("different topics")
    else:
        score += 10
    if a.persons and b.persons:
        common = len(a.persons & b.persons)
        reasons.append(f"{common} participant(s) in common")
        score += 20 * common / min(len(a.persons), len(b.persons))
    elif a.headcount_only and b.headcount_only:
        if a.headcount != b.headcount:
            reasons.append(f"headcounts {a.headcount} and {b.headcount}")
    else:
        reasons.append("one has a register, the other only a headcount")
    key_a, key_b = pair(a.instance_id, b.instance_id)
    return Candidate(key_a, key_b, round(min(score, 99.0), 1),
                     "Same grantee, date and event type; " + ", ".join(reasons) + ".")


def group_events(events: list[EventView], decisions: dict[tuple[str, str], str]) -> tuple[list[Group], list[Candidate]]:
    """Group one grantee's events of one day; return the groups and the open candidates."""
    parent = {e.instance_id: e.instance_id for e in events}
    by_id = {e.instance_id: e for e in events}
    why: dict[str, str] = {}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a, b):
        ra, rb = find(a), find(b)
        if ra != rb:
            # The earlier submission names the group.
            if by_id[ra].order > by_id[rb].order:
                ra, rb = rb, ra
            parent[rb] = ra

    candidates = []
    ordered = sorted(events, key=lambda e: e.order)
    for i, a in enumerate(ordered):
        for b in ordered[i + 1:]:
            decision = decisions.get(pair(a.instance_id, b.instance_id))
            if decision == NOT_DUPLICATE:
                continue
            if decision == MERGED:
                union(a.instance_id, b.instance_id)
                why.setdefault(b.instance_id, "merged by a coordinator")
                continue
            reason = same_event(a, b)
            if reason:
                union(a.instance_id, b.instance_id)
                why.setdefault(b.instance_id, reason)
                continue
            candidate = event_likeness(a, b)
            if candidate:
                candidates.append(candidate)
    groups: dict[str, Group] = {}
    for event in ordered:
        root = find(event.instance_id)
        group = groups.setdefault(root, Group(canonical=by_id[root], members=[]))
        group.members.append(event)
        if event.instance_id != root:
            group.reasons[event.instance_id] = why.get(event.instance_id, "matched through another event")
    # A candidate inside one group is settled already.
    open_candidates = [c for c in candidates if find(c.key_a) != find(c.key_b)]
    return list(groups.values()), open_candidates


# The first pass's scorers, each on its own column of a block's groups (see `first_pass`).
_FIRST_PASS = ((1, fuzz.token_set_ratio, lambda name: name), (2, fuzz.ratio, lambda name: name.replace(" ", "")))


def first_pass(person, groups) -> list[list[tuple]]:
    """Every person of a block kept as groups of (rows, names, names without spaces) whose name
    could reach the candidate threshold: a C-speed pass, per scorer, as (-score, group, index)."""
    cutoff = FUZZY_CANDIDATE_THRESHOLD - PREFILTER_MARGIN
    per_scorer = []
    for column, scorer, prepare in _FIRST_PASS:
        query = prepare(person.name_key)
        per_scorer.append([(-score, g, index) for g, group in enumerate(groups) for _name, score, index in
                           process.extract(query, group[column], scorer=scorer, limit=None, score_cutoff=cutoff)])
    return per_scorer


def likely_same_in(per_scorer, groups, limit: int = 20, skip=None) -> list:
    """The best `limit` hits of each scorer of `first_pass` (rows for which `skip(row)` is
    true left out first): the few worth the careful score."""
    chosen = {}
    for hits in per_scorer:
        kept = sorted(hit for hit in hits if skip is None or not skip(groups[hit[1]][0][hit[2]]))
        for _score, g, index in kept[:limit]:
            chosen[(g, index)] = groups[g][0][index]
    return [chosen[k] for k in sorted(chosen)]


def person_likeness(name_a: str, name_b: str, year_a, year_b) -> float | None:
    """Score for two different persons of one village (their name keys, as `normalise_name`
    makes them), or None when not alike enough."""
    if year_a is not None and year_b is not None and year_a != year_b:
        return None
    if name_a == name_b:
        return 95.0  # same name and village, one birth year missing
    similarity = key_similarity(name_a, name_b)
    return similarity if similarity >= FUZZY_CANDIDATE_THRESHOLD else None
