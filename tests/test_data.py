import json

import pandas as pd
import pytest

from lib import data, paths, synthetic

GOOD_PT = {
    "id": "ok-1",
    "contexto": "Ana mora em Recife.",
    "pergunta": "Onde Ana mora?",
    "A": "Em Natal.",
    "B": "Em Recife.",
    "C": "Em Belém.",
    "D": "Em Manaus.",
    "Label": "B",
}
GOOD_EN = {
    "id": "en-1",
    "context": "Ann lives in Leeds.",
    "question": "Where does Ann live?",
    "answer0": "Leeds",
    "answer1": "York",
    "answer2": "Hull",
    "answer3": "None of the above choices .",
    "label": 0,
}


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def pt(**changes):
    row = {**GOOD_PT, **changes}
    return {k: v for k, v in row.items() if v is not ...}  # `...` removes a field


# ---------------------------------------------------------------- shipped samples


@pytest.mark.parametrize(
    "name, schema, minimum",
    [
        ("cosmos_qa_en.jsonl", "cosmos_qa_en", 40),
        ("cosmos_qa_ptbr", "cosmos_qa_pt", 300),
        ("canarim.jsonl", "canarim", 80),
    ],
)
def test_shipped_samples_are_fully_valid(name, schema, minimum):
    dataset, report = data.load(paths.SAMPLES / name, schema)
    assert report.rejects == [] and report.warnings == []
    assert len(dataset["train"]) >= minimum
    assert dataset["train"].column_names == data.SCHEMAS[schema].columns


# ---------------------------------------------------------------- every bad-row kind

BAD_ROWS = [  # (line text, field, reason fragment)
    (json.dumps(pt(id="m1", pergunta=...)), "pergunta", "missing field"),
    (json.dumps(pt(id="t1", A=3)), "A", "wrong type"),
    (json.dumps(pt(id="e1", C="   ")), "C", "empty text"),
    (json.dumps(pt(id="n1", D=None)), "D", "missing (null)"),
    (json.dumps(pt(id="r1", Label="E")), "Label", "out of range"),
    (json.dumps(pt(id="k1", Label=1)), "Label", "wrong kind"),
    (json.dumps(pt(id="l1", Label=...)), "Label", "missing field"),
    (json.dumps(pt(id="ok-1")), "id", "duplicate id"),
    ('{"id": "x", "contexto": "sem fim', "(line)", "not valid JSON"),
    ("{}", "(row)", "empty object"),
    ('["a", "list"]', "(row)", "not a JSON object"),
    (json.dumps(pt(id="long1", contexto="palavra " * 5000)), "contexto", "absurdly long"),
    (
        '{"id": "s1", "contexto": "\\ud800", "pergunta": "p", "A": "a", "B": "b", "C": "c", "D": "d", "Label": "A"}',
        "contexto",
        "lone surrogate",
    ),
    (json.dumps(pt(id=True)), "id", "wrong type"),
]


def test_every_bad_row_kind_is_reported_and_valid_rows_are_kept(tmp_path):
    lines = [json.dumps(GOOD_PT)] + [line for line, _, _ in BAD_ROWS] + [json.dumps(pt(id="ok-2"))]
    dataset, report = data.load(write_lines(tmp_path / "pt.jsonl", lines), "cosmos_qa_pt")
    assert dataset["train"]["id"] == ["ok-1", "ok-2"]
    assert report.counts["train"] == {"read": len(lines), "kept": 2, "rejected": len(BAD_ROWS), "beyond_limit": 0}
    assert len(report.rejects) == len(BAD_ROWS)
    for reject, (_, field, reason), number in zip(report.rejects, BAD_ROWS, range(2, 2 + len(BAD_ROWS))):
        assert reject.location == f"line {number}"
        assert any(f == field and reason in r for f, r in reject.errors), (str(reject), field, reason)
        assert f"line {number}" in str(reject)
    assert "id 'r1'" in str(report.rejects[4])  # the id is named when there is one


def test_rejects_file_lists_every_rejected_row_with_reasons(tmp_path):
    lines = [json.dumps(GOOD_PT), "not json at all", json.dumps(pt(id="r1", Label="Z"))]
    _, report = data.load(write_lines(tmp_path / "pt.jsonl", lines), "cosmos_qa_pt")
    rejects = [json.loads(line) for line in report.write_rejects(tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert [r["location"] for r in rejects] == ["line 2", "line 3"]
    assert rejects[1]["id"] == "r1" and rejects[1]["errors"][0]["field"] == "Label"
    assert rejects[0]["record"] == "not json at all"


def test_several_problems_in_one_row_are_all_named(tmp_path):
    _, report = data.load(write_lines(tmp_path / "pt.jsonl", [json.dumps(pt(A="", B=7, Label="X"))]), "cosmos_qa_pt")
    assert {f for f, _ in report.rejects[0].errors} == {"A", "B", "Label"}


def test_unknown_extra_column_warns_and_keeps_the_row(tmp_path):
    dataset, report = data.load(write_lines(tmp_path / "pt.jsonl", [json.dumps(pt(fonte="blog"))]), "cosmos_qa_pt")
    assert len(dataset["train"]) == 1 and report.rejects == []
    assert any("fonte" in w for w in report.warnings)
    assert "fonte" not in dataset["train"].column_names


def test_invalid_utf8_line_is_rejected_not_fatal(tmp_path):
    path = tmp_path / "pt.jsonl"
    path.write_bytes(json.dumps(GOOD_PT).encode() + b"\n" + b'{"id": "\xff\xfe"}\n')
    dataset, report = data.load(path, "cosmos_qa_pt")
    assert len(dataset["train"]) == 1 and "UTF-8" in str(report.rejects[0])


def test_hostile_characters_survive_intact(tmp_path):
    text = 'Ele disse: "não vou" — it\'s “curly”\nnova linha \\ barra 😀 https://x.org/a?b=1&c=2 \u2028 fim\x00'
    row = pt(contexto=text)
    dataset, report = data.load(write_lines(tmp_path / "pt.jsonl", [json.dumps(row)]), "cosmos_qa_pt")
    assert report.rejects == [] and dataset["train"][0]["contexto"] == text


def test_english_schema_labels_and_unlabeled_test_split(tmp_path):
    folder = tmp_path / "cosmos"
    folder.mkdir()
    write_lines(
        folder / "train.jsonl",
        [
            json.dumps(GOOD_EN),
            json.dumps({**GOOD_EN, "id": "en-2", "label": "1"}),
            json.dumps({**GOOD_EN, "id": "en-3", "label": 4}),
        ],
    )
    write_lines(folder / "test.jsonl", [json.dumps({**GOOD_EN, "id": "en-9", "label": -1})])
    dataset, report = data.load(folder, "cosmos_qa_en")
    assert dataset["train"]["id"] == ["en-1"] and dataset["test"]["label"] == [None]
    reasons = [r for reject in report.rejects for _, r in reject.errors]
    assert any("wrong kind" in r for r in reasons) and any("out of range" in r for r in reasons)


def test_duplicate_ids_are_caught_across_splits(tmp_path):
    folder = tmp_path / "pt"
    folder.mkdir()
    write_lines(folder / "train.jsonl", [json.dumps(GOOD_PT)])
    write_lines(folder / "validation.jsonl", [json.dumps(GOOD_PT)])
    dataset, report = data.load(folder, "cosmos_qa_pt")
    assert len(dataset["train"]) == 1 and len(dataset["validation"]) == 0
    assert "first seen at train line 1" in str(report.rejects[0])


def test_csv_and_parquet_sources_are_validated_the_same_way(tmp_path):
    rows = [GOOD_EN, {**GOOD_EN, "id": "en-2", "question": ""}, {**GOOD_EN, "id": "en-3", "label": 2}]
    pd.DataFrame(rows).to_csv(tmp_path / "en.csv", index=False)
    pd.DataFrame(rows).to_parquet(tmp_path / "en.parquet")
    for name in ("en.csv", "en.parquet"):
        dataset, report = data.load(tmp_path / name, "cosmos_qa_en")
        assert dataset["train"]["label"] == [0, 2], name
        assert [r.location for r in report.rejects] == ["row 2"], name
        assert report.rejects[0].errors == [("question", "empty text")]


def test_canarim_null_input_counts_as_empty(tmp_path):
    rows = [
        {"instruction": "Diga oi.", "input": None, "output": "Oi!"},
        {"instruction": "Diga oi.", "output": "Oi"},
        {"instruction": "", "input": "", "output": "x"},
    ]
    dataset, report = data.load(write_lines(tmp_path / "c.jsonl", [json.dumps(r) for r in rows]), "canarim")
    assert dataset["train"]["input"] == ["", ""]
    assert [r.errors for r in report.rejects] == [[("instruction", "empty text")]]


def test_limit_counts_rows_beyond_it(tmp_path):
    lines = [json.dumps(pt(id=f"q{i}")) for i in range(5)]
    dataset, report = data.load(write_lines(tmp_path / "pt.jsonl", lines), "cosmos_qa_pt", limit=2)
    assert len(dataset["train"]) == 2 and report.counts["train"]["beyond_limit"] == 3


def test_missing_local_source_and_missing_split_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load(tmp_path / "nope.jsonl", "canarim")
    folder = tmp_path / "pt"
    folder.mkdir()
    write_lines(folder / "train.jsonl", [json.dumps(GOOD_PT)])
    write_lines(folder / "validation.jsonl", [json.dumps(pt(id="ok-2"))])
    with pytest.raises(ValueError, match=r"\['test'\] not found .*has: \['train', 'validation'\]"):
        data.load(folder, "cosmos_qa_pt", splits=["test"])


def test_a_single_file_serves_whatever_split_is_asked(tmp_path):
    path = write_lines(tmp_path / "pt.jsonl", [json.dumps(GOOD_PT)])
    dataset, report = data.load(path, "cosmos_qa_pt", splits=["validation"])
    assert list(dataset) == ["validation"] and dataset["validation"]["id"] == ["ok-1"]
    assert "single split" in report.warnings[0]
    canarim, _ = data.load(paths.SAMPLES / "canarim.jsonl", "canarim", splits=["validation"])
    assert len(canarim["validation"]) == 96


def test_training_hold_out_is_seeded_and_clamped_for_small_sources(tmp_path, capsys):
    rows = [pt(id=f"r{i}") for i in range(40)]
    path = write_lines(tmp_path / "pt.jsonl", [json.dumps(r) for r in rows])
    splits, _ = data.train_validation(path, "cosmos_qa_pt", 1500, seed=1)  # a preset sized for the Hub dataset
    assert (len(splits["train"]), len(splits["validation"])) == (36, 4)
    assert "holding out 4 for validation (10 %) instead of the 1500" in capsys.readouterr().out
    again, _ = data.train_validation(path, "cosmos_qa_pt", 1500, seed=1)
    assert again["validation"]["id"] == splits["validation"]["id"]
    assert data.holdout_size(96, 16) == (16, None) and data.holdout_size(100, None) == (10, None)
    assert data.holdout_size(100, 0.2) == (20, None)
    # a folder with its own validation split: used as is, unless the caller keeps it unseen (validation_from="train")
    folder = tmp_path / "splits"
    folder.mkdir()
    write_lines(folder / "train.jsonl", [json.dumps(r) for r in rows])
    write_lines(folder / "validation.jsonl", [json.dumps(pt(id="v1")), json.dumps(pt(id="v2"))])
    own, _ = data.train_validation(folder, "cosmos_qa_pt", 8, seed=0)
    assert own["validation"]["id"] == ["v1", "v2"] and len(own["train"]) == 40
    kept_apart, _ = data.train_validation(folder, "cosmos_qa_pt", 8, seed=0, validation_from="train")
    assert len(kept_apart["validation"]) == 8 and not {"v1", "v2"} & set(kept_apart["validation"]["id"])


def test_shortcut_baselines_and_none_of_the_above():
    long_right = pt(A="Em Natal.", B="Em Recife, no bairro de Boa Viagem.", C="Em Belém.", D="Em Manaus.")
    overlap_right = pt(
        id="2",
        contexto="Ana mora em Recife.",
        A="Ela mora em Recife.",
        B="No Rio.",
        C="Em Belém do Pará, no Norte.",
        D="Em São Paulo.",
        Label="A",
    )
    got = data.shortcut_baselines([long_right, overlap_right])
    assert got["longest"] == 0.5 and got["max_overlap"] == 1.0 and got["shortest"] == 0.0 and got["chance"] == 0.25
    assert data.is_none_of_the_above("Nenhuma das opções acima.") and data.is_none_of_the_above(
        " nenhuma das  opções acima "
    )
    assert not data.is_none_of_the_above("Nenhuma das opções acima está errada.")


def test_label_mapping_round_trip_and_errors():
    assert [data.label_to_letter(i) for i in range(4)] == ["A", "B", "C", "D"]
    assert [data.letter_to_label(c) for c in "ABCD"] == [0, 1, 2, 3]
    for bad in (4, -1, True, "1"):
        with pytest.raises(ValueError):
            data.label_to_letter(bad)
    with pytest.raises(ValueError):
        data.letter_to_label("E")


# ---------------------------------------------------------------- synthetic data


def test_synthetic_data_is_seeded_valid_and_answerable_only_from_context(tmp_path):
    first = synthetic.generate(seed=3, sizes={"train": 300, "validation": 60})
    assert (
        first["train"].to_list()
        == synthetic.generate(seed=3, sizes={"train": 300, "validation": 60})["train"].to_list()
    )
    assert first["train"].to_list() != synthetic.generate(seed=4, sizes={"train": 300})["train"].to_list()
    contexts = {split: set(ds["contexto"]) for split, ds in first.items()}
    assert not contexts["train"] & contexts["validation"]
    for row in first["train"]:
        assert row["id"].startswith("synthetic-train-")
        options = [row[c] for c in "ABCD"]
        assert len(set(options)) == 4
        answer = row[row["Label"]]
        in_context = [o for o in options if o.rstrip(".").lower() in row["contexto"].lower()]
        # the story holds the answer and no distractor (so the options alone never tell the answer)
        assert in_context == ([] if answer == synthetic.NONE_OF_THE_ABOVE else [answer]), row["id"]
    assert set(first["train"]["Label"]) == set("ABCD")
    for row in synthetic.generate(seed=3, sizes={"train": 100}, near_miss=True)["train"]:
        answer = row[row["Label"]]
        in_context = [row[c] for c in "ABCD" if row[c].rstrip(".").lower() in row["contexto"].lower()]
        if answer != synthetic.NONE_OF_THE_ABOVE:  # the harder variant: the other person's value is offered too
            assert answer in in_context and len(in_context) >= 2
    # The generated rows pass the same validation as any other source.
    data.write_jsonl(first["train"], tmp_path / "s.jsonl")
    _, report = data.load(tmp_path / "s.jsonl", "cosmos_qa_pt")
    assert report.rejects == []


def test_default_synthetic_sizes():
    sizes = {split: len(ds) for split, ds in synthetic.generate().items()}
    assert sizes["train"] >= 800 and sizes["validation"] > 0 and sizes["test"] > 0
