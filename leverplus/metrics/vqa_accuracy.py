"""VQA accuracy exactly as the official VQAv2 evaluator computes it.

For each of the 10 ground-truth answers, score min(1, #matches among the other 9 / 3); average the 10. Answers are
normalised (punctuation, number words, articles, contractions) only when the 10 GT answers are not all identical:
that is the official rule (mode "official"). Mode "lenient" always normalises. Reports say which mode was used.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

__all__ = ["MetricMode", "normalize_answer", "vqa_accuracy"]

MetricMode = Literal["official", "lenient"]

# The official evaluator's tables, as data.
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow'sat",
    "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've",
    "someone'dve": "someone'd've", "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas",
    "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}  # fmt: skip
NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
ARTICLES = frozenset({"a", "an", "the"})
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
# The official pattern's "(?!<=\d)" is a (harmless) typo for a look-behind: it strips every period not followed by a
# digit. The official call also passes re.UNICODE where sub() takes `count`, so at most 32 periods are stripped.
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_PERIOD_STRIP_COUNT = int(re.UNICODE)
_COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(\,)(\d)")


def _clean_whitespace(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def _process_punctuation(text: str) -> str:
    out = text
    has_digit_comma = _COMMA_BETWEEN_DIGITS.search(text) is not None
    for p in PUNCTUATION:
        # Punctuation next to a space (or any text with a digit comma like "1,000") is deleted; elsewhere it
        # separates words ("black/white" -> "black white").
        delete = p + " " in text or " " + p in text or has_digit_comma
        out = out.replace(p, "" if delete else " ")
    return _PERIOD_STRIP.sub("", out, count=_PERIOD_STRIP_COUNT)


def _process_digits_articles(text: str) -> str:
    words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [CONTRACTIONS.get(word, word) for word in words if word not in ARTICLES]
    return " ".join(words)


def normalize_answer(text: str) -> str:
    """The official answer normalisation (whitespace, punctuation, number words, articles, contractions)."""
    return _process_digits_articles(_process_punctuation(_clean_whitespace(text)))


def vqa_accuracy(prediction: str, gt_answers: Sequence[str], mode: MetricMode = "official") -> float:
    """Accuracy in [0, 1] of one prediction against the question's GT answers (10 in VQAv2)."""
    if mode not in ("official", "lenient"):
        raise ValueError(f"unknown metric mode {mode!r}; allowed: official, lenient")
    if not gt_answers:
        raise ValueError("vqa_accuracy needs at least one ground-truth answer")
    gts = [_clean_whitespace(a) for a in gt_answers]
    pred = _clean_whitespace(prediction)
    if mode == "lenient" or len(set(gts)) > 1:
        gts = [normalize_answer(a) for a in gts]
        pred = normalize_answer(pred)
    matches = [gt == pred for gt in gts]
    total = sum(matches)
    # Leave-one-out: against each GT answer, count matches among the other len-1 answers.
    return sum(min(1.0, (total - m) / 3) for m in matches) / len(gts)
