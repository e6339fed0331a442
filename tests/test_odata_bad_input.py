"""OData bad input never gives a 500: whatever arrives in `$filter`, `$top`, `$skip`,
`$skiptoken`, `$orderby`, `$select`, `$count` or `$expand`, the answer is a 200 or a problem
with a code (400, or 501 for valid OData this server does not support), on SQLite and on
PostgreSQL. Values are checked before any SQL is built, so the database never sees an integer
that overflows or a timestamp that does not exist (PostgreSQL would refuse them when the query
runs, which the app answers 503, or, in a streamed table, cuts the response off mid-body).

Every request goes through the app's HTTP stack (Flask's test client; a few through gunicorn),
and every streamed body is read to its end, so its SQL has run when the status is checked."""
import base64
import json
import os
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fieldsync.formats.odata_query import MAX_DEPTH, MAX_LENGTH

from test_odata import sent  # noqa: F401 (the same three seminars)

SVC = "/v1/projects/1/forms/seminar_attendance.svc"
UNREADABLE, SKIPTOKEN_NOT_FOUND, INVALID_SKIPTOKEN = 400.18, 400.34, 400.35
UNSUPPORTED_FILTER, UNSUPPORTED, UNEXPECTED_VALUE = 501.4, 501.1, 400.8




@pytest.fixture
def ask(client, make_user, sent):
    """GET a table with `query` (a dict, or a raw query string sent as is); returns
    (status, parsed JSON body), the body read to its end."""
    headers = make_user("coordinator")

    def get(query, table="Submissions"):
        response = client.get(f"{SVC}/{table}", query_string=query, headers=headers)
        data = response.get_data()
        try:
            body = json.loads(data)
        except ValueError:
            body = None
        return response.status_code, body
    return get


def code_of(status, body):
    """The problem code, or 200 for rows; anything else (no JSON body, no code) as itself."""
    if status == 200 and isinstance(body, dict) and isinstance(body.get("value"), list):
        return 200
    if isinstance(body, dict) and "code" in body and int(body["code"]) == status and body.get("message"):
        return body["code"]
    return (status, body)


VARIANTS = (("Submissions", {}), ("Submissions.participant", {"$top": "2", "$count": "true"}))


def wrong_answers(ask, cases, expected, variants=VARIANTS):
    """Each query of `cases` on the root table streamed, and on a repeat table paged and counted
    (raw query strings as they are): the ones not answered `expected`."""
    wrong = []
    for case in cases:
        for table, extra in variants:
            query = case if isinstance(case, str) else {**case, **extra}
            got = code_of(*ask(query, table))
            if got != expected:
                wrong.append((table, _short(query), got if not isinstance(got, tuple) else got[0]))
    return wrong


def _short(query):
    text = repr(query)
    return text if len(text) < 160 else text[:150] + "…"


def filters(*texts):
    return [{"$filter": text} for text in texts]


DEEP = MAX_DEPTH + 1
OUT_OF_RANGE_AND_INVALID = filters(
    # integers beyond 64 bits, and beyond the 32 bits of the submitter id column
    "__system/submitterId eq 99999999999999999999999", "__system/submitterId eq -99999999999999999999999",
    "__system/submitterId eq 9223372036854775808", "__system/submitterId eq 2147483648",
    "__system/submitterId eq -2147483649", "__system/submitterId eq '99999999999999999999999'",
    "__system/submitterId ne '2147483648'", "year(__system/submissionDate) eq 9223372036854775808",
    "year(__system/submissionDate) eq 9223372036854775807", "second(__system/submissionDate) gt 2147483648",
    "minute(__system/submissionDate) gt -2147483649", "year(__system/submissionDate) ge 2020.5",
    "month(__system/updatedAt) lt -9223372036854775809", "day(__system/submissionDate) eq " + "9" * 3000,
    "hour(__system/submissionDate) eq 1" + "0" * 400 + ".5",
    # dates that do not exist, and years outside 1..9999 (also once in UTC)
    "__system/submissionDate gt 2024-13-45", "__system/submissionDate gt 2024-02-30T25:61:00Z",
    "__system/submissionDate gt 2024-02-30", "__system/submissionDate gt 2023-02-29",
    "__system/submissionDate gt 2024-00-10", "__system/submissionDate gt 2024-01-01T24:00:00Z",
    "__system/submissionDate gt 2024-01-01T10:00:60Z", "__system/submissionDate gt 0000-01-01",
    "__system/submissionDate gt 0000-12-31T23:59:59Z", "__system/submissionDate gt 99999-01-01",
    "__system/submissionDate gt 10000-01-01T00:00:00Z", "__system/updatedAt lt 0001-01-01T00:30:00+01:00",
    "__system/deletedAt gt 9999-12-31T23:30:00-01:00", "__system/submissionDate gt 2024-01-01T10:00:00+24:00",
    "__system/submissionDate gt 2024-01-01T10:00:00+05:60", "__system/submissionDate gt 2024-1-1",
    "__system/submissionDate gt 2024-01-01T10", "__system/submissionDate gt 2024-01-01T10:00:00+0500",
    "__system/submissionDate gt 2024-01-01T", "__system/submissionDate gt 2024-01-01T::Z",
    # comparisons no row could take part in: literal against literal, types that do not match
    "null eq null", "1 eq 1", "'a' eq 'a'", "true eq false", "now() gt 2020-01-01", "2024-01-01 eq null",
    "__id eq 5", "__id eq 2024-01-01", "__id eq true", "__system/submissionDate gt 'yesterday'",
    "__system/submissionDate gt 5", "__system/submissionDate eq true", "__system/submitterId eq 'abc'",
    "__system/submitterId eq true", "__system/submitterId eq 1.5", "__system/reviewState eq 3",
    "__id gt null", "__system/deletedAt lt null", "year(__id) eq 2024", "year(2024) eq 1", "year() eq 1",
    "year(__system/submissionDate) eq '2024'", "year(__system/submissionDate) eq 2024-01-01",
    "__system/submissionDate eq __id", "year(__system/submissionDate) eq __system/submissionDate",
    "__system/submitterId eq __id", "now(__id) gt __system/submissionDate",
    # unknown functions; operators where values belong
    "foo(__id) eq 1", "nosuch() eq 1", "year eq 2024", "__id eq eq", "eq eq eq", "and", "not",
    # nesting and length beyond the limits
    "(" * 10_000 + "__id eq 'x'" + ")" * 10_000, "not " * 10_000 + "__id eq 'x'",
    "(" * DEEP + "__id eq 'x'" + ")" * DEEP, "not " * DEEP + "__id eq 'x'",
    "(not " * (DEEP // 2 + 1) + "__id eq 'x'" + ")" * (DEEP // 2 + 1),
    " or ".join(["__id eq 'x'"] * (MAX_LENGTH // 15 + 1)), "__id eq '" + "x" * MAX_LENGTH + "'",
    # syntax: unbalanced quotes and parentheses, NUL and control characters, stray text
    "__id eq 'unbalanced", "__id eq 'a''", "__id eq '''", "'", "__id eq 'x' or __id eq 'y",
    "(__id eq 'x'", "__id eq 'x')", "()", "(", ")", "((__id eq 'x')", "__id eq 'x' and",
    "and __id eq 'x'", "__id eq 'x' __id eq 'y'", "__id eq", "eq 'x'", "__id", "   ", "\t",
    "__id eq 'a\x00b'", "__id eq 'x'\x00", "\x00", "__id eq '\x1b[31m'", "__id\x00eq 'x'",
    "__id eq 'x'; DROP TABLE submissions; --", "__id eq \"x\"", "__id == 'x'", "__id eq 'x' && 1",
    "__system/submissionDate gt 2024-01-01T10:00:00Z garbage", "€ eq 1", "__id eq 'x' or",
)
UNSUPPORTED_BUT_VALID = filters(
    "village eq 'Kant'", "$root/Submissions/village eq 'Kant'", "__system/nope eq 1", "participant/full_name eq 'x'",
    "contains(__id, 'x')", "startswith(__id,'uuid')", "length(__id) gt 3", "__system/submitterId add 1 eq 2",
    "__id in ('a', 'b')",
)
ACCEPTED = filters(
    # at the edges of every range: the limits refuse only what is beyond them
    "__system/submitterId eq 2147483647", "__system/submitterId eq -2147483648", "__system/submitterId eq '7'",
    "year(__system/submissionDate) eq 2147483647", "year(__system/submissionDate) ne -2147483648",
    "__system/submissionDate gt 0001-01-01",
    "__system/submissionDate gt 0001-01-01T00:00:00-01:00", "__system/submissionDate lt 9999-12-31T23:59:59.999999Z",
    "__system/submissionDate lt 9999-12-31T23:00:00+14:00", "__system/submissionDate gt 2024-02-29T23:59:59.123456789Z",
    "__system/deletedAt eq null", "null ne __system/updatedAt", "__system/reviewState eq null",
    "now() gt __system/submissionDate", "__system/submissionDate le __system/updatedAt or __system/updatedAt eq null",
    "year(__system/submissionDate) ge month(__system/submissionDate)", "__id eq 'it''s'", "__id eq ''",
    "(" * MAX_DEPTH + "__id ne 'x'" + ")" * MAX_DEPTH, "not " * MAX_DEPTH + "__id eq 'x'",
    " or ".join(["__id eq 'x'"] * (MAX_LENGTH // 15)), " and ".join(["year(__system/submissionDate) gt 2000"] * 80),
    "__id eq '" + "x" * 3000 + "'", "__id eq 'Ω ü 中文 🙂'",
)
SKIPTOKENS = [
    "bogus", "01", "01!!!!", "01@@@@", "01e30", "01-_-_", "1" * 5000, "01" + "A" * 10_000, "02e30=",
    "01" + base64.b64encode(os.urandom(48)).decode(), "01" + base64.b64encode(b"\xff\xfe\xfd\xfc").decode(),
] + ["01" + base64.b64encode(text.encode()).decode() for text in (
    "not json", "", "null", "[1,2]", "{}", "1e999", '"instanceId"', '{"instanceId":5}',
    '{"instanceId":99999999999999999999999}', '{"instanceId":1e999}', '{"instanceId":{"a":1}}',
    '{"instanceId":["uuid:x"]}', '{"instanceId":null}', '{"instanceId":""}', '{"instanceId":true}',
    '{"instanceId":"' + "x" * 300 + '"}', '{"instanceId":"a\\u0000b"}', '{"instanceId":"\\ud800"}',
    "[" * 700 + "]" * 700, '{"a":' * 300 + "1" + "}" * 300, "9" * 700, '{"instanceId":"x"',
)]


def test_filters_out_of_range_invalid_or_unsupported_are_refused(ask):
    assert wrong_answers(ask, OUT_OF_RANGE_AND_INVALID, UNREADABLE) == []
    assert wrong_answers(ask, UNSUPPORTED_BUT_VALID, UNSUPPORTED_FILTER) == []

    def message(text):
        status, body = ask({"$filter": text})
        assert status == 400 and body["code"] == UNREADABLE, body
        return body["message"]
    assert "out of range" in message("__system/submitterId eq 99999999999999999999999")
    assert "-2147483648 to 2147483647" in message("__system/submitterId eq 2147483648")
    assert "not a date and time that exists" in message("__system/submissionDate gt 2024-13-45")
    assert "0001 to 9999" in message("__system/submissionDate gt 0000-01-01")
    assert "one side must be a field" in message("null eq null")
    assert f"deeper than {MAX_DEPTH}" in message("(" * DEEP + "__id eq 'x'" + ")" * DEEP)
    assert f"at most {MAX_LENGTH}" in message("(" * 10_000 + "__id eq 'x'" + ")" * 10_000)
    assert "not closed" in message("__id eq 'unbalanced")
    assert "U+0000" in message("__id eq 'a\x00b'")


def test_filters_at_the_limits_are_answered(ask, sent):
    assert wrong_answers(ask, ACCEPTED, 200) == []
    every = "__system/submissionDate gt 0001-01-01 and __system/submissionDate lt 9999-12-31T23:59:59.999999Z"
    assert [r["__id"] for r in ask({"$filter": every})[1]["value"]] == list(reversed(sent))
    longest = " or ".join(["__id eq 'x'"] * ((MAX_LENGTH - 60) // 15) + [f"__id eq '{sent[1]}'"])
    assert len(longest) <= MAX_LENGTH
    assert [r["__id"] for r in ask({"$filter": longest})[1]["value"]] == [sent[1]]
    deepest = "(" * MAX_DEPTH + f"__id eq '{sent[2]}'" + ")" * MAX_DEPTH
    assert [r["__id"] for r in ask({"$filter": deepest, "$top": "5"})[1]["value"]] == [sent[2]]
    assert ask({"$filter": "__system/submitterId eq 2147483647"})[1]["value"] == []


def test_paging_and_other_options_never_fail(ask, sent):
    root = (("Submissions", {}),)
    # $top and $skip: whole numbers from 0 to 2**31 - 1, else 400.8
    bad = ["99999999999999999999", "9223372036854775808", "2147483648", "-1", "-99999999999999999999", "1.5",
           "1e3", "x", "\x00", "9" * 5000, "0x10", "½"]
    assert wrong_answers(ask, [{name: value} for name in ("$top", "$skip") for value in bad], UNEXPECTED_VALUE,
                         variants=root) == []
    edges = [{"$top": "2147483647"}, {"$skip": "2147483647"}, {"$top": "2147483647", "$skip": "2147483647"},
             {"$top": "0"}, {"$skip": "0", "$count": "true"}]
    assert wrong_answers(ask, edges, 200, variants=root) == []

    # $skiptoken: only the shape this server writes, else 400.35; one naming no row, 400.34
    assert wrong_answers(ask, [{"$skiptoken": t} for t in SKIPTOKENS], INVALID_SKIPTOKEN,
                         variants=(("Submissions", {}), ("Submissions", {"$top": "1"}))) == []
    unknown = "01" + base64.b64encode(b'{"instanceId":"uuid:not-here"}').decode()
    assert wrong_answers(ask, [{"$skiptoken": unknown, "$top": "1"}], SKIPTOKEN_NOT_FOUND) == []
    status, first = ask({"$top": "1"})  # and the tokens this server writes still page
    token = first["@odata.nextLink"].split("skiptoken=")[1].split("&")[0]
    status, second = ask(f"$top=1&$skiptoken={token}")
    assert status == 200 and [r["__id"] for r in second["value"]] == [sent[1]]

    # $orderby and $expand beyond what is supported: 501.1; odd $select and $count: rows
    assert wrong_answers(ask, [{"$orderby": v} for v in ("__id sideways", "\x00", ",", "nope", "__id desc desc",
                                                         "__id asc,", "x" * 5000, "__id  desc")], UNSUPPORTED) == []
    assert wrong_answers(ask, [{"$expand": v} for v in ("participant", "\x00", "**", "*,*")], UNSUPPORTED) == []
    assert wrong_answers(ask, [{"$select": v} for v in ("\x00", "a" * 3000, ",,,", "__system/nope", "__id,,")] +
                         [{"$count": v} for v in ("maybe", "\x00", "TRUE", "1" * 5000)], 200) == []

    # Raw query strings, not UTF-8 or not escapes at all: Werkzeug reads U+FFFD or the text as it stands
    refused = ["$filter=%FF%FE", "$filter=__id%20eq%20%C0%AE", "$filter=%", "$filter=%2",
               "$filter=__id%20eq%20%27x%27%00", "$filter=__id%20eq%20%27x", "$filter=%ED%A0%80%20eq%201",
               "$filter=(" + "%28" * 3000]
    assert wrong_answers(ask, refused, UNREADABLE) == []
    assert wrong_answers(ask, ["$filter=__id%20eq%20%27%FF%FE%C0%27", "$filter=__id eq '%ED%A0%80'",
                               "$select=%FF", "$count=%FF", "$top=2&$select=__id,%00"], 200) == []
    assert wrong_answers(ask, ["$top=%FF", "$skip=%C0%80", "$top=%00", "$skip=9%00"], UNEXPECTED_VALUE) == []
    assert wrong_answers(ask, ["$skiptoken=01%FF%FE", "$skiptoken=%00"], INVALID_SKIPTOKEN) == []


# ---------------------------------------------------------------------------------------------
# Property-based: filters from a small grammar of this server's OData, with values of every type
# in and out of range, nesting, junk spliced in anywhere, and plain random text; then the other
# parameters, random and as bytes in any encoding.

OPS = ("eq", "ne", "lt", "le", "gt", "ge")
FUNCTIONS = ("year", "month", "day", "hour", "minute", "second")

DATE_FIELDS = ["__system/submissionDate", "__system/updatedAt", "__system/deletedAt"]
FIELD_NAMES = DATE_FIELDS + ["__id", "__system/submitterId", "__system/reviewState", "$root/Submissions/__id",
                             "$root/Submissions/__system/submissionDate", "village", "headcount_female",
                             "participant/full_name", "__system/nope", "__system"]


def _quoted(text):
    return "'" + text.replace("'", "''") + "'"


_dates = st.builds(lambda y, m, d: f"{y:04d}-{m:02d}-{d:02d}", st.integers(0, 10_001) | st.integers(0, 99_999),
                   st.integers(0, 13), st.integers(0, 32))
_times = st.builds(lambda date, h, mi, s, fraction, zone: f"{date}T{h:02d}:{mi:02d}:{s:02d}{fraction}{zone}",
                   _dates, st.integers(0, 25), st.integers(0, 61), st.integers(0, 61),
                   st.sampled_from(["", ".5", ".123456789"]),
                   st.sampled_from(["", "Z", "+05:00", "-23:59", "+24:00", "+14:00", "-12:00", "+0500"]))
_literals = st.one_of(
    st.integers(-2**70, 2**70).map(str), st.integers(-2**31 - 2, 2**31 + 2).map(str),
    st.from_regex(r"-?[0-9]{1,25}\.[0-9]{1,25}", fullmatch=True), _dates, _times,
    st.text(max_size=20).map(_quoted), st.text(max_size=10).map(lambda text: "'" + text),  # unbalanced
    st.integers(-2**40, 2**40).map(lambda n: _quoted(str(n))),
    st.sampled_from(["null", "true", "false", "now()", "now( )", "2147483648", "-2147483649",
                     "9223372036854775808", "99999999999999999999999", "1" + "0" * 400 + ".5"]))
_functions = st.builds(lambda name, argument: f"{name}({argument})",
                       st.sampled_from(FUNCTIONS + ("foo", "contains", "now", "length", "")),
                       st.sampled_from(FIELD_NAMES + ["", "2024-01-01", "'x'"]))
_operands = st.one_of(st.sampled_from(FIELD_NAMES), _functions, _literals)
_comparisons = st.builds(lambda a, op, b: f"{a} {op} {b}", _operands,
                         st.sampled_from(OPS + ("add", "has", "in", "eq eq", "", "EQ", "=")), _operands)
# Comparisons that are well formed and well typed, with values across and beyond each range:
# the ones that reach SQL when the checks let them through.
_edges = [2**31 - 1, 2**31, -2**31, -2**31 - 1, 2**63 - 1, 2**63, -2**63 - 1]
_wide_integers = st.one_of(st.integers(-2**31 - 2, 2**31 + 2), st.integers(-2**65, 2**65),
                           st.sampled_from(_edges)).map(str)
_typed = st.one_of(
    st.builds("{}({}) {} {}".format, st.sampled_from(FUNCTIONS), st.sampled_from(DATE_FIELDS), st.sampled_from(OPS),
              _wide_integers),
    st.builds("__system/submitterId {} {}".format, st.sampled_from(OPS), _wide_integers | _wide_integers.map(_quoted)),
    st.builds("{} {} {}".format, st.sampled_from(DATE_FIELDS), st.sampled_from(OPS), _dates | _times),
    st.builds("{} {} {}".format, st.sampled_from(["__id", "__system/reviewState"]), st.sampled_from(OPS),
              st.text(st.characters(codec="utf-8") | st.sampled_from("\x00\x1f'"), max_size=300).map(_quoted)))
_junk = st.text(max_size=4)
_expressions = st.recursive(
    _comparisons | _typed | _typed | _junk,
    lambda inner: st.one_of(
        st.builds(lambda e: f"({e})", inner), st.builds(lambda e: f"not {e}", inner),
        st.builds(lambda a, word, b: f"{a} {word} {b}", inner, st.sampled_from(["and", "or", "AND", "&&", ""]), inner),
        st.builds(lambda n, m, e: "(" * n + e + ")" * m, st.integers(0, 70), st.integers(0, 70), inner),
        st.builds(lambda n, e: "not " * n + e, st.integers(0, 70), inner),
        st.builds(lambda n, word, e: f" {word} ".join([e] * n), st.integers(2, 400), st.sampled_from(["and", "or"]),
                  inner)),
    max_leaves=6)
_well_formed = st.recursive(_typed, lambda inner: st.one_of(
    st.builds("({})".format, inner), st.builds("not {}".format, inner),
    st.builds("{} {} {}".format, inner, st.sampled_from(["and", "or"]), inner)), max_leaves=4)
_spliced = st.builds(lambda e, junk, at: e[:at] + junk + e[at:], _expressions, _junk, st.integers(0, 200))
FILTER_TEXTS = st.one_of(_well_formed, _expressions, _spliced, st.text(max_size=300),
                         st.text(alphabet="()' notandoreqgtl_/$0123456789-:TZ.", max_size=200))
SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])
_variants = st.sampled_from([("Submissions", {}), ("Submissions", {"$top": "2", "$count": "true"}),
                             ("Submissions.participant", {}), ("Submissions.participant", {"$top": "3"})])


def assert_answered(status, body, allowed):
    assert status != 500 and status < 502, (status, body)
    got = code_of(status, body)
    event(f"answered {got}")  # the mix shows with --hypothesis-show-statistics
    assert got in allowed, (status, body)


@SETTINGS
@given(text=FILTER_TEXTS, variant=_variants)
def test_fuzzed_filters_are_answered_never_500(ask, text, variant):
    table, extra = variant
    status, body = ask({"$filter": text, **extra}, table)
    assert_answered(status, body, {200, UNREADABLE, UNSUPPORTED_FILTER})


_json = st.recursive(st.none() | st.booleans() | st.integers(-2**80, 2**80) | st.floats() | st.text(max_size=30),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["instanceId", "x"]),
                                                                                inner, max_size=2),
                     max_leaves=6)
SKIPTOKEN_TEXTS = st.one_of(
    st.text(max_size=100), st.binary(max_size=100).map(lambda b: "01" + base64.b64encode(b).decode()),
    _json.map(lambda value: "01" + base64.b64encode(json.dumps(value).encode()).decode()),
    st.text(max_size=50).map(lambda t: "01" + base64.b64encode(json.dumps({"instanceId": t}).encode()).decode()))
_percent_escaped = st.binary(max_size=60).map(lambda raw: "".join(f"%{b:02X}" for b in raw))
PARAMETERS = st.one_of(
    st.tuples(st.just("$filter"), _percent_escaped).map(lambda p: ("raw", *p)),
    st.tuples(st.just("$skiptoken"), SKIPTOKEN_TEXTS),
    st.tuples(st.sampled_from(["$top", "$skip"]), st.integers(-2**80, 2**80).map(str) | st.text(max_size=30)))
ALLOWED = {"$filter": {200, UNREADABLE, UNSUPPORTED_FILTER},
           "$skiptoken": {200, INVALID_SKIPTOKEN, SKIPTOKEN_NOT_FOUND},
           "$top": {200, UNEXPECTED_VALUE}, "$skip": {200, UNEXPECTED_VALUE}}


@settings(SETTINGS, max_examples=150)
@given(parameter=PARAMETERS, paged=st.booleans())
def test_fuzzed_skiptoken_top_skip_and_raw_bytes_are_answered_never_500(ask, parameter, paged):
    if parameter[0] == "raw":  # bytes percent-escaped as they stand, UTF-8 or not
        _, name, escaped = parameter
        query = f"{name}={escaped}" + ("&$top=1&$count=true" if paged else "")
    else:
        name, value = parameter
        query = {name: value, **({"$top": "1", "$count": "true"} if paged and name != "$top" else {})}
    assert_answered(*ask(query), ALLOWED[name])


@pytest.mark.slow
def test_bad_input_through_gunicorn(live_server, make_user, sent):
    """The same refusals over real HTTP, percent escapes and all, as a script's URL arrives."""
    import requests

    server = live_server()
    headers = make_user("coordinator")

    def get(query):
        response = requests.get(f"{server.url}{SVC}/Submissions?{query}", headers=headers, timeout=30)
        return response.status_code, response.json()

    def f(text):
        return "$filter=" + quote(text, safe="")

    for query, expected in [
        (f("__system/submitterId eq 99999999999999999999999"), UNREADABLE),
        (f("__system/submissionDate gt 2024-13-45"), UNREADABLE),
        (f("__system/submissionDate gt 2024-02-30T25:61:00Z"), UNREADABLE),
        (f("__system/submissionDate gt 0000-01-01"), UNREADABLE),
        (f("null eq null"), UNREADABLE),
        ("$filter=" + "(" * 1500 + "__id%20eq%20'x'" + ")" * 1500, UNREADABLE),
        ("$filter=" + "not%20" * 500 + "__id%20eq%20'x'", UNREADABLE),
        ("$filter=__id%20eq%20%27a%00b%27", UNREADABLE), ("$filter=%FF%FE", UNREADABLE),
        ("$filter=__id%20eq%20'unbalanced", UNREADABLE), (f("village eq 'Kant'"), UNSUPPORTED_FILTER),
        ("$top=99999999999999999999", UNEXPECTED_VALUE), ("$skip=-1", UNEXPECTED_VALUE),
        ("$skiptoken=01" + quote(base64.b64encode(b"[1,2]").decode(), safe=""), INVALID_SKIPTOKEN),
        ("$skiptoken=01%FF", INVALID_SKIPTOKEN),
        (f("__system/submissionDate gt 0001-01-01") + "&$top=2&$count=true", 200),
        (f("__system/submitterId eq 2147483647"), 200),
    ]:
        assert code_of(*get(query)) == expected, query[:120]
