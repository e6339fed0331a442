"""Reading untrusted XML safely.

Everything FieldSync parses from outside (submissions, uploaded XForms) goes through
`parse_untrusted`: no DTDs (so no entity expansion, billion laughs or external entities), no
network, bounded size and nesting depth. ODK clients never send a DOCTYPE, so refusing one
costs nothing.
"""
from lxml import etree

from .. import problems

MAX_DEPTH = 100

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                          dtd_validation=False, huge_tree=False, remove_comments=False)


def parse_untrusted(data: bytes, max_bytes: int = 50_000_000) -> etree._Element:
    if len(data) > max_bytes:
        raise problems.unsafe_xml(reason=f"larger than {max_bytes} bytes")
    # Refuse before parsing: a DOCTYPE is the only way to declare entities.
    head = data[:4096].lower()
    if b"<!doctype" in head or b"<!entity" in data.lower():
        raise problems.unsafe_xml(reason="a DOCTYPE or ENTITY declaration is not accepted")
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise problems.unparseable_xml(reason=str(exc)) from None
    if root is None:
        raise problems.unparseable_xml(reason="empty document")
    if _depth(root) > MAX_DEPTH:
        raise problems.unsafe_xml(reason=f"nested deeper than {MAX_DEPTH} levels")
    return root


def _depth(root) -> int:
    deepest, stack = 0, [(root, 1)]
    while stack:
        element, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in element if isinstance(child.tag, str))
    return deepest


def local_name(element) -> str:
    return etree.QName(element).localname


def child_by_local_name(element, name: str):
    for child in element:
        if isinstance(child.tag, str) and etree.QName(child).localname == name:
            return child
    return None
