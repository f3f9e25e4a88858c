"""A small interpreter of the Argo Workflows we generate, for tests: it runs workflows/*.yaml as written, the way
the controller and the emissary executor would, on this machine.

It resolves `workflowTemplateRef` (a CronWorkflow's workflowSpec included), workflow parameters and their defaults,
`{{...}}` substitutions, DAG `depends`, `when` and `withParam` over a step's stdout. It merges templateDefaults into
templates and podSpecPatches into the pod strategically (containers and env by name, mounts by path), as the
controller does, and records each pod. It runs retries (each attempt a new pod: a new HOSTNAME; a test may inject a
fault into chosen attempts), templates' `timeout`, `synchronization` mutexes and ConfigMap-backed semaphores, and
the workflow's `parallelism` across all its pods; a task that reads the output of a skipped task fails, as on
v3.7.16+ and v4. It builds each container's environment as Kubernetes does (envFrom ConfigMaps first, then `env`,
which wins; Secret references; service-link variables unless the pod spec turns them off). Each container becomes a
subprocess of its `command` + `args` (`leverplus` is the installed entry point, as in the image) with exactly that
environment.

It understands only the fields we use and refuses any other, so a new field in the generated YAML forces a
deliberate decision here. Fields with no effect on one machine (resources, security contexts, GC, TTL, deadline,
labels, the executor's service account) are listed as accepted. Time runs scaled (Cluster.time_scale): backoff
waits, template timeouts and the workflow's activeDeadlineSeconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KNOWN = {
    "document": {"apiVersion", "kind", "metadata", "spec"},
    "spec": {
        "entrypoint",
        "arguments",
        "templates",
        "templateDefaults",
        "serviceAccountName",
        "securityContext",
        "podSpecPatch",
        "parallelism",
        "podGC",
        "ttlStrategy",
        "activeDeadlineSeconds",
        "workflowTemplateRef",
        "volumes",
        "workflowMetadata",
        "automountServiceAccountToken",
        "executor",
    },
    "cron": {
        "schedules",
        "timezone",
        "concurrencyPolicy",
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
        "workflowSpec",
    },
    "template": {"name", "container", "inputs", "retryStrategy", "podSpecPatch", "dag", "synchronization", "timeout"},
    "synchronization": {"mutexes", "semaphores"},
    "mutex": {"name"},
    "semaphore": {"configMapKeyRef"},
    "container": {"name", "image", "command", "args", "env", "envFrom", "resources", "securityContext", "volumeMounts"},
    "task": {"name", "template", "depends", "withParam", "arguments", "when"},
    "parameter": {"name", "value", "description"},
    "env": {"name", "value", "valueFrom"},
    "retry": {"limit", "retryPolicy", "backoff"},
    "backoff": {"duration", "factor"},
}
VAR = re.compile(r"\{\{\s*([^}]+?)\s*\}\}")


class ArgoError(RuntimeError):
    """What the controller would report: a workflow that cannot run, or a failed step."""


def _check(kind: str, obj: dict, where: str) -> None:
    unknown = set(obj) - KNOWN[kind]
    if unknown:
        raise ArgoError(f"{where}: field(s) {sorted(unknown)} not understood by the interpreter")


@dataclass
class Cluster:
    """What the namespace holds besides the workflows: ConfigMaps, Secrets, Services (for service links)."""

    config_maps: dict[str, dict[str, str]] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    services: dict[str, int] = field(default_factory=dict)  # name -> port
    claims: set[str] = field(default_factory=set)  # PersistentVolumeClaims
    templates: dict[str, dict] = field(default_factory=dict)  # WorkflowTemplates by name
    entrypoint_dir: Path = field(default_factory=lambda: Path(sys.executable).parent)
    base_env: dict[str, str] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)  # one entry per container run
    # (template, attempt) -> variables added to that attempt's environment: how a test injects a fault (a
    # sitecustomize on PYTHONPATH that kills the step at a chosen point)
    faults: dict[tuple[str, int], dict[str, str]] = field(default_factory=dict)
    mutexes: dict[str, threading.Lock] = field(default_factory=dict)
    semaphores: dict[str, tuple[threading.BoundedSemaphore, int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Real seconds per second of Argo time: backoffs, timeouts and the workflow deadline are multiplied by it. 0: no
    # backoff waits and nothing times out but this machine's cap of 10 minutes a pod (what most tests want).
    time_scale: float = 0.0

    def holding(self, synchronization: dict, where: str) -> contextlib.AbstractContextManager:
        """A template's mutexes, held across all its attempts: steps of concurrent workflows queue, as under the
        controller's synchronization (namespace-wide names)."""
        _check("synchronization", synchronization, f"{where} synchronization")
        stack = contextlib.ExitStack()
        for mutex in synchronization.get("mutexes", []):
            _check("mutex", mutex, f"{where} mutex")
            stack.enter_context(self.mutexes.setdefault(mutex["name"], threading.Lock()))
        for semaphore in synchronization.get("semaphores", []):  # its limit: a key of a ConfigMap, read when taken
            _check("semaphore", semaphore, f"{where} semaphore")
            ref = semaphore["configMapKeyRef"]
            limit = self.config_maps.get(ref["name"], {}).get(ref["key"])
            if limit is None or not limit.isdigit():
                raise ArgoError(f"{where}: semaphore limit {ref['name']}/{ref['key']} not found (or not a number)")
            key = f"{ref['name']}/{ref['key']}"
            with self.lock:
                taken = self.semaphores.setdefault(key, (threading.BoundedSemaphore(int(limit)), int(limit)))
            stack.enter_context(taken[0])
        return stack

    def install(self, doc: dict) -> None:
        if doc["kind"] != "WorkflowTemplate":
            raise ArgoError(f"cannot install a {doc['kind']} as a template")
        self.templates[doc["metadata"]["name"]] = doc


def _resolve(doc: dict, cluster: Cluster) -> tuple[dict, dict[str, str]]:
    """The spec that runs and the workflow parameters' values before submit-time overrides."""
    _check("document", doc, doc["kind"])
    spec = doc["spec"]
    if doc["kind"] == "CronWorkflow":
        _check("cron", spec, "CronWorkflow.spec")
        spec = spec["workflowSpec"]
    _check("spec", spec, "spec")
    params: dict[str, str | None] = {}
    if "workflowTemplateRef" in spec:
        ref = spec["workflowTemplateRef"]["name"]
        if ref not in cluster.templates:
            raise ArgoError(f"workflowTemplateRef: no WorkflowTemplate named {ref}")
        base = cluster.templates[ref]["spec"]
        _check("spec", base, f"WorkflowTemplate {ref}")
        params |= _parameters(base)
        params |= _parameters(spec)
        spec = {**base, **{k: v for k, v in spec.items() if k not in ("workflowTemplateRef", "arguments")}}
    else:
        params |= _parameters(spec)
    return spec, params  # type: ignore[return-value]


def _parameters(spec: dict) -> dict[str, str | None]:
    out = {}
    for p in spec.get("arguments", {}).get("parameters", []):
        _check("parameter", p, f"parameter {p.get('name')}")
        out[p["name"]] = p.get("value")
    return out


def _substitute(text: str, scope: dict[str, str], where: str) -> str:
    def value(match: re.Match) -> str:
        name = match.group(1)
        if name not in scope:
            raise ArgoError(f"{where}: unresolved variable {{{{{name}}}}}")
        return scope[name]

    return VAR.sub(value, text)


# Kubernetes' strategic merge: lists of these fields merge item by item on the key; any other list is replaced.
MERGE_KEYS = {"containers": "name", "env": "name", "volumeMounts": "mountPath", "volumes": "name"}


def _strategic(base: Any, patch: Any, field: str = "") -> Any:
    """A strategic merge patch, as the controller applies templateDefaults to a template and a podSpecPatch to the
    pod: maps merge key by key; lists of MERGE_KEYS merge their items by that key; other lists and values replace."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _strategic(base[key], value, key) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(patch, list) and field in MERGE_KEYS:
        key = MERGE_KEYS[field]
        merged = {item[key]: item for item in base}
        for item in patch:
            merged[item[key]] = _strategic(merged[item[key]], item) if item[key] in merged else item
        return list(merged.values())
    return patch


def _merge_container(defaults: dict, own: dict) -> dict:
    return _strategic(defaults, own)


@dataclass
class Run:
    name: str
    spec: dict
    scope: dict[str, str]
    cluster: Cluster
    results: dict[str, str] = field(default_factory=dict)
    phases: dict[str, str] = field(default_factory=dict)
    pods: threading.BoundedSemaphore = field(init=False)  # the workflow's parallelism, across all its pods
    deadline: float = field(init=False)  # time.monotonic() at which activeDeadlineSeconds (scaled) runs out

    def __post_init__(self) -> None:
        self.pods = threading.BoundedSemaphore(int(self.spec.get("parallelism", 1_000_000)))
        scale = self.cluster.time_scale
        self.deadline = time.monotonic() + (float(self.spec.get("activeDeadlineSeconds", 10**9)) * scale or 10**9)

    def template(self, name: str) -> dict:
        found = [t for t in self.spec["templates"] if t["name"] == name]
        if not found:
            raise ArgoError(f"no template named {name}")
        _check("template", found[0], f"template {name}")
        return found[0]

    def environment(self, container: dict, pod: dict, where: str) -> dict[str, str]:
        env = dict(self.cluster.base_env)
        if pod.get("enableServiceLinks", True):
            for service, port in self.cluster.services.items():
                prefix = service.upper().replace("-", "_")
                env |= {f"{prefix}_SERVICE_HOST": "10.96.0.10", f"{prefix}_SERVICE_PORT": str(port)}
                env |= {f"{prefix}_PORT": f"tcp://10.96.0.10:{port}"}
        for source in container.get("envFrom", []):
            ref = source["configMapRef"]
            if ref["name"] not in self.cluster.config_maps:
                if ref.get("optional"):
                    continue
                raise ArgoError(f"{where}: CreateContainerConfigError: configmap {ref['name']} not found")
            env |= self.cluster.config_maps[ref["name"]]
        for var in container.get("env", []):  # env wins over envFrom, as in Kubernetes
            _check("env", var, f"{where} env {var['name']}")
            if "value" in var:
                env[var["name"]] = _substitute(var["value"], self.scope, where)
                continue
            ref = var["valueFrom"]["secretKeyRef"]
            secret = self.cluster.secrets.get(ref["name"])
            if secret is None or ref["key"] not in secret:
                raise ArgoError(f"{where}: CreateContainerConfigError: secret {ref['name']}/{ref['key']} not found")
            env[var["name"]] = secret[ref["key"]]
        return env

    def check_mounts(self, container: dict, scope: dict[str, str], where: str) -> None:
        """A mount must name a workflow volume; a PVC that does not exist keeps the pod Pending forever."""
        volumes = {v["name"]: v for v in self.spec.get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            volume = volumes.get(mount["name"])
            if volume is None or set(volume) != {"name", "persistentVolumeClaim"}:
                raise ArgoError(f"{where}: volume {mount['name']} is not a workflow PVC volume")
            claim = _substitute(volume["persistentVolumeClaim"]["claimName"], scope, where)
            if claim not in self.cluster.claims:
                raise ArgoError(f"{where}: pod stays Pending: persistentvolumeclaim {claim!r} not found")

    def run_container(self, template: dict, inputs: dict[str, str]) -> str:
        where = f"{self.name}/{template['name']}"
        scope = {**self.scope, **{f"inputs.parameters.{k}": v for k, v in inputs.items()}}
        wanted = {p["name"] for p in template.get("inputs", {}).get("parameters", [])}
        if wanted != set(inputs):
            raise ArgoError(f"{where}: inputs {sorted(inputs)} given, {sorted(wanted)} wanted")
        container = _merge_container(self.spec.get("templateDefaults", {}).get("container", {}), template["container"])
        _check("container", container, where)
        patch = json.loads(_substitute(template.get("podSpecPatch", "{}"), scope, where))  # bad JSON: rejected
        pod = {"containers": [{"name": "main", **{k: v for k, v in container.items() if k != "name"}}]}
        pod = _strategic(_strategic(pod, json.loads(self.spec.get("podSpecPatch", "{}"))), patch)
        if not container.get("command"):
            raise ArgoError(f"{where}: no command: the executor would look the image's ENTRYPOINT up in a registry")
        argv = [_substitute(a, scope, where) for a in [*container["command"], *container.get("args", [])]]
        executable = self.cluster.entrypoint_dir / argv[0]
        if not executable.exists():
            raise ArgoError(f"{where}: {argv[0]} is not in the image")
        self.check_mounts(container, scope, where)
        env = self.environment(container, pod, where)
        with self.pods, self.cluster.holding(template.get("synchronization", {}), where):
            return self.attempts(template, argv, executable, env, {"pod_spec_patch": patch, "pod_spec": pod}, where)

    def attempts(self, template: dict, argv: list[str], executable: Path, env: dict, spec: dict, where: str) -> str:
        """Each attempt a new pod, killed at its template's timeout or the workflow's deadline; retries wait their
        backoff. Durations are Argo's times the cluster's time_scale (capped at 10 minutes a pod on this machine)."""
        strategy = template.get("retryStrategy", {})
        attempts, scale = _attempts(strategy, where), self.cluster.time_scale
        timeout = _duration(template.get("timeout", "10m"), self.scope, where) * scale if scale else 600.0
        for attempt in range(attempts):
            if attempt:
                time.sleep(_backoff(strategy, attempt) * scale)
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise ArgoError(f"{where}: Step exceeded its deadline (the workflow's activeDeadlineSeconds)")
            pod = f"{self.name}-{template['name']}-{uuid.uuid4().hex[:8]}"  # every attempt: a new pod, a new host
            pod_env = {**env, "HOSTNAME": pod, **self.cluster.faults.get((template["name"], attempt), {})}
            proc = _container_process(executable, argv, pod_env, min(600, timeout, left))  # killed: a failure
            entry = {"node": where, "pod": pod, "argv": argv, "env": env, "rc": proc.returncode}
            self.cluster.log.append(entry | spec | {"stderr": proc.stderr})
            if proc.returncode == 0:
                return proc.stdout.strip()
        raise ArgoError(f"{where} failed after {attempts} attempt(s): {proc.stderr.strip()[-800:]}")

    def run_dag(self, template: dict) -> None:
        tasks = {t["name"]: t for t in template["dag"]["tasks"]}
        for task in tasks.values():
            _check("task", task, f"task {task['name']}")
        pending = list(tasks)
        while pending:
            ready = [n for n in pending if all(d in self.phases for d in _deps(tasks[n]))]
            if not ready:
                raise ArgoError(f"DAG stuck: {pending} wait for tasks that never ran")
            for name in ready:
                pending.remove(name)
                self.phases[name] = self.run_task(tasks[name])

    def run_task(self, task: dict) -> str:
        deps = _deps(task)
        if any(self.phases[d] == "Failed" for d in deps):
            raise ArgoError(f"task {task['name']}: a dependency failed")
        ran = [d for d in deps if self.phases[d] == "Succeeded"]  # a skipped task has no output (v3.7.16+, v4)
        scope = {**self.scope, **{f"tasks.{d}.outputs.result": self.results.get(d, "") for d in ran}}
        if "when" in task and not _when(_substitute(task["when"], scope, f"task {task['name']} when")):
            return "Skipped"
        template = self.template(task["template"])
        items: list[Any] = [None]
        if "withParam" in task:
            items = json.loads(_substitute(task["withParam"], scope, f"task {task['name']} withParam"))

        def run_item(item: Any) -> str:
            item_scope = {**scope, **({"item": str(item)} if item is not None else {})}
            args = {
                p["name"]: _substitute(p["value"], item_scope, f"task {task['name']}")
                for p in task.get("arguments", {}).get("parameters", [])
            }
            return self.run_container(template, args)

        # Fan-out items run at once, up to the workflow's parallelism (and this machine's cores).
        workers = max(1, min(len(items), int(self.spec.get("parallelism", 1)), os.cpu_count() or 1))
        with ThreadPoolExecutor(workers) as pool:
            outputs = list(pool.map(run_item, items))
        self.results[task["name"]] = outputs[0] if "withParam" not in task else json.dumps(outputs)
        return "Succeeded"


def _duration(text: str, scope: dict[str, str], where: str) -> float:
    """A template's `timeout` after substitution, in seconds: a Go duration ("2h", "1h30m", "45s"); a bare number is
    refused, as the controller refuses it."""
    value = _substitute(text, scope, where)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", value)
    if not value or parts is None:
        raise ArgoError(f"{where}: timeout {value!r} is not a duration such as 2h or 30m")
    hours, minutes, seconds = (int(g or 0) for g in parts.groups())
    return hours * 3600 + minutes * 60 + seconds


def _container_process(executable: Path, argv: list[str], env: dict[str, str], timeout: float) -> Any:
    """The container's process, killed at `timeout` (then its stderr says so): `leverplus` forked from the runner's
    fork server (leverplus/steps.py: a process of its own with exactly this environment, without an interpreter's
    start-up), or a new process when the attempt carries a fault (a sitecustomize on PYTHONPATH acts only in a new
    interpreter) or runs something else."""
    from leverplus.steps import run_step

    if argv[0] != "leverplus" or "PYTHONPATH" in env:
        try:
            return subprocess.run([str(executable), *argv[1:]], env=env, capture_output=True, text=True,
                                  timeout=timeout)  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            return subprocess.CompletedProcess(exc.cmd, -9, "", "exceeded its timeout")
    with tempfile.TemporaryDirectory(prefix="argo-pod-") as tmp:
        log, start = Path(tmp) / "stderr", time.monotonic()
        code, stdout = run_step(argv[1:], {**env, "LEVERPLUS_STEP_PROCESS": "forked"}, log, timeout)
        late = code == -9 and time.monotonic() - start >= timeout
        stderr = log.read_text() if log.exists() else ""
    return subprocess.CompletedProcess(argv, code, stdout, stderr + ("exceeded its timeout" if late else ""))


def _backoff(strategy: dict, retry: int) -> float:
    """Seconds before retry n (1, 2, ...): duration x factor^(n-1), as the controller computes it."""
    backoff = strategy.get("backoff", {})
    return _duration(backoff.get("duration", "0s"), {}, "backoff") * float(backoff.get("factor", 1)) ** (retry - 1)


def _attempts(strategy: dict, where: str) -> int:
    """1 + retryStrategy.limit. `maxDuration` is refused: the controller counts it from the *first* attempt's start
    and gives every retry that same deadline (operator.go), so a long step preempted late is retried with too little
    time and killed."""
    _check("retry", strategy, f"{where} retryStrategy")
    _check("backoff", strategy.get("backoff", {}), f"{where} retryStrategy.backoff")
    return int(strategy.get("limit", 0)) + 1


def _deps(task: dict) -> list[str]:
    depends = task.get("depends", "")
    if depends and not re.fullmatch(r"[\w-]+( && [\w-]+)*", depends):
        raise ArgoError(f"task {task['name']}: depends expression {depends!r} not understood")
    return depends.split(" && ") if depends else []


def _when(expression: str) -> bool:
    match = re.fullmatch(r"\s*(\S+)\s*==\s*(\S+)\s*", expression)
    if not match:
        raise ArgoError(f"when expression {expression!r} not understood")
    return match.group(1) == match.group(2)


def submit(doc: dict, cluster: Cluster, name: str, parameters: dict[str, str] | None = None) -> Run:
    """Run a Workflow, a WorkflowTemplate (as `argo submit --from`) or a CronWorkflow's workflowSpec to the end."""
    spec, params = _resolve(doc, cluster)
    for key, value in (parameters or {}).items():
        if key not in params:
            raise ArgoError(f"parameter {key} is not declared by the workflow")
        params[key] = value
    missing = [k for k, v in params.items() if v is None]
    if missing:
        raise ArgoError(f"parameters {missing} have no value")
    scope = {"workflow.name": name, **{f"workflow.parameters.{k}": str(v) for k, v in params.items()}}
    run = Run(name, spec, scope, cluster)
    entry = run.template(spec["entrypoint"])
    if "dag" in entry:
        run.run_dag(entry)
    else:
        run.run_container(entry, {})
    return run


def base_env(home: Path) -> dict[str, str]:
    """What a container starts with before the pod spec's variables: a PATH, a HOME."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "OMP_NUM_THREADS": "1"}
