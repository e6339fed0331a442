"""/openapi.json describes every JSON endpoint, and schemathesis, generating requests from it
against the real app (bounded), finds no 5xx and no response that breaks the schema."""
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from collect import SEMINAR, instance_xml, post

@pytest.fixture
def signed_in(client, make_user, make_app_user):
    phone = make_app_user(name="phone", grantee="chinek")
    form_xml = client.get(f"/v1/key/{phone['token']}/projects/1/forms/seminar_attendance.xml").data
    post(client, f"/v1/key/{phone['token']}/projects/1/submission", instance_xml(form_xml, SEMINAR))
    return make_user("admin")


def test_document_lists_the_json_endpoints(client):
    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    for path in ("/v1/sessions", "/v1/users/current", "/v1/projects", "/v1/projects/{project_id}/forms",
                 "/v1/projects/{project_id}/forms/{xml_form_id}/submissions",
                 "/v1/projects/{project_id}/indicator-values", "/v1/projects/{project_id}/duplicates",
                 "/v1/projects/{project_id}/forms/{xml_form_id}.svc/{table}"):
        assert path in paths, path
    submissions = paths["/v1/projects/{project_id}/forms/{xml_form_id}/submissions"]
    assert {"get", "post"} <= set(submissions)
    assert paths["/v1/sessions"]["post"]["requestBody"]["content"]["application/json"]["schema"]


def test_requests_are_validated_by_the_same_schemas(client, signed_in):
    response = client.post("/v1/sessions", json={"email": "x@example.org"})
    assert response.status_code == 400 and "password" in response.get_json()["message"]
    bad = client.put("/v1/projects/1/targets", json={"grantee": "chinek", "indicator": "events_held", "value": -1},
                     headers=signed_in)
    assert bad.status_code == 400 and "value" in bad.get_json()["message"]


def test_schemathesis_finds_no_server_error_and_no_schema_break(app, signed_in):
    """Driven by hand (not schemathesis' pytest plugin) so it runs under this pytest."""
    api = schemathesis.openapi.from_wsgi("/openapi.json", app)
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    tried = 0
    for result in api.get_all_operations():
        operation = result.ok()
        if operation.method.upper() == "DELETE" and "sessions" in operation.path:
            continue  # signing the test user out would only test the sign-out

        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                  derandomize=True)
        @given(case=operation.as_strategy())
        def run(case):
            case.call_and_validate(headers=signed_in, checks=checks)
        run()
        tried += 1
    assert tried >= 25
