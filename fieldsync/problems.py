"""The one catalogue of problems FieldSync reports, each with a code and a message.

Codes follow ODK Central's scheme (`409.1`: the HTTP status is the integer part) and reuse
Central's numbers where the meaning is the same, so scripts written for Central read our errors.
Codes at `.101` and above are FieldSync's own. A code is sent in JSON as a number, as
Central does, so no code may end in 0 (`409.110` would read as `409.11`). Domain code raises `Problem`; the HTTP rooms
render it (OpenRosa XML to devices, JSON elsewhere) and the CLI prints it. Nothing here knows
about HTTP frameworks.
"""
from dataclasses import dataclass, field


@dataclass
class Problem(Exception):
    code: str
    message: str
    details: dict = field(default_factory=dict)

    @property
    def status(self) -> int:
        return int(self.code.split(".")[0])

    def __str__(self) -> str:  # what the CLI shows
        return f"{self.message} ({self.code})"

    def to_json(self) -> dict:
        body = {"code": float(self.code), "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


def _problem(code: str, template: str):
    assert not code.endswith("0"), f"problem code {code} would not survive JSON as a number"
    def make(**details) -> Problem:
        return Problem(code, template.format(**details) if details else template, details)
    make.code = code
    return make


# 400: the request is malformed
bad_request = _problem("400.1", "The request is not valid: {reason}")
missing_parameter = _problem("400.2", "Required parameter {field} missing.")
unparseable_json = _problem("400.3", "Could not parse the given data as JSON.")
invalid_openrosa_header = _problem(
    "400.6", "An expected header field (X-OpenRosa-Version) did not match the expected format.")
missing_xml_part = _problem("400.7", "Required multipart POST field xml_submission_file missing.")
unexpected_value = _problem("400.8", "Unexpected {field} value {value}; {reason}")
missing_deprecated_id = _problem(
    "400.19", "An edit must carry meta/deprecatedID: the instanceID of the version being replaced.")
unparseable_xml = _problem("400.12", "The XML could not be read: {reason}")
unsafe_xml = _problem("400.13", "The XML was refused for safety: {reason}")
multipart_parse = _problem("400.39", "Multipart form content failed to parse.")
invalid_xlsform = _problem("400.15", "The XLSForm could not be converted: {reason}")
invalid_xform = _problem("400.16", "The form did not pass ODK Validate: {reason}")
unsafe_file_name = _problem("400.17", "The file name {name!r} is not allowed: {reason}")
odata_filter_unparseable = _problem("400.18", "The OData filter expression you provided could not be parsed: {reason}")
odata_skiptoken_not_found = _problem("400.34", "Record associated with the provided $skiptoken not found.")
odata_invalid_skiptoken = _problem("400.35", "Invalid $skiptoken: {reason}. Use the @odata.nextLink of the previous page.")

# 401/403: who you are, what you may do
auth_failed = _problem("401.2", "Could not authenticate with the provided credentials.")
https_only = _problem("401.3", "This authentication method is only available over HTTPS.")
forbidden = _problem("403.1", "The authenticated actor does not have rights to perform that action.")
edit_out_of_scope = _problem(
    "403.102", "You may not edit submission {instance_id}: it belongs to a grantee outside your scope, "
               "or it was not sent by you. Nothing was saved.")
other_grantee = _problem(
    "403.103", "You may not submit for grantee {code!r}: you record for your own grantee only. "
               "Nothing was saved.")

# 404: not there
not_found = _problem("404.1", "Could not find the resource you were looking for.")
edit_target_missing = _problem(
    "404.5", "You tried to update an existing submission, but we can't find that submission "
             "to update ({instance_id}).")
no_such_version = _problem(
    "404.6", "The form version specified in this submission '{version}' does not exist.")

# 405/409/413
method_not_allowed = _problem("405.1", "This method is not allowed on this resource.")
different_xml = _problem(
    "409.1", "A submission already exists with this ID, but with different XML. Resubmissions "
             "to attach additional multimedia must resubmit an identical xml_submission_file.")
form_closed = _problem(
    "409.2", "This form is not currently accepting submissions. Please talk to your "
             "program staff if this is unexpected.")
already_exists = _problem("409.3", "A resource already exists with {fields} value(s) of {values}.")
edit_out_of_date = _problem(
    "409.9", "You tried to update a submission, but the copy you were editing ({instance_id}) is "
             "now out of date. Please get the new version that has been submitted, and make "
             "your edits again.")
submission_deleted = _problem(
    "409.18", "This submission has been deleted. You may not resubmit it.")
version_conflict = _problem(
    "409.101", "Form {form_id} version '{version}' is already published with different content. "
               "Give the changed form a new version in its settings sheet and publish again.")
already_decided = _problem("409.102", "This duplicate candidate was already decided ({status}).")
too_large = _problem("413.1", "The request is too large: at most {limit} bytes are accepted.")
too_many_attempts = _problem("429.1", "Too many failed sign-in attempts. Wait {minutes} minutes and try again.")
too_many_exports = _problem("429.102", "You already have {limit} exports being prepared. Wait for one to finish, then ask again.")
csrf_failed = _problem("403.101", "This form has expired or did not come from FieldSync. Reload the page and try again.")

# 500/501/503/507
internal = _problem("500.1", "Internal Server Error")
odata_unsupported = _problem("501.1", "The requested feature {feature} is not supported by this OData endpoint.")
odata_filter = _problem("501.4", "The given OData filter expression uses features not supported by this server: {reason}")
odata_select_expand = _problem("501.11", "$select and $expand cannot be used together.")
unavailable = _problem("503.1", "The server is busy or its database is unreachable; please try again shortly.")
storage_full = _problem("507.1", "The server's storage is full, so this was not saved. It stays on the phone; "
                                 "send it again later, and tell your coordinator.")
