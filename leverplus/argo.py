"""Compile the pipeline DAGs (leverplus.pipeline) into Argo Workflows with Hera.

The same Step list that the local runner executes becomes one container template per step — `command:
[leverplus]` and the step's command line as `args` — and one DAG task per step. The command is always spelled out:
without it Argo's emissary executor asks the image's registry for the ENTRYPOINT, and an image loaded with `kind
load` or `minikube image load` is in no registry, so every pod would fail.
Fan-out steps run `withParam` over the JSON list of shard ids their plan step prints; conditional steps carry a
`when` on the step they wait for. Data lives in the store: Argo passes only shard ids and workflow names.

Cluster choices are arguments here, never inside stage code: the image, the service account, the S3 secret, GPU
scheduling (a podSpecPatch parameter: pass '{}' to run on a CPU-only cluster such as kind) and the GPU steps'
resources (parameters), retries, parallelism, pod GC, TTL and the deadline. Settings (store, data, models) reach
every step only through the `leverplus-settings` ConfigMap (envFrom): a workflow parameter passed as `env` would
silently beat the ConfigMap's value of the same key, so there is exactly one place to set each. The run id and the
round id are the workflow's name (unique per submission).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leverplus import __version__
from leverplus.pipeline import PIPELINES, Pipeline, Step

__all__ = [
    "GPU_POD_PATCH",
    "ArgoOptions",
    "build_cron",
    "build_workflow",
    "generated_files",
    "gpu_pod_patch",
    "render_all",
    "training_pod_patch",
]


def gpu_pod_patch(cpu: str = "8", memory: str = "48Gi", storage: str = "10Gi", gpus: int = 1) -> str:
    """The default podSpecPatch of GPU steps: one GPU, a toleration for GPU taints, realistic CPU, and memory and
    ephemeral storage with request = limit (a pod over its request is the first one the kubelet evicts). The model
    lives on the model cache PVC, not on the node's disk: 10 Gi holds logs, spools and temp files (a pod asking 40 Gi
    would not schedule on many GPU nodes). Resources are set here, not in the container, because Argo parses a
    container's resources as Kubernetes quantities and a `{{parameter}}` is none; a podSpecPatch is substituted
    first. No nodeSelector: `nvidia.com/gpu.present` exists only with GPU Feature Discovery; the GPU request alone
    places the pod. Pass '{}' on a CPU-only cluster (kind): GPU steps then get the CPU steps' resources."""
    sized = {"memory": memory, "ephemeral-storage": storage, "nvidia.com/gpu": str(gpus)}
    resources = {"requests": {"cpu": cpu, **sized}, "limits": sized}
    patch = {
        "containers": [{"name": "main", "resources": resources}],
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }
    return json.dumps(patch, separators=(",", ":"))


GPU_POD_PATCH = gpu_pod_patch()
PUBLISH_MUTEX = "leverplus-store"  # plan and filter of every workflow in the namespace, one at a time
# What a pipeline's {placeholders} become in Argo.
PLACEHOLDERS = {
    "run_id": "{{workflow.name}}",
    "round_id": "{{workflow.name}}",
    "sft_checkpoint": "{{workflow.parameters.sft-checkpoint}}",
    "item": "{{inputs.parameters.shard}}",
    "gpu_pod_patch": "{{workflow.parameters.gpu-pod-patch}}",
}


@dataclass(frozen=True)
class ArgoOptions:
    image: str = f"leverplus:{__version__}"
    service_account: str = "leverplus-workflow"
    s3_secret: str = "leverplus-s3"  # keys: access-key-id, secret-access-key
    settings_config_map: str = "leverplus-settings"  # LEVERPLUS_* keys for every step: the one place for settings
    # Pods at once: a runaway guard per workflow (an int: not templatable, so not the operator's knob) ...
    parallelism: int = 64
    # ... and the fan-out width across every workflow of the namespace: an Argo semaphore whose limit is a key of
    # this ConfigMap, so `kubectl edit configmap leverplus-limits` changes it without re-rendering anything.
    limits_config_map: str = "leverplus-limits"
    fan_out_key: str = "fan-out"
    retries: int = 3  # every step: each one is idempotent against its own outputs
    deadline_hours: int = 48
    ttl_days: int = 7
    keep_logs_hours: int = 24  # a succeeded pod (and its log) is collected this long after it ends
    cpu_request: str = "1"  # CPU steps (plan, filter, rce, grpo, report): the selector is small
    memory: str = "4Gi"  # request = limit
    ephemeral_storage: str = "2Gi"  # request = limit
    # (cpu, memory, ephemeral storage) of steps that differ from the CPU steps: plan holds the train split's features
    # and the pools of every planned query (writing a 443k-query plan peaks at ~2.3 GiB before any feature matrix);
    # placement only reads one setting.
    step_resources: dict[str, tuple[str, str, str]] = field(
        default_factory=lambda: {"plan": ("2", "16Gi", "4Gi"), "placement": ("100m", "512Mi", "1Gi")}
    )
    # Every pod's `timeout` (it counts Pending time too: a pod waiting on a missing Secret, an unbound claim or an
    # unschedulable request fails and is retried instead of holding a slot for the 48-hour deadline). Workflow
    # parameters, so a submission can change them (-p shard-timeout=4h); the chart sets them from its values.
    shard_timeout: str = "2h"  # one fan-out shard: sized to minutes (rl.shard_size, or rl.shard_minutes)
    step_timeout: str = "12h"  # any other step: features of a whole split, a training stage
    run_as_user: int = 10001  # the Dockerfile's non-root user
    # GPU steps mount the model cache (a PVC named by the model-cache-claim parameter) here; the settings ConfigMap
    # points lvlm.cache_dir (and HF_HOME) into it, so each node syncs the LVLM once instead of once per pod.
    model_cache_path: str = "/cache/models"
    model_cache_claim: str = "leverplus-models"
    labels: dict[str, str] = field(default_factory=lambda: {"app.kubernetes.io/part-of": "leverplus"})


def _env(opts: ArgoOptions) -> list[Any]:
    from hera.workflows import models as m

    env = [
        m.EnvVar(name=var, value_from=m.EnvVarSource(secret_key_ref=m.SecretKeySelector(name=opts.s3_secret, key=key)))
        for var, key in (("AWS_ACCESS_KEY_ID", "access-key-id"), ("AWS_SECRET_ACCESS_KEY", "secret-access-key"))
    ]
    env.append(m.EnvVar(name="LEVERPLUS_LOG_FORMAT", value="json"))
    return env


def _resources(cpu: str, memory: str, storage: str) -> Any:
    from hera.workflows import models as m

    return m.ResourceRequirements(
        requests={"cpu": cpu, "memory": memory, "ephemeral-storage": storage},
        limits={"memory": memory, "ephemeral-storage": storage},
    )


def _container(step: Step, opts: ArgoOptions) -> Any:
    from hera.workflows import Container, Parameter, RetryStrategy
    from hera.workflows import models as m

    inputs = [Parameter(name="shard")] if step.fan_out is not None else []
    inputs += [Parameter(name="pod-patch")] if step.policy_gpu else []
    patch = "{{workflow.parameters.gpu-pod-patch}}" if step.gpu else None
    patch = "{{inputs.parameters.pod-patch}}" if step.policy_gpu else patch
    models = step.gpu or step.policy_gpu  # a clip-lora policy loads CLIP (features.model) from the model cache
    sized = opts.step_resources.get(step.name)
    timeout = "{{workflow.parameters.shard-timeout}}" if step.fan_out else "{{workflow.parameters.step-timeout}}"
    return Container(
        name=step.name,
        resources=_resources(*sized) if sized else None,
        timeout=timeout,
        image="{{workflow.parameters.image}}",
        command=["leverplus"],
        args=step.render(PLACEHOLDERS, item=PLACEHOLDERS["item"]),
        inputs=inputs or None,
        pod_spec_patch=patch,
        volume_mounts=[m.VolumeMount(name="model-cache", mount_path=opts.model_cache_path)] if models else None,
        # Retry the step, not the DAG (a DAG retry would re-run every item). No node anti-affinity: Argo turns it
        # into a *required* "not this node" rule, and on a one-node cluster the retry would never schedule.
        # No backoff.maxDuration: the controller counts it from the first attempt's start and gives every retry
        # that deadline, so a long step preempted late would be retried with minutes left and killed. Retries are
        # bounded by the limit (30 s, 1 min, 2 min apart) and the workflow's deadline.
        retry_strategy=RetryStrategy(
            limit=str(opts.retries), retry_policy="Always", backoff=m.Backoff(duration="30s", factor="2")
        ),
        synchronization=_synchronization(step, opts),
    )


def _synchronization(step: Step, opts: ArgoOptions) -> Any:
    from hera.workflows import models as m

    if step.exclusive:
        return m.Synchronization(mutexes=[m.Mutex(name=PUBLISH_MUTEX)])
    if step.fan_out:
        limit = m.ConfigMapKeySelector(name=opts.limits_config_map, key=opts.fan_out_key)
        return m.Synchronization(semaphores=[m.SemaphoreRef(config_map_key_ref=limit)])
    return None


def _arguments(pipeline: Pipeline, opts: ArgoOptions) -> list[Any]:
    from hera.workflows import Parameter

    params = [
        Parameter(
            name="model-cache-claim",
            value=opts.model_cache_claim,
            description=f"PVC mounted at {opts.model_cache_path} in GPU steps (lvlm.cache_dir): a model sync per node",
        )
    ]
    if "sft_checkpoint" in pipeline.params:
        params.append(Parameter(name="sft-checkpoint", description=pipeline.params["sft_checkpoint"]))
    params.append(
        Parameter(
            name="gpu-pod-patch",
            value=GPU_POD_PATCH,
            description="podSpecPatch for GPU steps; '{}' runs them on CPU (e.g. kind)",
        )
    )
    params.append(Parameter(name="shard-timeout", value=opts.shard_timeout, description=TIMEOUT_HELP % "shard"))
    params.append(Parameter(name="step-timeout", value=opts.step_timeout, description=TIMEOUT_HELP % "other step"))
    return params


TIMEOUT_HELP = "longest a %s's pod may take, Pending time included; then it fails and is retried"


def _security(opts: ArgoOptions) -> tuple[Any, Any]:
    """Pod and container security contexts that Pod Security "restricted" admits."""
    from hera.workflows import models as m

    pod = m.PodSecurityContext(
        run_as_non_root=True,
        run_as_user=opts.run_as_user,
        run_as_group=opts.run_as_user,
        fs_group=opts.run_as_user,
        seccomp_profile=m.SeccompProfile(type="RuntimeDefault"),
    )
    container = m.SecurityContext(
        allow_privilege_escalation=False, capabilities=m.Capabilities(drop=["ALL"]), run_as_non_root=True
    )
    return pod, container


def _spec_options(opts: ArgoOptions) -> dict[str, Any]:
    from hera.workflows import models as m

    pod_security, container_security = _security(opts)
    # Every step's container gets the settings ConfigMap, the S3 credentials and CPU-step resources from here.
    defaults = m.Template(
        container=m.Container(
            name="main",  # Argo v3.6's full CRDs require it
            image="{{workflow.parameters.image}}",
            env=_env(opts),
            env_from=[m.EnvFromSource(config_map_ref=m.ConfigMapEnvSource(name=opts.settings_config_map))],
            resources=_resources(opts.cpu_request, opts.memory, opts.ephemeral_storage),
            security_context=container_security,
        )
    )
    return {
        "template_defaults": defaults,
        "service_account_name": opts.service_account,
        "security_context": pod_security,
        # Services in the namespace would inject LEVERPLUS_*_SERVICE_HOST-style variables into every pod.
        "pod_spec_patch": json.dumps({"enableServiceLinks": False}, separators=(",", ":")),
        "volumes": [
            m.Volume(
                name="model-cache",
                persistent_volume_claim=m.PersistentVolumeClaimVolumeSource(
                    claim_name="{{workflow.parameters.model-cache-claim}}"
                ),
            )
        ],
        "parallelism": opts.parallelism,
        # A succeeded pod stays a day, so `argo logs` of last night's steps works before it is collected.
        "pod_gc": m.PodGC(strategy="OnPodSuccess", delete_delay_duration=f"{opts.keep_logs_hours}h"),
        "ttl_strategy": m.TTLStrategy(seconds_after_completion=opts.ttl_days * 86400),
        "active_deadline_seconds": opts.deadline_hours * 3600,
        "labels": opts.labels,
        # Labels of a template or a cron are not copied to the runs they create; workflowMetadata's are, so
        # `argo list -l app.kubernetes.io/part-of=leverplus` finds every run.
        "workflow_metadata": m.WorkflowMetadata(labels=opts.labels),
        # The model code runs without a Kubernetes token (it needs none: data goes through the store); Argo's own
        # init and wait containers get the service account's token to report results.
        "automount_service_account_token": False,
        "executor": m.ExecutorConfig(service_account_name=opts.service_account),
    }


def build_workflow(pipeline: Pipeline, opts: ArgoOptions, template: bool = True) -> Any:
    """A WorkflowTemplate named after the pipeline, or (template=False) a plain Workflow for `argo submit`."""
    from hera.workflows import DAG, Parameter, Task, Workflow, WorkflowTemplate

    naming = {"name": pipeline.name} if template else {"generate_name": f"{pipeline.name}-"}
    cls = WorkflowTemplate if template else Workflow
    arguments = [Parameter(name="image", value=opts.image), *_arguments(pipeline, opts)]
    with cls(
        entrypoint="main",
        arguments=arguments,
        annotations={"workflows.argoproj.io/description": pipeline.description},
        **naming,
        **_spec_options(opts),
    ) as workflow:
        steps = _placement(pipeline) + pipeline.order()
        containers = {step.name: _container(step, opts) for step in steps}
        with DAG(name="main"):
            for step in steps:
                needs = step.needs() + ((PLACEMENT,) if step.policy_gpu else ())
                arguments = {"shard": "{{item}}"} if step.fan_out else {}
                arguments |= {"pod-patch": f"{{{{tasks.{PLACEMENT}.outputs.result}}}}"} if step.policy_gpu else {}
                Task(
                    name=step.name,
                    template=containers[step.name],
                    depends=" && ".join(needs) or None,
                    with_param=f"{{{{tasks.{step.fan_out}.outputs.result}}}}" if step.fan_out else None,
                    arguments=arguments or None,
                    when=f"{{{{tasks.{step.when[0]}.outputs.result}}}} == {step.when[1]}" if step.when else None,
                )
    return workflow


PLACEMENT = "placement"


def _placement(pipeline: Pipeline) -> list[Step]:
    """The task that decides where the training steps run, from the same settings ConfigMap they read: it prints
    their podSpecPatch (`leverplus workflows placement`), so choosing policy.encoder clip-lora in one place also
    gives training a GPU. It runs under the first training step's condition (a night without retraining starts no
    pod for it). None when the pipeline trains nothing."""
    first = next((s for s in pipeline.order() if s.policy_gpu), None)
    if first is None:
        return []
    args = ("workflows", "placement", "--gpu-pod-patch", "{gpu_pod_patch}")
    return [Step(PLACEMENT, args, depends=(first.when[0],) if first.when else (), when=first.when)]


def training_pod_patch(encoder: str, gpu_patch: str) -> str:
    """The training steps' podSpecPatch: the GPU steps' one when the policy holds CLIP towers (clip-lora), '{}'
    (the CPU steps' resources) for a frozen-encoder policy, whose ~10^5 parameters train on a CPU."""
    from leverplus.errors import ConfigError

    try:
        patch = json.loads(gpu_patch)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"gpu-pod-patch is not JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(patch, dict):
        raise ConfigError(f"gpu-pod-patch must be a JSON object (a pod spec patch), got {type(patch).__name__}")
    return gpu_patch if encoder == "clip-lora" else "{}"


def build_cron(opts: ArgoOptions, schedule: str = "0 2 * * *", timezone: str = "UTC", gpu: bool = True) -> Any:
    """The nightly data-growth round: references the data-growth WorkflowTemplate; never two at once. gpu=False
    passes gpu-pod-patch '{}' (a CPU-only cluster such as kind: `kubectl apply -f` needs no other change)."""
    from hera.workflows import CronWorkflow
    from hera.workflows import models as m

    arguments = [m.Parameter(name="sft-checkpoint", value="runs/sft/checkpoints/sft")]
    if not gpu:
        arguments.append(m.Parameter(name="gpu-pod-patch", value="{}"))
    return CronWorkflow(
        name="nightly-data-growth" if gpu else "nightly-data-growth-cpu",
        schedules=[schedule],
        timezone=timezone,
        concurrency_policy="Forbid",
        starting_deadline_seconds=3600,
        successful_jobs_history_limit=7,
        failed_jobs_history_limit=7,
        workflow_template_ref=m.WorkflowTemplateRef(name="data-growth"),
        arguments=arguments,
        labels=opts.labels,
    )


GENERATED_HEADER = "# Generated by `leverplus workflows render` from leverplus/pipeline.py - do not edit.\n"


def render_all(opts: ArgoOptions | None = None) -> dict[str, str]:
    """Every generated file: relative path -> YAML text."""
    opts = opts or ArgoOptions()
    files = {f"templates/{name}.yaml": build_workflow(p, opts).to_yaml() for name, p in PIPELINES.items()}
    files["balanced-v3.yaml"] = build_workflow(PIPELINES["balanced-v3"], opts, template=False).to_yaml()
    files["nightly-data-growth.yaml"] = build_cron(opts).to_yaml()
    files["nightly-data-growth-cpu.yaml"] = build_cron(opts, gpu=False).to_yaml()
    return {path: GENERATED_HEADER + text for path, text in sorted(files.items())}


def generated_files(out: Path, chart: Path | None, opts: ArgoOptions | None = None) -> dict[Path, str]:
    """Every generated file at its path: workflows/... and the chart's embedded copies of the templates."""
    files = {out / rel: text for rel, text in render_all(opts).items()}
    if chart is not None:
        files.update(
            {chart / "files" / rel: text for rel, text in render_all(opts).items() if rel.startswith("templates/")}
        )
    return files
