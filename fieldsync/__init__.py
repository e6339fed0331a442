"""FieldSync: an offline-first field data collection server for NGO programmes.

`create_app()` builds the Flask app: settings, extensions, blueprints, error handling and CLI
commands. This module only wires; each room below owns one concern (see its docstring).
"""
from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import config
from .extensions import db, engine_options, install_sqlite_begin, migrate


def create_app(overrides: dict | None = None) -> Flask:
    overrides = dict(overrides or {})
    instance_path = Path(overrides.pop("INSTANCE_PATH", None) or config.instance_path_from_env())
    app = Flask(__name__, instance_path=str(instance_path), instance_relative_config=True)
    settings = config.load_settings(instance_path, overrides)
    app.config.update(
        SECRET_KEY=config.ensure_secret_key(instance_path),
        SQLALCHEMY_DATABASE_URI=settings["DATABASE_URL"],
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(settings["DATABASE_URL"]),
        MAX_CONTENT_LENGTH=settings["MAX_SUBMISSION_BYTES"] + config.MULTIPART_SLACK_BYTES,
        JSON_SORT_KEYS=False,
        FIELDSYNC=settings,
    )
    app.json.sort_keys = False
    app.json.ensure_ascii = False
    # X-Forwarded-* headers say who the client is and whether it used HTTPS only when a proxy
    # we were told about set them; anyone else could send them too. Only ProxyFix reads them.
    hops = settings["TRUSTED_PROXIES"]
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(config.PROJECT_ROOT / "migrations"))
    with app.app_context():
        install_sqlite_begin(db.engine)

    from . import httpkit
    # Ids in URLs stay within what every database's integer holds: a larger one is simply
    # not found (404), never an overflow deep in the driver.
    app.url_map.converters["int"] = httpkit.IdConverter
    from .api import bp as api_bp
    from .openrosa import bp as openrosa_bp

    httpkit.register(app)
    app.register_blueprint(openrosa_bp)
    app.register_blueprint(api_bp)

    from . import indicators
    indicators.init_app(app)

    from . import web
    web.init_app(app)

    from .cli import register as register_cli
    register_cli(app)

    if settings["SCHEDULER"] == "on":
        from .jobs import start_scheduler
        app.extensions["fieldsync.scheduler"] = start_scheduler(app)
    return app
