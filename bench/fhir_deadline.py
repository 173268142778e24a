"""Measure what FHIR fallback costs the EHR, end to end through `cds-service serve`.

    python bench/fhir_deadline.py [--deadline 2] [--rounds 20]

A local FHIR server (threaded, keep-alive) plays the EHR's server in three ways: answering each
query after 20 ms, stalling for 10 s, and answering HTTP 500. The service runs under gunicorn
with one sync worker; every hook call is the tramadol fixture with only `patient` prefetched,
so five queries go to the FHIR server. Prints timings; exits 1 when a limit is broken
(parallel fallback over 60 ms at the median, or a failing server costing more than the
deadline plus 250 ms).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fhir_fakes import Reply, filled_template, local_fhir_server, server_documents  # noqa: E402
from test_cli import _free_port, _serve, _wait_healthy  # noqa: E402

FIXTURE = ROOT / "fhir_fixtures" / "opioid-tramadol-acute-low-back-pain"
SERVICE = "back-pain-order-sign"
MARGIN_SECONDS = 0.25
PARALLEL_LIMIT_SECONDS = 0.060


def _call(port: int, request: dict[str, Any]) -> tuple[int, float]:
    call = urllib.request.Request(
        f"http://127.0.0.1:{port}/cds-services/{SERVICE}",
        data=json.dumps(request).encode(),
        headers={"Content-Type": "application/json"},
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(call, timeout=30) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        error.read()
        status = error.code
    return status, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deadline", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    request = json.loads((FIXTURE / "request.json").read_text())
    port = _free_port()
    service = _serve(port, {"CDS_FHIR_DEADLINE_SECONDS": str(args.deadline)}, workers=1)
    discovery_url = f"http://127.0.0.1:{port}/cds-services"
    mode = {"now": "slow"}
    failed = False
    try:
        _wait_healthy(port, service)
        with urllib.request.urlopen(discovery_url, timeout=10) as response:
            templates = json.load(response)["services"][0]["prefetch"]
        documents = server_documents(request)
        routes = {
            "/fhir/" + unquote(filled_template(templates[key], request["context"])): documents[key]
            for key in templates
        }

        def respond(path: str) -> Reply:
            if mode["now"] == "stall":
                return Reply.json({}, delay=10)
            if mode["now"] == "error":
                return Reply.json({"resourceType": "OperationOutcome"}, status=500)
            document = routes.get(unquote(path))
            if document is None:
                return Reply.json({}, status=404)
            time.sleep(0.020)
            return Reply.json(document)

        with local_fhir_server(respond) as fhir:
            sent = copy.deepcopy(request)
            sent["fhirServer"] = fhir.base_url
            sent["fhirAuthorization"] = {"access_token": "bench", "token_type": "Bearer"}
            sent["prefetch"] = {"patient": request["prefetch"]["patient"]}

            _call(port, sent)  # warm: threads and kept-alive connections
            times = []
            for _ in range(args.rounds):
                status, seconds = _call(port, sent)
                assert status == 200, status
                times.append(seconds)
            median = statistics.median(times)
            print(
                f"fallback, 5 queries x 20 ms: median {median * 1000:.1f} ms, "
                f"max {max(times) * 1000:.1f} ms over {args.rounds} calls "
                f"({len(fhir.seen)} FHIR requests on {fhir.connections} connections)"
            )
            failed |= median > PARALLEL_LIMIT_SECONDS

            for name in ("stall", "error"):
                mode["now"] = name
                status, seconds = _call(port, sent)
                label = "stalls 10 s" if name == "stall" else "answers HTTP 500"
                print(
                    f"FHIR server {label}: HTTP {status} after {seconds * 1000:.0f} ms "
                    f"(deadline {args.deadline * 1000:.0f} ms)"
                )
                failed |= status not in (200, 412, 503)
                failed |= seconds > args.deadline + MARGIN_SECONDS
    finally:
        service.terminate()
        service.communicate(timeout=20)
    return 1 if failed else 0


if __name__ == "__main__":
    os.chdir(ROOT)
    raise SystemExit(main())
