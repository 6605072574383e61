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

FAULTS = ("bad_json", "prose", "missing_key", "extra_key", "empty_field", "copy", "fence", "429", "500", "slow",
          "timeout")


def translate(source: dict) -> dict:
    return {dst: "[pt] " + source[src] for src, dst in FIELD_PAIRS.items()}


class ChatServer:
    def __init__(self, faults: dict[str, list[str]] | None = None, delay: float = 0.0, hang_seconds: float = 3.0,
                 retry_after: str = "1"):
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
    def handle(self, handler, body: dict) -> None:
        source = json.loads(body["messages"][-1]["content"])
        with self.lock:
            queue = self.faults.get(source["context"], [])
            fault = queue.pop(0) if queue else None
            self.requests.append({"context": source["context"], "fault": fault, "time": time.monotonic(),
                                  "body": body})
        if self.delay:
            time.sleep(self.delay)
        if fault == "429":
            return self._send(handler, 429, {"error": {"message": "rate limited", "type": "rate_limit"}},
                              {"Retry-After": self.retry_after})
        if fault == "500":
            return self._send(handler, 500, {"error": {"message": "boom", "type": "server_error"}})
        if fault == "timeout":
            time.sleep(self.hang_seconds)
        if fault == "slow":
            time.sleep(0.3)
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
        self._send(handler, 200, {
            "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

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
