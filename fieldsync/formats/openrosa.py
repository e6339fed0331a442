"""OpenRosa XML documents: the form list, the manifest and the response envelope.

Written as text in a fixed order, because Collect stores the md5 of a manifest and compares
it on the next sync: the same content must always give the same bytes.
"""
from dataclasses import dataclass
from xml.sax.saxutils import escape

NS_FORM_LIST = "http://openrosa.org/xforms/xformsList"
NS_MANIFEST = "http://openrosa.org/xforms/xformsManifest"
NS_RESPONSE = "http://openrosa.org/http/response"


@dataclass(frozen=True)
class FormListEntry:
    form_id: str
    name: str
    version: str
    md5: str
    download_url: str
    manifest_url: str | None


@dataclass(frozen=True)
class ManifestFile:
    filename: str
    md5: str
    download_url: str


def form_list(entries: list[FormListEntry]) -> str:
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n', f'<xforms xmlns="{NS_FORM_LIST}">\n']
    for e in entries:
        parts.append("  <xform>\n")
        parts.append(f"    <formID>{escape(e.form_id)}</formID>\n")
        parts.append(f"    <name>{escape(e.name)}</name>\n")
        parts.append(f"    <version>{escape(e.version)}</version>\n")
        parts.append(f"    <hash>md5:{e.md5}</hash>\n")
        parts.append(f"    <downloadUrl>{escape(e.download_url)}</downloadUrl>\n")
        if e.manifest_url:
            parts.append(f"    <manifestUrl>{escape(e.manifest_url)}</manifestUrl>\n")
        parts.append("  </xform>\n")
    parts.append("</xforms>\n")
    return "".join(parts)


def manifest(files: list[ManifestFile]) -> str:
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n', f'<manifest xmlns="{NS_MANIFEST}">\n']
    for f in sorted(files, key=lambda f: f.filename):
        parts.append("  <mediaFile>\n")
        parts.append(f"    <filename>{escape(f.filename)}</filename>\n")
        parts.append(f"    <hash>md5:{f.md5}</hash>\n")
        parts.append(f"    <downloadUrl>{escape(f.download_url)}</downloadUrl>\n")
        parts.append("  </mediaFile>\n")
    parts.append("</manifest>\n")
    return "".join(parts)


def response(message: str, error: bool = False) -> str:
    nature = "error" if error else ""
    return (f'<OpenRosaResponse xmlns="{NS_RESPONSE}" items="0">\n'
            f'  <message nature="{nature}">{escape(message)}</message>\n'
            f"</OpenRosaResponse>\n")
