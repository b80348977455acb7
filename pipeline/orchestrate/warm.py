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

This module is deliberately not a dependency of any stage: it decides where a stage's
code runs, not what it computes (as DVC itself is not a dependency).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ENV = "ILKD_WARM_SOCKET"
# what a training, tuning or aggregation stage imports from outside the project (measured
# with sys.modules before/after a run); a missing optional one is skipped. Not torchvision:
# only `prepare` imports it, for CIFAR, and its models alone take ~1 s to import
PRELOAD = (
    "numpy", "torch", "torch.nn.functional", "pydantic", "yaml", "tqdm",
    "pandas", "scipy.stats", "sklearn.datasets", "PIL.Image", "matplotlib.pyplot",
    "mlflow", "mlflow.tracking", "mlflow.pytorch", "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store", "alembic.runtime.migration",
    "alembic.script", "alembic.command",
)
_HEADER = struct.Struct("!I")
_SIGNALS = {b"I": signal.SIGINT, b"T": signal.SIGTERM}


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
    message = _HEADER.pack(len(payload)) + payload
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
    while len(status) < _HEADER.size:
        chunk = conn.recv(_HEADER.size - len(status))
        if not chunk:
            print(f"[warm] the server at {path} went away before {module} finished",
                  file=sys.stderr)
            os._exit(1)
        status += chunk
    os._exit(_HEADER.unpack(status)[0])


# ---- server side

def preload() -> list[str]:
    """Import the heavy third-party libraries; returns the ones that are not installed."""
    import matplotlib

    matplotlib.use("Agg")  # what every stage's figures use; no display here
    missing = []
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    try:  # logging a model checks its pinned requirements against a map of every installed
        # package to its modules, built by scanning site-packages (~1.1 s per process): once
        from mlflow.utils import requirements_utils

        requirements_utils._init_packages_to_modules_map()
    except (ImportError, AttributeError):  # another MLflow version: each stage builds its own
        pass
    return missing


def _recv_request(conn: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
    try:
        if len(data) < _HEADER.size:
            raise ConnectionError("short request")
        size = _HEADER.unpack(data[:_HEADER.size])[0]
        body = data[_HEADER.size:]
        while len(body) < size:
            chunk = conn.recv(size - len(body))
            if not chunk:
                raise ConnectionError("truncated request")
            body += chunk
        return json.loads(body), fds
    except BaseException:
        for fd in fds:  # the caller's stdout/stderr: held open here, its reader never sees EOF
            os.close(fd)
        raise


def _run_child(request: dict, fds: list[int]) -> int:
    """In the forked child: become the stage process and run its module as ``-m`` would."""
    import runpy

    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdout.reconfigure(line_buffering=os.isatty(1))
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.path[0] = request["cwd"]
    for name in [m for m in sys.modules if m.split(".")[0] in ("pipeline", "stages")]:
        del sys.modules[name]  # project code comes from the caller's tree, read now
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads and threads.isdigit():  # OpenMP read the server's value when torch loaded
        import torch

        torch.set_num_threads(int(threads))
    sys.argv = [request["module"], *request["args"]]
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        return 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException:  # what an uncaught exception does to a process
        traceback.print_exc()
        return 1


class Server:
    """Accept stage requests on ``path``; fork one child per request."""

    def __init__(self, path: str) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(64)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.children: dict[int, socket.socket] = {}  # pid -> the caller's connection
        self.stopping = False
        self.parent = os.getppid()

    def serve(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        while not (self.stopping and not self.children):
            for key, _ in self.selector.select(timeout=0.05):
                if key.fileobj is self.listener:
                    if not self.stopping:
                        self._accept()
                else:
                    self._from_caller(key.fileobj, key.data)
            self._reap()
            if not self.stopping and os.getppid() != self.parent:  # whoever started it died:
                self.stopping = True  # no new stage; each running one stays its caller's to stop
        self.listener.close()

    def _stop(self, signum, frame) -> None:
        self.stopping = True
        for pid in self.children:
            _kill(pid, signal.SIGTERM)

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        try:
            request, fds = _recv_request(conn)
        except (OSError, ValueError) as exc:
            print(f"[warm] bad request: {exc}", file=sys.stderr)
            conn.close()
            return
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: no server state survives into the stage
            code = 1
            try:
                signal.signal(signal.SIGINT, signal.default_int_handler)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                self.selector.close()
                self.listener.close()
                conn.close()
                for other in self.children.values():
                    other.close()
                code = _run_child(request, fds)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        for fd in fds:
            os.close(fd)
        self.children[pid] = conn
        self.selector.register(conn, selectors.EVENT_READ, data=pid)

    def _from_caller(self, conn: socket.socket, pid: int) -> None:
        try:
            data = conn.recv(16)
        except OSError:
            data = b""
        if not data:  # the caller died: its stage must not run on unobserved
            self.selector.unregister(conn)
            _kill(pid, signal.SIGTERM)
            return
        for byte in data:
            _kill(pid, _SIGNALS.get(bytes([byte]), signal.SIGTERM))

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            try:
                self.selector.unregister(conn)
            except (KeyError, ValueError):
                pass
            try:
                conn.sendall(_HEADER.pack(code if code >= 0 else 128 - code))
            except OSError:
                pass
            conn.close()


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def serve(path: str) -> None:
    server = Server(path)  # bound before preloading: early callers wait in the backlog
    missing = preload()
    if missing:
        print(f"[warm] not installed, imported by the stages themselves: {missing}",
              file=sys.stderr)
    server.serve()
    Path(path).unlink(missing_ok=True)
    try:  # its folder, unless the starter already removed it or keeps other files there
        Path(path).parent.rmdir()
    except OSError:
        pass


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
        serve(args.path)
        return
    with warm_server() as env:
        sys.exit(subprocess.run(args.cmd, env=env).returncode)


if __name__ == "__main__":
    main()
