"""The shipped natural PT multiple-choice corpus measures reading, not surface cues.

`data/samples/cosmos_qa_ptbr/{train,validation}.jsonl`: Cosmos-QA-style questions written for this repo. A model
can only gain on it by reading: no rule that looks at option lengths or at the words an option shares with the story
(nor a first-word habit learned on the train split) answers much above chance (25 %).
"""

import re
from collections import Counter

import pytest

from lib import data, paths

CORPUS = paths.SAMPLES / "cosmos_qa_ptbr"
SPLITS, _REPORT = data.load(CORPUS, "cosmos_qa_pt")
ROWS = {split: list(ds) for split, ds in SPLITS.items()}


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def test_split_shape_and_sizes_match_the_hub_dataset():
    assert sorted(ROWS) == ["train", "validation"]
    assert len(ROWS["train"]) >= 300 and len(ROWS["validation"]) >= 200
    assert _REPORT.n_rejected == 0 and not _REPORT.warnings


def test_ids_are_unique_across_splits():
    ids = [r["id"] for rows in ROWS.values() for r in rows]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("split", ["train", "validation"])
def test_labels_are_balanced(split):
    counts = Counter(r["Label"] for r in ROWS[split])
    n = len(ROWS[split])
    assert all(0.2 <= counts[k] / n <= 0.3 for k in data.LETTERS), counts


@pytest.mark.parametrize("split", ["train", "validation"])
def test_items_look_like_cosmos_qa(split):
    for r in ROWS[split]:
        assert 50 <= len(words(r["contexto"])) <= 120, r["id"]
        assert r["pergunta"].strip().endswith("?"), r["id"]
        lengths = [len(r[k]) for k in data.LETTERS]
        assert max(lengths) <= 1.3 * min(lengths), (r["id"], lengths)
        assert len({r[k] for k in data.LETTERS}) == 4, r["id"]
        assert not any(data.is_none_of_the_above(r[k]) for k in "ABC"), r["id"]  # only D says "none of the above"


def test_none_of_the_above_is_offered_sometimes_and_right_about_a_third_of_those_times():
    rows = [r for split in ROWS.values() for r in split]
    offered = [r for r in rows if data.is_none_of_the_above(r["D"])]
    right = [r for r in offered if r["Label"] == "D"]
    assert 0.12 <= len(offered) / len(rows) <= 0.28
    assert 0.2 <= len(right) / len(offered) <= 0.45


def _eight_grams(text: str) -> set[tuple]:
    w = words(text)
    return {tuple(w[i : i + 8]) for i in range(len(w) - 7)}


def test_no_story_is_a_near_duplicate_of_another_within_or_across_splits():
    seen: dict[tuple, str] = {}
    for rows in ROWS.values():
        for r in rows:
            for gram in _eight_grams(r["contexto"]):
                assert seen.setdefault(gram, r["id"]) == r["id"], f"{r['id']} and {seen[gram]} share '{' '.join(gram)}'"


@pytest.mark.parametrize("split", ["train", "validation"])
def test_shortcut_baselines_stay_near_chance(split):
    baselines = data.shortcut_baselines(ROWS[split])
    for rule in ("longest", "shortest", "max_overlap", "min_overlap"):
        # above 35 %: the rule answers; far below 25 %: "never pick it" answers a third of the rest
        assert 0.12 <= baselines[rule] <= 0.35, (rule, baselines[rule])


def test_no_first_word_habit_learned_on_train_answers_validation():
    """A second-order cue: do right options start differently from wrong ones? Learn, on train, how often each first
    word starts the right option; on validation, pick the option whose first word scored best."""
    right, total = Counter(), Counter()
    for r in ROWS["train"]:
        for k in data.LETTERS:
            first = words(r[k])[0]
            total[first] += 1
            right[first] += k == r["Label"]
    rate = lambda w: (right[w] + 1) / (total[w] + 4)  # smoothed towards chance
    hits = [max(data.LETTERS, key=lambda k: rate(words(r[k])[0])) == r["Label"] for r in ROWS["validation"]]
    assert sum(hits) / len(hits) <= 0.35
