"""VQA accuracy with the standard answer normalisation (VQA v2 evaluation script)."""

from __future__ import annotations

import re

import numpy as np

from semcom.metrics.bootstrap import bootstrap_ci, metric

_CONTRACTIONS = {
    "aint": "ain't",
    "arent": "aren't",
    "cant": "can't",
    "couldve": "could've",
    "couldnt": "couldn't",
    "couldn'tve": "couldn't've",
    "couldnt've": "couldn't've",
    "didnt": "didn't",
    "doesnt": "doesn't",
    "dont": "don't",
    "hadnt": "hadn't",
    "hadnt've": "hadn't've",
    "hadn'tve": "hadn't've",
    "hasnt": "hasn't",
    "havent": "haven't",
    "hed": "he'd",
    "hed've": "he'd've",
    "he'dve": "he'd've",
    "hes": "he's",
    "howd": "how'd",
    "howll": "how'll",
    "hows": "how's",
    "Id've": "I'd've",
    "I'dve": "I'd've",
    "Im": "I'm",
    "Ive": "I've",
    "isnt": "isn't",
    "itd": "it'd",
    "itd've": "it'd've",
    "it'dve": "it'd've",
    "itll": "it'll",
    "let's": "let's",
    "maam": "ma'am",
    "mightnt": "mightn't",
    "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've",
    "mightve": "might've",
    "mustnt": "mustn't",
    "mustve": "must've",
    "neednt": "needn't",
    "notve": "not've",
    "oclock": "o'clock",
    "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at",
    "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at",
    "shant": "shan't",
    "shed've": "she'd've",
    "she'dve": "she'd've",
    "she's": "she's",
    "shouldve": "should've",
    "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll",
    "somebodys": "somebody's",
    "someoned": "someone'd",
    "someoned've": "someone'd've",
    "someone'dve": "someone'd've",
    "someonell": "someone'll",
    "someones": "someone's",
    "somethingd": "something'd",
    "somethingd've": "something'd've",
    "something'dve": "something'd've",
    "somethingll": "something'll",
    "thats": "that's",
    "thered": "there'd",
    "thered've": "there'd've",
    "there'dve": "there'd've",
    "therere": "there're",
    "theres": "there's",
    "theyd": "they'd",
    "theyd've": "they'd've",
    "they'dve": "they'd've",
    "theyll": "they'll",
    "theyre": "they're",
    "theyve": "they've",
    "twas": "'twas",
    "wasnt": "wasn't",
    "wed've": "we'd've",
    "we'dve": "we'd've",
    "weve": "we've",
    "werent": "weren't",
    "whatll": "what'll",
    "whatre": "what're",
    "whats": "what's",
    "whatve": "what've",
    "whens": "when's",
    "whered": "where'd",
    "wheres": "where's",
    "whereve": "where've",
    "whod": "who'd",
    "whod've": "who'd've",
    "who'dve": "who'd've",
    "wholl": "who'll",
    "whos": "who's",
    "whove": "who've",
    "whyll": "why'll",
    "whyre": "why're",
    "whys": "why's",
    "wont": "won't",
    "wouldve": "would've",
    "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've",
    "yall": "y'all",
    "yall'll": "y'all'll",
    "y'allll": "y'all'll",
    "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've",
    "y'all'dve": "y'all'd've",
    "youd": "you'd",
    "youd've": "you'd've",
    "you'dve": "you'd've",
    "youll": "you'll",
    "youre": "you're",
    "youve": "you've",
}
_NUMBERS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_ARTICLES = {"a", "an", "the"}
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
_PUNCT = [
    ";",
    r"/",
    "[",
    "]",
    '"',
    "{",
    "}",
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    "-",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
    "!",
]


def _process_punctuation(text: str) -> str:
    out = text
    for p in _PUNCT:
        if (p + " " in text or " " + p in text) or re.search(_COMMA_STRIP, text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    # the official script passes re.UNICODE (32) where sub() takes its count
    return _PERIOD_STRIP.sub("", out, count=32)


def _process_digit_article(text: str) -> str:
    words = []
    for w in text.lower().split():
        w = _NUMBERS.get(w, w)
        if w not in _ARTICLES:
            words.append(_CONTRACTIONS.get(w, w))
    return " ".join(words)


def normalize_answer(text: str) -> str:
    """The VQA v2 evaluation's normalisation of a predicted answer: punctuation, number
    words -> digits, articles dropped, contractions restored, lower case.

    >>> normalize_answer("Two."), normalize_answer("the Top Left!")
    ('2', 'top left')
    """
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return _process_digit_article(_process_punctuation(text))


def vqa_accuracy(prediction: str, answers: list[str]) -> float:
    """VQA accuracy of one prediction, in [0, 1].

    With 10 human answers (VQAv2), the official evaluation (``vqaEval.py`` of the VQA
    API): the prediction is normalised (:func:`normalize_answer`); the human answers
    only lose their punctuation, and only when they disagree; the score is the mean, over
    the 10 leave-one-out subsets of 9 answers, of ``min(1, matches / 3)``. With fewer
    answers (GQA, the tiny world, a folder's questions.json: usually one), both sides
    are normalised and the score is ``min(1, matches / min(3, n))``: exact match for one
    answer.

    >>> vqa_accuracy("Two", ["2"] * 10), vqa_accuracy("2", ["2"] * 3 + ["3"] * 7)
    (1.0, 0.9)
    """
    if not answers:
        return float("nan")
    pred = normalize_answer(prediction)
    if len(answers) >= 10:
        gts = [str(a) for a in answers]
        if len(set(gts)) > 1:
            gts = [_process_punctuation(a) for a in gts]
        matches = sum(g == pred for g in gts)
        # leaving out answer i removes one match when answer i itself matches
        accs = [min(1.0, (matches - (g == pred)) / 3.0) for g in gts]
        return float(np.mean(accs))
    gts = [normalize_answer(a) for a in answers]
    return min(1.0, sum(g == pred for g in gts) / min(3, len(gts)))


def vqa_metrics(
    predictions: list[str], answers: list[list[str]], *, types=None, seed: int = 0
) -> tuple[dict, list[float]]:
    """``({"accuracy": metric, "accuracy/<type>": metric...}, per-sample accuracy)``, in %."""
    acc = np.array([vqa_accuracy(p, a) for p, a in zip(predictions, answers)], np.float64) * 100
    out = {
        "accuracy": metric(
            acc.mean() if len(acc) else float("nan"), bootstrap_ci(acc, seed=seed, key="vqa")
        )
    }
    if types is not None:
        types = np.asarray(types)
        for t in sorted(set(types.tolist())):
            a = acc[types == t]
            out[f"accuracy/{t}"] = metric(a.mean(), bootstrap_ci(a, seed=seed, key=f"vqa/{t}"))
    return out, acc.tolist()
