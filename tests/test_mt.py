"""The offline MT engine's text handling (lib/mt.py): each step alone, then whole fields through the real engine."""

import json

import pytest

from lib import data, mt

ENGINE = mt.engine()


def words(text: str) -> int:
    return len(text.split())


# ---------------------------------------------------------------- each step alone


@pytest.mark.parametrize(
    "tokenized, expected",
    [
        ("I do n't know , but it 's fine .", "I don't know, but it's fine."),
        ("She wo n't come ; they ca n't either !", "She won't come; they can't either!"),
        ("I wo nt go , I do nt care and it is nt fair .", "I won't go, I don't care and it isn't fair."),
        ("I 've been there ... twice ( really ) .", "I've been there... twice (really)."),
        ('He said " do n\'t go " and left .', 'He said "don\'t go" and left.'),
        ("Already normal text, isn't it?", "Already normal text, isn't it?"),
    ],
)
def test_detokenize_undoes_the_datasets_tokenization(tokenized, expected):
    assert mt.detokenize(tokenized) == expected


@pytest.mark.parametrize("text", ["one", "a\nb", "a\n\nb", " a \r\n b ", "\n\nlead", "trail\n", "a\n \n\tb", ""])
def test_paragraphs_rebuild_the_layout_exactly(text):
    pieces = mt.paragraphs(text)
    assert "".join(pieces) == text and len(pieces) % 2 == 1


def test_sentences_follow_abbreviations_and_decimals():
    found = mt.sentences('Mr. Smith paid 3.5 dollars at 9 p.m. on Monday. He said "Hi! How are you?" and left.  OK.')
    assert found == ["Mr. Smith paid 3.5 dollars at 9 p.m. on Monday.", 'He said "Hi! How are you?" and left.', "OK."]


SPANS = [
    "https://www.example.com/trains/lisbon-porto?x=1&y=%20z#top",
    "www.example.org/a",
    "ana.silva+news@example.co.uk",
    "C:\\Users\\dana\\Documents\\health\\bp_log.xlsx",
    "C:\\Users\\dana\\Old Reports",
    "/home/sam/notes.txt",
    "~/backups/2019.tar.gz",
    "\\\\server\\share\\file.txt",
    "@maria_22",
    "#tbt",
    "🐶",
    "👩\u200d👩\u200d👧",
    "🇧🇷",
    "👍🏽",
    "❤️",
]


@pytest.mark.parametrize("span", SPANS)
def test_protected_spans_are_masked_and_restored(span):
    text = f"Look at {span} today."
    masked, spans = mt.protect(text)
    assert spans == [span] and span not in masked and mt.restore(masked, spans) == text


def test_urls_leave_trailing_punctuation_outside_and_numbers_are_spans():
    masked, spans = mt.protect("See https://x.com/a. Then (www.y.org/b), ok?")
    assert spans == ["https://x.com/a", "www.y.org/b"]
    assert mt.protected_spans("It cost $1,250.00, 45% off, at 9:40 on 2019-03-04.") == [
        "$1,250.00",
        "45%",
        "9:40",
        "2019",
        "03",
        "04",
    ]


def test_a_literal_placeholder_in_the_source_is_itself_protected():
    masked, spans = mt.protect("The ZXQ0 code and https://a.b/c")
    assert spans == ["ZXQ0", "https://a.b/c"] and mt.restore(masked, spans) == "The ZXQ0 code and https://a.b/c"


def test_long_sentences_are_cut_at_clause_boundaries():
    sentence = ", ".join(f"clause number {i} goes on for a while" for i in range(20)) + "."
    pieces = mt.short_pieces(sentence, max_words=30)
    assert all(words(p) <= 30 for p in pieces) and len(pieces) >= 5
    assert " ".join(pieces).replace(" ", "") == sentence.replace(" ", "")  # nothing lost
    unbroken = " ".join(["word"] * 130)
    assert all(words(p) <= 60 for p in mt.short_pieces(unbroken)) and sum(map(words, mt.short_pieces(unbroken))) == 130


def test_guards_recognise_shouting_doubling_and_script():
    assert mt.is_shouting("WHY WOULD YOU DO THAT?") and not mt.is_shouting("I met NASA staff.")
    assert not mt.is_shouting("OK.") and not mt.is_shouting("Why would you do that?")
    assert mt.undouble("Sim. Sim.") == "Sim." and mt.undouble("Cansado cansado") == "Cansado"
    assert mt.undouble("Muito obrigado.") == "Muito obrigado."
    assert not mt.is_latin("Привет, как дела?") and mt.is_latin("Ação, coração e pão.") and mt.is_latin("123 !")


def test_none_of_the_above_is_the_datasets_fixed_option():
    for variant in ("None of the above choices .", "None of the above choices.", "none of the above choices"):
        assert mt.translate_text(variant, ENGINE) == data.NONE_OF_THE_ABOVE


# ---------------------------------------------------------------- whole fields through the real engine

HOSTILE = (
    "Before our trip , I checked https://www.example.com/trains/lisbon-porto and e-mailed ana.silva@example.com .\n\n"
    "The report is in C:\\Users\\dana\\Old Reports and /home/sam/notes.txt , it cost $1,250.00 and 3.5 kg of paper .\n"
    'My dad sent 🐶 and 👩\u200d👩\u200d👧 , I said " Hello 🐶 ! " at 9:40 p.m. on 2019-03-04 .'
)


def test_a_hostile_field_keeps_every_span_number_and_line_break():
    out = mt.translate_text(HOSTILE, ENGINE)
    for span in mt.protected_spans(HOSTILE):
        assert span in out, span
    assert out.count("\n") == HOSTILE.count("\n") and "\n\n" in out
    assert "ZXQ" not in out and " ," not in out  # no placeholder left, tokenization undone
    assert (
        mt.quality(
            {
                "context": HOSTILE,
                "question": "Why ?",
                "answer0": "A bus .",
                "answer1": "A car .",
                "answer2": "A train .",
                "answer3": "A plane .",
            },
            {
                "contexto": out,
                "pergunta": "Por quê?",
                "A": "Um ônibus.",
                "B": "Um carro.",
                "C": "Um trem.",
                "D": "Um avião.",
            },
            ENGINE,
        )["reasons"]
        == []
    )


def test_all_caps_is_translated_and_stays_in_capitals():
    out = mt.translate_text("WHY WOULD YOU DO THAT ? I AM SO ANGRY .", ENGINE)
    assert out == out.upper() and words(out) <= 12 and "WHY" not in out


def test_a_long_paragraph_comes_back_at_a_sane_length():
    """The engine alone returns 88 words of nonsense for a 720-word paragraph, or a 379-word one doubled."""
    story = (
        "I woke up early because the neighbors were moving furniture , and since I could not sleep I made "
        "coffee and read the news for a while before my sister called to ask about the weekend . "
    ) * 20
    out = mt.translate_text(story, ENGINE)
    assert 0.7 < words(out) / words(story) < 1.4
    unpunctuated = " ".join(story.replace(",", "").replace(".", "").split()[:400])
    out = mt.translate_text(unpunctuated, ENGINE)
    assert 0.6 < words(out) / words(unpunctuated) < 1.5


def test_a_20000_character_context_translates_without_a_crash():
    sentence = "The bakery on our corner sells fresh bread every morning and the line goes around the block. "
    text = (sentence * (data.MAX_TEXT_CHARS // len(sentence)))[: data.MAX_TEXT_CHARS].rsplit(" ", 1)[0]
    out = mt.translate_text(text, ENGINE)
    assert 0.7 < words(out) / words(text) < 1.4


def test_control_characters_are_removed_and_non_latin_script_is_kept():
    out = mt.translate_text("Hello\x07 there\x00, friend.", ENGINE)
    assert "\x07" not in out and "\x00" not in out
    assert mt.translate_text("Привет, как дела?", ENGINE) == "Привет, как дела?"
    mixed = mt.translate_text("She said Привет and smiled.", ENGINE)
    assert "Привет" in mixed


# ---------------------------------------------------------------- quality estimation

SOURCE = {
    "context": "I stayed at the office until nine because the report was due this morning . My manager "
    "thanked me by email an hour later .",
    "question": "Why did the narrator stay late ?",
    "answer0": "To clean the office .",
    "answer1": "They missed the bus .",
    "answer2": "A report was due the next morning .",
    "answer3": "To avoid a family dinner .",
}


def _good():
    return {dst: mt.translate_text(SOURCE[src], ENGINE) for src, dst in zip(mt.SOURCE_KEYS, mt.TARGET_KEYS)}


def test_a_clean_translation_is_not_flagged():
    estimate = mt.quality(SOURCE, _good(), ENGINE)
    assert mt.flag_reasons(estimate) == [] and estimate["round_trip_chrf"] > mt.QE_THRESHOLD


@pytest.mark.parametrize(
    "change, reason",
    [
        (
            {"contexto": "Batata batata batata batata batata batata batata batata batata batata batata."},
            "round-trip chrF",
        ),
        ({"contexto": "Fiquei."}, "length ratio"),
        ({"C": "same as A"}, "options made identical"),
        ({"pergunta": "Why did the narrator stay late at the office?"}, "English words left"),
        (
            {
                "contexto": "Fiquei no escritório até as nove porque o relatório vencia hoje de manhã. Meu gerente me "
                "agradeceu por e-mail uma hora depois, uma hora depois, uma hora depois, uma hora depois."
            },
            "repeated phrase",
        ),
        ({"A": ""}, "empty translation"),
    ],
)
def test_each_problem_is_flagged_with_its_reason(change, reason):
    good = _good()
    estimate = mt.quality(
        SOURCE, {**good, **{k: good["A"] if v == "same as A" else v for k, v in change.items()}}, ENGINE
    )
    assert any(reason in r for r in mt.flag_reasons(estimate)), mt.flag_reasons(estimate)


def test_lost_spans_line_breaks_and_script_are_flagged():
    source = {**SOURCE, "context": "See https://x.com/a now .\nThen Привет ."}
    translation = {**_good(), "contexto": "Veja agora. Então Привет."}
    reasons = mt.flag_reasons(mt.quality(source, translation, ENGINE))
    assert any("https://x.com/a" in r for r in reasons) and any("line breaks" in r for r in reasons)
    assert any("non-Latin" in r for r in reasons)


def test_the_threshold_is_applied_when_flagging_not_when_estimating():
    estimate = mt.quality(SOURCE, _good(), ENGINE)
    assert mt.flag_reasons(estimate, threshold=101) == [f"round-trip chrF {estimate['round_trip_chrf']} < 101"]
    assert json.loads(json.dumps(estimate)) == estimate  # cacheable as it is
