"""Open the MLflow UI on this project's runs (``make ui``), or screenshot it (``make ui-shot``).

    python -m pipeline.tools.ui                      # serves on :5000, prints the runs-table URL
    python -m pipeline.tools.ui --shot docs/mlflow-runs.png   # headless Chromium picture

The printed URL opens the current experiment's runs table in MLflow's model-training
view (``workflowType=machine_learning``); without it MLflow 3 may open its GenAI view.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from pipeline.core.cli import main as cli_main
from pipeline.core.config import load_params
from pipeline.core.errors import ConfigError, TrackingError
from pipeline.core.store import experiment_name, repo_root, resolve_tracking_uri


def experiment_id(uri: str, name: str) -> str:
    from mlflow.tracking import MlflowClient

    found = MlflowClient(tracking_uri=uri).get_experiment_by_name(name)
    if found is None:
        raise TrackingError(f"{uri}: no experiment '{name}' yet; run `make repro` first")
    return found.experiment_id


def runs_url(port: int, experiment: str, search: str = "") -> str:
    from urllib.parse import quote

    query = "?workflowType=machine_learning"
    if search:
        query += f"&searchFilter={quote(search)}"
    return f"http://127.0.0.1:{port}/#/experiments/{experiment}/runs{query}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(uri: str, port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_until_up(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return
        except OSError:
            time.sleep(1)
    raise TrackingError(f"mlflow ui did not answer on port {port} within {timeout:.0f}s")


def screenshot(url: str, out: Path, budget_ms: int = 20000) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise ConfigError("chromium not found: install Debian's `chromium` package")
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", "--window-size=1900,1000",
                    f"--virtual-time-budget={budget_ms}", f"--screenshot={out.resolve()}", url],
                   check=True, capture_output=True, timeout=180)


def entry(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--shot", type=Path, help="save a PNG of the runs table and exit")
    parser.add_argument("--search", default="", help="an MLflow run filter for the page, "
                        "e.g. \"tags.ilkd_role = 'seed'\" (the training runs, not parents)")
    args = parser.parse_args(argv)
    params = load_params(repo_root() / "params.yaml")
    uri = resolve_tracking_uri()
    experiment = experiment_id(uri, experiment_name(params.profile, params.data.name))
    port = free_port() if args.shot else args.port
    url = runs_url(port, experiment, args.search)
    server = serve(uri, port)
    try:
        if args.shot:
            wait_until_up(port)
            screenshot(url, args.shot)
            print(f"[ilkd] {args.shot}: the runs table of {url}")
            return
        print(f"[ilkd] MLflow UI: {url}   (Ctrl-C stops it)", flush=True)
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    cli_main(entry)
