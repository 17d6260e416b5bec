"""Policy exceptions in an environment file: a control the environment deliberately does not
meet, with who decided, why and until when. Validated like every other setting (config.py);
judged by preflight (ops/preflight/exceptions.py) and applied by preflight and verify.
"""
from __future__ import annotations

import datetime
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator


class PolicyException(BaseModel):
    """A control this environment deliberately does not meet, said in its file: who owns the
    decision, why, and until when (preflight and verify then show the finding as `excepted`,
    never as pass; an expired one, or one naming no known control, is a preflight error).
    `resource` is a logical name as the program declares it, with or without the stack suffix
    (`aurora-cluster` covers aurora-cluster-dev and aurora-cluster-pr6329), or `all`."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    control: StrictStr = Field(min_length=1, max_length=80)
    resource: StrictStr = Field(min_length=1, max_length=128)
    owner: StrictStr = Field(min_length=1, max_length=128)
    reason: StrictStr = Field(min_length=20, max_length=1000,
                              description="why, in words a reviewer can judge")
    expires: datetime.date

    @field_validator("expires", mode="before")
    @classmethod
    def _date(cls, v: Any) -> datetime.date:
        # YAML reads an unquoted 2027-06-30 as a date; a quoted one (or --set) arrives as text.
        if isinstance(v, datetime.datetime) or not isinstance(v, (str, datetime.date)):
            raise ValueError("must be an ISO date, e.g. 2027-06-30")
        if isinstance(v, str):
            try:
                return datetime.date.fromisoformat(v)
            except ValueError:
                raise ValueError("must be an ISO date, e.g. 2027-06-30") from None
        return v

    @field_validator("resource")
    @classmethod
    def _resource(cls, v: str) -> str:
        if v != "all" and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", v):
            raise ValueError("must be a logical resource name (letters, digits, '-') or 'all'")
        return v

    def covers(self, control: str, resource: str, suffix: str) -> bool:
        """Does it except `control` on the logical resource `resource` of stack `suffix`?"""
        return self.control == control and (
            self.resource in ("all", resource) or f"{self.resource}-{suffix}" == resource)

    def expired(self, today: datetime.date | None = None) -> bool:
        return self.expires < (today or utc_today())


def utc_today() -> datetime.date:
    return datetime.datetime.now(datetime.timezone.utc).date()
