"""Making submissions the way ODK Collect does: fill the form's primary instance, serialise it
as JavaRosa does, and POST it multipart with the files named in it."""
import copy
import io
import uuid

from lxml import etree

XF = "http://www.w3.org/2002/xforms"
JR_TEMPLATE = "{http://openrosa.org/javarosa}template"
OPENROSA = {"X-OpenRosa-Version": "1.0",
            "User-Agent": "org.odk.collect.android/v2026.3.3 Dalvik/2.1.0 (Linux; U; Android 14)"}


def _local(element):
    return etree.QName(element).localname


def _fill(element, values: dict):
    for child in list(element):
        if not isinstance(child.tag, str):
            continue
        name = _local(child)
        if child.get(JR_TEMPLATE) is not None:
            element.remove(child)
            continue
        if name in values and isinstance(values[name], list):
            template = copy.deepcopy(child)
            position = list(element).index(child)
            element.remove(child)
            for offset, row in enumerate(values[name]):
                item = copy.deepcopy(template)
                item.attrib.pop(JR_TEMPLATE, None)
                _fill(item, row)
                element.insert(position + offset, item)
        elif name in values and isinstance(values[name], dict):
            _fill(child, values[name])
        elif name in values:
            child.text = None if values[name] is None else str(values[name])


def instance_xml(form_xml: bytes, values: dict, instance_id: str | None = None,
                 deprecated_id: str | None = None, drop_instance_id: bool = False) -> bytes:
    form = etree.fromstring(form_xml)
    primary = form.find(f".//{{{XF}}}instance")
    root = copy.deepcopy(next(c for c in primary if isinstance(c.tag, str)))
    # pyxform writes a repeat twice (template and first copy); keep only the template.
    seen = set()
    for child in list(root):
        if isinstance(child.tag, str) and child.get(JR_TEMPLATE) is not None:
            seen.add(_local(child))
    for child in list(root):
        if isinstance(child.tag, str) and _local(child) in seen and child.get(JR_TEMPLATE) is None:
            root.remove(child)
    for child in list(root):
        if isinstance(child.tag, str) and child.get(JR_TEMPLATE) is not None:
            child.attrib.pop(JR_TEMPLATE)
    _fill(root, values)
    meta = next(c for c in root if isinstance(c.tag, str) and _local(c) == "meta")
    iid = next(c for c in meta if _local(c) == "instanceID")
    if drop_instance_id:
        meta.remove(iid)
    else:
        iid.text = instance_id or f"uuid:{uuid.uuid4()}"
    if deprecated_id:
        dep = etree.SubElement(meta, f"{{{etree.QName(meta).namespace}}}deprecatedID"
                               if etree.QName(meta).namespace else "deprecatedID")
        dep.text = deprecated_id
    # Collect drops the XForms default namespace from the instance.
    etree.cleanup_namespaces(root)
    body = etree.tostring(root, encoding="unicode")
    body = body.replace(f' xmlns="{XF}"', "")
    return ("<?xml version='1.0' encoding='UTF-8' ?>" + body).encode("utf-8")


def instance_id_of(xml: bytes) -> str:
    root = etree.fromstring(xml)
    return root.find("meta/instanceID").text


def multipart(xml: bytes, files: dict | None = None, incomplete: bool = False) -> dict:
    data = {"xml_submission_file": (io.BytesIO(xml), "instance.xml", "text/xml")}
    for name, content in (files or {}).items():
        data[name] = (io.BytesIO(content), name, "image/jpeg" if name.endswith(".jpg") else "application/octet-stream")
    if incomplete:
        data["*isIncomplete*"] = "yes"
    return data


def post(client, url: str, xml: bytes, files: dict | None = None, incomplete=False, headers=None):
    return client.post(url, data=multipart(xml, files, incomplete), headers=headers or OPENROSA,
                       content_type="multipart/form-data")


SEMINAR = {
    "grantee": "chinek", "event_type": "seminar", "event_date": "2026-11-20", "region": "chuy",
    "rayon": "issyk_ata", "village": "Kant", "topic": "trafficking_risks", "language": "ky",
    "trainer_name": "Aigul Asanova", "headcount_female": 0, "headcount_male": 0,
    "materials_distributed": 30,
    "participant": [{"full_name": "Bakyt Osmonov", "sex": "male", "birth_year": 2008, "category": "student"},
                    {"full_name": "Aizada Tokonova", "sex": "female", "birth_year": 2009, "category": "student"}],
}
