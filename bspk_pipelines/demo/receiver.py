"""A webhook receiver on 127.0.0.1, as a brand's engineer would write one: it verifies every
delivery's Standard Webhooks signature with the reference library (`standardwebhooks`), answers
2xx fast, and de-duplicates by `webhook-id`.

`bspk webhooks receive` runs it to try an endpoint out; `bspk demo` starts one so the sample
brands' events have somewhere to go; the tests script its answers to play a failing receiver.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    webhook_id: str
    event_name: str
    obj: dict
    headers: dict[str, str]


@dataclass
class Answer:
    """How the receiver answers one request (after verifying it)."""

    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class Receiver:
    """Starts on construction (port 0: any free port); `url` is where to deliver. Every verified
    delivery is kept in `received` (duplicates included) and `unique` (first of each webhook-id).
    `answer`, if given, decides each response; by default every verified delivery gets 204."""

    def __init__(self, secret: str, port: int = 0, path: str = "/webhooks",
                 answer: Callable[[Received], Answer] | None = None, on_event: Callable[[Received], None] | None = None):
        self.secret, self.path, self.answer, self.on_event = secret, path, answer, on_event
        self.received: list[Received] = []
        self.unique: dict[str, Received] = {}
        self.rejected = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{self.path}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    envelope = Webhook(receiver.secret).verify(body, headers)
                except WebhookVerificationError:
                    with receiver.lock:
                        receiver.rejected += 1
                    self._reply(Answer(401))
                    return
                got = Received(headers["webhook-id"], envelope["event_name"], envelope["object"], headers)
                answer = receiver.answer(got) if receiver.answer else Answer()
                if answer.delay:
                    threading.Event().wait(answer.delay)
                if 200 <= answer.status < 300:
                    with receiver.lock:
                        receiver.received.append(got)
                        first = receiver.unique.setdefault(got.webhook_id, got) is got
                    if first and receiver.on_event:
                        receiver.on_event(got)
                self._reply(answer)

            def _reply(self, answer: Answer):
                try:
                    self.send_response(answer.status)
                    for k, v in answer.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender gave up waiting (its timeout): nothing to answer

            def log_message(self, *args):
                pass

        return Handler


def describe(event: Received) -> str:
    """One line per event, as `bspk webhooks receive` prints it."""
    obj = event.obj
    if event.event_name.endswith(".updated"):
        what = f"{obj.get('external_id')}: " + ", ".join(
            f"{k} {json.dumps(v['old'])} -> {json.dumps(v['new'])}" for k, v in obj.get("changes", {}).items())
    elif event.event_name == "file_import.finished":
        counts = obj.get("counts", {})
        what = f"{obj.get('file_name')} {obj.get('status')} (" + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")"
    else:
        what = str(obj.get("external_id", ""))
    return f"{event.webhook_id} {event.event_name} {what}"
