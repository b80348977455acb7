"""The warm server's process (:mod:`pipeline.orchestrate.warm` starts it and names it to the
stages): the heavy third-party libraries imported once, then a child forked per stage
request that runs the stage's module as ``python -m`` would, in the caller's directory,
environment and standard streams; a stop from the caller is relayed to its child."""

from __future__ import annotations

import importlib
import json
import os
import selectors
import signal
import socket
import sys
import traceback
from pathlib import Path

from pipeline.orchestrate.protocol import HEADER, SIGNAL_CODES

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
        if len(data) < HEADER.size:
            raise ConnectionError("short request")
        size = HEADER.unpack(data[:HEADER.size])[0]
        body = data[HEADER.size:]
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
            _kill(pid, SIGNAL_CODES.get(bytes([byte]), signal.SIGTERM))

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
                conn.sendall(HEADER.pack(code if code >= 0 else 128 - code))
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
