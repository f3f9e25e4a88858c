"""Official VQA accuracy, results scoring and bootstrap statistics."""

from leverplus.metrics.bootstrap import PairedResult, bootstrap_ci, holm_paired, paired_bootstrap
from leverplus.metrics.vqa_accuracy import MetricMode, normalize_answer, vqa_accuracy

__all__ = [
    "MetricMode",
    "PairedResult",
    "bootstrap_ci",
    "holm_paired",
    "normalize_answer",
    "paired_bootstrap",
    "vqa_accuracy",
]
