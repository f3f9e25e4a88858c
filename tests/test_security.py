"""Credentials: rejected ones fail cleanly against a server that checks them, and real ones never leak.

The S3 server here enforces IAM (moto with INITIAL_NO_AUTH_ACTION_COUNT): the first few requests create a user, an
inline S3 policy and an access key; every later request must be signed with that key, as on MinIO or AWS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import _free_port, _wait_for_port

SETUP_REQUESTS = 3  # create_user, put_user_policy, create_access_key


class EnforcingS3:
    def __init__(self) -> None:
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_REQUESTS)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, self.proc)
        self.key_id, self.secret = self._create_key()
        self.client("s3").create_bucket(Bucket="leverplus")

    def client(self, service: str, secret: str | None = None):
        import boto3

        key_id, secret = (self.key_id, secret or self.secret) if hasattr(self, "key_id") else ("setup", "setup")
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
        )

    def _create_key(self) -> tuple[str, str]:
        iam = self.client("iam")
        iam.create_user(UserName="leverplus")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="leverplus", PolicyName="s3", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="leverplus")["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    def object_keys(self) -> list[str]:
        pages = self.client("s3").get_paginator("list_objects_v2").paginate(Bucket="leverplus")
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def enforcing_s3():
    server = EnforcingS3()
    yield server
    server.stop()


def _env(server: EnforcingS3, secret: str) -> dict[str, str]:
    """Credentials as a pod gets them: LEVERPLUS_STORE__* from the Secret; no AWS_* in the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEVERPLUS_", "AWS_"))}
    return env | {
        "LEVERPLUS_STORE__ENDPOINT_URL": server.endpoint,
        "LEVERPLUS_STORE__ACCESS_KEY_ID": server.key_id,
        "LEVERPLUS_STORE__SECRET_ACCESS_KEY": secret,
        "LEVERPLUS_STORE__MAX_ATTEMPTS": "2",
        "LEVERPLUS_LOG_FORMAT": "json",
    }


def _leverplus(*args: str, env: dict[str, str], cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "leverplus", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def test_wrong_credentials_fail_in_one_line_and_write_nothing(enforcing_s3: EnforcingS3, tmp_path: Path) -> None:
    wrong = "not-the-secret-" + enforcing_s3.secret[:4]
    out = "s3://leverplus/wrong-creds/datasets/synthetic"
    proc = _leverplus(
        "data", "synth", "--out", out, "--train", "3", "--val", "3", env=_env(enforcing_s3, wrong), cwd=tmp_path
    )
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("leverplus: error: ") and "credentials rejected (SignatureDoesNotMatch)" in last
    assert "s3://leverplus/wrong-creds/datasets/synthetic/" in last  # names what it was writing
    assert wrong not in proc.stderr + proc.stdout and enforcing_s3.secret not in proc.stderr + proc.stdout
    assert not [k for k in enforcing_s3.object_keys() if k.startswith("wrong-creds/")]

    # The same command with the right secret works: the server really checks.
    ok = _leverplus(
        "data",
        "synth",
        "--out",
        out,
        "--train",
        "3",
        "--val",
        "3",
        env=_env(enforcing_s3, enforcing_s3.secret),
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert any(k.startswith("wrong-creds/") for k in enforcing_s3.object_keys())


TINY = """\
data: {synth_train: 300, synth_val: 60}
pool: {size: 12}
rl: {target_new_queries: 12, prior_acceptance_rate: 0.25, shard_size: 24, rce_epochs: 1, grpo_epochs: 2}
sft: {anchors: 24, candidates: 6, epochs: 3}
eval: {num_questions: 30, shots: [1, 2], bootstrap_samples: 100}
"""


@pytest.mark.slow
def test_a_full_run_on_s3_never_writes_the_secret_anywhere(enforcing_s3: EnforcingS3, tmp_path: Path) -> None:
    """`leverplus run` end to end against the credential-checking server: every log line, every object in the
    bucket (reports, manifests, settings, checkpoints), the CLI's output, `config show` and the generated workflows
    are scanned for the secret and the key id."""
    (tmp_path / "tiny.yaml").write_text(TINY)
    env = _env(enforcing_s3, enforcing_s3.secret) | {"LEVERPLUS_STORE__URI": "s3://leverplus/runs-store"}
    proc = _leverplus(
        "run",
        "balanced-v3",
        "--profile",
        "embedded",
        "--config",
        "tiny.yaml",
        "--workers",
        "2",
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "s3://leverplus/runs-store/runs/run-0001/report/report.md"

    secrets = [enforcing_s3.secret.encode(), enforcing_s3.key_id.encode()]
    scanned = {"cli output": (proc.stdout + proc.stderr).encode()}
    scanned |= {str(p): p.read_bytes() for p in (tmp_path / "leverplus-logs").rglob("*") if p.is_file()}
    s3 = enforcing_s3.client("s3")
    keys = [k for k in enforcing_s3.object_keys() if k.startswith("runs-store/")]
    scanned |= {k: s3.get_object(Bucket="leverplus", Key=k)["Body"].read() for k in keys}
    shown = _leverplus("config", "show", env=env, cwd=tmp_path)
    scanned["config show"] = shown.stdout.encode()
    render = _leverplus("workflows", "render", "--out", str(tmp_path / "wf"), env=env, cwd=tmp_path)
    assert render.returncode == 0, render.stderr[-2000:]
    scanned |= {str(p): p.read_bytes() for p in (tmp_path / "wf").rglob("*.yaml")}

    assert any(k.endswith("report/report.html") for k in keys) and any(k.endswith(".safetensors") for k in keys)
    assert any("settings.yaml" in name for name in scanned) and len(scanned) > 40
    leaks = [name for name, data in scanned.items() if any(s in data for s in secrets)]
    assert leaks == []
    assert any(s in json.dumps(env).encode() for s in secrets)  # the scan can see a leak when there is one
    assert b"secret_access_key: '***'" in scanned["config show"]


@pytest.mark.slow
def test_credentials_given_with_set_reach_every_step(enforcing_s3: EnforcingS3, tmp_path: Path) -> None:
    """Issue 12 D3: keys given only with --set reach the step processes of `leverplus run`, which use the launcher's
    identity even with another default identity in the environment (a decoy this server rejects); the secret is in
    no file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEVERPLUS_", "AWS_"))}
    env |= {
        "AWS_ACCESS_KEY_ID": "AKIADECOYDEFAULT0000",
        "AWS_SECRET_ACCESS_KEY": "decoy",
        "LEVERPLUS_LOG_FORMAT": "json",
    }
    (tmp_path / "tiny.yaml").write_text(
        "data: {synth_train: 60, synth_val: 12}\npool: {size: 8}\nsft: {anchors: 6, candidates: 4, epochs: 1}\n"
    )
    args = ["run", "sft", "--profile", "embedded", "--config", "tiny.yaml", "--set", "store.uri=s3://leverplus/d3",
            "--set", f"store.endpoint_url={enforcing_s3.endpoint}", "--set", "store.max_attempts=2",
            "--set", f"store.access_key_id={enforcing_s3.key_id}",
            "--set", f"store.secret_access_key={enforcing_s3.secret}"]  # fmt: skip
    proc = _leverplus(*args, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "d3/runs/run-0001/checkpoints/sft/config.json" in enforcing_s3.object_keys()
    # Issue 22 item 10: neither the runner's overrides line nor a stage run by hand on the run prints them.
    stage = _leverplus("sft", "--run", "run-0001", *args[args.index("--set") :], env=env, cwd=tmp_path, timeout=300)
    assert stage.returncode == 0, stage.stderr[-2000:]
    assert "overrides from the command line" in proc.stderr and "using the settings recorded" in stage.stderr
    assert '"store.secret_access_key": "***"' in proc.stderr + stage.stderr
    s3 = enforcing_s3.client("s3")
    scanned = {"output": (proc.stdout + proc.stderr + stage.stdout + stage.stderr).encode()}
    scanned |= {str(p): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    keys = [k for k in enforcing_s3.object_keys() if k.startswith("d3/")]
    scanned |= {k: s3.get_object(Bucket="leverplus", Key=k)["Body"].read() for k in keys}
    assert "d3/runs/run-0001/run.json" in scanned and len(keys) > 5
    for secret in (enforcing_s3.secret, enforcing_s3.key_id):
        assert [name for name, data in scanned.items() if secret.encode() in data] == []
