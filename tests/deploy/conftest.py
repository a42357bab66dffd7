"""`make deploy` against a moto server: the stages are rendered into a temporary copy of the
project (the checkout's .chalice/ is never touched)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from infra import deploy
from infra.local.aws import DUMMY_KEY, _no_expected_unsupported_warnings
from tests.support.moto_server import moto_endpoint  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parents[2]
REGION = "eu-west-1"   # not moto's default: a region that leaked from a default would show


def project_copy(where: Path) -> Path:
    """What `chalice deploy` packages (app.py, chalicelib/), beside an empty requirements.txt:
    `chalice package` would otherwise download the Lambda's dependencies, which the CloudFormation
    it writes does not depend on."""
    where.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "app.py", where / "app.py")
    shutil.copytree(ROOT / "chalicelib", where / "chalicelib", ignore=shutil.ignore_patterns("__pycache__"))
    (where / "requirements.txt").write_text("")
    return where


def chalice_deployed(project: Path, stage: str, api_id: str, region: str) -> Path:
    """What `chalice deploy` records of a stage it deployed (.chalice/deployed/<stage>.json): its REST API, whose URL
    `make deploy` prints the webhook URLs from. For the tests' stand-ins of `chalice deploy` (no Lambda in moto)."""
    state = deploy.state_path(project, stage)
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"schema_version": "2.0", "backend": "api", "resources": [{
        "name": "rest_api", "resource_type": "rest_api", "rest_api_id": api_id,
        "rest_api_url": f"https://{api_id}.execute-api.{region}.amazonaws.com/api/"}]}))
    return state


def aws_on(endpoint: str, region: str = REGION) -> deploy.Aws:
    session = boto3.session.Session(aws_access_key_id=DUMMY_KEY, aws_secret_access_key=DUMMY_KEY,
                                    region_name=region)
    return deploy.Aws(session, endpoint_url=endpoint)


def aws_env(endpoint: str) -> dict[str, str]:
    """The environment of a process that talks to the moto server as the operator would to AWS."""
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": DUMMY_KEY, "AWS_SECRET_ACCESS_KEY": DUMMY_KEY}


def run_as_deployed(code: str, stage: str = "prod") -> str:
    """What `code` prints, run as in a fresh Lambda container of the stage: the base config's variables, and
    POWERTOOLS_SERVICE_NAME the stage's Prefix, as `make deploy` sets it."""
    base = json.loads(deploy.BASE_CONFIG.read_text())
    env = {"PATH": "/usr/bin:/bin", **base["environment_variables"],
           "POWERTOOLS_SERVICE_NAME": deploy.stage_prefix(stage)}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=True).stdout


@dataclass
class Rendered:
    project: Path
    endpoint: str
    targets: dict          # stage -> infra.deploy.Target
    lines: list            # what `make deploy` printed

    def config(self) -> dict:
        return json.loads((self.project / ".chalice" / "config.json").read_text())

    def policy(self, stage: str, function: str) -> dict:
        return json.loads((self.project / ".chalice" / deploy.policy_file(stage, function)).read_text())


@pytest.fixture(autouse=True)
def _quiet_moto():
    """moto's CloudFormation warns about the resource types it cannot create (the alarm, ...)."""
    with _no_expected_unsupported_warnings():
        yield


@pytest.fixture(scope="session")
def rendered(moto_endpoint, tmp_path_factory) -> Rendered:
    """`make deploy STAGE=prod RENDER_ONLY=1`, then the same for dev, into one project copy."""
    project = project_copy(tmp_path_factory.mktemp("rendered") / "project")
    lines: list[str] = []
    with _no_expected_unsupported_warnings():
        targets = {stage: deploy.deploy(stage, project_dir=project, render_only=True, aws=aws_on(moto_endpoint),
                                        say=lines.append, sleep=_no_sleep)["target"]
                   for stage in ("prod", "dev")}
    return Rendered(project, moto_endpoint, targets, lines)


def _no_sleep(seconds: float) -> None:
    raise AssertionError("moto creates stacks at once: nothing should wait")
