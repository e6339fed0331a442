"""ODK Collect's settings QR code: base64 of zlib-compressed settings JSON.

Collect requires the `general` and `admin` objects (admin may be empty) and resets every
setting the code does not name, so the code carries everything a FieldSync device should have.
"""
import base64
import io
import json
import zlib


def settings(server_url: str, project_name: str) -> dict:
    return {
        "general": {
            "server_url": server_url,
            # Keep phones on exactly the published forms, and send as soon as there is signal.
            "form_update_mode": "match_exactly",
            "autosend": "wifi_and_cellular",
        },
        "project": {"name": project_name, "icon": "F", "color": "#1f6f8b"},
        "admin": {},
    }


def qr_payload(settings_json: dict) -> str:
    raw = json.dumps(settings_json, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return base64.b64encode(zlib.compress(raw)).decode("ascii")


def decode_payload(payload: str) -> dict:
    return json.loads(zlib.decompress(base64.b64decode(payload)).decode("utf-8"))


def qr_png(payload: str) -> bytes:
    import qrcode  # only the PNG needs the imaging stack

    image = qrcode.make(payload, error_correction=qrcode.constants.ERROR_CORRECT_L, box_size=6, border=3)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
