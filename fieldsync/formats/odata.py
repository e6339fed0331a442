"""OData v4 for form submissions, in ODK Central's shape: the service document, `$metadata`
(EDMX built from a form's schema, repeats as their own entity sets) and rows.

Pure functions of the form schema and submission values; the query side ($filter parsing) is
in `odata_query.py`. Field names are made into OData identifiers the way Central does.
"""
import base64
import hashlib
import json
import re
from xml.sax.saxutils import escape, quoteattr

from .. import problems

NS = "org.opendatakit.user"
EDM_TYPES = {"int": "Edm.Int64", "decimal": "Edm.Decimal", "date": "Edm.Date", "dateTime": "Edm.DateTimeOffset",
             "time": "Edm.String", "geopoint": "Edm.GeographyPoint", "boolean": "Edm.Boolean"}
SYSTEM_FIELDS = [("submissionDate", "Edm.DateTimeOffset"), ("updatedAt", "Edm.DateTimeOffset"),
                 ("deletedAt", "Edm.DateTimeOffset"), ("submitterId", "Edm.String"), ("submitterName", "Edm.String"),
                 ("attachmentsPresent", "Edm.Int64"), ("attachmentsExpected", "Edm.Int64"),
                 ("status", "Edm.String"), ("reviewState", "Edm.String"), ("deviceId", "Edm.String"),
                 ("edits", "Edm.Int64"), ("formVersion", "Edm.String"), ("grantee", "Edm.String")]


def sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def table_name(repeat: str | None) -> str:
    return "Submissions" if repeat is None else "Submissions." + ".".join(sanitize(p) for p in repeat.split("/"))


def tables(schema: dict) -> list[str]:
    return ["Submissions"] + [table_name(r) for r in schema.get("repeats", [])]


def repeat_of_table(schema: dict, table: str) -> str | None:
    for repeat in schema.get("repeats", []):
        if table_name(repeat) == table:
            return repeat
    return None


def visible_fields(schema: dict, personal: bool) -> list[dict]:
    """Every field of the instance, as Central shows them, less personal data unless asked for."""
    return [f for f in schema["fields"] if personal or not f.get("personal")]


def service_document(context_url: str, schema: dict) -> dict:
    return {"@odata.context": f"{context_url}/$metadata",
            "value": [{"name": t, "kind": "EntitySet", "url": t} for t in tables(schema)]}


def _relative(field: dict, repeat: str | None) -> list[str]:
    path = field["path"][len(repeat) + 1:] if repeat else field["path"]
    return path.split("/")


def metadata(schema: dict, fields: list[dict]) -> str:
    """The EDMX document: one entity type per table, complex types for groups."""
    complex_types: dict[str, list[tuple[str, str]]] = {}
    entity_types: dict[str, list[tuple[str, str]]] = {}
    navigations: dict[str, list[str]] = {}
    repeats = schema.get("repeats", [])
    for repeat in [None] + repeats:
        entity = "Submissions" if repeat is None else table_name(repeat)
        props = entity_types.setdefault(entity, [])
        for child in repeats:
            parent = child.rsplit("/", 1)[0] if "/" in child else None
            if parent == repeat:
                navigations.setdefault(entity, []).append(table_name(child))
        for field in fields:
            if field["repeat"] != repeat:
                continue
            parts = _relative(field, repeat)
            owner, type_path = props, [entity]
            for group in parts[:-1]:
                type_path.append(sanitize(group))
                type_name = ".".join(type_path)
                if (sanitize(group), f"{NS}.{type_name}") not in owner:
                    owner.append((sanitize(group), f"{NS}.{type_name}"))
                owner = complex_types.setdefault(type_name, [])
            owner.append((sanitize(parts[-1]), EDM_TYPES.get(field["type"], "Edm.String")))
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx" Version="4.0">',
             "  <edmx:DataServices>",
             f'    <Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace="{NS}">']
    for entity, props in entity_types.items():
        lines.append(f'      <EntityType Name="{escape(entity)}">')
        lines.append('        <Key><PropertyRef Name="__id"/></Key>')
        lines.append('        <Property Name="__id" Type="Edm.String"/>')
        if entity == "Submissions":
            lines.append(f'        <Property Name="__system" Type="{NS}.metadata"/>')
        else:
            parent = entity.rsplit(".", 1)[0]
            lines.append(f'        <Property Name="__{escape(sanitize(parent))}-id" Type="Edm.String"/>')
        for name, kind in props:
            lines.append(f"        <Property Name={quoteattr(name)} Type={quoteattr(kind)}/>")
        for target in navigations.get(entity, []):
            name = target.rsplit(".", 1)[1]
            lines.append(f'        <NavigationProperty Name={quoteattr(name)} Type="Collection({NS}.{escape(target)})"/>')
        lines.append("      </EntityType>")
    for type_name, props in complex_types.items():
        lines.append(f"      <ComplexType Name={quoteattr(type_name)}>")
        for name, kind in props:
            lines.append(f"        <Property Name={quoteattr(name)} Type={quoteattr(kind)}/>")
        lines.append("      </ComplexType>")
    lines.append('      <ComplexType Name="metadata">')
    for name, kind in SYSTEM_FIELDS:
        lines.append(f'        <Property Name="{name}" Type="{kind}"/>')
    lines.append("      </ComplexType>")
    lines.append('      <EntityContainer Name="SubmissionsContainer">')
    for entity in entity_types:
        lines.append(f'        <EntitySet Name={quoteattr(entity)} EntityType={quoteattr(NS + "." + entity)}/>')
    lines += ["      </EntityContainer>", "    </Schema>", "  </edmx:DataServices>", "</edmx:Edmx>", ""]
    return "\n".join(lines)


def typed(field: dict, text: str | None, wkt: bool = False):
    if text is None or text == "":
        return None
    kind = field["type"]
    try:
        if kind == "int":
            return int(text)
        if kind == "decimal":
            return float(text)
    except ValueError:
        return text
    if kind == "geopoint":
        parts = text.split()
        try:
            lat, lon = float(parts[0]), float(parts[1])
        except (IndexError, ValueError):
            return text
        alt = float(parts[2]) if len(parts) > 2 else None
        if wkt:
            return f"POINT ({lon} {lat}{'' if alt is None else f' {alt}'})"
        point = {"type": "Point", "coordinates": [lon, lat] + ([alt] if alt is not None else [])}
        if len(parts) > 3:
            point["properties"] = {"accuracy": float(parts[3])}
        return point
    return text


def _put(row: dict, parts: list[str], value) -> None:
    for group in parts[:-1]:
        row = row.setdefault(sanitize(group), {})
    row[sanitize(parts[-1])] = value


def row_id(instance_id: str, repeat: str, index: int) -> str:
    return hashlib.sha1(f"{instance_id}/{repeat}/{index}".encode()).hexdigest()


def submission_row(system: dict, instance_id: str, values: dict, fields: list[dict], repeats: list[str],
                   expand: bool, wkt: bool) -> dict:
    row = {"__id": instance_id}
    for field in fields:
        if field["repeat"] is None:
            _put(row, _relative(field, None), typed(field, values.get(field["path"]), wkt))
    for repeat in repeats:
        if "/" in repeat:
            continue  # nested repeats are reached through their parent's table
        name = sanitize(repeat)
        if expand:
            row[name] = repeat_rows(instance_id, values, fields, repeat, wkt, with_parent=False)
        else:
            row[f"{name}@odata.navigationLink"] = f"Submissions('{instance_id}')/{name}"
    row["__system"] = system
    return row


def repeat_rows(instance_id: str, values: dict, fields: list[dict], repeat: str, wkt: bool,
                with_parent: bool = True) -> list[dict]:
    rows = []
    for index, item in enumerate(values.get(repeat) or []):
        out = {"__id": row_id(instance_id, repeat, index)}
        for field in fields:
            if field["repeat"] == repeat:
                _put(out, _relative(field, repeat), typed(field, item.get(field["path"][len(repeat) + 1:]), wkt))
        if with_parent:
            out["__Submissions-id"] = instance_id
        rows.append(out)
    return rows


def skiptoken(position: dict) -> str:
    return "01" + base64.b64encode(json.dumps(position, separators=(",", ":")).encode()).decode()


SKIPTOKEN_MAX_LENGTH = 1024  # ours are "01" and the base64 of {"instanceId": …} (at most 255 characters)


def read_skiptoken(token: str) -> dict:
    """The position a `skiptoken()` gave, `{"instanceId": str}`; anything else (not ours, not
    base64, not JSON, not that shape, too long) is refused with 400.35 before it reaches SQL."""
    def invalid(reason):
        return problems.odata_invalid_skiptoken(reason=reason)

    if len(token) > SKIPTOKEN_MAX_LENGTH:
        raise invalid(f"it is {len(token)} characters long; this server's are under {SKIPTOKEN_MAX_LENGTH}")
    if not token.startswith("01"):
        raise invalid("it does not start with 01, as this server's do")
    try:
        position = json.loads(base64.b64decode(token[2:], validate=True).decode("utf-8"))
    except (ValueError, RecursionError):  # binascii.Error, UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise invalid("it is not base64 of JSON") from None
    instance_id = position.get("instanceId") if isinstance(position, dict) else None
    if (not isinstance(instance_id, str) or not 0 < len(instance_id) <= 255
            or re.search(r"[\x00-\x1f\ud800-\udfff]", instance_id)):
        raise invalid('it does not hold {"instanceId": "…"}')
    return {"instanceId": instance_id}
