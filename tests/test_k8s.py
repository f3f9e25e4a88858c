"""Offline checks of the cluster side: k8s/ (kustomize + kubernetes-validate), the Helm chart, the Dockerfile."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from leverplus.argo import generated_files

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "leverplus"
K8S_VERSION = "1.32.0"


@pytest.fixture(scope="module")
def k8s_objects() -> list[dict]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (it renders kustomizations offline)")
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / "k8s")], capture_output=True, text=True, check=True)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def test_kustomization_renders_valid_objects(k8s_objects: list[dict]) -> None:
    kinds = sorted(o["kind"] for o in k8s_objects)
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "Job",
        "Namespace",
        "PersistentVolumeClaim",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    for obj in k8s_objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        assert obj["kind"] == "Namespace" or obj["metadata"]["namespace"] == "leverplus"


def test_validation_catches_a_misspelt_field(k8s_objects: list[dict]) -> None:
    deployment = next(o for o in k8s_objects if o["kind"] == "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["replica"] = broken["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_no_credentials_and_least_privilege(k8s_objects: list[dict]) -> None:
    assert not [o for o in k8s_objects if o["kind"] == "Secret"]  # the user creates leverplus-s3
    for obj in k8s_objects:
        for container in obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            for env in container.get("env", []):
                if (
                    any(word in env["name"] for word in ("PASSWORD", "USER", "AK", "SK", "KEY"))
                    and env["name"] != "HOME"
                ):
                    assert "value" not in env and env["valueFrom"]["secretKeyRef"]["name"] == "leverplus-s3"
    role = next(o for o in k8s_objects if o["kind"] == "Role")
    assert role["rules"] == [
        {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}
    ]
    repo = yaml.safe_load(next(o for o in k8s_objects if o["kind"] == "ConfigMap")["data"]["default-v1"])
    assert repo["s3"]["accessKeySecret"] == {"name": "leverplus-s3", "key": "access-key-id"}


def _values_schema() -> dict:
    return json.loads((CHART / "values.schema.json").read_text())


def test_chart_values_match_their_schema() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(values, _values_schema())
    for bad in (
        {"nightly": {**values["nightly"], "schedule": "daily"}},
        {"settings": {"rl.target": "1"}},
        {"s3": {**values["s3"], "secretName": "other"}},
        {"imag": "x"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**values, **bad}, _values_schema())


def test_chart_embeds_the_generated_templates_and_helm_never_sees_argo_expressions() -> None:
    files = generated_files(ROOT / "workflows", CHART)
    for path, text in files.items():
        assert path.read_text() == text, f"{path} is stale: run `make workflows`"
    assert sorted(p.name for p in (CHART / "files" / "templates").glob("*.yaml")) == [
        "balanced-v3.yaml",
        "data-growth.yaml",
        "sft.yaml",
    ]
    for template in (CHART / "templates").glob("*.yaml"):
        text = template.read_text()
        assert not re.search(r"\{\{\s*(workflow|tasks|inputs|item)", text), f"{template.name}: Helm would eat it"
    assert ".Files.Get" in (CHART / "templates" / "workflow-templates.yaml").read_text()


def _render_simple_template(text: str, values: dict) -> dict:
    """Enough of Helm for the chart's simple templates: .Values lookups (optionally | quote), if/end lines."""

    def lookup(path: str) -> object:
        node: object = values
        for part in path.split("."):
            node = node[part]  # type: ignore[index]
        return node

    lines = [line for line in text.splitlines() if not re.match(r"\s*\{\{-? (if|end)", line)]
    rendered = re.sub(
        r"\{\{ \.Values\.([\w.]+)( \| quote)? \}\}",
        lambda m: json.dumps(lookup(m.group(1))) if m.group(2) else str(lookup(m.group(1))),
        "\n".join(lines),
    )
    return yaml.safe_load(rendered)


def test_chart_cron_agrees_with_the_generated_cron() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    values["nightly"] = {**values["nightly"], "enabled": True, "gpuPodPatch": "{}"}
    chart_cron = _render_simple_template((CHART / "templates" / "cronworkflow.yaml").read_text(), values)
    generated = yaml.safe_load((ROOT / "workflows" / "nightly-data-growth.yaml").read_text())
    keys = ("concurrencyPolicy", "startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit")
    assert {k: chart_cron["spec"][k] for k in keys} == {k: generated["spec"][k] for k in keys}
    assert (
        chart_cron["spec"]["workflowSpec"]["workflowTemplateRef"]
        == generated["spec"]["workflowSpec"]["workflowTemplateRef"]
    )
    passed = {p["name"]: p["value"] for p in chart_cron["spec"]["workflowSpec"]["arguments"]["parameters"]}
    template = yaml.safe_load((ROOT / "workflows" / "templates" / "data-growth.yaml").read_text())
    assert set(passed) <= {p["name"] for p in template["spec"]["arguments"]["parameters"]}
    assert passed["gpu-pod-patch"] == "{}" and passed["image"] == values["image"]


def test_dockerfile_contract() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["leverplus"]' in text
    users = re.findall(r"^USER (\S+)", text, flags=re.M)
    assert users and users[-1] not in ("root", "0")
    assert "org.opencontainers.image.version" in text and "org.opencontainers.image.revision" in text
    assert text.index("pip install .") < text.index("COPY leverplus")  # dependencies cached apart from source
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "leverplus-store", "leverplus-logs"} <= set(ignored)
