"""Browsing submissions for people: the filtered, keyset-paged table of a form's submissions,
one submission laid out question by question, its edit history with what changed, and the
names of who sent, commented or reviewed.

Queries stay within the actor's grantee scope. Paging is by id only (`after` / `before`),
never OFFSET, so the 5,000th page costs what the first does; counts are capped. The layout and
diff functions (`questions`, `diff`, `show_value`) are pure functions of a form schema and
values. Uses models, auth, audit, formats; never HTTP.
"""
import csv
import io
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from lxml import etree
from sqlalchemy import func, or_, select
from sqlalchemy.orm import defer, selectinload

from .. import storage
from ..audit import record
from ..auth import Actor, can, grantee_scope
from ..extensions import db, write_transaction
from ..formats.submission import field_values, parse_stored
from ..models import (REVIEW_STATES, AppUser, Audit, Form, Grantee, Submission, SubmissionAttachment,
                      SubmissionDef, WebUser)
from ..xlsform import xform
from . import reader

PAGE_SIZE = 50
COUNT_CAP = 10_000
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
INSTANCE_ID = re.compile(r"^(uuid:)?[0-9a-f]{8}-?[0-9a-f-]{4,}$|^uuid:\S+$", re.IGNORECASE)


@dataclass(frozen=True)
class Filters:
    """What a person narrows the table to; every part optional."""
    grantee_ids: tuple[int, ...] | None = None  # a grantee, or the grantees of a region
    review_state: str | None = None
    date_from: date | None = None  # submitted on or after this day (local time)
    date_to: date | None = None    # submitted on or before this day (local time)
    app_user_id: int | None = None
    user_id: int | None = None
    search: str | None = None      # instance name (contains) or instance id (exact)


@dataclass
class Page:
    rows: list[Submission]
    newer: int | None = None   # pass as `before` for the newer page
    older: int | None = None   # pass as `after` for the older page
    submitters: dict = field(default_factory=dict)   # submission id -> name
    attachment_counts: dict = field(default_factory=dict)  # submission id -> (arrived, expected)


def _day_start(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(timezone.utc)


def _filtered(actor: Actor, form: Form, filters: Filters, zone: ZoneInfo):
    """The web table's filters, said in the reader's terms (days in local time, the search box
    as an instance id or a part of the instance name), read through the one scoped reader."""
    since = _day_start(filters.date_from, zone) if filters.date_from else None
    until = _day_start(filters.date_to + timedelta(days=1), zone) if filters.date_to else None
    ids = patterns = None
    if filters.search:
        text = filters.search.strip()
        if INSTANCE_ID.match(text):
            ids = tuple({text, text if text.lower().startswith("uuid:") else f"uuid:{text}"})
        else:
            # SQLite folds only ASCII case: try the usual casings of the text too (Кант, кант, КАНТ)
            variants = {text, text.lower(), text.upper(), text.capitalize(), text.title()}
            patterns = tuple("%" + v.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                             for v in sorted(variants))
    return reader.visible(actor, form, filters=reader.Filters(
        grantee_ids=filters.grantee_ids, review_state=filters.review_state, since=since, until=until,
        app_user_id=filters.app_user_id, user_id=filters.user_id, instance_ids=ids, name_patterns=patterns))


def page_of(actor: Actor, form: Form, filters: Filters, zone: ZoneInfo, after: int | None = None,
            before: int | None = None, limit: int | None = None) -> Page:
    """One page of the form's submissions, newest first. `after=id`: those older than `id`;
    `before=id`: those newer than `id` (the page just above it)."""
    limit = limit or PAGE_SIZE
    query = _filtered(actor, form, filters, zone).options(
        selectinload(Submission.current_def).options(defer(SubmissionDef.xml)),
        selectinload(Submission.grantee).selectinload(Grantee.region))
    if before is not None:
        rows = list(db.session.scalars(query.where(Submission.id > before)
                                       .order_by(Submission.id.asc()).limit(limit + 1)))
        more_newer = len(rows) > limit
        rows = list(reversed(rows[:limit]))
        more_older = bool(rows) and _exists(actor, form, filters, zone, Submission.id < rows[-1].id)
    else:
        if after is not None:
            query = query.where(Submission.id < after)
        rows = list(db.session.scalars(query.order_by(Submission.id.desc()).limit(limit + 1)))
        more_older = len(rows) > limit
        rows = rows[:limit]
        more_newer = after is not None and bool(rows) and _exists(
            actor, form, filters, zone, Submission.id > rows[0].id)
    page = Page(rows=rows, newer=rows[0].id if rows and more_newer else None,
                older=rows[-1].id if rows and more_older else None)
    page.submitters = submitter_names(rows)
    page.attachment_counts = attachment_counts([s.current_def_id for s in rows if s.current_def_id])
    page.attachment_counts = {s.id: page.attachment_counts.get(s.current_def_id, (0, 0)) for s in rows}
    return page


def _exists(actor, form, filters, zone, condition) -> bool:
    query = _filtered(actor, form, filters, zone).where(condition).with_only_columns(Submission.id).limit(1)
    return db.session.scalar(query) is not None


def count(actor: Actor, form: Form, filters: Filters, zone: ZoneInfo, cap: int = COUNT_CAP) -> tuple[int, bool]:
    """How many match, counting at most `cap` + 1 rows: (n, True) means "more than n"."""
    inner = _filtered(actor, form, filters, zone).with_only_columns(Submission.id).limit(cap + 1).subquery()
    n = db.session.scalar(select(func.count()).select_from(inner)) or 0
    return (cap, True) if n > cap else (n, False)


def forms_with_submissions(actor: Actor, forms: list[Form]) -> set[int]:
    """Which of these forms have any submission the actor may see (one cheap probe per form)."""
    return {form.id for form in forms if db.session.scalar(
        reader.visible(actor, form).with_only_columns(Submission.id).limit(1)) is not None}


def submitter_names(things) -> dict:
    """{thing.id: name} for submissions or versions: the app user's or web user's name."""
    names = reader.submitter_names(things)
    return {t.id: names.get(reader.submitter_key(t)) for t in things}


def app_user_names(ids) -> dict:
    if not ids:
        return {}
    return dict(db.session.execute(select(AppUser.id, AppUser.display_name).where(AppUser.id.in_(ids))).all())


def user_names(ids) -> dict:
    ids = {i for i in ids if i}
    if not ids:
        return {}
    return dict(db.session.execute(select(WebUser.id, WebUser.display_name).where(WebUser.id.in_(ids))).all())


def attachment_counts(def_ids) -> dict:
    """{submission def id: (files arrived, files named)}."""
    if not def_ids:
        return {}
    rows = db.session.execute(
        select(SubmissionAttachment.submission_def_id, func.count(SubmissionAttachment.id),
               func.count(SubmissionAttachment.blob_id))
        .where(SubmissionAttachment.submission_def_id.in_(def_ids), SubmissionAttachment.is_client_audit.is_(False))
        .group_by(SubmissionAttachment.submission_def_id)).all()
    return {def_id: (arrived, named) for def_id, named, arrived in rows}


def submitter_choices(actor: Actor, project_id: int) -> list[tuple[str, str]]:
    """[("app:3", "Chinek tablet 1"), ("user:5", "Aida"), …] for the submitter filter, in scope."""
    scope = grantee_scope(actor)
    apps = select(AppUser.id, AppUser.display_name).where(AppUser.project_id == project_id)
    users = select(WebUser.id, WebUser.display_name)
    if scope is not None:
        apps = apps.where(AppUser.grantee_id == scope)
        users = users.where(WebUser.grantee_id == scope)
    out = [(f"app:{i}", name) for i, name in db.session.execute(apps.order_by(AppUser.display_name))]
    out += [(f"user:{i}", name) for i, name in db.session.execute(users.order_by(WebUser.display_name))]
    return out


# --- one submission ---------------------------------------------------------------------------

def values_of(submission_def: SubmissionDef) -> dict:
    return field_values(parse_stored(submission_def.xml), submission_def.form_version.schema)


def record_read(actor: Actor, submission: Submission) -> None:
    """Someone opened the submission's page: who, and whether personal data was shown."""
    with write_transaction():
        record("submission.read", actor, subject=submission,
               details={"instanceId": submission.current_def.instance_id, "what": "page",
                        "personal": can(actor, "personal.read", submission)})


def history(submission: Submission) -> list[dict]:
    """The edit chain, oldest first: each version with its values, submitter and what changed
    since the version before it."""
    defs = list(submission.defs)
    names = submitter_names(defs)
    out, before = [], None
    for d in defs:
        schema = d.form_version.schema
        values = values_of(d)
        out.append({"def": d, "submitter": names.get(d.id), "values": values, "schema": schema,
                    "changes": diff(schema, before[1], values, before[0]) if before else []})
        before = (schema, values)
    return out


def _rows(values: dict, schema: dict) -> dict:
    """{(path, position or None): value} for every answer, repeats flattened by position."""
    flat = {}
    for f in schema["fields"]:
        if f["repeat"] is None:
            flat[(f["path"], None)] = values.get(f["path"])
    for repeat in schema.get("repeats", []):
        for position, row in enumerate(values.get(repeat) or [], start=1):
            for relative, value in row.items():
                flat[(f"{repeat}/{relative}", position)] = value
    return flat


def diff(schema: dict, old: dict, new: dict, old_schema: dict | None = None) -> list[dict]:
    """What changed between two versions' values: [{path, position, old, new, personal}], in the
    form's order. Empty and missing answers are the same; meta fields are left out."""
    fields = {f["path"]: f for f in (old_schema or schema)["fields"]}
    fields.update({f["path"]: f for f in schema["fields"]})
    a, b = _rows(old, old_schema or schema), _rows(new, schema)
    order = {path: i for i, path in enumerate(fields)}
    changes = []
    for key in sorted(set(a) | set(b), key=lambda k: (order.get(k[0], len(order)), k[1] or 0)):
        path, position = key
        if path.startswith("meta/"):
            continue
        before, after = a.get(key) or None, b.get(key) or None
        if before != after:
            f = fields.get(path, {})
            changes.append({"path": path, "position": position, "field": f, "old": before, "new": after,
                            "personal": bool(f.get("personal"))})
    return changes


def review_history(submission: Submission) -> list[Audit]:
    """Review-state changes (with their notes), oldest first."""
    return list(db.session.scalars(select(Audit).where(
        Audit.subject_kind == "submissions", Audit.subject_id == submission.id,
        Audit.action == "submission.update").order_by(Audit.id)))


# --- labels -----------------------------------------------------------------------------------

def language_key(languages: list[str], language: str) -> list[str]:
    """The schema's label keys to try for a UI language: that language, English, the default."""
    def find(code):
        return [k for k in languages if k == code or k.endswith(f"({code})") or k.lower().startswith(
            {"en": "english", "ru": "russian", "ky": "kyrgyz"}.get(code, "\0"))]
    keys = find(language) + find("en") + ["default"]
    return list(dict.fromkeys(keys))


def label(labels: dict | None, keys: list[str], fallback: str) -> str:
    for key in keys:
        text = (labels or {}).get(key)
        if text:
            return text
    return next((t for t in (labels or {}).values() if t), fallback)


_extras_cache: dict[int, tuple] = {}
CSV_SRC = re.compile(r"^jr://file-csv/([^/]+)$")
CSV_MAX_BYTES = 5_000_000
ITEMSET = re.compile(r"^instance\('([^']+)'\)/root/item")
XF = "http://www.w3.org/2002/xforms"
H = "http://www.w3.org/1999/xhtml"


@dataclass
class FormExtras:
    """What a page needs beyond the schema, read once per form version from its XForm."""
    choices: dict   # {field path: {choice name: {language: label}}}
    notes: set      # paths of read-only texts (notes) and calculations: never answered
    repeat_labels: dict  # {repeat path: {language: label}}


def form_extras(form_version) -> FormExtras:
    """Choice labels for select questions (from the body's items, the XForm's own secondary
    instances or the CSV files it carries), which fields are notes, and the repeats' labels."""
    stamp = (form_version.sha256, tuple((m.name, m.blob_id) for m in form_version.media))
    cached = _extras_cache.get(form_version.id)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    schema = form_version.schema
    root = schema.get("root") or ""
    instances, itext, readonly, repeat_refs, csv_sources = _read_xform(form_version.xml)
    extras = FormExtras(choices={}, notes=set(), repeat_labels={})
    for f in schema["fields"]:
        absolute = f"/{root}/{f['path']}"
        if absolute in readonly or f.get("control") is None:
            extras.notes.add(f["path"])
        if f.get("choices"):
            extras.choices[f["path"]] = {c["name"]: c.get("label") or {} for c in f["choices"]}
        elif f.get("itemset"):
            match = ITEMSET.match(f["itemset"])
            items = instances.get(match.group(1)) if match else None
            if items is None and match and match.group(1) in csv_sources:
                items = _csv_items(form_version, csv_sources[match.group(1)], schema.get("languages") or [])
                instances[match.group(1)] = items
            if items:
                extras.choices[f["path"]] = {
                    name: ({lang: texts.get(ref, "") for lang, texts in itext.items()} if ref else plain)
                    for name, ref, plain in items}
    for repeat in schema.get("repeats", []):
        ref = repeat_refs.get(f"/{root}/{repeat}")
        if ref is not None:
            extras.repeat_labels[repeat] = xform.label_texts(ref, itext)
    if len(_extras_cache) > 256:
        _extras_cache.clear()
    _extras_cache[form_version.id] = (stamp, extras)
    return extras


def _read_xform(xml: bytes):
    root = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True))
    model = root.find(f".//{{{XF}}}model")
    itext: dict[str, dict[str, str]] = {}
    instances: dict[str, list] = {}
    readonly: set[str] = set()
    repeat_refs: dict = {}
    csv_sources: dict = {}
    if model is None:
        return instances, itext, readonly, repeat_refs, csv_sources
    itext = xform.itext_texts(model)
    for instance in model.findall(f"{{{XF}}}instance"):
        source = CSV_SRC.match(instance.get("src") or "")
        if instance.get("id") and source:
            csv_sources[instance.get("id")] = source.group(1)
        if not instance.get("id") or instance.get("src"):
            continue
        items = []
        for item in instance.iter(f"{{{XF}}}item"):
            name = item.findtext(f"{{{XF}}}name")
            ref = item.findtext(f"{{{XF}}}itextId")
            plain = item.findtext(f"{{{XF}}}label")
            if name is not None:
                items.append((name, ref, {"default": plain} if plain else {}))
        instances[instance.get("id")] = items
    for bind in model.findall(f"{{{XF}}}bind"):
        if bind.get("readonly") in ("true()", "true") or bind.get("calculate"):
            readonly.add(bind.get("nodeset"))
    body = root.find(f"{{{H}}}body")
    if body is not None:
        for repeat in body.iter(f"{{{XF}}}repeat"):
            own = repeat.find(f"{{{XF}}}label")
            parent = repeat.getparent()
            outer = parent.find(f"{{{XF}}}label") if parent is not None and \
                parent.tag == f"{{{XF}}}group" else None
            chosen = own if own is not None else outer
            if chosen is not None:
                repeat_refs[repeat.get("nodeset")] = chosen
    return instances, itext, readonly, repeat_refs, csv_sources


def _csv_items(form_version, name: str, languages: list[str]) -> list:
    """Choices from a CSV file the form version carries (`jr://file-csv/…`): its `name` column
    and its label columns (`label`, `label::English (en)` or `label_en`)."""
    media = next((m for m in form_version.media if m.name == name and m.blob is not None), None)
    if media is None or (media.blob.size or 0) > CSV_MAX_BYTES:
        return []
    try:
        text = storage.read_bytes(media.blob).decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return []
    rows = csv.DictReader(io.StringIO(text))
    columns = {}
    for column in rows.fieldnames or []:
        if column == "label":
            columns[column] = "default"
        elif column.startswith("label::"):
            columns[column] = column[len("label::"):]
        elif column.startswith("label_"):
            code = column[len("label_"):]
            columns[column] = next((k for k in languages if k.endswith(f"({code})")), column)
    return [(row.get("name"), None, {key: row.get(column) or "" for column, key in columns.items()})
            for row in rows if row.get("name")]


def show_value(f: dict, value, choices: dict, keys: list[str]):
    """An answer as a person reads it: choice labels for selects (several for select_multiple)."""
    if value in (None, ""):
        return None
    options = choices.get(f.get("path"))
    if not options:
        return value
    names = value.split() if f.get("control") == "select" else [value]
    return ", ".join(label(options.get(n), keys, n) if n in options else n for n in names)


def questions(schema: dict, values: dict, language: str, extras: FormExtras, personal_ok: bool) -> list[dict]:
    """The answers in form order for a page: [{kind: "field"|"repeat", …}]. Notes, calculations
    and meta fields are left out; personal answers are hidden unless `personal_ok`; repeats
    become tables with one row per instance."""
    keys = language_key(schema.get("languages") or [], language)
    choices = extras.choices
    out, repeats_done = [], set()
    for f in schema["fields"]:
        if f["path"].startswith("meta/") or f["path"] in extras.notes:
            continue
        if f["repeat"] is not None:
            repeat = f["repeat"]
            if repeat in repeats_done:
                continue
            repeats_done.add(repeat)
            columns = [c for c in schema["fields"] if c["repeat"] == repeat and c["path"] not in extras.notes]
            rows = [[_cell(c, row.get(c["path"][len(repeat) + 1:]), choices, keys, personal_ok) for c in columns]
                    for row in values.get(repeat) or []]
            fallback = repeat.rsplit("/", 1)[-1].replace("_", " ").capitalize()
            out.append({"kind": "repeat", "path": repeat,
                        "label": label(extras.repeat_labels.get(repeat), keys, fallback),
                        "columns": [label(c.get("label"), keys, c["name"]) for c in columns], "rows": rows})
            continue
        cell = _cell(f, values.get(f["path"]), choices, keys, personal_ok)
        out.append({"kind": "field", "path": f["path"], "label": label(f.get("label"), keys, f["name"]), **cell})
    return out


def form_title(form, language: str) -> str:
    """A form's title in one language: programme workbooks title their forms in every language
    at once ("Event attendance · Учёт мероприятия · …", in the order of the form's languages)."""
    version = form.current_version
    title = form.title
    if version is None:
        return title
    languages = version.schema.get("languages") or []
    parts = [p.strip() for p in title.split(" · ")]
    if len(languages) > 1 and len(parts) == len(languages):
        keys = language_key(languages, language)
        for key in keys:
            if key in languages:
                return parts[languages.index(key)]
    return title


def field_label(f: dict, schema: dict, language: str) -> str:
    return label(f.get("label"), language_key(schema.get("languages") or [], language), f.get("name") or "")


def _cell(f, value, choices, keys, personal_ok) -> dict:
    hidden = bool(f.get("personal")) and not personal_ok
    day = None
    if f["type"] == "date" and value and not hidden:
        try:
            day = date.fromisoformat(value.strip()[:10])
        except ValueError:
            day = None
    return {"hidden": hidden, "value": None if hidden else show_value(f, value, choices, keys),
            "raw": None if hidden else value, "type": f["type"], "personal": bool(f.get("personal")),
            "name": f["name"], "date": day}


def is_image(attachment: SubmissionAttachment) -> bool:
    return attachment.blob is not None and attachment.blob.content_type in IMAGE_TYPES


def review_states() -> tuple[str, ...]:
    return REVIEW_STATES
