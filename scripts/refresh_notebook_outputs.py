"""Refresh the reference outputs the committed notebooks carry for nbval.

Runs every runbook notebook in the order the test suite does (notebooks/conftest.py ORDER), on
the same kind of throwaway sandbox, with papermill on this interpreter, and copies each cell's
outputs back into the committed notebook. Sources, cell ids and the parameters cell stay as they
are; execution metadata (times) is dropped. Run it after changing a notebook or what it shows:

    .venv/bin/python scripts/refresh_notebook_outputs.py [NAME ...]

then review `git diff notebooks/` and run `pytest notebooks/`.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import nbformat
import papermill

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "notebooks"))

from conftest import ORDER, notebook_sandbox  # noqa: E402  (notebooks/conftest.py)

from tap_lib.ops.runbook import _this_interpreter_kernel_manager  # noqa: E402


# nbval skips the destroy notebook's guard cell (NBVAL_SKIP); papermill runs it, so confirm.
PARAMETERS = {"destroy": {"confirm": "TapStackdev"}}


def run(name: str, out: Path) -> None:
    papermill.execute_notebook(str(REPO / "notebooks" / f"{name}.ipynb"), str(out),
                               parameters=PARAMETERS.get(name, {}), kernel_name="python3",
                               kernel_manager_class=_this_interpreter_kernel_manager(),
                               progress_bar=False, cwd=str(REPO / "notebooks"))


def refresh(name: str, scratch: Path) -> None:
    source = REPO / "notebooks" / f"{name}.ipynb"
    out = scratch / f"{name}.ipynb"
    run(name, out)
    executed = nbformat.read(out, as_version=4)
    committed = nbformat.read(source, as_version=4)
    ran = [c for c in executed.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    assert len(ran) == len(committed.cells), f"{name}: cells changed while running"
    for mine, theirs in zip(committed.cells, ran):
        mine.metadata.pop("execution", None)
        mine.metadata.pop("papermill", None)
        if mine.cell_type == "code":
            mine.outputs = theirs.outputs
            mine.execution_count = theirs.execution_count
    committed.metadata.pop("papermill", None)
    nbformat.write(committed, source)
    print(f"refreshed {source.relative_to(REPO)}")


def main(names: list[str]) -> int:
    """Every notebook runs even when an earlier one failed (its error is printed and its
    committed outputs stay as they were), so one broken notebook does not keep the others
    stale; the exit status is 1 when any failed."""
    wanted = names or list(ORDER)
    failed = []
    with notebook_sandbox(), tempfile.TemporaryDirectory() as scratch:
        for name in ORDER:  # in runbook order: later notebooks need the stack earlier ones made
            if not (REPO / "notebooks" / f"{name}.ipynb").is_file():
                continue
            try:
                if name in wanted:
                    refresh(name, Path(scratch))
                else:
                    run(name, Path(scratch) / f"{name}.ipynb")
            except Exception as exc:  # noqa: BLE001 - said below, and in the exit status
                failed.append(name)
                print(f"FAILED {name}: {type(exc).__name__}: {str(exc)[-2000:]}", file=sys.stderr)
    if failed:
        print(f"not refreshed (failed): {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
