"""Entry point for the Pulumi CLI (`pulumi preview` in the repo): Pulumi.yaml's `main`.

The environment comes from stack config `tap:env` (set by tap's pulumi engine, or by hand with
`pulumi config set tap:env dev`); overrides from `tap:overrides` (a JSON list of key=value);
an AWS-compatible endpoint instead of AWS from `tap:endpoint` (set from AWS_ENDPOINT_URL).
"""
import json

import pulumi

from tap_lib.config import load_settings
from tap_lib.program.entry import define_stack

_cfg = pulumi.Config("tap")
define_stack(load_settings(_cfg.require("env"), json.loads(_cfg.get("overrides") or "[]")),
             endpoint=_cfg.get("endpoint") or None)
