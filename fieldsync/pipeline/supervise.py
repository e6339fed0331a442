"""Keeps one derive worker alive: `python -m fieldsync.pipeline.supervise -- COMMAND…`.

gunicorn's master starts this small process (gunicorn.conf.py), and it starts the worker. It
is the worker's parent, not the master, because the master reaps every child it is signalled
about: a worker the master had reaped was, to a supervising thread in the master, a child that
never ended, and it was not started again. Here a worker that exits or is killed is started
again after a pause. SIGTERM (the master stopping) ends the worker with SIGTERM, then SIGKILL if
it does not go in time. If the master dies without a word (SIGKILL), this process notices its
parent changed and ends the worker with it.
"""
import os
import signal
import subprocess
import sys
import threading

SUPERVISED = "FIELDSYNC_DERIVE_SUPERVISED"
LOOK_EVERY = 0.5     # seconds between looks at the worker and at our own parent
RESTART_AFTER = 1.0  # seconds before a worker that ended is started again
STOP_WITHIN = 20.0   # seconds a worker has to finish its round when asked to stop


def supervise(command: list[str]) -> int:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    parent = os.getppid()
    env = {**os.environ, SUPERVISED: "1"}
    while not stop.is_set() and os.getppid() == parent:
        worker = subprocess.Popen(command, env=env)
        while worker.poll() is None and not stop.wait(LOOK_EVERY) and os.getppid() == parent:
            pass
        if worker.poll() is None:  # asked to stop, or the server is gone
            worker.terminate()
            try:
                worker.wait(STOP_WITHIN)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            break
        print(f"derive worker {worker.pid} exited ({worker.returncode}); starting another",
              file=sys.stderr, flush=True)
        stop.wait(RESTART_AFTER)
    return 0


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if arguments[:1] == ["--"]:
        arguments = arguments[1:]
    if not arguments:
        sys.exit("usage: python -m fieldsync.pipeline.supervise -- COMMAND…")
    sys.exit(supervise(arguments))
