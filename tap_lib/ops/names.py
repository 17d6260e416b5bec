"""The physical name of every resource of a stack, with its validity under AWS's rules."""
from __future__ import annotations

import pandas as pd

from ..engines.synth import MOCK_ACCOUNT
from ..naming import RULES, PhysicalNames


def account_for(target: str, region: str) -> str:
    """The account the bucket-name hash uses: the emulator's, or the caller's on AWS."""
    if target == "sandbox":
        return MOCK_ACCOUNT
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from ..errors import TargetUnreachable

    try:
        return boto3.client("sts", region_name=region).get_caller_identity()["Account"]
    except (BotoCoreError, ClientError) as exc:
        raise TargetUnreachable(f"cannot determine the AWS account: {exc}",
                                hint="configure AWS credentials (AWS_PROFILE or "
                                     "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)") from None


def names_table(names: PhysicalNames) -> pd.DataFrame:
    rows = [{"resource": field, "kind": kind, "name": name,
             "valid": RULES[kind].is_valid(name),
             "problems": "; ".join(RULES[kind].problems(name))}
            for field, kind, name in names.items()]
    return pd.DataFrame(rows, columns=["resource", "kind", "name", "valid", "problems"])
