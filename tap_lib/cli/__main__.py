"""`python -m tap_lib.cli`: the same as the `tap` script."""
import sys

from . import main

sys.exit(main())
