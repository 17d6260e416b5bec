"""Where records are and how their bytes are read: ``<root>/<env>/<name>.ipynb`` in a local folder
or under an ``s3://bucket/prefix`` root (papermill reads and writes S3 natively). Folders whose
name starts with ``_`` (exports, pictures) hold no records."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..errors import RecordsUnwritable
from ..trail import is_remote, writing


def record_paths(root: str) -> list[str]:
    """Every record under the root: ``<env>/<name>.ipynb``, not in a ``_`` folder."""
    if is_remote(root):
        return [url for url, _ in s3_records(root)]
    found = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for env in os.scandir(root):
            if env.is_dir() and not env.name.startswith("_"):
                found += [f.path for f in os.scandir(env.path)
                          if f.name.endswith(".ipynb") and f.is_file()]
    return sorted(found)


def s3_records(root: str) -> list[tuple[str, str]]:
    """(url, key) of each record object under an s3:// root: its env folders are listed, not
    the ``_`` folders (the trail's and the seals' locked copies: records/locked.py)."""
    bucket, _, prefix = root.removeprefix("s3://").partition("/")
    prefix = f"{prefix}/" if prefix else ""
    paginator = s3().get_paginator("list_objects_v2")
    envs = [common["Prefix"]
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
            for common in page.get("CommonPrefixes", [])
            if not common["Prefix"][len(prefix):].startswith("_")]
    found = []
    for env in envs:
        for page in paginator.paginate(Bucket=bucket, Prefix=env):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(prefix):].split("/")
                if len(rel) == 2 and rel[1].endswith(".ipynb"):
                    found.append((f"s3://{bucket}/{obj['Key']}", obj["Key"]))
    return sorted(found)


def s3():
    import boto3

    return boto3.client("s3")


def split(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


def read_bytes(record: str) -> bytes:
    if is_remote(record):
        bucket, key = split(record)
        return s3().get_object(Bucket=bucket, Key=key)["Body"].read()
    return Path(record).read_bytes()


def env_of(record: str) -> str:
    return record.rstrip("/").rsplit("/", 2)[-2]


def root_of(record: str) -> str:
    return record.rsplit("/", 2)[0]


MAX_SAME_NAME = 1000   # stem-1000: past this, something is writing in a loop


def write_new(folder: Path, stem: str, suffix: str, data: bytes,
              limit: int = MAX_SAME_NAME) -> Path:
    """Create a file no one had: stem, stem-2, stem-3... up to stem-<limit>; RecordsUnwritable
    if it cannot (no permission, no space, or every one of those names taken)."""
    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(1, limit + 1):
            path = folder / f"{stem}{'' if n == 1 else f'-{n}'}{suffix}"
            try:
                with open(path, "xb") as fh:
                    fh.write(data)
                return path
            except FileExistsError:
                continue
    error = RecordsUnwritable(folder / f"{stem}{suffix}",
                              f"{stem}{suffix} and {stem}-2{suffix} to {stem}-{limit}{suffix} "
                              "all exist already")
    error.hint = f"move older files out of {folder}"
    raise error
