"""The `tap` kernelspec: notebooks executed by any Jupyter client (papermill in Airflow's own
virtualenv) run on the Python of the environment tap is installed in.

    .venv/bin/python -m tap_lib.airflow.kernel            # for this user
    .venv/bin/python -m tap_lib.airflow.kernel --prefix /srv/airflow/venv
    .venv/bin/python -m tap_lib.airflow.kernel --dir /tmp/kernels   # then JUPYTER_PATH=/tmp
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

KERNEL_NAME = "tap"


def kernel_dict(python: str | None = None) -> dict:
    """A kernel that is `python -m ipykernel_launcher` (this interpreter unless told)."""
    return {"argv": [python or sys.executable, "-m", "ipykernel_launcher", "-f",
                     "{connection_file}"],
            "display_name": "tap (Python 3)", "language": "python",
            "metadata": {"debugger": True}}


def install(name: str = KERNEL_NAME, *, user: bool = False, prefix: str | None = None,
            directory: str | Path | None = None, python: str | None = None) -> Path:
    """Write the kernelspec; returns its directory. `directory`: a `kernels/` folder of your
    own (Jupyter looks in `<JUPYTER_PATH>/kernels`); else Jupyter's user or prefix location."""
    spec = kernel_dict(python)
    if directory is not None:
        target = Path(directory) / name
        target.mkdir(parents=True, exist_ok=True)
        (target / "kernel.json").write_text(json.dumps(spec, indent=1))
        return target
    from jupyter_client.kernelspec import KernelSpecManager

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "kernel.json").write_text(json.dumps(spec, indent=1))
        return Path(KernelSpecManager().install_kernel_spec(
            tmp, name, user=user or (prefix is None), prefix=prefix))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tap_lib.airflow.kernel",
                                     description="install the `tap` Jupyter kernelspec")
    parser.add_argument("--name", default=KERNEL_NAME)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--prefix", help="an environment's prefix, e.g. Airflow's virtualenv")
    where.add_argument("--dir", help="a kernels/ directory of your own")
    args = parser.parse_args(argv)
    print(install(args.name, prefix=args.prefix, directory=args.dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
