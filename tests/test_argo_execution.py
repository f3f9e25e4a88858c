"""Execute the committed Argo YAML as the controller would (tests/argo_runtime.py), against a real S3 server on
127.0.0.1: the sft and balanced-v3 WorkflowTemplates and the nightly CronWorkflow's workflowSpec complete, and give
the same balanced sets as `leverplus run` with the same settings."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.argo_runtime import ArgoError, Cluster, base_env, submit
from tests.conftest import S3_ACCESS_KEY, S3_SECRET_KEY, S3Server

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / "workflows"
# Embedded-size settings, shrunk like test_pipeline's TINY so three workflows and two local runs fit in ~2 minutes.
SETTINGS = {
    "LEVERPLUS_DATA__NAME": "synthetic",
    "LEVERPLUS_LVLM__BACKEND": "sim",
    "LEVERPLUS_FEATURES__ENCODER": "simple",
    "LEVERPLUS_POOL__SIZE": "16",
    "LEVERPLUS_RL__TARGET_NEW_QUERIES": "30",
    "LEVERPLUS_RL__PRIOR_ACCEPTANCE_RATE": "0.25",
    "LEVERPLUS_RL__SHARD_SIZE": "60",
    "LEVERPLUS_RL__RCE_EPOCHS": "2",
    "LEVERPLUS_RL__GRPO_EPOCHS": "2",
    "LEVERPLUS_RL__RETRAIN_GROWTH": "0.2",
    "LEVERPLUS_SFT__ANCHORS": "60",
    "LEVERPLUS_SFT__CANDIDATES": "8",
    "LEVERPLUS_SFT__EPOCHS": "5",
    "LEVERPLUS_EVAL__NUM_QUESTIONS": "60",
    "LEVERPLUS_EVAL__SHOTS": "[1, 2]",
    "LEVERPLUS_EVAL__BOOTSTRAP_SAMPLES": "100",
}
NO_GPU = {"gpu-pod-patch": "{}"}


def _doc(rel: str) -> dict:
    return yaml.safe_load((WORKFLOWS / rel).read_text())


def _balanced(client, bucket: str, prefix: str, version: int) -> list[dict]:
    def get(key: str) -> bytes:
        return client.get_object(Bucket=bucket, Key=f"{prefix}/rl-data/balanced/{key}")["Body"].read()

    names = json.loads(get(f"v{version}.manifest.json"))["stats"]["segments"]
    groups = sorted((json.loads(line) for n in names for line in get(n).decode().splitlines()),
                    key=lambda g: g["question_id"])  # fmt: skip
    return [{k: v for k, v in g.items() if k != "round_id"} for g in groups]  # round ids are names, not data


@pytest.fixture
def world_bucket(s3_env) -> tuple[str, str]:
    from leverplus.config import StoreSettings
    from leverplus.data.synth import synthesize
    from leverplus.store import open_store

    bucket = s3_env.new_bucket()
    root = f"s3://{bucket}/datasets/synthetic"
    synthesize(open_store(root, StoreSettings(endpoint_url=s3_env.endpoint)), 0, {"train": 600, "val": 120})
    return bucket, root


@pytest.mark.slow
def test_committed_workflows_run_a_round_as_argo_would_and_match_the_local_runner(
    s3_env, world_bucket: tuple[str, str], tmp_path: Path
) -> None:
    bucket, data_root = world_bucket
    common = {**SETTINGS, "LEVERPLUS_DATA__ROOT": data_root, "LEVERPLUS_STORE__ENDPOINT_URL": s3_env.endpoint}
    cluster = Cluster(
        config_maps={
            "leverplus-settings": {**common, "LEVERPLUS_STORE__URI": f"s3://{bucket}/argo"},
            "leverplus-limits": {"fan-out": "2"},
        },
        secrets={"leverplus-s3": {"access-key-id": S3_ACCESS_KEY, "secret-access-key": S3_SECRET_KEY}},
        services={"leverplus-minio": 9000, "minio": 9000},
        claims={"leverplus-models"},
        base_env=base_env(tmp_path),
    )
    for path in sorted((WORKFLOWS / "templates").glob("*.yaml")):
        cluster.install(yaml.safe_load(path.read_text()))
    # The local runner's rounds, with the same settings in the same bucket, run meanwhile (they share nothing).
    env = {**base_env(tmp_path), **common, "LEVERPLUS_STORE__URI": f"s3://{bucket}/local"}
    env |= {"AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY}
    with ThreadPoolExecutor(1) as background:
        rounds = background.submit(_local_rounds, env, tmp_path)
        _argo_rounds(cluster, s3_env, bucket)
        rounds.result()

    client = s3_env.client()
    for version in (1, 2):
        argo = _balanced(client, bucket, "argo", version)
        local = _balanced(client, bucket, "local", version)
        assert argo and argo == local, f"balanced set v{version} differs between Argo and the local runner"
    report = client.list_objects_v2(Bucket=bucket, Prefix="argo/runs/bv3/report/manifest.json")
    assert report.get("KeyCount") == 1  # the balanced-v3 workflow reached its report


def _local_rounds(env: dict[str, str], cwd: Path) -> None:
    """`leverplus run balanced-v3` (an SFT policy first), then a data-growth round."""
    for args in (["balanced-v3"], ["data-growth", "--sft-checkpoint", "runs/run-0001/checkpoints/sft"]):
        proc = subprocess.run(
            [sys.executable, "-m", "leverplus", "run", *args, "--profile", "none", "--workers", "2"],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]


def _argo_rounds(cluster: Cluster, s3_env: S3Server, bucket: str) -> None:
    """The sft and balanced-v3 templates, as `argo submit --from`, and the nightly CronWorkflow's workflow; then
    balanced-v3 submitted again under the same name."""
    submit(cluster.templates["sft"], cluster, "sft", NO_GPU)
    submit(cluster.templates["balanced-v3"], cluster, "bv3", {**NO_GPU, "sft-checkpoint": "runs/sft/checkpoints/sft"})
    nightly = submit(_doc("nightly-data-growth-cpu.yaml"), cluster, "nightly-1")  # as `kubectl apply`-ed on kind
    assert nightly.results["growth-check"] in ("true", "false")
    # Every container ran `leverplus` with the settings from the ConfigMap and the credentials from the Secret.
    assert all(entry["argv"][0] == "leverplus" and entry["rc"] == 0 for entry in cluster.log)
    assert all(entry["env"]["AWS_ACCESS_KEY_ID"] == S3_ACCESS_KEY for entry in cluster.log)
    assert not [e for e in cluster.log if "LEVERPLUS_MINIO_SERVICE_HOST" in e["env"]]  # enableServiceLinks: false
    fanned = [e["argv"] for e in cluster.log if e["argv"][1] == "score"]
    assert len(fanned) >= 2  # one per shard id that the plan step printed, in both rounds

    # A workflow resubmitted (or retried) under the same name resumes: every step is idempotent against its own
    # outputs, so nothing the first submission wrote is rewritten and no balanced version is added.
    client = s3_env.client()

    def objects() -> dict[str, str]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="argo/")
        return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", []) if "/settings/" not in o["Key"]}

    before = objects()
    submit(cluster.templates["balanced-v3"], cluster, "bv3", {**NO_GPU, "sft-checkpoint": "runs/sft/checkpoints/sft"})
    after = objects()
    assert {k for k in after if k not in before} == set()
    rewritten = {k for k in before if after[k] != before[k]}
    assert not rewritten, rewritten


@pytest.mark.parametrize("encoder", ["frozen", "clip-lora"])
def test_training_pods_get_a_gpu_exactly_when_the_policy_trains_clip_towers(encoder: str, tmp_path: Path) -> None:
    """The placement task reads policy.encoder from the settings ConfigMap, as the training pods do, and prints
    their podSpecPatch: the GPU steps' patch for clip-lora, '{}' (CPU-step resources) for frozen. The DAG is cut to
    placement -> rce, with rce's command swapped for a cheap real one (`config show`), to see the pod it gets."""
    from leverplus.argo import GPU_POD_PATCH

    doc = _doc("templates/balanced-v3.yaml")
    main = next(t for t in doc["spec"]["templates"] if t["name"] == "main")
    main["dag"]["tasks"] = [
        {**t, "depends": "placement"} if t["name"] == "rce" else t
        for t in main["dag"]["tasks"]
        if t["name"] in ("placement", "rce")
    ]
    rce = next(t for t in doc["spec"]["templates"] if t["name"] == "rce")
    rce["container"]["args"] = ["config", "show"]
    cluster = Cluster(
        config_maps={"leverplus-settings": {"LEVERPLUS_POLICY__ENCODER": encoder}},
        secrets={"leverplus-s3": {"access-key-id": "a", "secret-access-key": "b"}},
        claims={"leverplus-models"},
        base_env=base_env(tmp_path),
    )
    submit(doc, cluster, "wf", {"sft-checkpoint": "ck", "gpu-pod-patch": GPU_POD_PATCH})
    pods = {entry["node"].split("/")[1]: entry for entry in cluster.log}
    assert pods["placement"]["pod_spec_patch"] == {}  # the placement pod itself is a CPU pod
    expected = json.loads(GPU_POD_PATCH) if encoder == "clip-lora" else {}
    assert pods["rce"]["pod_spec_patch"] == expected
    # The patch merged into the pod: the GPU lands on the `main` container, over the CPU steps' defaults.
    main = next(c for c in pods["rce"]["pod_spec"]["containers"] if c["name"] == "main")
    limits = main["resources"]["limits"]
    if encoder == "clip-lora":
        assert (
            limits["nvidia.com/gpu"] == "1"
            and limits["memory"] == "48Gi"
            and main["resources"]["requests"]["cpu"] == "8"
        )
        assert pods["rce"]["pod_spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    else:
        assert (
            "nvidia.com/gpu" not in limits
            and limits["memory"] == "4Gi"
            and "tolerations" not in pods["rce"]["pod_spec"]
        )
    assert pods["rce"]["pod_spec"]["enableServiceLinks"] is False  # the workflow's own patch, merged first


def test_the_interpreter_refuses_what_a_controller_would_trip_on(tmp_path: Path) -> None:
    """Each audit item that a real controller would hit makes the interpreter fail too."""
    doc = _doc("templates/sft.yaml")
    cluster = Cluster(base_env=base_env(tmp_path))
    features = next(t for t in doc["spec"]["templates"] if t["name"] == "features")
    # A settings ConfigMap that is missing stops the pod (it is not optional).
    with pytest.raises(ArgoError, match="configmap leverplus-settings not found"):
        submit(doc, cluster, "x", NO_GPU)
    cluster.config_maps["leverplus-settings"] = {}
    cluster.secrets["leverplus-s3"] = {"access-key-id": "a", "secret-access-key": "b"}
    # The model cache PVC must exist, or GPU pods stay Pending.
    with pytest.raises(ArgoError, match="persistentvolumeclaim 'leverplus-models' not found"):
        submit(doc, cluster, "x", NO_GPU)
    cluster.claims.add("leverplus-models")
    # A container without a command: the executor would ask a registry for the ENTRYPOINT.
    no_command = json.loads(json.dumps(doc))
    next(t for t in no_command["spec"]["templates"] if t["name"] == "features")["container"].pop("command")
    with pytest.raises(ArgoError, match="no command"):
        submit(no_command, cluster, "x", NO_GPU)
    # A field the interpreter does not know (here: retry affinity) is refused, not ignored.
    features["retryStrategy"]["affinity"] = {"nodeAntiAffinity": {}}
    features["nodeSelector"] = {"nvidia.com/gpu.present": "true"}
    with pytest.raises(ArgoError, match="not understood"):
        submit(doc, cluster, "x", NO_GPU)


def test_env_wins_over_envfrom_as_in_kubernetes(tmp_path: Path) -> None:
    from tests.argo_runtime import Run

    cluster = Cluster(config_maps={"s": {"LEVERPLUS_DATA__NAME": "synthetic"}}, base_env={})
    run = Run("x", {"podSpecPatch": '{"enableServiceLinks":false}'}, {"workflow.parameters.d": "vqav2"}, cluster)
    container = {
        "envFrom": [{"configMapRef": {"name": "s"}}],
        "env": [{"name": "LEVERPLUS_DATA__NAME", "value": "{{workflow.parameters.d}}"}],
    }
    assert run.environment(container, {}, "x")["LEVERPLUS_DATA__NAME"] == "vqav2"  # why settings never ride as env


def test_defaults_and_pod_patches_merge_strategically_as_the_controller_merges_them() -> None:
    """templateDefaults into a template, podSpecPatch into the pod: env by name, mounts by path, containers by name,
    maps key by key; any other list is replaced."""
    from tests.argo_runtime import _strategic

    defaults = {"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "volumeMounts": [{"name": "x", "mountPath": "/x"}], "args": ["a"],
                "resources": {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"memory": "4Gi"}}}  # fmt: skip
    own = {"env": [{"name": "B", "value": "3"}], "volumeMounts": [{"name": "y", "mountPath": "/y"}], "args": ["b"],
           "resources": {"limits": {"memory": "8Gi"}}}  # fmt: skip
    merged = _strategic(defaults, own)
    assert merged["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}]
    assert [m["mountPath"] for m in merged["volumeMounts"]] == ["/x", "/y"] and merged["args"] == ["b"]
    assert merged["resources"] == {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"memory": "8Gi"}}
    pod = _strategic({"containers": [{"name": "main", "image": "i"}, {"name": "wait"}]},
                     {"containers": [{"name": "main", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]})  # fmt: skip
    assert pod["containers"] == [
        {"name": "main", "image": "i", "resources": {"limits": {"nvidia.com/gpu": "1"}}},
        {"name": "wait"},
    ]


def test_a_task_reading_a_skipped_tasks_output_fails_as_on_argo_v4(tmp_path: Path) -> None:
    """v3.7.16+ and v4 fail the node where older versions substituted "": no task of ours may depend on it."""
    doc = _doc("templates/balanced-v3.yaml")
    main = next(t for t in doc["spec"]["templates"] if t["name"] == "main")
    main["dag"]["tasks"] = [
        {**t, "depends": "placement", "when": None} if t["name"] == "rce" else t
        for t in main["dag"]["tasks"]
        if t["name"] in ("placement", "rce")
    ]
    rce = next(t for t in main["dag"]["tasks"] if t["name"] == "rce")
    del rce["when"]
    placement = next(t for t in main["dag"]["tasks"] if t["name"] == "placement")
    placement["when"] = "a == b"  # skipped
    cluster = Cluster(config_maps={"leverplus-settings": {}}, base_env=base_env(tmp_path))
    cluster.secrets["leverplus-s3"] = {"access-key-id": "a", "secret-access-key": "b"}
    with pytest.raises(ArgoError, match=r"unresolved variable \{\{tasks.placement.outputs.result\}\}"):
        submit(doc, cluster, "wf", {"sft-checkpoint": "ck", "gpu-pod-patch": "{}"})


KILL_AT_THE_POINTER = """\
import os, signal
import leverplus.stages.balanced as balanced
def _killed(ctx, version):  # the manifest is published, the lease is held, the pointer is next
    os.kill(os.getpid(), signal.{signal})
    raise AssertionError("still alive")
balanced.move_pointer = _killed
"""


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_a_filter_killed_mid_publish_is_retried_on_a_new_host_and_the_round_publishes(
    world, tmp_path: Path, signal_name: str
) -> None:
    """Issue 21 item 6: Argo's SIGTERM, or a kill that cannot be caught, while the filter holds the publishing lease.
    The committed filter template's retry runs as a new pod (a new hostname) and publishes with no operator step."""
    from tests.conftest import WORLD_SETTINGS
    from tests.test_reliability import _scored_round

    _scored_round(world, "r-kill")
    fault = tmp_path / "fault"
    fault.mkdir()
    (fault / "sitecustomize.py").write_text(KILL_AT_THE_POINTER.format(signal=signal_name))
    settings = {f"LEVERPLUS_{k.upper().replace('.', '__')}": str(v) for k, v in WORLD_SETTINGS.items()}
    cluster = Cluster(
        config_maps={"leverplus-settings": {**settings, "LEVERPLUS_STORE__URI": str(world.root)}},
        secrets={"leverplus-s3": {"access-key-id": "a", "secret-access-key": "b"}},
        base_env=base_env(tmp_path),
        faults={("filter", 0): {"PYTHONPATH": str(fault)}},
    )
    doc = _doc("templates/balanced-v3.yaml")
    doc["spec"]["entrypoint"] = "filter"  # the committed filter template alone, on a round scored above
    submit(doc, cluster, "r-kill", {**NO_GPU, "sft-checkpoint": "ck"})

    first, retry = cluster.log
    assert first["rc"] == (143 if signal_name == "SIGTERM" else -9) and retry["rc"] == 0
    assert first["pod"] != retry["pod"]
    if signal_name == "SIGTERM":  # the handler released the lease on the way out
        assert "terminated (SIGTERM)" in first["stderr"] and "taking over a lease" not in retry["stderr"]
    else:  # left behind by a pod on another host: taken over by the same work
        assert "taking over a lease left behind" in retry["stderr"]
    balanced = world.root / "rl-data/balanced"
    assert (balanced / "latest").read_text() == "v1\n" and not (balanced / ".lease").exists()
    assert json.loads((world.root / "rounds/r-kill/manifest.json").read_text())["stats"]["version"] == "v1"


def test_a_retry_strategy_with_max_duration_is_refused(tmp_path: Path) -> None:
    """Issue 21 item 5: `backoff.maxDuration` counts from the first attempt and becomes every retry's deadline, so
    a long step preempted late could never finish. The committed YAML has none; the interpreter refuses it."""
    for path in [*(WORKFLOWS / "templates").glob("*.yaml"), *WORKFLOWS.glob("*.yaml")]:
        assert "maxDuration" not in path.read_text(), path
    doc = _doc("templates/sft.yaml")
    features = next(t for t in doc["spec"]["templates"] if t["name"] == "features")
    features["retryStrategy"]["backoff"]["maxDuration"] = "30m"
    cluster = Cluster(config_maps={"leverplus-settings": {}}, claims={"leverplus-models"}, base_env=base_env(tmp_path))
    cluster.secrets["leverplus-s3"] = {"access-key-id": "a", "secret-access-key": "b"}
    with pytest.raises(ArgoError, match=r"retryStrategy.backoff: field\(s\) \['maxDuration'\] not understood"):
        submit(doc, cluster, "x", NO_GPU)


def test_fan_out_width_comes_from_a_configmap_and_timeouts_are_durations(tmp_path: Path) -> None:
    """Issue 21 items 8 and 9: the fan-out semaphore's limit is read from the leverplus-limits ConfigMap (missing:
    the pod does not start), and holds that many pods at once across workflows; a `timeout` must be a duration."""
    import threading
    import time

    from tests.argo_runtime import _duration

    cluster = Cluster(base_env=base_env(tmp_path))
    held = {"semaphores": [{"configMapKeyRef": {"name": "leverplus-limits", "key": "fan-out"}}]}
    with pytest.raises(ArgoError, match="semaphore limit leverplus-limits/fan-out not found"):
        cluster.holding(held, "wf/score")
    cluster.config_maps["leverplus-limits"] = {"fan-out": "2"}
    running, most = [], [0]

    def pod() -> None:
        with cluster.holding(held, "wf/score"):
            running.append(1)
            most[0] = max(most[0], len(running))
            time.sleep(0.05)
            running.pop()

    pods = [threading.Thread(target=pod) for _ in range(6)]
    for t in pods:
        t.start()
    for t in pods:
        t.join()
    assert most[0] == 2
    assert _duration("{{workflow.parameters.t}}", {"workflow.parameters.t": "1h30m"}, "x") == 5400
    with pytest.raises(ArgoError, match="not a duration"):
        _duration("3600", {}, "x")  # the controller refuses a bare number too


KILL_BEFORE_THE_SHARD = """\
import os, signal
import leverplus.stages.score as score
def _killed(*args, **kwargs):  # every candidate scored, nothing written yet: the latest a kill can come
    os.kill(os.getpid(), signal.SIGKILL)
score.write_shard = _killed
"""


def _round_cluster(world, tmp_path: Path, fan_out: str = "2") -> Cluster:
    from tests.conftest import WORLD_SETTINGS

    settings = {f"LEVERPLUS_{k.upper().replace('.', '__')}": str(v) for k, v in WORLD_SETTINGS.items()}
    small = {"LEVERPLUS_RL__TARGET_NEW_QUERIES": "15", "LEVERPLUS_RL__PRIOR_ACCEPTANCE_RATE": "0.25"}
    return Cluster(
        config_maps={
            "leverplus-settings": {**settings, **small, "LEVERPLUS_STORE__URI": str(world.root)},
            "leverplus-limits": {"fan-out": fan_out},
        },
        secrets={"leverplus-s3": {"access-key-id": "a", "secret-access-key": "b"}},
        claims={"leverplus-models"},
        base_env=base_env(tmp_path),
    )


def _data_round_only() -> dict:
    """The committed data-growth template cut to its data round: features -> plan -> score -> filter."""
    doc = _doc("templates/data-growth.yaml")
    main = next(t for t in doc["spec"]["templates"] if t["name"] == "main")
    main["dag"]["tasks"] = [t for t in main["dag"]["tasks"] if t["name"] in ("features", "plan", "score", "filter")]
    return doc


def test_a_score_shard_killed_at_the_end_of_its_attempt_is_retried_and_completes(world, tmp_path: Path) -> None:
    """Issue 21 item 5: no maxDuration cuts the retry of a long shard; the retry redoes it and the round publishes."""
    cluster = _round_cluster(world, tmp_path)
    fault = tmp_path / "fault"
    fault.mkdir()
    (fault / "sitecustomize.py").write_text(KILL_BEFORE_THE_SHARD)
    cluster.faults[("score", 0)] = {"PYTHONPATH": str(fault)}
    run = submit(_data_round_only(), cluster, "r-late", {**NO_GPU, "sft-checkpoint": ""})
    scores = [e for e in cluster.log if e["node"].endswith("/score")]
    assert scores[0]["rc"] == -9 and all(e["rc"] == 0 for e in scores[1:])
    assert len(scores) == len(json.loads(run.results["plan"])) + 1  # one shard retried once
    assert (world.root / "rl-data/balanced/latest").read_text() == "v1\n"


def test_two_rounds_started_together_plan_disjoint_queries_and_publish_in_turn(world, tmp_path: Path) -> None:
    """Issue 21 item 7: the nightly round and a hand-submitted one on one store, at the same moment. plan and
    filter hold the namespace's mutex, so the second plans after the first recorded its queries, and publishes
    after it: two versions, disjoint rounds. (Without the mutex both plans choose the same queries.)"""
    from concurrent.futures import ThreadPoolExecutor

    cluster = _round_cluster(world, tmp_path)
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(
            lambda name: submit(_data_round_only(), cluster, name, {**NO_GPU, "sft-checkpoint": ""}),
            ["nightly-1", "by-hand-1"],
        ))  # fmt: skip
    assert all(run.phases["filter"] == "Succeeded" for run in runs)
    planned = [
        {q for shard in json.loads((world.root / f"rounds/{name}/queries.json").read_text()) for q in shard}
        for name in ("nightly-1", "by-hand-1")
    ]
    assert planned[0] and planned[1] and not planned[0] & planned[1]
    balanced = world.root / "rl-data/balanced"
    rounds = {json.loads((balanced / f"v{n}.manifest.json").read_text())["stats"]["round_id"] for n in (1, 2)}
    assert rounds == {"nightly-1", "by-hand-1"} and (balanced / "latest").read_text() == "v2\n"


@pytest.mark.slow
def test_retries_wait_their_backoff_and_a_pod_is_killed_at_its_timeout(tmp_path: Path) -> None:
    """In scaled time (1 s of Argo time = 2 ms here): the committed retryStrategy waits 30 s, 60 s, 120 s between
    attempts, a pod that outlives its template's timeout is killed and retried, and the workflow's deadline stops
    retrying. The step is `leverplus config show` slowed by a fault, so that only time decides."""
    doc = _doc("templates/sft.yaml")
    doc["spec"]["entrypoint"] = "features"
    features = next(t for t in doc["spec"]["templates"] if t["name"] == "features")
    features["container"]["args"] = ["config", "show"]
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text("import time\ntime.sleep(5)\n")
    cluster = Cluster(config_maps={"leverplus-settings": {}}, claims={"leverplus-models"}, base_env=base_env(tmp_path),
                      time_scale=0.002, faults={("features", 0): {"PYTHONPATH": str(slow)}})  # fmt: skip
    cluster.secrets["leverplus-s3"] = {"access-key-id": "a", "secret-access-key": "b"}
    # The first attempt sleeps past a 1000 s timeout (2 s here) and is killed; the retry, 30 s (60 ms) later, runs.
    started = time.monotonic()
    submit(doc, cluster, "wf", {**NO_GPU, "step-timeout": "1000s"})
    first, retry = cluster.log
    assert first["rc"] == -9 and "exceeded its timeout" in first["stderr"] and retry["rc"] == 0
    assert 2.0 <= time.monotonic() - started < 5.0
    # With every attempt slowed and a 3000 s deadline (6 s here), retries stop at the deadline, not the limit.
    cluster.log.clear()
    cluster.faults = {("features", n): {"PYTHONPATH": str(slow)} for n in range(4)}
    doc["spec"]["activeDeadlineSeconds"] = 3000
    with pytest.raises(ArgoError, match="exceeded its deadline"):
        submit(doc, cluster, "wf2", {**NO_GPU, "step-timeout": "1000s"})
    assert 1 <= len(cluster.log) < 4
