"""The emulator's runtime file (``sandbox/server.json``): which process serves which port since
when, validated by a pydantic model. A damaged file is a StateCorrupt naming it, because
treating it as 'no server' would orphan a running one."""
from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ...errors import StateCorrupt


class Runtime(BaseModel):
    """The runtime file's content."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    pid: int = Field(gt=1)
    port: int = Field(ge=1, le=65535)
    started_at: datetime
    boot_id: str | None = None

    @field_validator("boot_id", mode="before")
    @classmethod
    def _boot_id_or_none(cls, value: Any) -> Any:
        return value if isinstance(value, str) else None   # only ever informative

    def to_json(self) -> str:
        return self.model_dump_json()


def read(path: Path) -> Runtime | None:
    """The runtime file, or None when there is none; StateCorrupt when it is damaged (torn,
    hand-edited, garbage)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise StateCorrupt(path, "is not UTF-8 text, so not tap's runtime record") from None
    except OSError as exc:
        raise StateCorrupt(path, f"cannot be read ({exc.strerror})") from None
    if not text.strip():
        raise StateCorrupt(path, "is empty")
    try:
        return Runtime.model_validate_json(text)
    except (ValidationError, ValueError, RecursionError) as exc:
        first = exc.errors()[0] if isinstance(exc, ValidationError) else None
        why = (f"{'.'.join(map(str, first['loc'])) or 'content'}: {first['msg']}" if first
               else f"{type(exc).__name__}: {exc}")
        raise StateCorrupt(path, f"is not tap's runtime record ({why[:120]})") from None


def write(path: Path, rt: Runtime) -> None:
    """Atomic (temp file + rename): a reader sees the old record or the new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(rt.to_json())
    os.replace(tmp, path)
