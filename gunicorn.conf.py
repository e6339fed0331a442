"""gunicorn settings for running FieldSync in production: `gunicorn -c gunicorn.conf.py app:app`.

Override any of these on the command line (`--workers 4`, `--bind 0.0.0.0:8000`).
"""
import multiprocessing
import os

bind = os.environ.get("FIELDSYNC_BIND", "0.0.0.0:5000")
# Threads per worker: ingest waits on fsync and the database, not the CPU.
workers = int(os.environ.get("FIELDSYNC_WORKERS", min(4, multiprocessing.cpu_count() + 1)))
threads = int(os.environ.get("FIELDSYNC_THREADS", 4))
worker_class = "gthread"
# Uploads over slow village links take long; never cut a device off mid-POST too early.
timeout = 120
graceful_timeout = 30
keepalive = 5
accesslog = "-"
errorlog = "-"
# Each worker opens its own database connections after fork.
preload_app = False
# gunicorn's control socket lives at one fixed path per user; two servers on one machine (a
# second installation, the tests) would fight over it, and FieldSync does not use it.
control_socket_disable = True
# Which proxy headers to believe is FieldSync's to decide (FIELDSYNC_TRUSTED_PROXIES, werkzeug's
# ProxyFix): gunicorn itself believes none, not even from 127.0.0.1, so a client that writes
# X-Forwarded-Proto: https cannot pass plain HTTP off as HTTPS.
forwarded_allow_ips = ""
secure_scheme_headers = {}
# Device tokens travel in URLs: keep them out of the access log.
logger_class = "fieldsync.serving.RedactingLogger"


def on_starting(server):
    # Threaded workers otherwise grow their memory arena by arena under a long mixed load
    # (see fieldsync.serving.limit_malloc_arenas); set in the master, inherited by every worker.
    from fieldsync.serving import limit_malloc_arenas
    limit_malloc_arenas(int(os.environ.get("FIELDSYNC_MALLOC_ARENAS", 2)))


def post_fork(server, worker):
    # Every worker runs the scheduler; a lease in the database lets one of them do each job.
    import os
    os.environ.setdefault("FIELDSYNC_SCHEDULER", "on")


# Derived work (records, indicators, the look-alike search) runs in a process of its own, started
# and kept alive by the master, at a lower priority: uploads never wait for it, nor share their
# CPU and GIL with it (fieldsync.pipeline). FIELDSYNC_DERIVE=thread brings back a derive thread
# in each serving process instead.
DERIVE = os.environ.get("FIELDSYNC_DERIVE") or "process"
raw_env = [f"FIELDSYNC_DERIVE={DERIVE}"]
_derive = None


def when_ready(server):
    global _derive
    if DERIVE != "process":
        return
    import subprocess
    import sys
    env = {**os.environ, "FIELDSYNC_DERIVE": "process", "FIELDSYNC_SCHEDULER": "off"}
    # A small supervisor process keeps the worker alive (fieldsync/pipeline/supervise.py says
    # why it is not a thread here). FieldSync's application is app.py's `app`, found from the
    # directory gunicorn runs in.
    _derive = subprocess.Popen([sys.executable, "-m", "fieldsync.pipeline.supervise", "--",
                                sys.executable, "-m", "flask", "--app", "app", "worker"], env=env, cwd=os.getcwd())
    server.log.info("derive worker supervised by process %s (FIELDSYNC_DERIVE=process)", _derive.pid)


def on_exit(server):
    if _derive is not None and _derive.poll() is None:
        _derive.terminate()
        try:
            _derive.wait(25)  # it gives the worker 20 s to finish its round
        except Exception:
            _derive.kill()
