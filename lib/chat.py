"""Chat with a preset (+ a LoRA adapter) in a notebook: tokens streamed as they come, the prompt rendered and
tokenized exactly as training did, and generation ending on the model's EOS / end-of-turn token.

Two prompt styles, each rendered and tokenized as training did:
- "alpaca": the Alpaca-PT template of the Canarim instruction tune (notebook 04, `prompts.alpaca_pt_prompt`).
  Single-turn by construction: the template holds one instruction and one answer, and training never saw earlier
  turns, so every message is a fresh instruction (the transcript still records every turn).
- "chat": the tokenizer's chat template (`apply_chat_template(..., add_generation_prompt=True)`, as in
  `prompts.render_cosmos`). Multi-turn: earlier user and assistant messages are part of the next prompt.

`ChatSession.send` is the plain function call (headless, papermill); `widget(session)` wraps it in an ipywidgets
box for Jupyter / Colab.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lib import inference, prompts

STYLES = ("alpaca", "chat")


def print_piece(piece: str) -> None:
    print(piece, end="", flush=True)


def reply_from_ids(tokenizer, new_ids: list[int], stops) -> dict:
    """text / tokens / stopped_on_eos from the ids generated after the prompt.

    Generation ends at the first stop token, so it stopped on EOS exactly when the last id is one; otherwise it ran
    into `max_new_tokens` and the answer is cut off. `tokens` counts the stop token (as `inference.generate` does).
    """
    stopped = bool(new_ids) and new_ids[-1] in set(stops)
    body = new_ids[:-1] if stopped else new_ids
    return {"text": tokenizer.decode(body, skip_special_tokens=True), "tokens": len(new_ids), "stopped_on_eos": stopped}


def status(reply: dict) -> str:
    end = "stopped on EOS" if reply["stopped_on_eos"] else "cut at max_new_tokens"
    return f"[{reply['tokens']} tokens · {reply['seconds']:.1f} s · {end}]"


class _Cancelled:
    """Stopping criterion set from the reading thread: Ctrl-C / kernel interrupt also stops the generation thread."""

    def __init__(self):
        self.event = threading.Event()

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


@dataclass
class ChatSession:
    model: object
    tokenizer: object
    style: str = "chat"
    max_new_tokens: int = 256
    system: str | None = None  # chat style only; None keeps the template's default system prompt, if any
    repetition_penalty: float | None = None  # e.g. 1.2 tames a base model's loops; None = plain greedy, as 07 measures
    messages: list[dict] = field(default_factory=list)  # chat history (chat style only)
    transcript: list[dict] = field(default_factory=list)  # every turn, both styles

    def __post_init__(self):
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {self.style!r}")
        if self.style == "chat" and not getattr(self.tokenizer, "chat_template", None):
            raise ValueError("this tokenizer has no chat template: use style='alpaca' (e.g. sabia-7b + the 04 adapter)")
        self.stops = inference.stop_token_ids(self.tokenizer)

    @classmethod
    def load(
        cls, model: str, adapter: str | None = None, style: str = "chat", quantize_4bit: bool = False, **kwargs
    ) -> ChatSession:
        """A preset / hub id / folder plus an optional PEFT adapter folder, loaded as notebooks 06-07 load them."""
        net, tokenizer = inference.load_for_eval(model, adapter, quantize_4bit=quantize_4bit)
        return cls(net, tokenizer, style, **kwargs)

    def render(self, text: str) -> str:
        """The prompt text for the next turn, from the same functions training rendered its examples with."""
        if self.style == "alpaca":
            return prompts.alpaca_pt_prompt(text)
        system = [{"role": "system", "content": self.system}] if self.system else []
        return self.tokenizer.apply_chat_template(
            system + self.messages + [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )

    def encode(self, prompt: str) -> list[int]:
        # As training tokenized it (and the evaluators do): Alpaca-PT is plain text and gets the BOS; a rendered
        # chat template already contains it.
        return inference.encode(self.tokenizer, prompt, plain_text=self.style == "alpaca")

    def send(self, text: str, stream: Callable[[str], None] | None = print_piece) -> dict:
        """One turn: stream the reply's text pieces to `stream` (None = silent) and return
        {text, tokens, stopped_on_eos, seconds}. Greedy decoding, stopping on EOS / end-of-turn."""
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        prompt_ids = torch.tensor([self.encode(self.render(text))], device=next(self.model.parameters()).device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        cancel = _Cancelled()
        result = {}

        def run():  # generate() fills the streamer from a thread; this thread hands the pieces out as they come
            try:
                result["ids"] = self.model.generate(
                    input_ids=prompt_ids,
                    attention_mask=torch.ones_like(prompt_ids),
                    streamer=streamer,
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    eos_token_id=self.stops,
                    pad_token_id=self.tokenizer.pad_token_id,
                    repetition_penalty=self.repetition_penalty,
                    stopping_criteria=StoppingCriteriaList([cancel]),
                )
            except BaseException as error:  # re-raised below, in the caller's thread
                result["error"] = error
                streamer.end()  # unblock the reader

        start = time.monotonic()
        worker = threading.Thread(target=run, name="chat-generate", daemon=True)
        worker.start()
        try:
            for piece in streamer:
                if stream is not None and piece:
                    stream(piece)
        except BaseException:
            cancel.event.set()  # e.g. KeyboardInterrupt: do not leave a thread generating in the background
            raise
        finally:
            worker.join()
        if "error" in result:
            raise result["error"]
        new_ids = result["ids"][0, prompt_ids.shape[1] :].tolist()
        reply = {**reply_from_ids(self.tokenizer, new_ids, self.stops), "seconds": round(time.monotonic() - start, 3)}
        if self.style == "chat":
            self.messages += [{"role": "user", "content": text}, {"role": "assistant", "content": reply["text"]}]
        self.transcript.append({"turn": len(self.transcript) + 1, "style": self.style, "user": text, **reply})
        return reply

    def reset(self) -> None:
        """Start a new conversation (history and transcript)."""
        self.messages.clear()
        self.transcript.clear()


def summary(transcript: list[dict]) -> dict:
    """Turns, share of replies that ended on EOS (the rest hit max_new_tokens), mean tokens and speed."""
    n = len(transcript)
    tokens, seconds = sum(t["tokens"] for t in transcript), sum(t["seconds"] for t in transcript)
    return {
        "turns": n,
        "eos_stop_rate": round(sum(t["stopped_on_eos"] for t in transcript) / n, 4) if n else None,
        "mean_tokens": round(tokens / n, 2) if n else None,
        "tokens_per_second": round(tokens / seconds, 2) if seconds else None,
    }


def load_turns(path: str | Path) -> list[str]:
    """Scripted user turns: a JSON list of strings, or a text file with one turn per line (blank lines skipped)."""
    text = Path(path).read_text(encoding="utf-8")
    if Path(path).suffix == ".json":
        turns = json.loads(text)
        if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
            raise ValueError(f"{path}: expected a JSON list of strings")
        return [t for t in turns if t.strip()]
    return [line.strip() for line in text.splitlines() if line.strip()]


def widget(session: ChatSession):
    """A text box, Send / New chat buttons and the streamed conversation, for Jupyter and Colab."""
    import ipywidgets as w  # lazily: headless runs never need it

    try:  # Colab renders ipywidgets 8 only through its custom widget manager
        from google.colab import output

        output.enable_custom_widget_manager()
    except ImportError:
        pass
    box = w.Text(
        placeholder="Type a message (an instruction in alpaca style) and press Send", layout=w.Layout(width="70%")
    )
    send, new = w.Button(description="Send", button_style="primary"), w.Button(description="New chat")
    log = w.Output(layout=w.Layout(border="1px solid #ccc", padding="4px"))

    def on_send(_):
        text = box.value.strip()
        if not text:
            return
        box.value, send.disabled = "", True
        try:
            with log:  # prints inside the Output widget arrive piece by piece: the streamed reply
                print(f"\n> {text}")
                print(f"\n{status(session.send(text))}")
        finally:
            send.disabled = False

    def on_new(_):
        session.reset()
        log.clear_output()

    send.on_click(on_send)
    new.on_click(on_new)
    return w.VBox([w.HBox([box, send, new]), log])
