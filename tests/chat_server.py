"""A real HTTP server on 127.0.0.1 that speaks the OpenAI chat-completions API, with scripted faults.

Its "translation" is deterministic and lossless (`"[pt] " + text` for every field), so tests can check that any
character survived the round trip. Faults are scheduled per record (keyed by its English context), one per
attempt, in order; when a record's list is used up it gets correct replies.
Used by tests/test_translate.py and bench/translate_throughput.py.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lib.translate import FIELD_PAIRS

FAULTS = (
    "bad_json",
    "prose",
    "missing_key",
    "extra_key",
    "empty_field",
    "copy",
    "fence",
    "429",
    "500",
    "slow",
    "timeout",
)


def translate(source: dict) -> dict:
    return {dst: "[pt] " + source[src] for src, dst in FIELD_PAIRS.items()}


class ChatServer:
    def __init__(
        self,
        faults: dict[str, list[str]] | None = None,
        delay: float = 0.0,
        hang_seconds: float = 3.0,
        retry_after: str = "1",
    ):
        self.faults = {k: list(v) for k, v in (faults or {}).items()}
        self.delay, self.hang_seconds, self.retry_after = delay, hang_seconds, retry_after
        self.requests: list[dict] = []  # {"context", "fault", "time", "body"}
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.handle(self, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def attempts(self, context: str) -> int:
        return sum(r["context"] == context for r in self.requests)

    # ------------------------------------------------------------ replies
    def key(self, body: dict) -> str:
        """What faults are scheduled by and requests counted by: the English context of the record."""
        return json.loads(body["messages"][-1]["content"])["context"]

    def handle(self, handler, body: dict) -> None:
        key = self.key(body)
        with self.lock:
            queue = self.faults.get(key, [])
            fault = queue.pop(0) if queue else None
            self.requests.append({"context": key, "key": key, "fault": fault, "time": time.monotonic(), "body": body})
        if self.delay:
            time.sleep(self.delay)
        if fault == "429":
            return self._send(
                handler,
                429,
                {"error": {"message": "rate limited", "type": "rate_limit"}},
                {"Retry-After": self.retry_after},
            )
        if fault == "500":
            return self._send(handler, 500, {"error": {"message": "boom", "type": "server_error"}})
        if fault == "timeout":
            time.sleep(self.hang_seconds)
        if fault == "slow":
            time.sleep(0.3)
        self._send(
            handler,
            200,
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": self.content(body, fault)},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        )

    def content(self, body: dict, fault: str | None) -> str:
        source = json.loads(body["messages"][-1]["content"])
        reply = translate(source)
        content = json.dumps(reply, ensure_ascii=False)
        if fault == "bad_json":
            content = str(reply)  # a Python dict repr: single quotes, what eval() accepted
        elif fault == "prose":
            content = "Claro! Aqui está a tradução:\n" + content
        elif fault == "missing_key":
            content = json.dumps({k: v for k, v in reply.items() if k != "D"}, ensure_ascii=False)
        elif fault == "extra_key":
            content = json.dumps({**reply, "E": "[pt] outra"}, ensure_ascii=False)
        elif fault == "empty_field":
            content = json.dumps({**reply, "B": "  "}, ensure_ascii=False)
        elif fault == "copy":
            content = json.dumps({**reply, "contexto": source["context"]}, ensure_ascii=False)
        elif fault == "fence":
            content = f"```json\n{content}\n```"
        return content

    @staticmethod
    def _send(handler, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            pass


class JudgeServer(ChatServer):
    """An OpenAI-compatible judge with a known bias. `policy`: "first" always prefers the answer it reads first
    (and scores 5), "longer" prefers the longer answer (and scores by length). Faults are keyed by the request's
    user message; content faults: "malformed" (not JSON), "prose" (text before the JSON), "bad_winner", "bad_score"."""

    def __init__(self, policy: str = "first", **kwargs):
        super().__init__(**kwargs)
        self.policy = policy

    def key(self, body: dict) -> str:
        return body["messages"][-1]["content"]

    def content(self, body: dict, fault: str | None) -> str:
        text = body["messages"][-1]["content"]
        if "### Resposta A:\n" in text:
            first, second = text.split("### Resposta A:\n", 1)[1].split("\n\n### Resposta B:\n", 1)
            winner = (
                "A"
                if self.policy == "first" or len(first) > len(second)
                else ("B" if len(second) > len(first) else "tie")
            )
            verdict = {"winner": winner, "reason": f"política {self.policy}"}
        else:
            answer = text.split("### Resposta do assistente:\n", 1)[1]
            verdict = {
                "score": 5 if self.policy == "first" else min(10, 1 + len(answer) // 10),
                "reason": f"política {self.policy}",
            }
        content = json.dumps(verdict, ensure_ascii=False)
        if fault == "malformed":
            return "winner: A"
        if fault == "prose":
            return "Minha decisão: " + content
        if fault == "bad_winner":
            return json.dumps({"winner": "C", "reason": "x"})
        if fault == "bad_score":
            return json.dumps({"score": 11, "reason": "x"})
        return content
