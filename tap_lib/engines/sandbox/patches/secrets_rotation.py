"""RotateSecret drives the rotation function (Secrets Manager User Guide, "How rotation works";
API Reference, "RotateSecret").

moto clears the rotation function when RotateSecret names none, and marks a new, empty version
AWSCURRENT whatever the function did. Secrets Manager instead:
- uses the function the secret already has when the request names none (an error if it has
  none: "No Lambda rotation function ARN is associated with this secret.");
- refuses a new rotation while an earlier one is unfinished (AWSPENDING on a version other than
  AWSCURRENT): "A previous rotation isn't complete. That rotation will be reattempted." — unless
  the request carries that rotation's token, which retries it;
- creates the new version (the token) labelled AWSPENDING, then invokes the function with
  createSecret, setSecret, testSecret and finishSecret in order, each through Lambda Invoke
  (patches.lambda_invoke), stopping at the first failed step;
- moves no label itself: finishSecret moves AWSCURRENT (UpdateSecretVersionStage puts
  AWSPREVIOUS on the old version), so a failed step leaves AWSCURRENT where it was and the
  rotation configuration as requested. The caller is not told of a failed step (on AWS the
  steps run after RotateSecret has answered): the function's log says so, and the AWSPENDING
  version stays for the retry;
- with RotateImmediately=false records the schedule only (the first rotation happens in the
  next window).
UpdateSecretVersionStage moving AWSCURRENT makes that version the one GetSecretValue returns
without a VersionId/VersionStage (moto keeps returning the old one).
DescribeSecret's VersionIdsToStages lists only versions that have a staging label ("Versions
that don't have staging labels are considered deprecated"); moto lists every version.
RDS-managed secrets (`rds!…`, "Password management with Amazon RDS and Secrets Manager") are
rotated by RDS itself, without a function: an immediate rotation stores a new random password
for the same user as AWSCURRENT (the old version becomes AWSPREVIOUS); moto would store an empty
version. The cluster's stand-in database takes the new password at once, as the cluster's
master does (standin.sync_masters_of).
"""
from __future__ import annotations

import json
import logging
import time

log = logging.getLogger(__name__)

STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
_original = None
_endpoint = ""


def install(endpoint: str) -> None:
    global _original, _endpoint
    _endpoint = endpoint
    from moto.secretsmanager.models import FakeSecret, SecretsManagerBackend

    _original = SecretsManagerBackend.rotate_secret
    SecretsManagerBackend.rotate_secret = rotate_secret
    FakeSecret._form_version_ids_to_stages = _labelled_versions
    move = SecretsManagerBackend.update_secret_version_stage

    def update_secret_version_stage(self, secret_id, version_stage, remove_from_version_id,
                                    move_to_version_id):
        result = move(self, secret_id, version_stage, remove_from_version_id,
                      move_to_version_id)
        if version_stage == "AWSCURRENT" and move_to_version_id:
            self.secrets[secret_id].set_default_version_id(move_to_version_id)
        return result

    SecretsManagerBackend.update_secret_version_stage = update_secret_version_stage


def _labelled_versions(self) -> dict[str, list[str]]:
    return {version_id: version["version_stages"] for version_id, version in self.versions.items()
            if version.get("version_stages")}


def _pending_elsewhere(secret) -> str | None:
    """The version of an unfinished rotation: AWSPENDING but not AWSCURRENT."""
    for version_id, version in secret.versions.items():
        stages = version.get("version_stages", [])
        if "AWSPENDING" in stages and "AWSCURRENT" not in stages:
            return version_id
    return None


def rotate_secret(self, secret_id: str, client_request_token: str | None = None,
                  rotation_lambda_arn: str | None = None,
                  rotation_rules: dict | None = None, rotate_immediately: bool = True) -> str:
    from moto.moto_api._internal import mock_random
    from moto.secretsmanager.exceptions import (
        InvalidParameterException,
        InvalidRequestException,
        ResourceNotFoundException,
    )
    from moto.secretsmanager.models import ReplicaSecret

    secret = self.secrets[secret_id] if self._is_valid_identifier(secret_id) else None
    if secret is None or isinstance(secret, ReplicaSecret) or secret.is_deleted():
        return _original(self, secret_id, client_request_token, rotation_lambda_arn,
                         rotation_rules, rotate_immediately)
    if not rotation_lambda_arn and secret.name.startswith("rds!"):
        return _rotate_like_rds(self, secret, client_request_token, rotation_rules,
                                rotate_immediately)
    arn = rotation_lambda_arn or secret.rotation_lambda_arn
    if not arn:
        raise InvalidRequestException(
            "No Lambda rotation function ARN is associated with this secret.")
    if len(arn) > 2048:
        raise InvalidParameterException("RotationLambdaARN must <= 2048 characters long.")
    days = (rotation_rules or {}).get("AutomaticallyAfterDays")
    if days is not None and not 1 <= int(days) <= 1000:
        raise InvalidParameterException(
            "RotationRules.AutomaticallyAfterDays must be within 1-1000.")
    from moto.awslambda.utils import get_backend

    try:
        function = get_backend(self.account_id, self.region_name).get_function(arn)
    except Exception:  # noqa: BLE001 - moto raises several kinds for an unknown function
        raise ResourceNotFoundException(f"Resource not found for ARN '{arn}'.") from None

    unfinished = _pending_elsewhere(secret)
    if unfinished is not None and rotate_immediately and client_request_token != unfinished:
        raise InvalidRequestException(
            "A previous rotation isn't complete. That rotation will be reattempted.")
    if client_request_token:
        self._client_request_token_validator(client_request_token)

    secret.rotation_lambda_arn = arn
    secret.rotation_enabled = True
    secret.rotation_requested = True
    if days is not None:
        secret.auto_rotate_after_days = int(days)
        secret.next_rotation_date = int(time.time()) + int(days) * 86400
    if not rotate_immediately:
        return secret.to_short_dict()

    token = client_request_token or str(mock_random.uuid4())
    if token not in secret.versions:
        secret.remove_version_stages_from_old_versions(["AWSPENDING"])
        secret.versions[token] = {"createdate": int(time.time()), "version_id": token,
                                  "version_stages": ["AWSPENDING"]}
    if _run_steps(function, secret.arn, token):
        secret.last_rotation_date = int(time.time())
    return secret.to_short_dict(version_id=token)


def _rotate_like_rds(self, secret, token, rotation_rules, rotate_immediately) -> str:
    """RDS's own rotation of the master secret: same user, new password, now."""
    from moto.moto_api._internal import mock_random

    from .rds import random_password

    if not rotate_immediately:  # the schedule only (moto's handling)
        return _original(self, secret.arn, token, None, rotation_rules, False)
    if token:
        self._client_request_token_validator(token)
    token = token or str(mock_random.uuid4())
    version = secret.versions.get(secret.default_version_id) or {}
    current = json.loads(version.get("secret_string") or "{}")
    self.put_secret_value(secret.arn, json.dumps({**current, "password": random_password()}),
                          None, token, ["AWSCURRENT"])    # moto moves AWSPREVIOUS
    days = (rotation_rules or {}).get("AutomaticallyAfterDays")
    if days is not None:
        secret.auto_rotate_after_days = int(days)
        secret.next_rotation_date = int(time.time()) + int(days) * 86400
    secret.rotation_enabled = True
    secret.last_rotation_date = int(time.time())
    _sync_stand_ins(secret.arn, self.region_name)
    return secret.to_short_dict(version_id=token)


def _sync_stand_ins(secret_arn: str, region: str) -> None:
    """The stand-in of the cluster whose master secret this is takes the new password now
    (through this emulator's own API, as every sync does). A failure leaves it to the next
    deploy, which syncs again; RDS's rotation itself has happened."""
    import boto3

    from ....aws import Clients
    from ..standin import sync_masters_of

    session = boto3.session.Session(aws_access_key_id="testing",
                                    aws_secret_access_key="testing", region_name=region)
    try:
        sync_masters_of(secret_arn, Clients(session, endpoint_url=_endpoint))
    except Exception as exc:  # noqa: BLE001 - the rotation stands; the next deploy syncs
        log.warning("the stand-in of %s keeps its old master password until the next deploy: "
                    "%s", secret_arn, type(exc).__name__)


def _run_steps(function, secret_arn: str, token: str) -> bool:
    """The four steps through Lambda Invoke; False at the first that fails."""
    from . import lambda_invoke

    for step in STEPS:
        result = lambda_invoke.run(function, {"Step": step, "SecretId": secret_arn,
                                              "ClientRequestToken": token})
        if result.error is not None:
            log.warning("rotation of %s stopped: %s failed (%s)", secret_arn, step,
                        result.error)
            return False
    return True
