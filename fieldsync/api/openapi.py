"""OpenAPI 3 for every JSON endpoint, and request validation from the same schemas.

A view says what it takes and gives with `@documented(...)`; that both checks the request
body against the marshmallow schema (a clear 400 on any mismatch) and lists the operation
in `GET /openapi.json`, built from the app's own URL map so the document cannot drift from
the routes.
"""
import functools
import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import current_app, request

from .. import problems
from . import bp, schemas

ERRORS = {"400": "Bad request", "401": "Not signed in", "403": "Not allowed", "404": "Not found",
          "405": "Method not allowed",
          "409": "Conflict", "413": "Too large", "429": "Too many attempts", "501": "Not supported", "503": "Unavailable"}
CONVERTERS = {"int": {"type": "integer"}, "default": {"type": "string"}, "string": {"type": "string"}}


def documented(summary: str, body=None, response=None, many: bool = False, query: dict | None = None,
               errors=("400", "401", "403", "404"), tags=("FieldSync",), content: str = "application/json",
               body_content: str = "application/json"):
    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            if body is not None and body_content == "application/json":
                data = request.get_json(silent=True)
                if not isinstance(data, dict):
                    raise problems.unparseable_json()
                found = body().validate(data)
                if found:
                    raise problems.bad_request(reason="; ".join(
                        f"{name}: {' '.join(map(str, msgs if isinstance(msgs, list) else [msgs]))}"
                        for name, msgs in sorted(found.items())))
            return view(*args, **kwargs)
        wrapper.openapi = {"summary": summary, "body": body, "response": response, "many": many,
                           "query": query or {}, "errors": errors, "tags": list(tags), "content": content,
                           "body_content": body_content}
        return wrapper
    return decorator


def _path(rule) -> tuple[str, list[dict]]:
    params = []

    def convert(match):
        converter, name = match.group(1) or "default", match.group(2)
        params.append({"name": name, "in": "path", "required": True,
                       "schema": CONVERTERS.get(converter, {"type": "string"})})
        return "{" + name + "}"
    return re.sub(r"<(?:(\w+):)?(\w+)>", convert, rule.rule), params


def build(app) -> dict:
    spec = APISpec(title="FieldSync", version="1", openapi_version="3.0.3",
                   info={"description": "ODK Central-compatible REST, OData and FieldSync's indicators."},
                   plugins=[MarshmallowPlugin()])
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Problem", schema=schemas.Problem)
    error = {"content": {"application/json": {"schema": "Problem"}}}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions.get(rule.endpoint)
        meta = getattr(view, "openapi", None)
        if meta is None:
            continue
        path, params = _path(rule)
        operations = {}
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if method == "GET" and "GET" not in rule.methods:
                continue
            schema = meta["response"]
            response_schema = ({"type": "array", "items": schema} if meta["many"] else schema) if schema else {}
            operation = {
                "summary": meta["summary"], "tags": meta["tags"],
                "parameters": params + [{"name": n, "in": "query", "required": False, "schema": s}
                                        for n, s in meta["query"].items()],
                "responses": {"200": {"description": "OK",
                                      "content": {meta["content"]: {"schema": response_schema}}},
                              # Any path may answer 404 (no such id) or 405 (a larger-than-any id
                              # matches no route with this method).
                              **{code: {"description": ERRORS[code], **error}
                                 for code in sorted(set(meta["errors"]) | {"404", "405"})}},
            }
            if rule.rule not in ("/v1/sessions", "/healthz", "/openapi.json"):
                operation["security"] = [{"bearer": []}]
            if meta["body"] is not None:
                body_schema = meta["body"] if meta["body_content"] == "application/json" else {"type": "string"}
                operation["requestBody"] = {"required": True,
                                            "content": {meta["body_content"]: {"schema": body_schema}}}
            operations[method.lower()] = operation
        spec.path(path=path, operations=operations)
    return spec.to_dict()


@bp.get("/openapi.json")
def openapi_document():
    cache = current_app.extensions.setdefault("fieldsync.openapi", {})
    if "document" not in cache:
        cache["document"] = build(current_app)
    return cache["document"]
