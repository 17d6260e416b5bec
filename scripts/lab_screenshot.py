"""A documented check, not a test: `tap lab` serving the preview notebook, seen by a browser.

Starts a throwaway sandbox and a `tap lab` session for dev (tap_lib.lab), optionally deploys the
dev stack first (--deploy) and runs the session's preview notebook in its folder with nbclient
(as JupyterLab's "Run All" would; --as-opened shows the copy as the operator first sees it),
then points headless Chromium at JupyterLab and saves a small screenshot (a 64-colour PNG,
well under 150 KB). --folder shows an existing session folder instead of a new one (the
"before" picture of issue #20 was taken that way, from a session the old code had copied).
Needs Debian's chromium (a test-only tool PyPI cannot provide: `apt-get install chromium`).

    .venv/bin/python scripts/lab_screenshot.py OUT.png [--as-opened] [--deploy] [--folder DIR]
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "notebooks"))

from conftest import notebook_sandbox  # noqa: E402  (notebooks/conftest.py)

from tap_lib.lab import IPYTHON_DIR, create_session, lab_command  # noqa: E402
from tap_lib.localdb import free_port  # noqa: E402


def main(out: Path, as_opened: bool, deploy: bool, folder: Path | None) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("no chromium on PATH: apt-get install chromium (test-only)")
    with notebook_sandbox():
        import nbformat
        from nbclient import NotebookClient

        from tap_lib.engines.sandbox import server

        server.start()
        if deploy:
            from tap_lib.ops import stack as stack_ops

            stack_ops.deploy("dev", "sandbox")
        folder = folder or create_session("dev", "sandbox")
        notebook = folder / "preview.ipynb"
        if not as_opened:
            nb = nbformat.read(notebook, as_version=4)
            NotebookClient(nb, timeout=600, kernel_name="python3",
                           resources={"metadata": {"path": str(folder)}}).execute()
            nbformat.write(nb, notebook)
        port, token = free_port(), secrets.token_hex(16)

        settings = Path(tempfile.mkdtemp(prefix="tap-lab-settings-"))
        news = settings / "@jupyterlab" / "apputils-extension"
        news.mkdir(parents=True)  # no "get notified about Jupyter news?" over the picture
        (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
        env = {**os.environ, "IPYTHONDIR": str(folder / IPYTHON_DIR),
               "JUPYTERLAB_SETTINGS_DIR": str(settings)}
        lab = subprocess.Popen(lab_command(folder, port) + [f"--IdentityProvider.token={token}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            url = f"http://127.0.0.1:{port}/lab/tree/preview.ipynb?token={token}"
            for _ in range(60):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/api?token={token}", timeout=2)
                    break
                except OSError:
                    time.sleep(1)
            with tempfile.TemporaryDirectory() as profile:
                raw = Path(profile) / "raw.png"
                subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                                "--disable-quic", "--no-first-run",
                                "--disable-background-networking", "--disable-component-update",
                                "--disable-sync", f"--user-data-dir={profile}",
                                "--window-size=1200,1400", "--virtual-time-budget=20000",
                                f"--screenshot={raw}", url],
                               check=True, timeout=180, capture_output=True)
                shrink(raw, out)
        finally:
            lab.terminate()
            lab.wait(timeout=20)
            shutil.rmtree(settings, ignore_errors=True)
    print(f"screenshot: {out} ({out.stat().st_size} bytes)")


def shrink(raw: Path, out: Path) -> None:
    """64 colours are plenty for a UI picture: a tenth of the bytes."""
    from PIL import Image

    with Image.open(raw) as image:
        image.convert("RGB").quantize(colors=64).save(out, optimize=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", nargs="?", default="lab-preview.png")
    parser.add_argument("--as-opened", action="store_true")
    parser.add_argument("--deploy", action="store_true")
    parser.add_argument("--folder", type=Path)
    args = parser.parse_args()
    main(Path(args.out).resolve(), args.as_opened, args.deploy, args.folder)
