"""A stand-in for an OpenAI-compatible chat endpoint that answers after a fixed delay, for tests and
benchmarks that need a slow LLM in another process (a Celery worker killed while it waits, the
scale benchmark's LLM-bound decisions).

``POST /v1/chat/completions`` answers, after ``delay`` seconds, a decision the LLM policy accepts:
a BUY at the context's ``last_price`` with the stop 2 ATR below (``indicators["ATRr_14_<tf>"]``,
else 1% of the price) and targets at 1.5, 2.5 and 3.5 R, on the context's tick size. ``GET
/v1/models`` lists the one model. Each request is counted when it arrives (``received``) and when
answered (``answered``).

In a test: ``with FakeLLM(delay=3) as llm: ... llm.url ...`` (a thread of this process serves it);
from a shell or a benchmark: ``python -m tests.fake_llm --port 8099 --delay 1``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
from decimal import ROUND_HALF_UP, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "fake-llm"


def decision(context: dict[str, Any]) -> dict[str, Any]:
    """The BUY of the module docstring for a policy's context (the user message's JSON)."""
    last = Decimal(str(context["last_price"]))
    tick = Decimal(str(context.get("tick_size") or "0.01"))
    atr = context.get("indicators", {}).get(f"ATRr_14_{context.get('timeframe', '')}")
    risk = Decimal(str(atr)) * 2 if atr else last / 50

    def on_tick(price: Decimal) -> float:
        return float((price / tick).quantize(Decimal(1), rounding=ROUND_HALF_UP) * tick)

    return {
        "action": "BUY",
        "confidence": 0.72,
        "entry": float(last),
        "stop": on_tick(last - risk),
        "take_profits": [on_tick(last + risk * Decimal(r)) for r in ("1.5", "2.5", "3.5")],
        "horizon_bars": 48,
        "reason": f"stand-in model: trend up, stop 2 ATR below {last}",
        "risk_notes": [],
    }


def completion(content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1625551205,
        "model": MODEL,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 1200, "completion_tokens": 80, "total_tokens": 1280},
    }


class FakeLLM:
    """The endpoint on 127.0.0.1 (``port`` 0: any free one), served by a thread of this process."""

    def __init__(self, *, delay: float = 1.0, port: int = 0) -> None:
        self.delay = delay
        self.received = 0
        self.answered = 0
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                self._json(200, {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "fake"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                with fake._lock:
                    fake.received += 1
                time.sleep(fake.delay)  # the model thinking: each request waits in its own thread
                user = next(m for m in body.get("messages", []) if m.get("role") == "user")
                answer = json.dumps(decision(json.loads(user["content"])))
                self._json(200, completion(answer))
                with fake._lock:
                    fake.answered += 1

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="fake-llm", daemon=True)

    @property
    def url(self) -> str:
        """The base URL, as TRADEOPS_LLM_BASE_URL takes it."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeLLM:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description="A stand-in OpenAI-compatible endpoint that answers after a delay.")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--delay", type=float, default=1.0, help="seconds before each answer")
    args = parser.parse_args()
    with FakeLLM(delay=args.delay, port=args.port) as llm:
        print(f"fake LLM on {llm.url}, model {MODEL}, answering after {args.delay:g} s", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
