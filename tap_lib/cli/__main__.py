"""`python -m tap_lib.cli`: the same as the `tap` script."""
from . import run

run()
