"""Filling a form's primary instance with values, as ODK Collect serialises a finished form."""
import copy

from lxml import etree

XF = "http://www.w3.org/2002/xforms"
JR_TEMPLATE = "{http://openrosa.org/javarosa}template"


def _local(element) -> str:
    return etree.QName(element).localname


def _fill(element, values: dict) -> None:
    for child in list(element):
        if not isinstance(child.tag, str):
            continue
        name = _local(child)
        value = values.get(name)
        if isinstance(value, list):
            position = list(element).index(child)
            element.remove(child)
            for offset, row in enumerate(value):
                item = copy.deepcopy(child)
                item.attrib.pop(JR_TEMPLATE, None)
                _fill(item, row)
                element.insert(position + offset, item)
        elif len(child):
            _fill(child, values.get(name) if isinstance(value, dict) else values)
        elif name in values and value is not None:
            child.text = str(value)


def fill_instance(form_xml: bytes, values: dict, instance_id: str) -> bytes:
    form = etree.fromstring(form_xml)
    primary = form.find(f".//{{{XF}}}instance")
    root = copy.deepcopy(next(c for c in primary if isinstance(c.tag, str)))
    repeats = {_local(c) for c in root if isinstance(c.tag, str) and c.get(JR_TEMPLATE) is not None}
    for child in list(root):  # keep one copy of each repeat (the template) to fill from
        if isinstance(child.tag, str) and _local(child) in repeats and child.get(JR_TEMPLATE) is None:
            root.remove(child)
    for name in repeats:
        values.setdefault(name, [])
    _fill(root, values)
    meta = next(c for c in root if isinstance(c.tag, str) and _local(c) == "meta")
    next(c for c in meta if _local(c) == "instanceID").text = instance_id
    etree.cleanup_namespaces(root)
    body = etree.tostring(root, encoding="unicode").replace(f' xmlns="{XF}"', "")
    return ("<?xml version='1.0' encoding='UTF-8' ?>" + body).encode("utf-8")
