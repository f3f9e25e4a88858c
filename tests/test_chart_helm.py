"""The Helm chart rendered by a real helm (scripts/install_helm.sh puts one in .venv/bin), every object validated
strictly: core objects against Kubernetes' schemas, Argo objects against the strict schema from Hera's models. The
cluster guide's (docs/cluster.md) helm commands are rendered exactly as written."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from leverplus.argo import GPU_POD_PATCH, render_all
from tests.test_workflows import _strict_schema, semantic_errors

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "leverplus"
HELM = shutil.which("helm") or str(Path(sys.executable).parent / "helm")
pytestmark = pytest.mark.skipif(not Path(HELM).exists(), reason="no helm: run scripts/install_helm.sh (needs npm)")


def _helm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([HELM, *args], capture_output=True, text=True, timeout=120)


def _render(*flags: str) -> list[dict]:
    proc = _helm("template", "leverplus", str(CHART), "-n", "leverplus", *flags)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def _validate(objects: list[dict]) -> None:
    templates = {
        o["metadata"]["name"]: {p["name"] for p in o["spec"]["arguments"]["parameters"]}
        for o in objects
        if o["kind"] == "WorkflowTemplate"
    }
    for obj in objects:
        if obj["apiVersion"].startswith("argoproj.io/"):
            import jsonschema

            jsonschema.validate(obj, _strict_schema(obj["kind"]))
            assert semantic_errors(obj, templates) == [], obj["metadata"]["name"]
        else:
            kubernetes_validate.validate(obj, "1.32.0", strict=True)


def _readme_helm_commands() -> list[list[str]]:
    text = (ROOT / "docs" / "cluster.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = block.replace("\\\n", " ")
        commands += [shlex.split(line.split("#")[0]) for line in joined.splitlines() if line.startswith("helm ")]
    return commands


def test_helm_lint_passes() -> None:
    proc = _helm("lint", str(CHART))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_chart_renders_valid_objects_with_defaults_and_on_a_cpu_cluster() -> None:
    default = _render()
    assert sorted(o["kind"] for o in default) == [
        "ConfigMap",
        "ConfigMap",
        "ConfigMap",
        "PersistentVolumeClaim",
        "Role",
        "RoleBinding",
        "ServiceAccount",
        "WorkflowTemplate",
        "WorkflowTemplate",
        "WorkflowTemplate",
    ]
    _validate(default)
    generated = {
        doc["metadata"]["name"]: doc
        for doc in map(yaml.safe_load, render_all().values())
        if doc["kind"] == "WorkflowTemplate"
    }
    for template in (o for o in default if o["kind"] == "WorkflowTemplate"):
        assert template == generated[template["metadata"]["name"]]  # embedded verbatim: Helm ate no {{ }}

    cpu = _render("--set", "nightly.enabled=true", "--set", "nightly.gpu=false")
    _validate(cpu)
    cron = next(o for o in cpu if o["kind"] == "CronWorkflow")
    passed = {p["name"]: p["value"] for p in cron["spec"]["workflowSpec"]["arguments"]["parameters"]}
    assert passed["gpu-pod-patch"] == "{}" and passed["model-cache-claim"] == "leverplus-models"
    gpu = next(o for o in _render("--set", "nightly.enabled=true") if o["kind"] == "CronWorkflow")
    patch = next(p for p in gpu["spec"]["workflowSpec"]["arguments"]["parameters"] if p["name"] == "gpu-pod-patch")
    assert json.loads(patch["value"]) == json.loads(GPU_POD_PATCH)


def test_the_old_readme_command_fails_and_settings_reach_the_configmap() -> None:
    # `--set key='{}'` is parsed as a list by Helm, which the schema rejects; and `--set-json key={}` merges into the
    # default map and changes nothing: hence the boolean nightly.gpu.
    old = _helm("template", "x", str(CHART), "--set", "nightly.enabled=true", "--set", "nightly.gpuPodPatch={}")
    assert old.returncode != 0 and "gpuPodPatch" in old.stderr
    merged = _render("--set", "nightly.enabled=true", "--set-json", "nightly.gpuPodPatch={}")
    cron = next(o for o in merged if o["kind"] == "CronWorkflow")
    assert "nvidia.com/gpu" in json.dumps(cron["spec"]["workflowSpec"]["arguments"])
    settings = ("--set-string", "settings.LEVERPLUS_DATA__NAME=synthetic")
    objects = _render(*settings, "--set", "s3.storeUri=s3://b/p", "--set", "s3.endpoint=")
    data = next(o for o in objects if o["metadata"]["name"] == "leverplus-settings")["data"]
    assert data["LEVERPLUS_DATA__NAME"] == "synthetic" and data["LEVERPLUS_STORE__URI"] == "s3://b/p"
    assert data["LEVERPLUS_RL__SHARD_MINUTES"] == "20"  # scoring pods sized by time unless the user says otherwise
    assert "LEVERPLUS_STORE__ENDPOINT_URL" not in data  # empty endpoint: AWS


def test_the_readmes_helm_commands_render() -> None:
    commands = _readme_helm_commands()
    assert commands, "docs/cluster.md shows no helm command"
    for argv in commands:
        assert argv[:2] == ["helm", "install"]
        release, chart, flags = argv[2], argv[3], argv[4:]
        proc = _helm("template", release, str(ROOT / chart), *flags)
        assert proc.returncode == 0, f"{shlex.join(argv)}: {proc.stderr}"
        _validate([d for d in yaml.safe_load_all(proc.stdout) if d])


def test_k8s_is_the_kustomize_equivalent_of_the_chart() -> None:
    """Two install paths, never both: each creates the same application objects (RBAC once, the settings
    ConfigMap, the model cache claim); k8s/ adds only the laptop infrastructure (namespace, MinIO, bucket job)."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / "k8s")], capture_output=True, text=True, check=True)
    infrastructure = {("Namespace", "leverplus"), ("Deployment", "minio"), ("Service", "minio")}
    infrastructure.add(("Job", "create-bucket"))
    k8s = {(o["kind"], o["metadata"]["name"]) for o in yaml.safe_load_all(out.stdout) if o}
    chart = {(o["kind"], o["metadata"]["name"]) for o in _render() if o["kind"] != "WorkflowTemplate"}
    minio_claims = {k for k in k8s if k[0] == "PersistentVolumeClaim" and "minio" in k[1]}
    assert k8s - infrastructure - minio_claims == chart


def test_defaults_bind_on_any_class_and_hand_submissions_get_the_charts_image() -> None:
    """Issue 21 items 2 and 4. A ReadWriteMany claim on a class without it (kind, k3s, EBS, PD) stays Pending and
    Argo never fails a Pending pod; ReadWriteOncePod would run the fan-out one pod at a time. `--set image` and the
    claim name must reach the WorkflowTemplates too, or `argo submit --from workflowtemplate/...` pulls the default."""
    pvc = next(o for o in _render() if o["kind"] == "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    proc = _helm("template", "leverplus", str(CHART), "--set", "modelCache.accessMode=ReadWriteOncePod")
    assert proc.returncode != 0 and "accessMode" in proc.stderr
    shared = next(
        o for o in _render("--set", "modelCache.accessMode=ReadWriteMany") if o["kind"] == "PersistentVolumeClaim"
    )
    assert shared["spec"]["accessModes"] == ["ReadWriteMany"]
    objects = _render("--set", "image=registry.example/leverplus:1.2", "--set", "modelCache.claimName=gpu-cache",
                      "--set", "nightly.enabled=true")  # fmt: skip
    _validate(objects)
    runs = [o for o in objects if o["kind"] in ("WorkflowTemplate", "CronWorkflow")]
    assert len(runs) == 4
    for obj in runs:
        spec = obj["spec"].get("workflowSpec", obj["spec"])
        values = {p["name"]: p.get("value") for p in spec["arguments"]["parameters"]}
        assert values["image"] == "registry.example/leverplus:1.2", obj["metadata"]["name"]
        assert values["model-cache-claim"] == "gpu-cache", obj["metadata"]["name"]


def test_the_artifact_repository_follows_the_store() -> None:
    """Step logs go beside the store: its bucket, under its prefix; the endpoint without a scheme, insecure only
    over http. create: false leaves a namespace's own repository alone."""
    from hera.workflows import models as m

    objects = _render("--set", "s3.storeUri=s3://my-bucket/team/store", "--set", "s3.endpoint=https://s3.example:443")
    config = next(o for o in objects if o["metadata"]["name"] == "artifact-repositories")
    repository = m.ArtifactRepository.model_validate(yaml.safe_load(config["data"]["leverplus"]))
    assert (repository.s3.bucket, repository.s3.endpoint, repository.s3.insecure) == (
        "my-bucket",
        "s3.example:443",
        False,
    )
    assert repository.s3.key_format == "team/store/argo-logs/{{workflow.name}}/{{pod.name}}"
    aws = next(o for o in _render("--set", "s3.endpoint=") if o["metadata"]["name"] == "artifact-repositories")
    assert "endpoint: s3.amazonaws.com" in aws["data"]["leverplus"]
    assert not [
        o
        for o in _render("--set", "artifactRepository.create=false")
        if o["metadata"]["name"] == "artifact-repositories"
    ]
