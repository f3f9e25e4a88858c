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
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "Job",
        "Namespace",
        "PersistentVolumeClaim",
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
    settings = next(o for o in k8s_objects if o["metadata"]["name"] == "leverplus-settings")
    assert settings["metadata"]["name"] == "leverplus-settings"  # the workflows' envFrom
    assert not [k for k in settings["data"] if "SECRET" in k or "ACCESS_KEY" in k]


def test_kind_settings_are_valid_settings(k8s_objects: list[dict], monkeypatch: pytest.MonkeyPatch) -> None:
    """The ConfigMap every pod on kind reads: the settings model accepts it, as the pods' environment."""
    from leverplus.config import load_settings

    data = next(o for o in k8s_objects if o["metadata"]["name"] == "leverplus-settings")["data"]
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert (settings.data.name, settings.lvlm.backend, settings.features.encoder) == ("synthetic", "sim", "simple")
    assert settings.store.uri.startswith("s3://")


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
    """Enough of Helm for the chart's simple templates (where no real helm is installed): .Values lookups (optionally
    | toJson, | quote) and `{{- if .Values.x }}` / `{{- else }}` / `{{- end }}` lines."""

    def lookup(path: str) -> object:
        node: object = values
        for part in path.split("."):
            node = node[part]  # type: ignore[index]
        return node

    lines, keep = [], [True]
    for line in text.splitlines():
        if m := re.match(r"\s*\{\{-? if \.Values\.([\w.]+) \}\}", line):
            keep.append(keep[-1] and bool(lookup(m.group(1))))
        elif re.match(r"\s*\{\{-? else \}\}", line):
            keep[-1] = not keep[-1] and keep[-2]
        elif re.match(r"\s*\{\{-? end \}\}", line):
            keep.pop()
        elif keep[-1]:
            lines.append(line)

    def render(match: re.Match) -> str:
        value = lookup(match.group(1))
        if match.group(2):  # | toJson
            value = json.dumps(value, separators=(",", ":"))
        return json.dumps(value) if match.group(3) else str(value)

    rendered = re.sub(r"\{\{ \.Values\.([\w.]+)( \| toJson)?( \| quote)? \}\}", render, "\n".join(lines))
    return yaml.safe_load(rendered)


def test_chart_cron_agrees_with_the_generated_cron() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    from leverplus.argo import GPU_POD_PATCH

    # The chart's default GPU patch is the workflows' default; `--set nightly.gpu=false` runs the GPU steps on CPU
    # (a map value cannot be emptied with --set-json: Helm merges it into the default).
    assert values["nightly"]["gpuPodPatch"] == json.loads(GPU_POD_PATCH)
    values["nightly"] = {**values["nightly"], "enabled": True, "gpu": False}
    jsonschema.validate(values, _values_schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**values, "nightly": {**values["nightly"], "gpuPodPatch": []}}, _values_schema())
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
    assert passed["model-cache-claim"] == values["modelCache"]["claimName"]


def test_dockerfile_contract() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["leverplus"]' in text
    users = re.findall(r"^USER (\S+)", text, flags=re.M)
    assert users and users[-1] not in ("root", "0")
    assert "org.opencontainers.image.version" in text and "org.opencontainers.image.revision" in text
    assert text.index("pip install .") < text.index("COPY leverplus")  # dependencies cached apart from source
    # A README edit must not invalidate the dependency layer: the real README is copied only after it.
    assert text.index("pip install .") < text.index("COPY README.md")
    assert not re.search(r"^COPY .*README.*\n(.*\n)*?RUN .*pip install \. ", text, flags=re.M)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "leverplus-store", "leverplus-logs"} <= set(ignored)


def test_the_model_cache_is_mounted_where_the_settings_point(k8s_objects: list[dict]) -> None:
    """GPU steps mount the model-cache PVC (a parameter) at the path that lvlm.cache_dir names, on kind (k8s/) and
    through the chart alike: each node then syncs the LVLM once, not once per pod."""
    from leverplus.argo import ArgoOptions

    path = ArgoOptions().model_cache_path
    settings = next(o for o in k8s_objects if o["metadata"]["name"] == "leverplus-settings")["data"]
    assert settings["LEVERPLUS_LVLM__CACHE_DIR"] == path and settings["HF_HOME"].startswith(path + "/")
    claims = {o["metadata"]["name"] for o in k8s_objects if o["kind"] == "PersistentVolumeClaim"}
    assert ArgoOptions().model_cache_claim in claims
    chart_settings = (CHART / "templates" / "settings-configmap.yaml").read_text()
    assert f'LEVERPLUS_LVLM__CACHE_DIR: "{path}"' in chart_settings
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    pvc = _render_simple_template((CHART / "templates" / "model-cache-pvc.yaml").read_text(), values)
    assert pvc["metadata"]["name"] == values["modelCache"]["claimName"] == ArgoOptions().model_cache_claim
    kubernetes_validate.validate(pvc, K8S_VERSION, strict=True)


def _restricted_violations(pod: dict) -> list[str]:
    """What Pod Security "restricted" would reject in a pod spec (the fields our pods set)."""
    security = pod.get("securityContext", {})
    found = []
    for container in pod["containers"]:
        own = container.get("securityContext", {})
        if not (own.get("runAsNonRoot") or security.get("runAsNonRoot")):
            found.append(f"{container['name']}: runAsNonRoot")
        if (own.get("seccompProfile") or security.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            found.append(f"{container['name']}: seccompProfile")
        if own.get("allowPrivilegeEscalation") is not False:
            found.append(f"{container['name']}: allowPrivilegeEscalation")
        if own.get("capabilities", {}).get("drop") != ["ALL"]:
            found.append(f"{container['name']}: capabilities")
    return found


def test_the_namespace_enforces_restricted_and_argos_executor_is_configured_for_it(k8s_objects: list[dict]) -> None:
    """Issue 21 item 3: under "restricted" Argo's init and wait containers take only the controller's executor
    securityContext: shipped as k8s/argo/controller-config.yaml. Every pod k8s/ starts passes it too."""
    namespace = next(o for o in k8s_objects if o["kind"] == "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pods = {
        o["metadata"]["name"]: o["spec"]["template"]["spec"] for o in k8s_objects if o["kind"] in ("Deployment", "Job")
    }
    assert set(pods) == {"minio", "create-bucket"}
    assert {name: _restricted_violations(pod) for name, pod in pods.items()} == {"minio": [], "create-bucket": []}
    config = yaml.safe_load((ROOT / "k8s/argo/controller-config.yaml").read_text())
    assert (config["metadata"]["name"], config["metadata"]["namespace"]) == ("workflow-controller-configmap", "argo")
    executor = yaml.safe_load(config["data"]["executor"])
    assert _restricted_violations({"containers": [{"name": "wait", **executor}]}) == []
    assert executor["securityContext"]["runAsUser"] == 8737  # argoexec's user
    assert "argo/" not in (ROOT / "k8s/kustomization.yaml").read_text()  # another namespace: applied on its own
    broken = {"containers": [{"name": "x", "securityContext": {"capabilities": {"drop": ["ALL"]}}}]}
    assert _restricted_violations(broken) == ["x: runAsNonRoot", "x: seccompProfile", "x: allowPrivilegeEscalation"]


def test_the_namespace_has_its_own_artifact_repository(k8s_objects: list[dict]) -> None:
    """Issue 21 items 1 and 12: without it the namespace inherits the controller's default (Argo v4's quick-start
    names a driver no manifest defines, and every pod fails to build); with it, step logs are archived in MinIO."""
    from hera.workflows import models as m

    config = next(o for o in k8s_objects if o["metadata"]["name"] == "artifact-repositories")
    name = config["metadata"]["annotations"]["workflows.argoproj.io/default-artifact-repository"]
    repository = m.ArtifactRepository.model_validate(yaml.safe_load(config["data"][name]))
    assert repository.archive_logs is True and repository.s3.bucket == "leverplus"
    assert repository.s3.endpoint == "minio:9000" and repository.s3.insecure is True
    assert repository.s3.access_key_secret.name == repository.s3.secret_key_secret.name == "leverplus-s3"
    assert repository.s3.key_format.startswith("argo-logs/")
