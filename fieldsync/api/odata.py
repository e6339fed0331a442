"""OData feeds for Excel, Power BI, R (ruODK) and pyODK's `get_table`, as ODK Central serves them:
`/v1/projects/{pid}/forms/{xmlFormId}.svc` (service document), `…/$metadata`, `…/Submissions`
and one table per repeat. Paging is keyset (`$skiptoken`), so the last page of a million rows
is as quick as the first; without `$top` the whole table is streamed, never truncated.
Personal-data fields are left out unless `personal=true` is asked by a role that may see them.
"""
import json
from urllib.parse import urlencode

from flask import Response, request, stream_with_context

from .. import problems, review
from ..audit import record
from ..auth import can
from ..extensions import db, write_transaction
from ..formats import odata
from ..formats.odata_query import mentions, parse, to_sql
from ..formats.submission import field_values, parse_stored
from ..httpkit import bounded_int, current_actor, public_base_url
from ..models import Submission
from ..review import reader
from . import bp, schemas
from .openapi import documented

BASE = "/v1/projects/<int:project_id>/forms/<xml_form_id>.svc"
KNOWN_OPTIONS = {"$top", "$skip", "$skiptoken", "$count", "$filter", "$orderby", "$wkt", "$select", "$expand",
                 "$format"}
BATCH = 500
JSON_TYPE = "application/json; charset=utf-8; odata.metadata=minimal"


def _flag(name: str) -> bool:
    return (request.args.get(name) or "").lower() in ("true", "1")


def _form(project_id: int, xml_form_id: str):
    actor = current_actor()
    if actor is None:
        raise problems.auth_failed()
    form = review.form_for(actor, project_id, xml_form_id)
    if form.current_version is None:
        raise problems.not_found()
    personal = _flag("personal")
    if personal and not can(actor, "personal.read"):
        raise problems.forbidden()
    return actor, form, personal


def _context_url(project_id: int, xml_form_id: str) -> str:
    return f"{public_base_url()}/v1/projects/{project_id}/forms/{xml_form_id}.svc"


def _json(body, status=200) -> Response:
    response = Response(json.dumps(body, ensure_ascii=False), status=status, content_type=JSON_TYPE)
    response.headers["OData-Version"] = "4.0"
    return response


@bp.get(BASE)
@documented("OData service document", response=schemas.ODataDocument, tags=("OData",))
def service_document(project_id, xml_form_id):
    _actor, form, _personal = _form(project_id, xml_form_id)
    return _json(odata.service_document(_context_url(project_id, xml_form_id), form.current_version.schema))


@bp.get(BASE + "/$metadata")
def metadata(project_id, xml_form_id):
    _actor, form, personal = _form(project_id, xml_form_id)
    schema = form.current_version.schema
    response = Response(odata.metadata(schema, odata.visible_fields(schema, personal)),
                        content_type="application/xml; charset=utf-8")
    response.headers["OData-Version"] = "4.0"
    return response


COLUMNS = {"__id": Submission.instance_id, "__system/submissionDate": Submission.created_at,
           "__system/updatedAt": Submission.updated_at, "__system/submitterId": Submission.app_user_id,
           "__system/reviewState": Submission.review_state, "__system/deletedAt": Submission.deleted_at}
LITERALS = {"__system/reviewState": lambda v: "received" if v is None else v,
            "__system/submitterId": lambda v: int(v) if isinstance(v, str) and v.isdigit() else v}


def _options():
    unknown = [k for k in request.args if k.startswith("$") and k not in KNOWN_OPTIONS]
    if unknown:
        raise problems.odata_unsupported(feature=unknown[0])
    if request.args.get("$select") and request.args.get("$expand"):
        raise problems.odata_select_expand()
    if request.args.get("$expand") not in (None, "*"):
        raise problems.odata_unsupported(feature="$expand other than *")
    if request.args.get("$orderby") and request.args.get("$skiptoken"):
        raise problems.odata_unsupported(feature="$orderby with $skiptoken")

    return bounded_int("$top"), bounded_int("$skip") or 0


def _base_query(actor, form):
    """What the actor may export of the form, through the one scoped reader, narrowed by $filter."""
    text = request.args.get("$filter")
    tree = parse(text) if text else None
    # As Central: deleted rows only when the filter asks about them.
    return reader.visible(actor, form, "export", where=to_sql(tree, COLUMNS, LITERALS) if tree is not None else None,
                          include_deleted=tree is not None and mentions(tree, "__system/deletedAt"))


def _order(query):
    order = (request.args.get("$orderby") or "").strip()
    if not order:
        return query.order_by(Submission.id.desc()), True
    clauses = []
    for part in order.split(","):
        name, _, direction = part.strip().partition(" ")
        column = {"__id": Submission.instance_id, "__system/submissionDate": Submission.created_at,
                  "__system/updatedAt": Submission.updated_at}.get(name)
        if column is None or direction.lower() not in ("", "asc", "desc"):
            raise problems.odata_unsupported(feature=f"$orderby {part.strip()}")
        clauses.append(column.desc() if direction.lower() == "desc" else column.asc())
    return query.order_by(*clauses, Submission.id.desc()), False


def _rows(submissions, fields, schema, repeat, expand, wkt):
    for submission, system in reader.with_system(submissions):
        values = field_values(parse_stored(submission.current_def.xml), schema,
                              repeats=repeat is not None or expand)
        if repeat is None:
            yield odata.submission_row(system, submission.instance_id, values, fields, schema.get("repeats", []),
                                       expand, wkt)
        else:
            yield from odata.repeat_rows(submission.instance_id, values, fields, repeat, wkt)


def _select(row: dict, selected: list[str] | None) -> dict:
    if not selected:
        return row
    return {k: v for k, v in row.items() if k in selected or k.split("@")[0] in selected}


@bp.get(BASE + "/<table>")
@documented("OData table: Submissions or a repeat", response=schemas.ODataDocument, tags=("OData",), errors=("400", "401", "403", "404", "501"), query={"$top": {"type": "integer", "minimum": 0}, "$skip": {"type": "integer", "minimum": 0}, "$count": {"type": "string", "enum": ["true", "false"]}, "$filter": {"type": "string"}, "$select": {"type": "string"}})
def table(project_id, xml_form_id, table):
    actor, form, personal = _form(project_id, xml_form_id)
    schema = form.current_version.schema
    if table not in odata.tables(schema):
        raise problems.not_found()
    repeat = odata.repeat_of_table(schema, table)
    top, skip = _options()
    expand, wkt = request.args.get("$expand") == "*", _flag("$wkt")
    selected = [s.strip().replace("/", "") for s in request.args["$select"].split(",")] if request.args.get("$select") else None
    fields = odata.visible_fields(schema, personal)
    base = _base_query(actor, form)
    query, keyset = _order(base)
    token = request.args.get("$skiptoken")
    if token:
        position = odata.read_skiptoken(token)  # 400.35 unless it is the shape this server writes
        # Through the scoped reader: a token naming another grantee's submission is, to this
        # actor, a token naming none.
        found = reader.find(actor, form, position["instanceId"], "export", deleted_ok=True)
        last = found.id if found is not None else None
        if last is None:
            raise problems.odata_skiptoken_not_found()
        query, skip = query.where(Submission.id < last), 0
    count = reader.count(base) if _flag("$count") else None
    context = f"{_context_url(project_id, xml_form_id)}/$metadata#{table}"
    with write_transaction():
        record("form.submissions.export", actor, subject=form,
               details={"format": "odata", "table": table, "filter": request.args.get("$filter"),
                        "personal": personal})
    if top is None:
        return _stream(query, skip, fields, schema, repeat, expand, wkt, selected, context, count)
    if repeat is None:
        page = reader.load(query, top + 1, skip)
        more = len(page) > top
        page = page[:top]
        rows = [_select(r, selected) for r in _rows(page, fields, schema, None, expand, wkt)]
        next_link = _next_link(page[-1].instance_id, top, keyset, skip) if more and page else None
    else:
        all_rows = [r for r in _rows(reader.load(query, 10**9, 0), fields, schema, repeat, expand, wkt)]
        rows = [_select(r, selected) for r in all_rows[skip:skip + top]]
        next_link = _offset_link(skip + top, top) if len(all_rows) > skip + top else None
    body = {"@odata.context": context, "value": rows}
    if count is not None:
        body["@odata.count"] = count
    if next_link:
        body["@odata.nextLink"] = next_link
    return _json(body)


def _query_string(extra: dict) -> str:
    keep = {k: v for k, v in request.args.items() if k not in ("$skip", "$skiptoken", "$top")}
    keep.update(extra)
    return urlencode(keep)


def _next_link(last_instance_id: str, top: int, keyset: bool, skip: int) -> str:
    if keyset:
        extra = {"$top": str(top), "$skiptoken": odata.skiptoken({"instanceId": last_instance_id})}
    else:
        extra = {"$top": str(top), "$skip": str(skip + top)}
    return f"{public_base_url()}{request.path}?{_query_string(extra)}"


def _offset_link(skip: int, top: int) -> str:
    return f"{public_base_url()}{request.path}?{_query_string({'$top': str(top), '$skip': str(skip)})}"


def _stream(query, skip, fields, schema, repeat, expand, wkt, selected, context, count):
    """The whole table, written as it is read: batches by id (keyset), or by offset when an
    explicit $orderby forbids paging by id."""
    keyset = not request.args.get("$orderby")

    def generate():
        yield '{"@odata.context":' + json.dumps(context)
        if count is not None:
            yield ',"@odata.count":' + str(count)
        yield ',"value":['
        first, offset, last_id = True, skip, None
        while True:
            if keyset and last_id is not None:
                page = reader.load(query.where(Submission.id < last_id), BATCH, 0)
            else:
                page = reader.load(query, BATCH, offset)
            if not page:
                break
            for row in _rows(page, fields, schema, repeat, expand, wkt):
                yield ("" if first else ",") + json.dumps(_select(row, selected), ensure_ascii=False)
                first = False
            last_id, offset = page[-1].id, offset + len(page)
            db.session.expunge_all()  # memory stays flat however long the table
            if len(page) < BATCH:
                break
        yield "]}"

    response = Response(stream_with_context(generate()), content_type=JSON_TYPE)
    response.headers["OData-Version"] = "4.0"
    return response
