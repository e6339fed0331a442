"""Submission XML: the one place that reads it.

`read_envelope` takes what every door needs before anything is stored (form id, version,
instanceID, deprecatedID, instance name); `attachment_names` and `field_values` read a parsed
instance against a form's schema (from `xlsform.xform`). Namespace prefixes are ignored when
matching names, as ODK Central does.
"""
from dataclasses import dataclass

from lxml import etree

from .. import problems
from .xml import _PARSER, child_by_local_name, parse_untrusted

ORX = "http://openrosa.org/xforms"


@dataclass
class Envelope:
    root: etree._Element
    form_id: str
    version: str
    instance_id: str | None
    deprecated_id: str | None
    instance_name: str | None
    encrypted: bool


def _meta_text(root, name: str) -> str | None:
    meta = child_by_local_name(root, "meta")
    element = child_by_local_name(meta, name) if meta is not None else None
    if element is None and name == "instanceID":
        element = child_by_local_name(root, "instanceID")
    if element is None or element.text is None:
        return None
    return element.text  # not trimmed: the instanceID is compared exactly, as Central does


def read_envelope(data: bytes, max_bytes: int) -> Envelope:
    root = parse_untrusted(data, max_bytes=max_bytes)
    form_id = (root.get("id") or "").strip()
    if not form_id:
        raise problems.missing_parameter(field="form ID xml attribute")
    version = root.get("version") or root.get(f"{{{ORX}}}version") or ""
    instance_id = _meta_text(root, "instanceID")
    encrypted = child_by_local_name(root, "base64EncryptedKey") is not None
    if encrypted and not instance_id:
        raise problems.missing_parameter(field="instanceId (required for encrypted submissions)")
    name = _meta_text(root, "instanceName")
    return Envelope(root=root, form_id=form_id, version=version,
                    instance_id=instance_id if instance_id and instance_id.strip() else None,
                    deprecated_id=_meta_text(root, "deprecatedID") or None,
                    instance_name=name.strip()[:1024] if name else None, encrypted=encrypted)


def parse_stored(data: bytes) -> etree._Element:
    """Parse submission XML that FieldSync stored itself: it passed `parse_untrusted` when it
    arrived, so the size and depth checks are not repeated (the parser stays the safe one)."""
    return etree.fromstring(data, _PARSER)


def _name(element) -> str | None:
    tag = element.tag
    return tag.rpartition("}")[2] if isinstance(tag, str) else None


def _index(element, prefix: str = "", found: dict | None = None, wanted: set | None = None) -> dict[str, list]:
    """Elements below `element` by their '/'-joined path of local names, in document order;
    only below paths in `wanted` (a set of paths and their prefixes) when it is given.

    One walk names each element once, so reading F fields of an instance of E elements costs
    O(E + F), not O(E × F) as a scan from the root per field did.
    """
    found = {} if found is None else found
    for child in element:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        path = prefix + (tag.rpartition("}")[2] if "}" in tag else tag)
        if wanted is not None and path not in wanted:
            continue
        found.setdefault(path, []).append(child)
        if len(child) and (wanted is None or wanted[path]):
            _index(child, path + "/", found, wanted)
    return found


def _wanted(paths, stops=()) -> dict[str, bool]:
    """{path or prefix: whether to descend below it} for `_index`."""
    wanted: dict[str, bool] = {}
    for path in paths:
        steps = path.split("/")
        for i in range(1, len(steps)):
            wanted["/".join(steps[:i])] = True
        wanted.setdefault(path, False)
    for stop in stops:
        steps = stop.split("/")
        for i in range(1, len(steps)):
            wanted["/".join(steps[:i])] = True
        wanted[stop] = wanted.get(stop, False)
    return wanted


def _find_all(root, path: str) -> list:
    """Elements at a '/'-separated path below the root, through every repeat instance."""
    return _index(root).get(path, [])


def _text(found: list) -> str | None:
    text = found[0].text if found else None
    if text is None:
        return None
    text = text.strip()
    return text or None


def field_text(root, path: str) -> str | None:
    """The text of the first element at `path` (a top-level or group field), or None."""
    current = root
    for step in path.split("/"):
        current = next((c for c in current if _name(c) == step), None)
        if current is None:
            # The first element at the path may sit under a later sibling of the same name.
            return _text(_find_all(root, path))
    return _text([current])


def attachment_names(root, schema: dict) -> list[tuple[str, bool]]:
    """(file name, is the client audit log) for every binary field answered in this instance."""
    names: dict[str, bool] = {}
    binary = [f["path"] for f in schema["fields"] if f["type"] == "binary"]
    found = _index(root) if binary else {}
    for path in binary:
        for element in found.get(path, []):
            value = (element.text or "").strip()
            if value:
                names.setdefault(value, path == "meta/audit")
    return list(names.items())


_plans: dict[int, tuple] = {}


def _plan(schema: dict) -> tuple:
    """The schema's field paths, grouped for reading: (top-level paths, what to walk for them
    with and without repeats, {repeat: ([relative paths…], what to walk)}). Cached per schema
    object (a form version's schema is loaded once per session and reused for every row)."""
    cached = _plans.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    top = [f["path"] for f in schema["fields"] if f["repeat"] is None]
    repeats = list(schema.get("repeats", []))
    relatives = {r: [] for r in repeats}
    for field in schema["fields"]:
        if field["repeat"] is not None and field["repeat"] in relatives:
            relatives[field["repeat"]].append(field["path"][len(field["repeat"]) + 1:])
    # A repeat inside a repeat is reached through every instance of its parent, as before.
    with_repeats = _wanted(top, repeats)
    for repeat in repeats:
        with_repeats[repeat] = any(r.startswith(repeat + "/") for r in repeats)
    plan = (top, _wanted(top), with_repeats,
            {r: (fields, _wanted(fields)) for r, fields in relatives.items()})
    if len(_plans) > 32:
        _plans.clear()
    _plans[id(schema)] = (schema, plan)
    return plan


def field_values(root, schema: dict, repeats: bool = True) -> dict:
    """The instance as plain values: `{path: text}` for top-level fields and
    `{repeat path: [ {field name: text}, … ]}` for repeats (left out with `repeats=False`)."""
    top, plain, with_repeats, repeat_plans = _plan(schema)
    found = _index(root, wanted=with_repeats if repeats and repeat_plans else plain)
    values: dict = {path: _text(found.get(path)) for path in top}
    if repeats:
        for repeat, (relatives, wanted) in repeat_plans.items():
            rows = []
            for element in found.get(repeat, []):
                inner = _index(element, wanted=wanted)
                rows.append({relative: _text(inner.get(relative)) for relative in relatives})
            values[repeat] = rows
    return values
