"""Drive a real JupyterLab in headless Chromium: a server and a page, both cleaned up.

Generic on purpose (no lanepar knowledge), so every browser test starts JupyterLab the same
way. Facts behind the flags are in /work/shared/JUPYTER-TESTING.md: Playwright's own browser
download is blocked here, so the Debian Chromium is used; the "Jupyter news" pop-up would cover
the page, so it is silenced through a private user-settings directory rather than by writing
into the shared environment.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/lib/chromium/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]
_NO_NEWS = {"fetchNews": "false", "checkForUpdates": False}
#: This checkout's built JupyterLab extension (``cd extension && jlpm build:prod``).
LABEXTENSION = Path(__file__).resolve().parent.parent / "lanepar" / "labextension"
EXTENSION_NAME = "lanepar-jupyterlab"


def browser_available() -> bool:
    """True when both Chromium and Playwright are usable (tests skip otherwise)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return os.access(CHROMIUM, os.X_OK)


@dataclass(frozen=True)
class LabServer:
    url: str
    token: str
    root: Path
    app: str = "lab"

    def page_url(self, path: str) -> str:
        """URL opening ``path`` in this front end (JupyterLab's /lab/tree, Notebook 7's
        /notebooks)."""
        if self.app == "notebook":
            return f"{self.url}/notebooks/{path}?token={self.token}"
        return self.lab_url(path)

    def lab_url(self, path: str = "") -> str:
        """URL of the JupyterLab page, opening ``path`` (relative to root) when given."""
        tree = f"/tree/{path}" if path else ""
        return f"{self.url}/lab{tree}?token={self.token}"

    def api(self, path: str, method: str = "GET") -> Any:
        req = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _extension_env(state: Path, extension: bool) -> dict[str, str]:
    """The server's environment: JupyterLab finds *this checkout's* lanepar extension first (a
    private data dir linking it, ahead of whatever is installed), or none at all when
    ``extension`` is false (disabled in a private config dir), never touching the global one."""
    env = dict(os.environ)
    data = state / "data"
    (data / "labextensions").mkdir(parents=True)
    if LABEXTENSION.is_dir():
        (data / "labextensions" / EXTENSION_NAME).symlink_to(LABEXTENSION)
    env["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(data), env.get("JUPYTER_PATH")) if p)
    if not extension:
        config = state / "config"
        (config / "labconfig").mkdir(parents=True)
        page = {"disabledExtensions": {EXTENSION_NAME: True}}
        (config / "labconfig" / "page_config.json").write_text(json.dumps(page))
        env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(
            p for p in (str(config), env.get("JUPYTER_CONFIG_PATH")) if p
        )
    return env


@contextmanager
def jupyter_lab(
    root_dir: Path, *, startup_timeout: float = 60.0, app: str = "lab", extension: bool = True
) -> Iterator[LabServer]:
    """Run ``jupyter lab`` (or Notebook 7 with ``app="notebook"``) headless on a free port
    serving ``root_dir``, with this checkout's lanepar extension (or, ``extension=False``, with
    it disabled); stop it afterwards."""
    port = _free_port()
    token = secrets.token_hex(16)
    state = Path(tempfile.mkdtemp(prefix="lanepar-lab-"))
    env = _extension_env(state, extension)
    settings = state / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    if app == "lab":  # Notebook 7 has no news pop-up, and trips over a settings file for it
        (settings / "notification.jupyterlab-settings").write_text(json.dumps(_NO_NEWS))
    module, cls = (
        ("notebook", "JupyterNotebookApp") if app == "notebook" else ("jupyterlab", "LabApp")
    )
    cmd = [
        sys.executable,
        "-m",
        module,
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}",
        f"--{cls}.expose_app_in_browser=True",
        f"--{cls}.workspaces_dir={state / 'workspaces'}",
        f"--{cls}.user_settings_dir={state / 'settings'}",
        "--ServerApp.log_level=DEBUG",  # for the line that says it listens (_READY)
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    server = LabServer(f"http://127.0.0.1:{port}", token, root_dir, app)
    log = state / "server.log"
    ready = threading.Event()
    # the server's output is read as it comes (a full pipe would block the server), kept for a
    # failure message, and says when it listens: no polling of /api/status with sleeps
    pump = threading.Thread(target=_pump, args=(proc, log, ready), daemon=True)
    pump.start()
    try:
        if not ready.wait(startup_timeout):
            raise TimeoutError(f"jupyter lab did not start: {log.read_text(errors='replace')}")
        if proc.poll() is not None:
            pump.join()
            raise RuntimeError(f"jupyter lab exited: {log.read_text(errors='replace')}")
        server.api("/api/status")  # listening since it said so: one request, no retries
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        pump.join()
        shutil.rmtree(state, ignore_errors=True)


#: What Jupyter Server logs (at debug level) once its socket listens. Not "is running at:",
#: which comes before: the socket is bound by the first callback of the event loop, and the
#: extensions are started (each saying so) by a callback queued after it.
_READY = b"extension was successfully started"


def _pump(proc: subprocess.Popen[bytes], log: Path, ready: threading.Event) -> None:
    """Copy the server's output to ``log``; set ``ready`` when it says it listens, or when it
    exits (the caller then finds ``proc`` ended)."""
    assert proc.stdout is not None
    with proc.stdout, open(log, "wb") as out:
        for line in proc.stdout:
            out.write(line)
            out.flush()
            if _READY in line:
                ready.set()
    ready.set()


@contextmanager
def chromium_page(width: int = 1400, height: int = 900) -> Iterator[Any]:
    """A Playwright page in headless Debian Chromium; yields ``playwright.sync_api.Page``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()
