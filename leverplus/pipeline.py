"""The pipeline DAGs, defined once as data. The local runner executes them and the Argo workflows are compiled
from them, so both run the same steps with the same command lines.

A step's `args` follow `leverplus` and may name parameters ({run_id}) and, in a fan-out, the item ({item}).
A step with `emits_items` prints a JSON list of shard ids; a step with `fan_out` runs once per item of that list.
A step with `when` runs only if the named step printed the given value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["PIPELINES", "Pipeline", "Step", "get_pipeline"]


@dataclass(frozen=True)
class Step:
    name: str
    args: tuple[str, ...]
    depends: tuple[str, ...] = ()
    fan_out: str | None = None  # the step whose printed JSON list this step runs over
    emits_items: bool = False
    when: tuple[str, str] | None = None  # (step, printed value) that must hold for this step to run
    gpu: bool = False  # needs an accelerator on a cluster (the LVLM or a big encoder)
    policy_gpu: bool = False  # needs one when the policy holds CLIP towers (policy.encoder clip-lora): training
    # Reads what other rounds planned or published and adds to it: on a cluster such steps of concurrent workflows
    # run one at a time (an Argo mutex), so two rounds plan disjoint queries and publish in sequence.
    exclusive: bool = False

    def needs(self) -> tuple[str, ...]:
        """Every step this one waits for: its dependencies, its fan-out source and its condition's step."""
        extra = (self.fan_out,) if self.fan_out else ()
        extra += (self.when[0],) if self.when else ()
        return tuple(dict.fromkeys(self.depends + extra))

    def render(self, params: dict[str, str], item: str | None = None) -> list[str]:
        values = {**params, "item": item if item is not None else "{item}"}
        return [arg.format(**values) for arg in self.args]


@dataclass(frozen=True)
class Pipeline:
    name: str
    description: str
    params: dict[str, str]  # name -> help
    steps: tuple[Step, ...] = field(default_factory=tuple)

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    def order(self) -> list[Step]:
        """Steps in dependency order (fan-out sources and conditions count as dependencies)."""
        done: list[str] = []
        pending = list(self.steps)
        while pending:
            ready = [s for s in pending if all(d in done for d in s.needs())]
            if not ready:
                raise ValueError(f"pipeline {self.name}: cycle or unknown dependency among {[s.name for s in pending]}")
            for s in ready:
                done.append(s.name)
                pending.remove(s)
        return [self.step(n) for n in done]


RUN_ARGS = ("--run", "{run_id}")
GRPO_CKPT = "runs/{run_id}/checkpoints/grpo"
RCE_CKPT = "runs/{run_id}/checkpoints/rce"
EVAL_ARGS = ("eval", *RUN_ARGS, "--shard", "{item}", "--policy", GRPO_CKPT, "--rce", RCE_CKPT)


def _train_and_evaluate(after: str, when: tuple[str, str] | None = None) -> tuple[Step, ...]:
    """RCE -> GRPO -> evaluation fan-out -> report: shared by balanced-v3 and data-growth."""
    return (
        Step("rce", ("rce", *RUN_ARGS, "--init", "{sft_checkpoint}"), depends=(after,), when=when, policy_gpu=True),
        Step("grpo", ("grpo", *RUN_ARGS, "--init", RCE_CKPT), depends=("rce",), when=when, policy_gpu=True),
        Step("eval-plan", ("plan", "--kind", "eval", *RUN_ARGS), depends=("grpo",), emits_items=True, when=when),
        Step(
            "eval",
            (*EVAL_ARGS, "--sft", "{sft_checkpoint}"),
            fan_out="eval-plan",
            gpu=True,
            when=when,
        ),
        Step("report", ("report", *RUN_ARGS), depends=("eval",), when=when),
    )


def _data_round(policy: str) -> tuple[Step, ...]:
    """features -> plan -> score fan-out -> filter: one data-growth round."""
    return (
        Step("features", ("features",), gpu=True),
        Step(
            "plan",
            ("plan", "--kind", "rl", "--round", "{round_id}"),
            depends=("features",),
            emits_items=True,
            exclusive=True,
        ),
        Step(
            "score",
            ("score", "--round", "{round_id}", "--shard", "{item}", "--policy", policy),
            fan_out="plan",
            gpu=True,
        ),
        Step("filter", ("filter", "--round", "{round_id}"), depends=("score",), exclusive=True),
    )


SFT = Pipeline(
    name="sft",
    description="Build the starting policy: InfoScore beam search over anchors (fan-out), then SFT.",
    params={"run_id": "run id; the checkpoint lands in runs/<run_id>/checkpoints/sft"},
    steps=(
        Step("features", ("features",), gpu=True),
        Step("sft-plan", ("plan", "--kind", "sft", *RUN_ARGS), depends=("features",), emits_items=True),
        Step("sft-data", ("sft-data", *RUN_ARGS, "--shard", "{item}"), fan_out="sft-plan", gpu=True),
        Step("sft", ("sft", *RUN_ARGS), depends=("sft-data",), policy_gpu=True),
    ),
)

BALANCED_V3 = Pipeline(
    name="balanced-v3",
    description="One balanced-data round, then RCE -> GRPO on the cumulative balanced set, evaluation and report.",
    params={
        "run_id": "run id (training, evaluation, report)",
        "round_id": "data round id",
        "sft_checkpoint": "the SFT policy: proposes candidates, initialises RCE, and is the baseline",
    },
    steps=(*_data_round("{sft_checkpoint}"), *_train_and_evaluate("filter")),
)

DATA_GROWTH = Pipeline(
    name="data-growth",
    description="One data round; retrain and evaluate only when the balanced set has grown by rl.retrain_growth.",
    params={
        "run_id": "run id used if the round triggers training",
        "round_id": "data round id",
        "sft_checkpoint": "the SFT policy: proposes candidates, initialises RCE, and is the baseline",
    },
    steps=(
        *_data_round("{sft_checkpoint}"),
        Step("growth-check", ("growth-check", *RUN_ARGS), depends=("filter",)),
        *_train_and_evaluate("growth-check", when=("growth-check", "true")),
    ),
)

PIPELINES = {p.name: p for p in (BALANCED_V3, DATA_GROWTH, SFT)}


def get_pipeline(name: str) -> Pipeline:
    from leverplus.errors import ConfigError

    if name not in PIPELINES:
        raise ConfigError(f"unknown pipeline {name!r}; allowed: {', '.join(PIPELINES)}")
    return PIPELINES[name]
