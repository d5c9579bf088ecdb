"""An OpenAI-compatible chat-completions server on 127.0.0.1, serving a real (tiny) model.

It stands where vLLM would (``vllm serve <base> --enable-lora --lora-modules <name>=<adapter>``):
``POST /v1/chat/completions`` with the request fields vLLM honours here (``model``, ``messages``,
``max_tokens``/``max_completion_tokens``, ``temperature``, ``stop``, ``stream``,
``stream_options.include_usage``), answered by a :class:`~langchain_rpo.ReflectionModel`. Like
vLLM, a stop sequence ends the generation and is *not* part of the returned text. Requests are
checked (a wrong model name is a 404, as vLLM answers it) and recorded for the tests.

Tests that use it need sockets for loopback only::

    pytestmark = [pytest.mark.local_http, pytest.mark.enable_socket,
                  pytest.mark.allow_hosts(["127.0.0.1"])]
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

__all__ = ["ChatCompletionsServer", "serve_chat_completions"]

_ROLES: dict[str, type[BaseMessage]] = {
    "system": SystemMessage,
    "user": HumanMessage,
    "assistant": AIMessage,
}


class ChatCompletionsServer(ThreadingHTTPServer):
    """Serves ``reflection`` under the model name ``served_name``; records every request body."""

    daemon_threads = True

    def __init__(self, reflection: Any, served_name: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.reflection = reflection
        self.served_name = served_name
        self.requests: list[dict[str, Any]] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: ChatCompletionsServer

    def log_message(self, *args: Any) -> None:  # keep the test output clean
        pass

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        if self.path != "/v1/chat/completions":
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(request)
        if request.get("model") != self.server.served_name:
            self._json(
                404,
                {"error": {"message": f"The model `{request.get('model')}` does not exist."}},
            )
            return
        try:
            messages = [_ROLES[m["role"]](content=m["content"]) for m in request["messages"]]
        except (KeyError, TypeError) as err:
            self._json(400, {"error": {"message": f"bad messages: {err!r}"}})
            return
        stop = request.get("stop")
        stop = [stop] if isinstance(stop, str) else stop
        budget = request.get("max_completion_tokens") or request.get("max_tokens") or 256
        (answer,) = self.server.reflection.generate_texts(
            [messages], stop=stop, max_new_tokens=int(budget)
        )
        usage = {
            "prompt_tokens": answer.usage_metadata["input_tokens"],
            "completion_tokens": answer.usage_metadata["output_tokens"],
            "total_tokens": answer.usage_metadata["total_tokens"],
        }
        finish = answer.response_metadata["finish_reason"]
        created, ident = int(time.time()), f"chatcmpl-{len(self.server.requests)}"
        if not request.get("stream"):
            self._json(
                200,
                {
                    "id": ident,
                    "object": "chat.completion",
                    "created": created,
                    "model": self.server.served_name,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": answer.content},
                            "finish_reason": finish,
                        }
                    ],
                    "usage": usage,
                },
            )
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        text = str(answer.content)
        pieces = [text[i : i + 5] for i in range(0, len(text), 5)]
        deltas = [{"role": "assistant", "content": ""}] + [{"content": p} for p in pieces]
        for n, delta in enumerate(deltas):
            last = n == len(deltas) - 1
            self._event(ident, created, delta, finish if last else None)
        if (request.get("stream_options") or {}).get("include_usage"):
            self._send({"id": ident, "object": "chat.completion.chunk", "created": created,
                        "model": self.server.served_name, "choices": [], "usage": usage})
        self.wfile.write(b"data: [DONE]\n\n")

    def _event(self, ident: str, created: int, delta: dict[str, Any], finish: str | None) -> None:
        self._send(
            {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.server.served_name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
        )

    def _send(self, body: dict[str, Any]) -> None:
        self.wfile.write(f"data: {json.dumps(body)}\n\n".encode())
        self.wfile.flush()


@contextmanager
def serve_chat_completions(reflection: Any, served_name: str) -> Iterator[ChatCompletionsServer]:
    """Run a :class:`ChatCompletionsServer` in a thread for the duration of the block."""
    server = ChatCompletionsServer(reflection, served_name)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
