"""Settings: where the instance folder is, which database, limits.

Owns reading configuration from the instance folder (`config.toml`) and the environment
(`FIELDSYNC_*`), and the secret key file. Imports nothing from the rest of FieldSync.

Precedence, lowest first: built-in defaults, `instance/config.toml`, environment variables,
then the `overrides` a caller (a test) passes to `create_app`.
"""
import os
import secrets
import tomllib
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_ROOT.parent

# Collect splits a submission into several POSTs when its files exceed what the HEAD preflight
# announces, so the announced figure must never be above what we really accept.
DEFAULT_MAX_SUBMISSION_BYTES = 10_000_000
# Multipart overhead (boundaries, part headers) on top of the announced payload.
MULTIPART_SLACK_BYTES = 256 * 1024

ENV_KEYS = {
    "DATABASE_URL": str,
    "BASE_URL": str,
    "FORMS_PATH": str,
    "MAX_SUBMISSION_BYTES": int,
    "SESSION_TTL_HOURS": int,
    "PROJECT_NAME": str,
    "SCHEDULER": str,
    "RECONCILE_MINUTES": int,
    "RECOMPUTE_PROCESSES": int,
    "TIMEZONE": str,
    "TRUSTED_PROXIES": int,
    "DERIVE": str,
}


def instance_path_from_env() -> Path:
    return Path(os.environ.get("FIELDSYNC_INSTANCE_PATH", "instance")).resolve()


def load_settings(instance_path: Path, overrides: dict | None = None) -> dict:
    """Return the `FIELDSYNC_*` settings (without prefix) after applying every layer."""
    settings = {
        "DATABASE_URL": f"sqlite:///{instance_path / 'fieldsync.db'}",
        "BASE_URL": None,
        "FORMS_PATH": str(PROJECT_ROOT / "forms"),
        "MAX_SUBMISSION_BYTES": DEFAULT_MAX_SUBMISSION_BYTES,
        "SESSION_TTL_HOURS": 24,
        "PROJECT_NAME": "PHT Kyrgyzstan",
        "SCHEDULER": "off",  # gunicorn.conf.py turns it on in served processes
        "RECONCILE_MINUTES": 60,
        "RECOMPUTE_PROCESSES": 0,  # processes a large recompute uses; 0: two where there are two cores
        "TIMEZONE": "Asia/Bishkek",  # how the web app shows times; stored times are UTC
        # How many reverse proxies in a row stand in front of us, whose X-Forwarded-For/-Proto/
        # -Host we believe; 0: none, so no client can pass for another address or for HTTPS.
        "TRUSTED_PROXIES": 0,
        # Who rebuilds records and indicators after an upload (see fieldsync.pipeline):
        # "inline" here, "process" under gunicorn (gunicorn.conf.py), or "thread".
        "DERIVE": "inline",
    }
    config_file = instance_path / "config.toml"
    if config_file.exists():
        with config_file.open("rb") as fh:
            for key, value in tomllib.load(fh).items():
                if key.upper() in ENV_KEYS:
                    settings[key.upper()] = value
    for key, cast in ENV_KEYS.items():
        raw = os.environ.get(f"FIELDSYNC_{key}")
        if raw not in (None, ""):
            settings[key] = cast(raw)
    settings.update(overrides or {})
    if settings["BASE_URL"]:
        settings["BASE_URL"] = settings["BASE_URL"].rstrip("/")
    return settings


def ensure_secret_key(instance_path: Path) -> str:
    """Read the instance's secret key, creating it (mode 0600) the first time."""
    instance_path.mkdir(parents=True, exist_ok=True)
    key_file = instance_path / "secret_key"
    if not key_file.exists():
        # O_EXCL: two workers starting together must not overwrite each other's key.
        try:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
    return key_file.read_text().strip()
