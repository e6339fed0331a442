"""Reading what FieldSync needs out of an XForm: identity, fields, expected media.

Pure functions of the XForm bytes. The field list (`schema`) is what submissions, exports and
the web app use to know a form's questions: each field's path below the instance root, its
bind type, whether it sits in a repeat, whether it is tagged as personal data, and its labels.
"""
import re
from dataclasses import dataclass, field

from lxml import etree

from ..formats.xml import parse_untrusted

XF = "http://www.w3.org/2002/xforms"
H = "http://www.w3.org/1999/xhtml"
JR = "http://openrosa.org/javarosa"
ODK = "http://www.opendatakit.org/xforms"
FS = "https://fieldsync.org/xforms"  # FieldSync's own bind attributes, e.g. fs:personal

CONTROL_TAGS = {"input", "select1", "select", "upload", "trigger", "range", "rank", "odk:rank"}
MEDIA_PREFIXES = {"jr://images/": "image", "jr://audio/": "audio", "jr://video/": "video"}
FILE_SRC = re.compile(r"^jr://(file|file-csv|images|audio|video)/([^/]+)$")
SEARCH_APPEARANCE = re.compile(r"search\(\s*'([^']*)'")


@dataclass
class XFormInfo:
    form_id: str
    version: str
    title: str
    root_name: str
    languages: list[str]
    fields: list[dict] = field(default_factory=list)
    repeats: list[str] = field(default_factory=list)
    media: list[tuple[str, str]] = field(default_factory=list)  # (name, kind)

    def schema(self) -> dict:
        return {"formId": self.form_id, "version": self.version, "title": self.title,
                "root": self.root_name, "languages": self.languages,
                "fields": self.fields, "repeats": self.repeats}

    @property
    def personal_paths(self) -> list[str]:
        return [f["path"] for f in self.fields if f.get("personal")]


def _q(ns, tag):
    return f"{{{ns}}}{tag}"


def read_xform(data: bytes) -> XFormInfo:
    html = parse_untrusted(data)
    head = html.find(_q(H, "head"))
    model = head.find(_q(XF, "model")) if head is not None else None
    if model is None:
        raise ValueError("no <h:head>/<model> in the XForm")
    instances = model.findall(_q(XF, "instance"))
    primary = next((i for i in instances if i.get("id") is None), instances[0] if instances else None)
    if primary is None or len(primary) == 0:
        raise ValueError("no primary <instance> in the XForm")
    root = next(child for child in primary if isinstance(child.tag, str))
    title_el = head.find(_q(H, "title"))
    form_id = root.get("id") or ""
    version = root.get("version") or root.get(_q("http://openrosa.org/xforms", "version")) or ""
    title = (title_el.text or "").strip() if title_el is not None else ""
    itext = itext_texts(model)
    info = XFormInfo(form_id=form_id, version=version, title=title or form_id,
                     root_name=etree.QName(root).localname, languages=list(itext))
    binds = {b.get("nodeset"): b for b in model.findall(_q(XF, "bind"))}
    body = html.find(_q(H, "body"))
    controls = _controls(body, itext) if body is not None else {}
    _walk_instance(root, f"/{info.root_name}", None, binds, controls, info)
    info.media = _expected_media(instances, model, root, body)
    return info


def itext_texts(model) -> dict[str, dict[str, str]]:
    """language -> {itext id -> text of its default form}."""
    out: dict[str, dict[str, str]] = {}
    itext = model.find(_q(XF, "itext"))
    if itext is None:
        return out
    for translation in itext.findall(_q(XF, "translation")):
        lang = translation.get("lang")
        texts = out.setdefault(lang, {})
        for text in translation.findall(_q(XF, "text")):
            value = next((v for v in text.findall(_q(XF, "value")) if v.get("form") is None), None)
            if value is not None:
                texts[text.get("id")] = "".join(value.itertext()).strip()
    return out


def _label(element, itext) -> dict[str, str]:
    label = element.find(_q(XF, "label"))
    return {} if label is None else label_texts(label, itext)


def label_texts(label, itext) -> dict[str, str]:
    """A <label>'s text per language: from itext when it refers there, else its own text."""
    ref = label.get("ref") or ""
    match = re.match(r"jr:itext\('([^']+)'\)", ref)
    if match:
        return {lang: texts.get(match.group(1), "") for lang, texts in itext.items()}
    text = "".join(label.itertext()).strip()
    return {"default": text} if text else {}


def _controls(body, itext) -> dict[str, dict]:
    """ref/nodeset -> {kind, label, appearance, choices} for every control in the body."""
    found = {}
    for element in body.iter():
        if not isinstance(element.tag, str):
            continue
        name = etree.QName(element).localname
        ref = element.get("ref") or element.get("nodeset")
        if name in ("group", "repeat") and ref:
            # pyxform wraps each repeat in a group with the same ref: the repeat wins.
            if name == "repeat" or ref not in found:
                label = _label(element, itext) or found.get(ref, {}).get("label", {})
                found[ref] = {"kind": name, "label": label}
        elif name in CONTROL_TAGS and ref:
            entry = {"kind": name, "label": _label(element, itext),
                     "appearance": element.get("appearance")}
            choices = [(item.findtext(_q(XF, "value")), _label(item, itext))
                       for item in element.findall(_q(XF, "item"))]
            if choices:
                entry["choices"] = [{"name": n, "label": lbl} for n, lbl in choices]
            itemset = element.find(_q(XF, "itemset"))
            if itemset is not None:
                entry["itemset"] = itemset.get("nodeset")
            found[ref] = entry
    return found


def _walk_instance(element, path, repeat, binds, controls, info: XFormInfo):
    for child in element:
        if not isinstance(child.tag, str):
            continue
        name = etree.QName(child).localname
        child_path = f"{path}/{name}"
        is_template = child.get(_q(JR, "template")) is not None
        control = controls.get(child_path, {})
        is_repeat = is_template or control.get("kind") == "repeat"
        if is_repeat:
            relative_repeat = child_path[len(info.root_name) + 2:]
            if relative_repeat in info.repeats:
                continue  # pyxform also writes a first, non-template copy of each repeat
            info.repeats.append(relative_repeat)
            _walk_instance(child, child_path, child_path, binds, controls, info)
            continue
        if any(isinstance(c.tag, str) for c in child):
            _walk_instance(child, child_path, repeat, binds, controls, info)
            continue
        bind = binds.get(child_path)
        relative = child_path[len(info.root_name) + 2:]
        entry = {"path": relative, "name": name,
                 "type": bind.get("type", "string") if bind is not None else "string",
                 "repeat": repeat[len(info.root_name) + 2:] if repeat else None}
        if control:
            entry["control"] = control["kind"]
            if control.get("label"):
                entry["label"] = control["label"]
            for key in ("appearance", "choices", "itemset"):
                if control.get(key):
                    entry[key] = control[key]
        if bind is not None and bind.get(_q(FS, "personal")) in ("true", "true()", "yes"):
            entry["personal"] = True
        info.fields.append(entry)


def _expected_media(instances, model, root, body) -> list[tuple[str, str]]:
    """The files a device must download with the form (ODK Central's expectedFormAttachments)."""
    found: dict[tuple[str, str], None] = {}
    for instance in instances:
        match = FILE_SRC.match(instance.get("src") or "")
        if match:
            found[(match.group(2), "file")] = None
    itext = model.find(_q(XF, "itext"))
    if itext is not None:
        for value in itext.iter(_q(XF, "value")):
            form = value.get("form")
            if form in ("image", "big-image", "audio", "video"):
                _add_media_uri((value.text or "").strip(), found)
    for element in root.iter():
        if isinstance(element.tag, str) and element.text:
            _add_media_uri(element.text.strip(), found, only="image")
    if body is not None:
        for element in body.iter():
            if not isinstance(element.tag, str):
                continue
            if etree.QName(element).localname == "input" and element.get("query"):
                found[("itemsets.csv", "file")] = None
            match = SEARCH_APPEARANCE.search(element.get("appearance") or "")
            if match and match.group(1) == match.group(1).strip() and match.group(1):
                name = match.group(1)
                found[(name if name.endswith(".csv") else f"{name}.csv", "file")] = None
    return list(found)


def _add_media_uri(uri: str, found: dict, only: str | None = None) -> None:
    for prefix, kind in MEDIA_PREFIXES.items():
        if uri.startswith(prefix) and (only is None or kind == only):
            name = uri[len(prefix):]
            if name and "/" not in name:
                found[(name, kind)] = None
