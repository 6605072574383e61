"""Chat (notebook 08) on a real model: SmolLM2-135M-Instruct (`embedded-small`), greedy, a few short turns."""

import json
import threading
import time

import pytest
from trl.data_utils import _tokenize  # exactly what SFTTrainer calls on each training example

from lib import chat, inference, plots, prompts

INSTRUCTION = "Liste exatamente três frutas tropicais."


@pytest.fixture(scope="module")
def smol():
    return inference.load_for_eval("embedded-small")


def session(smol, style="chat", max_new_tokens=32):
    net, tokenizer = smol
    return chat.ChatSession(net, tokenizer, style, max_new_tokens=max_new_tokens)


# ---------------------------------------------------------------- the prompt training saw


@pytest.mark.parametrize("which", ["gemma_tokenizer", "smol_tokenizer"])
def test_alpaca_style_renders_and_tokenizes_like_training(which, request):
    tokenizer = request.getfixturevalue(which)
    s = chat.ChatSession(None, tokenizer, "alpaca")  # rendering needs no model
    prompt = s.render(INSTRUCTION)
    assert prompt == prompts.alpaca_pt_prompt(INSTRUCTION)
    assert s.encode(prompt) == _tokenize(tokenizer, prompt)["input_ids"]  # Gemma: with its <bos>, once


@pytest.mark.parametrize("which", ["gemma_tokenizer", "smol_tokenizer"])
def test_chat_style_renders_and_tokenizes_like_training(which, request):
    tokenizer = request.getfixturevalue(which)
    s = chat.ChatSession(None, tokenizer, "chat")
    messages = [{"role": "user", "content": INSTRUCTION}]
    prompt = s.render(INSTRUCTION)
    assert prompt == tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert s.encode(prompt) == _tokenize(tokenizer, messages, add_generation_prompt=True)["input_ids"]


def test_chat_style_needs_a_chat_template(smol_tokenizer):
    import copy

    plain = copy.deepcopy(smol_tokenizer)
    plain.chat_template = None
    with pytest.raises(ValueError, match="alpaca"):
        chat.ChatSession(None, plain, "chat")
    with pytest.raises(ValueError, match="style"):
        chat.ChatSession(None, smol_tokenizer, "instruct")


# ---------------------------------------------------------------- streaming and stopping


def test_streamed_pieces_are_the_reply_and_it_stops_on_end_of_turn(smol):
    s = session(smol, "chat", max_new_tokens=32)
    pieces = []
    reply = s.send("Hi!", stream=pieces.append)  # SmolLM2-Instruct answers a greeting in ~10 tokens + <|im_end|>
    assert len(pieces) > 1 and "".join(pieces) == reply["text"] and reply["text"].strip()
    assert reply["stopped_on_eos"] and reply["tokens"] < 32
    assert "<|im_end|>" not in reply["text"] and reply["seconds"] > 0


def test_a_reply_cut_by_max_new_tokens_is_not_an_eos_stop(smol):
    reply = session(smol, "alpaca", max_new_tokens=5).send(INSTRUCTION, stream=None)
    assert reply["stopped_on_eos"] is False and reply["tokens"] == 5


def test_an_error_while_streaming_stops_the_generation_thread(smol):
    s = session(smol, "alpaca", max_new_tokens=2000)  # uncancelled, this would run for minutes on CPU

    def interrupt(piece):
        raise KeyboardInterrupt  # what Ctrl-C / "interrupt kernel" raises in the reading thread

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        s.send(INSTRUCTION, stream=interrupt)
    assert time.monotonic() - start < 30 and s.transcript == []
    assert not [t for t in threading.enumerate() if t.name == "chat-generate"]


def test_stopped_on_eos_is_read_from_the_generated_ids(smol_tokenizer):
    stops = inference.stop_token_ids(smol_tokenizer)
    body = smol_tokenizer("Manga, abacaxi e maracujá.", add_special_tokens=False)["input_ids"]
    ended = chat.reply_from_ids(smol_tokenizer, body + [smol_tokenizer.eos_token_id], stops)
    assert ended == {"text": "Manga, abacaxi e maracujá.", "tokens": len(body) + 1, "stopped_on_eos": True}
    assert chat.reply_from_ids(smol_tokenizer, body, stops)["stopped_on_eos"] is False
    assert chat.reply_from_ids(smol_tokenizer, [], stops) == {"text": "", "tokens": 0, "stopped_on_eos": False}


# ---------------------------------------------------------------- history


def test_chat_style_keeps_the_conversation_and_alpaca_style_does_not(smol):
    s = session(smol, "chat", max_new_tokens=12)
    first = s.send("Hi!", stream=None)
    prompt = s.render("Qual é a capital do Brasil?")
    assert prompt == smol[1].apply_chat_template(
        [
            {"role": "user", "content": "Hi!"},
            {"role": "assistant", "content": first["text"]},
            {"role": "user", "content": "Qual é a capital do Brasil?"},
        ],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert prompt.index("Hi!") < prompt.index(first["text"]) < prompt.index("Qual é a capital")

    a = session(smol, "alpaca", max_new_tokens=3)
    a.send(INSTRUCTION, stream=None)
    assert a.render("Qual é a capital do Brasil?") == prompts.alpaca_pt_prompt("Qual é a capital do Brasil?")
    assert [t["turn"] for t in a.transcript] == [1] and a.messages == []
    s.reset()
    assert s.messages == [] and s.transcript == []


# ---------------------------------------------------------------- notebook helpers


def test_summary_turn_files_plot_and_widget(smol, tmp_path):
    transcript = [
        {"turn": 1, "tokens": 10, "stopped_on_eos": True, "seconds": 1.0},
        {"turn": 2, "tokens": 30, "stopped_on_eos": False, "seconds": 1.0},
    ]
    assert chat.summary(transcript) == {
        "turns": 2,
        "eos_stop_rate": 0.5,
        "mean_tokens": 20.0,
        "tokens_per_second": 20.0,
    }
    assert chat.summary([])["eos_stop_rate"] is None
    (tmp_path / "turns.json").write_text(json.dumps([INSTRUCTION, " ", "Oi"]), encoding="utf-8")
    (tmp_path / "turns.txt").write_text(f"{INSTRUCTION}\n\nOi\n", encoding="utf-8")
    assert chat.load_turns(tmp_path / "turns.json") == chat.load_turns(tmp_path / "turns.txt") == [INSTRUCTION, "Oi"]
    assert plots.chat_turns(transcript, 30, tmp_path / "turns.png", "t").stat().st_size > 0

    s = session(smol, "chat", max_new_tokens=3)
    box = chat.widget(s)
    text, send, _ = box.children[0].children
    text.value = "Hi!"
    send.click()  # what the button does in Jupyter / Colab
    assert len(s.transcript) == 1 and s.transcript[0]["user"] == "Hi!" and text.value == ""
