"""The four XLSForm workbooks in forms/ keep the public form contract (SPEC "Form contracts").

Self-contained: it converts each workbook with pyxform's Python API, parses the XForm with
lxml (namespace-aware) and checks every contract field (path, bind type, body control,
choice codes), meta, languages, personal-data tags and consent gating. ODK Validate runs when
Java is available. No fixtures, no network, nothing outside the repository.
"""
from __future__ import annotations

import functools
import re
import shutil
from pathlib import Path

import pytest
from lxml import etree
from pyxform.xls2xform import convert

FORMS_DIR = Path(__file__).resolve().parents[1] / "forms"

NS = {
    "xf": "http://www.w3.org/2002/xforms",
    "h": "http://www.w3.org/1999/xhtml",
    "jr": "http://openrosa.org/javarosa",
    "odk": "http://www.opendatakit.org/xforms",
}
FS_NS = "https://fieldsync.org/xforms"
PERSONAL_ATTR = f"{{{FS_NS}}}personal"
LANGUAGES = {"English (en)", "Russian (ru)", "Kyrgyz (ky)"}
DEFAULT_LANGUAGE = "English (en)"

# ---------------------------------------------------------------- the contract (from SPEC.md)
GRANTEES = {
    "cpp", "chinek", "cssc_jalalabad", "cssc_nookat", "sezim", "jiger", "kelechek_dooru",
    "lady_shirin", "leylek_ayalzaty", "new_youth_status", "omur_bulagy", "pangea", "rcrp",
    "tendesh", "tomo", "wic_ayalzat_osh", "wic_ayalzat_talas", "wsc",
}
REGIONS = {"bishkek", "osh_city", "chuy", "issyk_kul", "naryn", "talas", "jalal_abad", "osh",
           "batken"}
YES_NO = {"yes", "no"}
SEX = {"female", "male"}

# kind -> (bind type, body element local name)
KINDS = {
    "text": ("string", "input"),
    "integer": ("int", "input"),
    "date": ("date", "input"),
    "select_one": ("string", "select1"),
    "select_multiple": ("string", "select"),
    "select_one_from_file": ("string", "select1"),
    "image": ("binary", "upload"),
    "geopoint": ("geopoint", "input"),
    "repeat": (None, "repeat"),
}

# form id -> {field path relative to the instance root: (kind, choice codes or CSV file)}
CONTRACT = {
    "seminar_attendance": {
        "grantee": ("select_one", GRANTEES),
        "event_type": ("select_one", {"seminar", "training", "tot", "roundtable",
                                      "public_hearing", "public_meeting", "campaign",
                                      "performance"}),
        "event_date": ("date", None),
        "region": ("select_one", REGIONS),
        "rayon": ("select_one_from_file", "rayons.csv"),
        "village": ("text", None),
        "topic": ("select_one", {"trafficking_risks", "labor_migration", "bride_kidnapping",
                                 "gender_violence", "victim_support", "employment", "other"}),
        "language": ("select_one", {"ky", "ru", "uz", "en"}),
        "trainer_name": ("text", None),
        "participant": ("repeat", None),
        "participant/full_name": ("text", None),
        "participant/sex": ("select_one", SEX),
        "participant/birth_year": ("integer", None),
        "participant/category": ("select_one", {"student", "youth", "adult", "teacher",
                                                "official", "labor_migrant", "other"}),
        "headcount_female": ("integer", None),
        "headcount_male": ("integer", None),
        "materials_distributed": ("integer", None),
        "photo": ("image", None),
        "location": ("geopoint", None),
    },
    "needs_assessment": {
        "grantee": ("select_one", GRANTEES),
        "region": ("select_one", REGIONS),
        "rayon": ("select_one_from_file", "rayons.csv"),
        "village": ("text", None),
        "interview_date": ("date", None),
        "consent": ("select_one", YES_NO),
        "respondent_sex": ("select_one", SEX),
        "respondent_age": ("integer", None),
        "household_size": ("integer", None),
        "members_abroad": ("integer", None),
        "plans_to_migrate": ("select_one", {"yes", "no", "unsure"}),
        "knows_trafficking_risks": ("select_one", YES_NO),
        "knows_hotline": ("select_one", YES_NO),
        "priority_needs": ("select_multiple", {"legal_info", "employment",
                                               "vocational_training", "microcredit",
                                               "psychological_support", "shelter", "other"}),
    },
    "beneficiary_interview": {
        "grantee": ("select_one", GRANTEES),
        "region": ("select_one", REGIONS),
        "village": ("text", None),
        "interview_date": ("date", None),
        "consent": ("select_one", YES_NO),
        "beneficiary_type": ("select_one", {"seminar_participant", "victim", "labor_migrant",
                                            "peer_trainer", "official"}),
        "services_received": ("select_multiple", {"seminar", "consultation", "hotline",
                                                  "legal_aid", "psychological", "medical",
                                                  "shelter", "vocational_training",
                                                  "employment", "microcredit"}),
        "satisfaction": ("integer", None),
        "knowledge_gained": ("integer", None),
        "would_recommend": ("select_one", YES_NO),
        "found_legal_work": ("select_one", YES_NO),
        "story": ("text", None),
        "respondent_name": ("text", None),
    },
    "consultation_log": {
        "grantee": ("select_one", GRANTEES),
        "service_date": ("date", None),
        "channel": ("select_one", {"hotline", "in_person", "outreach"}),
        "service_type": ("select_one", {"information", "legal", "psychological", "medical",
                                        "shelter", "vocational_training", "employment",
                                        "referral"}),
        "client_sex": ("select_one", SEX),
        "client_age_group": ("select_one", {"under_18", "18_35", "36_60", "over_60"}),
        "client_is_victim": ("select_one", YES_NO),
        "client_code": ("text", None),
    },
}

# fields tagged fs:personal="true" (exactly these; client_code is pseudonymous, not tagged)
PERSONAL = {
    "seminar_attendance": {"participant/full_name", "photo"},
    "needs_assessment": set(),
    "beneficiary_interview": {"story", "respondent_name"},
    "consultation_log": set(),
}
NOT_REQUIRED = {"beneficiary_interview": {"story", "respondent_name"}}
CONSENT_FORMS = ["needs_assessment", "beneficiary_interview"]
# integer ranges: the upper bound that must appear in the field's constraint (the exact
# expressions live in the workbook; JavaRosa behaviour was checked by hand).
RANGES = {
    "seminar_attendance": {"headcount_female": "5000", "headcount_male": "5000",
                           "materials_distributed": "100000",
                           "participant/birth_year": "1920"},
    "needs_assessment": {"respondent_age": "110", "household_size": "30",
                         "members_abroad": "/needs_assessment/household_size"},
    "beneficiary_interview": {"satisfaction": "5", "knowledge_gained": "5"},
}


# ---------------------------------------------------------------- helpers
@functools.lru_cache(maxsize=None)
def converted(form_id: str):
    path = FORMS_DIR / f"{form_id}.xlsx"
    assert path.is_file(), f"missing workbook {path}"
    result = convert(xlsform=str(path))
    return result, etree.fromstring(result.xform.encode("utf-8"))


def xform(form_id):
    return converted(form_id)[1]


def model(form_id):
    return xform(form_id).find("h:head/xf:model", NS)


def primary_root(form_id):
    return model(form_id).find("xf:instance", NS)[0]


def binds(form_id):
    return {b.get("nodeset"): b for b in model(form_id).findall("xf:bind", NS)}


CONTROLS = {"input", "select1", "select", "upload", "trigger", "range", "rank", "odk:rank"}


def body_controls(form_id):
    """Body elements by the path they point at (ref, or nodeset for a repeat)."""
    out = {}
    for el in xform(form_id).find("h:body", NS).iter():
        if not isinstance(el.tag, str):
            continue
        tag = etree.QName(el).localname
        if tag == "repeat":
            out[el.get("nodeset")] = el
        elif tag in CONTROLS and el.get("ref"):
            out[el.get("ref")] = el
    return out


def secondary_instances(form_id):
    return {i.get("id"): i for i in model(form_id).findall("xf:instance", NS) if i.get("id")}


def itemset_instance_id(itemset):
    m = re.match(r"\s*instance\('([^']+)'\)/root/item", itemset.get("nodeset"))
    assert m, itemset.get("nodeset")
    return m.group(1)


def choice_codes(form_id, control):
    """Codes offered by a select/select1: itemset into a secondary instance, or inline items."""
    itemset = control.find("xf:itemset", NS)
    if itemset is None:
        return {v.text for v in control.findall("xf:item/xf:value", NS)}
    inst = secondary_instances(form_id)[itemset_instance_id(itemset)]
    value_ref = itemset.find("xf:value", NS).get("ref")
    assert inst.get("src") is None, "expected an inline choice list"
    return {item.findtext(f"xf:{value_ref}", namespaces=NS)
            for item in inst.findall("xf:root/xf:item", NS)}


def translations(form_id):
    return {t.get("lang"): t for t in model(form_id).findall("xf:itext/xf:translation", NS)}


def text_value(text_el):
    value = text_el.find("xf:value", NS)
    return "".join(value.itertext()).strip() if value is not None else ""


CASES = [(f, p) for f, fields in CONTRACT.items() for p in fields]


# ---------------------------------------------------------------- tests
@pytest.mark.parametrize("form_id", list(CONTRACT))
def test_form_identity_and_meta(form_id):
    result, root = converted(form_id)
    assert result.warnings == []
    inst = primary_root(form_id)
    assert etree.QName(inst).localname == form_id
    assert inst.get("id") == form_id
    assert re.fullmatch(r"\d{10}", inst.get("version") or ""), inst.get("version")
    assert root.findtext("h:head/h:title", namespaces=NS)

    b = binds(form_id)
    iid = b[f"/{form_id}/meta/instanceID"]
    assert iid.get(f"{{{NS['jr']}}}preload") == "uid"
    assert inst.find("xf:meta/xf:instanceID", NS) is not None
    assert inst.find("xf:meta/xf:instanceName", NS) is not None
    name_calc = b[f"/{form_id}/meta/instanceName"].get("calculate")
    assert name_calc and f"/{form_id}/grantee" in name_calc
    for personal in PERSONAL[form_id]:  # instance names show in lists and exports
        assert f"/{form_id}/{personal}" not in name_calc


@pytest.mark.parametrize("form_id,field", CASES, ids=[f"{f}:{p}" for f, p in CASES])
def test_contract_field(form_id, field):
    kind, expected = CONTRACT[form_id][field]
    bind_type, control_tag = KINDS[kind]
    path = f"/{form_id}/{field}"

    # in the primary instance at exactly this path (no groups in between)
    node = primary_root(form_id)
    for step in field.split("/"):
        node = node.find(f"xf:{step}", NS)
        assert node is not None, f"{path} is not in the primary instance"

    bind = binds(form_id).get(path)
    if bind_type is not None:
        assert bind is not None, f"no bind for {path}"
        assert bind.get("type") == bind_type

    control = body_controls(form_id).get(path)
    assert control is not None, f"no body control for {path}"
    assert etree.QName(control).localname == control_tag
    parent = etree.QName(control.getparent()).localname
    if "/" in field:
        assert parent == "repeat" and control.getparent().get("nodeset") == path.rsplit("/", 1)[0]
    elif kind == "repeat":
        assert control.getparent().getparent().tag == f"{{{NS['h']}}}body"
    else:
        assert control.getparent().tag == f"{{{NS['h']}}}body", f"{path} sits in a {parent}"

    if kind == "image":
        assert control.get("mediatype") == "image/*"
    if kind in ("select_one", "select_multiple"):
        assert choice_codes(form_id, control) == expected
    if kind == "select_one_from_file":
        itemset = control.find("xf:itemset", NS)
        inst = secondary_instances(form_id)[itemset_instance_id(itemset)]
        assert inst.get("src") == f"jr://file-csv/{expected}"
        assert itemset.find("xf:value", NS).get("ref") == "name"
        assert itemset.find("xf:label", NS).get("ref") == "label"
        # filtered by the region chosen before
        assert re.search(rf"\[\s*region\s*=\s*/{form_id}/region\s*\]", itemset.get("nodeset"))


@pytest.mark.parametrize("form_id", list(CONTRACT))
def test_three_languages(form_id):
    tr = translations(form_id)
    assert set(tr) == LANGUAGES
    assert tr[DEFAULT_LANGUAGE].get("default") == "true()"
    ids = {lang: {t.get("id"): text_value(t) for t in el.findall("xf:text", NS)}
           for lang, el in tr.items()}
    en = ids[DEFAULT_LANGUAGE]
    for lang, texts in ids.items():
        assert set(texts) == set(en), f"{lang} lacks {set(en) - set(texts)}"
        empty = [i for i, v in texts.items() if not v]
        assert not empty, f"{lang}: empty texts {empty}"
    # questions, hints and constraint messages are really translated
    for text_id, value in en.items():
        if text_id.startswith("/"):
            assert ids["Russian (ru)"][text_id] != value, text_id
            assert ids["Kyrgyz (ky)"][text_id] != value, text_id
    ru = " ".join(ids["Russian (ru)"].values())
    ky = " ".join(ids["Kyrgyz (ky)"].values())
    assert re.search("[а-яё]", ru)
    assert re.search("[үөң]", ky), "Kyrgyz texts use no Kyrgyz letters"
    # every contract question (repeat included) has a label, hints come in all languages
    for field in CONTRACT[form_id]:
        assert f"/{form_id}/{field}:label" in en


@pytest.mark.parametrize("form_id", list(CONTRACT))
def test_personal_data_tags(form_id):
    root = xform(form_id)
    tagged = {b.get("nodeset")[len(form_id) + 2:]
              for b in model(form_id).findall("xf:bind", NS) if b.get(PERSONAL_ATTR) is not None}
    assert tagged == PERSONAL[form_id]
    for field in tagged:
        assert binds(form_id)[f"/{form_id}/{field}"].get(PERSONAL_ATTR) == "true"
    if tagged:
        assert root.nsmap.get("fs") == FS_NS
    for field in NOT_REQUIRED.get(form_id, ()):
        assert binds(form_id)[f"/{form_id}/{field}"].get("required") in (None, "false()")


@pytest.mark.parametrize("form_id", CONSENT_FORMS)
def test_consent_gating(form_id):
    consent = f"/{form_id}/consent"
    b = binds(form_id)
    assert b[consent].get("required") == "true()"
    order = [el.tag for el in primary_root(form_id)]
    names = [etree.QName(t).localname for t in order]
    after = names[names.index("consent") + 1:]
    assert after, "nothing after consent"
    gated = 0
    for name in after:
        if name == "meta":
            continue
        bind = b.get(f"/{form_id}/{name}")
        assert bind is not None, name
        relevant = bind.get("relevant") or ""
        if name == "consent_refused":
            assert re.search(rf"{consent}\s*=\s*'no'", relevant)
            continue
        assert re.search(rf"{consent}\s*=\s*'yes'", relevant), f"{name} is not gated on consent"
        gated += 1
    contract_after = [f for f in CONTRACT[form_id] if f in after]
    assert len(contract_after) >= 5 and gated >= len(contract_after)


def test_beneficiary_interview_event_link():
    """Optional `event` (not a SPEC contract field): a select_one_from_file events.csv, which
    the server generates per device from synced seminar_attendance submissions (name = their
    instanceID), filtered by the grantee chosen before, asked only with consent and only of
    seminar participants and peer trainers."""
    form_id = "beneficiary_interview"
    path = f"/{form_id}/event"
    names = [etree.QName(el).localname for el in primary_root(form_id)]
    assert "event" in names and names.index("event") == names.index("beneficiary_type") + 1

    bind = binds(form_id)[path]
    assert bind.get("type") == "string"
    assert bind.get("required") in (None, "false()")
    assert bind.get(PERSONAL_ATTR) is None
    relevant = bind.get("relevant") or ""
    assert re.search(rf"/{form_id}/consent\s*=\s*'yes'\s+and\s*\(", relevant), relevant
    for btype in ("seminar_participant", "peer_trainer"):
        assert re.search(rf"/{form_id}/beneficiary_type\s*=\s*'{btype}'", relevant), relevant

    control = body_controls(form_id).get(path)
    assert control is not None and etree.QName(control).localname == "select1"
    assert control.getparent().tag == f"{{{NS['h']}}}body"
    itemset = control.find("xf:itemset", NS)
    assert itemset is not None
    inst = secondary_instances(form_id)[itemset_instance_id(itemset)]
    assert inst.get("src") == "jr://file-csv/events.csv"
    assert itemset.find("xf:value", NS).get("ref") == "name"
    assert itemset.find("xf:label", NS).get("ref") == "label"  # plain column, no ::lang
    assert re.search(rf"\[\s*grantee\s*=\s*/{form_id}/grantee\s*\]", itemset.get("nodeset"))

    tr = translations(form_id)
    for lang in LANGUAGES:
        ids = {t.get("id") for t in tr[lang].findall("xf:text", NS)}
        assert {f"{path}:label", f"{path}:hint"} <= ids, lang


def test_participant_register_is_skippable_and_fast():
    form_id = "seminar_attendance"
    b = binds(form_id)
    repeat = body_controls(form_id)[f"/{form_id}/participant"]
    assert repeat.get(f"{{{NS['jr']}}}count") is None  # open repeat
    assert repeat.get("appearance") == "field-list"  # one participant per screen
    assert b[f"/{form_id}/participant"].get("relevant")  # a play registers nobody
    for field in ("full_name", "sex"):
        assert b[f"/{form_id}/participant/{field}"].get("required") == "true()"
    assert b[f"/{form_id}/participant/birth_year"].get("required") is None
    for field in ("headcount_female", "headcount_male", "materials_distributed"):
        assert primary_root(form_id).findtext(f"xf:{field}", namespaces=NS) == "0"
    setvalues = model(form_id).findall("xf:setvalue", NS)
    assert any(s.get("ref") == f"/{form_id}/event_date" and s.get("value") == "today()"
               for s in setvalues)


@pytest.mark.parametrize("form_id", list(CONTRACT))
def test_dates_and_ranges_are_constrained(form_id):
    b = binds(form_id)
    for field, (kind, _) in CONTRACT[form_id].items():
        if kind == "date":
            c = b[f"/{form_id}/{field}"].get("constraint") or ""
            assert "today()" in c and "date('2003-01-01')" in c, field
    for field, upper in RANGES.get(form_id, {}).items():
        c = b[f"/{form_id}/{field}"].get("constraint") or ""
        assert upper in c, (field, c)


@pytest.mark.parametrize("form_id", list(CONTRACT))
def test_odk_validate(form_id):
    if shutil.which("java") is None:
        pytest.skip("Java is not installed: ODK Validate cannot run")
    result = convert(xlsform=str(FORMS_DIR / f"{form_id}.xlsx"), validate=True)
    assert result.xform
