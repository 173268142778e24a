"""The yardstick: a bare Flask JSON endpoint under gunicorn, configured as `cds-service serve` is.

    python bench/baseline_app.py --port 8090 [--workers 2]

It reads the request body (so it receives exactly the bytes the service receives) and answers
`{"cards": []}`: what Flask and gunicorn cost on their own, with no CDS work at all. It runs
under the very gunicorn settings of `cds-service serve` (`gunicorn_server`: sync workers,
preloaded app, no access log), so the two differ only in what the application does.
"""

from __future__ import annotations

import argparse

from flask import Flask, Response, jsonify, request

from cds_service.commands.serve import gunicorn_server

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
