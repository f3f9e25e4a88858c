"""VQAv2 records and loader, and the synthetic VQAv2-format world."""

from leverplus.data.schemas import ANSWER_TYPES, SPLITS, VQARecord
from leverplus.data.vqav2 import VQASplit, annotations_file, image_key, load_split, questions_file

__all__ = [
    "ANSWER_TYPES",
    "SPLITS",
    "VQARecord",
    "VQASplit",
    "annotations_file",
    "image_key",
    "load_split",
    "questions_file",
]
