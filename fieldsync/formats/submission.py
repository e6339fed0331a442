"""Submission XML: the one place that reads it.

`read_envelope` takes what every door needs before anything is stored (form id, version,
instanceID, deprecatedID, instance name); `attachment_names` and `field_values` read a parsed
instance against a form's schema (from `xlsform.xform`). Namespace prefixes are ignored when
matching names, as ODK Central does.
"""
from dataclasses import dataclass

from lxml import etree

from .. import problems
from .xml import child_by_local_name, local_name, parse_untrusted

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


def _find_all(root, path: str) -> list:
    """Elements at a '/'-separated path below the root, through every repeat instance."""
    current = [root]
    for step in path.split("/"):
        current = [child for element in current for child in element
                   if isinstance(child.tag, str) and local_name(child) == step]
    return current


def field_text(root, path: str) -> str | None:
    """The text of the first element at `path` (a top-level or group field), or None."""
    found = _find_all(root, path)
    return found[0].text.strip() if found and found[0].text and found[0].text.strip() else None


def attachment_names(root, schema: dict) -> list[tuple[str, bool]]:
    """(file name, is the client audit log) for every binary field answered in this instance."""
    names: dict[str, bool] = {}
    for field in schema["fields"]:
        if field["type"] != "binary":
            continue
        for element in _find_all(root, field["path"]):
            value = (element.text or "").strip()
            if value:
                names.setdefault(value, field["path"] == "meta/audit")
    return list(names.items())


def field_values(root, schema: dict) -> dict:
    """The instance as plain values: `{path: text}` for top-level fields and
    `{repeat path: [ {field name: text}, … ]}` for repeats."""
    values: dict = {}
    repeats = {r: [] for r in schema.get("repeats", [])}
    for field in schema["fields"]:
        if field["repeat"] is None:
            values[field["path"]] = field_text(root, field["path"])
    for repeat in repeats:
        for element in _find_all(root, repeat):
            row = {}
            for field in schema["fields"]:
                if field["repeat"] == repeat:
                    relative = field["path"][len(repeat) + 1:]
                    row[relative] = field_text(element, relative)
            repeats[repeat].append(row)
    values.update(repeats)
    return values
