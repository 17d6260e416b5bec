"""A documented check, not a test: `tap lab` serving the preview notebook, seen by a browser.

Starts a throwaway sandbox and a `tap lab` session for dev (tap_lib.lab), runs the session's
preview notebook in its folder with nbclient (as JupyterLab's "Run All" would), then points
headless Chromium at JupyterLab and saves a screenshot. Needs Debian's chromium (a test-only
tool PyPI cannot provide: `apt-get install chromium`); the README says so.

    .venv/bin/python scripts/lab_screenshot.py [OUT.png]
"""
from __future__ import annotations

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

from tap_lib.lab import create_session, lab_command  # noqa: E402
from tap_lib.localdb import free_port  # noqa: E402


def main(out: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("no chromium on PATH: apt-get install chromium (test-only)")
    with notebook_sandbox():
        import nbformat
        from nbclient import NotebookClient

        folder = create_session("dev", "sandbox")
        notebook = folder / "preview.ipynb"
        nb = nbformat.read(notebook, as_version=4)
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(folder)}}).execute()
        nbformat.write(nb, notebook)
        port, token = free_port(), secrets.token_hex(16)
        lab = subprocess.Popen(lab_command(folder, port) + [f"--IdentityProvider.token={token}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}/lab/tree/preview.ipynb?token={token}"
            for _ in range(60):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/api?token={token}", timeout=2)
                    break
                except OSError:
                    time.sleep(1)
            with tempfile.TemporaryDirectory() as profile:
                subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                                "--disable-quic", "--no-first-run",
                                "--disable-background-networking", "--disable-component-update",
                                "--disable-sync", f"--user-data-dir={profile}",
                                "--window-size=1400,1800", "--virtual-time-budget=20000",
                                f"--screenshot={out}", url],
                               check=True, timeout=180, capture_output=True)
        finally:
            lab.terminate()
            lab.wait(timeout=20)
    print(f"screenshot: {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "lab-preview.png").resolve())
