"""Browser libraries installed from npm (package.json), served from node_modules: never copied
into the repository. When `npm ci` has not been run, pages still work; charts are left out and
their tables remain."""
from flask import abort, send_from_directory

from ..config import PROJECT_ROOT
from . import bp

# Only these files, by name: node_modules is not browsable.
LIBRARIES = {"chart.js": ("chart.js/dist", "chart.umd.min.js")}


@bp.get("/assets/<name>")
def library(name):
    if name not in LIBRARIES:
        abort(404)
    folder, file_name = LIBRARIES[name]
    path = PROJECT_ROOT / "node_modules" / folder
    if not (path / file_name).is_file():
        abort(404)
    return send_from_directory(path, file_name, mimetype="text/javascript", max_age=86400)
