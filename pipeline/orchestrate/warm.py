"""A warm start for stage processes: torch, MLflow and friends imported once, forked per stage.

On the quick profile a stage instance trains for a second or two, but a fresh Python
process spends ~5 s importing torch, MLflow (with SQLAlchemy and alembic), pandas and
matplotlib. ``python -m pipeline.tools.parallel`` (``make repro``) therefore starts this
server, which imports those libraries once and then waits on a Unix socket. DVC still
runs every stage's own command (``python -m stages.train ...``); ``stages/__init__.py``
calls :func:`delegate`, which, when ``ILKD_WARM_SOCKET`` names a server, hands the command
line, working directory, environment and the process's stdin/stdout/stderr to the server
and exits with the status the stage had there. The server forks a child that runs the
stage module exactly as ``python -m`` would, in the caller's directory and environment.

What stays honest:

* Project code is never preloaded: each child imports ``pipeline``/``stages`` from disk,
  so an edit made while a repro runs is seen as a fresh process would see it. Only
  third-party libraries are shared.
* Nothing runs in the server but imports: no torch op, no CUDA, no OpenMP pool, no MLflow
  store, so a child starts as a fresh process would (CUDA_VISIBLE_DEVICES and the thread
  count are the child's own; tests/system/test_warm.py checks byte-identical metrics).
* Without the server (plain ``dvc repro``, ``dvc exp run``, a cluster worker) or when it
  cannot be reached, the stage runs in its own process as before.
* A signal to the stage's process (Ctrl-C, DVC stopping) is forwarded to the child, so
  it checkpoints and exits as it would cold; if the caller dies, the child is stopped. If
  the runner that started the server dies, the server takes no new stage and exits when
  the running ones end: each is stopped through its caller (``pipeline/orchestrate/guard.py``),
  once, so that it can checkpoint and record its MLflow run as KILLED.

The server itself (preloading, forking a child per stage, relaying stops) is
:mod:`pipeline.orchestrate.forkserver`; this module is what the stage's process and the
runner call. Neither is a dependency of any stage: it decides where a stage's
code runs, not what it computes (as DVC itself is not a dependency).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.orchestrate.protocol import HEADER

ENV = "ILKD_WARM_SOCKET"


# ---- client side: runs in `python -m stages.X` before anything heavy is imported

def _stage_command() -> tuple[str, list[str]] | None:
    """(module, args) when this process is ``python [opts] -m stages.<x> args``."""
    argv = sys.orig_argv
    if "-m" not in argv:
        return None
    at = argv.index("-m")
    if at + 1 >= len(argv) or not argv[at + 1].startswith("stages."):
        return None
    return argv[at + 1], argv[at + 2:]


def delegate() -> None:
    """Run this stage command on the warm server named by ``ILKD_WARM_SOCKET`` and exit
    with its status; return (run here, cold) when there is none or it cannot be reached."""
    path = os.environ.get(ENV)
    command = _stage_command()
    if not path or command is None:
        return
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(path)
    except OSError as exc:
        print(f"[warm] {ENV}={path} unreachable ({exc}); starting cold", file=sys.stderr)
        return
    module, args = command
    payload = json.dumps({"module": module, "args": args, "cwd": os.getcwd(),
                          "env": dict(os.environ)}).encode()
    message = HEADER.pack(len(payload)) + payload
    try:  # the descriptors travel with the first bytes; a large environment may need more sends
        sent = socket.send_fds(conn, [message], [0, 1, 2])
        conn.sendall(message[sent:])
    except OSError as exc:  # e.g. a closed stdin: nothing to hand over, so run here
        print(f"[warm] could not hand over {module} ({exc}); starting cold", file=sys.stderr)
        conn.close()
        return

    def forward(signum, frame):
        conn.sendall(b"I" if signum == signal.SIGINT else b"T")

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    status = b""
    while len(status) < HEADER.size:
        chunk = conn.recv(HEADER.size - len(status))
        if not chunk:
            print(f"[warm] the server at {path} went away before {module} finished",
                  file=sys.stderr)
            os._exit(1)
        status += chunk
    os._exit(HEADER.unpack(status)[0])


class WarmServer:
    """A server process, started at once; :meth:`env` waits until it accepts callers.

    Started before DVC plans the run, its imports (several seconds) overlap the planning;
    callers that arrive while it still imports wait in its backlog, as with the block below.
    """

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="ilkd-warm-")  # short: socket paths max ~100
        self.path = str(Path(self.folder) / "socket")
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline.orchestrate.warm", "serve",
                                      self.path], start_new_session=True)  # Ctrl-C reaches
        # stages through their callers

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (or os.environ) plus ``ILKD_WARM_SOCKET``; without it if the server died."""
        deadline = time.monotonic() + 30
        while (not os.path.exists(self.path) and self.proc.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.02)
        base = dict(os.environ if base is None else base)
        return {**base, ENV: self.path} if os.path.exists(self.path) else base

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def warm_server(env: dict[str, str] | None = None) -> Iterator[dict[str, str]]:
    """Start a server for the duration of the block; yields an environment that names it
    (``env`` or os.environ, plus ``ILKD_WARM_SOCKET``). The server stops at the end."""
    server = WarmServer()
    try:
        yield server.env(env)
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve on a Unix socket path").add_argument("path")
    run_p = sub.add_parser("run", help="run a command (e.g. dvc repro) with a warm server")
    run_p.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "serve":
        from pipeline.orchestrate.forkserver import serve

        serve(args.path)
        return
    with warm_server() as env:
        sys.exit(subprocess.run(args.cmd, env=env).returncode)


if __name__ == "__main__":
    main()
