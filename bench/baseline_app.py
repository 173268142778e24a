"""The yardstick: a bare Flask JSON endpoint under gunicorn with sync workers.

    python bench/baseline_app.py --port 8090 [--workers 2]

It reads the request body (so it receives exactly the bytes the service receives) and answers
`{"cards": []}`: what Flask and gunicorn cost on their own, with no CDS work at all. gunicorn
with sync workers is what a Flask user deploys by default, so it stays the fixed reference
whatever server `cds-service serve` uses (preloaded app, no access log).
"""

from __future__ import annotations

import argparse
from typing import Any

from flask import Flask, Response, jsonify, request

app = Flask("baseline")
app.json.sort_keys = False  # type: ignore[attr-defined]
app.json.compact = True  # type: ignore[attr-defined]


@app.post("/cds-services/<service_id>")
def call_service(service_id: str) -> Response:
    request.get_data(cache=False)
    return jsonify({"cards": []})


@app.get("/health")
def health() -> Response:
    return jsonify({"status": "ok"})


def gunicorn_server(
    app: Any, *, bind: str, workers: int, timeout: int, proc_name: str, threads: int = 1
) -> Any:
    """gunicorn with the app loaded before forking: sync workers, or gthread with `threads`."""
    from gunicorn.app.base import BaseApplication

    class _Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", bind)
            self.cfg.set("workers", workers)
            self.cfg.set("worker_class", "gthread" if threads > 1 else "sync")
            self.cfg.set("threads", threads)
            self.cfg.set("timeout", timeout)
            self.cfg.set("graceful_timeout", 10)
            self.cfg.set("preload_app", True)
            self.cfg.set("accesslog", None)
            self.cfg.set("errorlog", "-")
            self.cfg.set("proc_name", proc_name)
            # No control socket: gunicorn 25+ opens one per user by default, shared by every
            # server on the machine.
            if "control_socket_disable" in self.cfg.settings:
                self.cfg.set("control_socket_disable", True)

        def load(self) -> Any:
            return app

    return _Server()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=30)
    args = parser.parse_args()

    server = gunicorn_server(
        app,
        bind=f"{args.host}:{args.port}",
        workers=args.workers,
        timeout=args.timeout,
        proc_name="bench-baseline",
    )
    server.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
