"""A launcher process for a test: started on a short socket path, stopped and its directory removed after."""
import contextlib
import os
import shutil
import tempfile

from neurox.runtime import start_launcher


@contextlib.contextmanager
def running_launcher():
    """``(socket path, launcher process)`` of a launcher that may start ``workers``' targets."""
    run_dir = tempfile.mkdtemp(prefix="nx-test-", dir="/tmp")  # short: a unix socket path has 108 bytes
    path = os.path.join(run_dir, "launcher.sock")
    proc = start_launcher(path, ("workers",))
    try:
        yield path, proc
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(run_dir, ignore_errors=True)
