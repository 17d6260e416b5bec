"""The installed version, in a module of its own: records and the trail name it, and a module
inside the package reading it from here does not import the package's face (tap_lib/__init__,
which hands out the Stack handle from ops/ and so stands above every layer)."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tap-runbook")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"
