"""Benchmark the CDS service against a bare Flask baseline on this machine, in one run.

    python bench/run.py                 # full run (about two minutes), PASS/FAIL per target
    python bench/run.py --report-only   # the same, but exit 0 whatever the numbers
    python bench/run.py --smoke         # seconds: checks the benchmark itself works (CI)

Starts the baseline (bench/baseline_app.py: a bare Flask JSON endpoint) and the real service
(`cds-service serve`) side by side, both under gunicorn with the same number of sync workers,
and drives them one after the other with the same load generator (wrk when installed, else
bench/loadgen.py's Python generator) and the same request bytes. Workloads:

1. realistic order-sign: a back-pain patient with 40 prefetched resources, tramadol and a
   lumbar MRI drafted, at 16 connections (baseline and service alternate, several rounds);
2. a very large record: 2,000 conditions, observations and medications, one client;
3. FHIR fallback: only the patient prefetched, the other five searches answered by a local
   stub FHIR server after 20 ms each; plus a stalled and a failing FHIR server, which must
   cost no more than the FHIR deadline;
4. cold start: process start to the first answered order-sign call.

Every workload's answer is checked for the expected cards before it is timed.

The realistic workload is also run against a third server, the floor (bench/floor_app.py): the
real service whose guideline work is done once at start and replayed on every call. Its ratio
to the baseline (a diagnostic, not a target) is what the service could reach if the guideline
work cost nothing; the gap between it and the service is what that work costs.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(BENCH), str(ROOT / "tests")]

import loadgen  # noqa: E402
import servers  # noqa: E402
import workloads  # noqa: E402
from fhir_fakes import Reply, filled_template, local_fhir_server  # noqa: E402

# Targets of issue 7.
MIN_THROUGHPUT_RATIO = 0.50
MAX_REALISTIC_P99_MS = 50.0
MAX_LARGE_RECORD_MS = 50.0
MAX_FALLBACK_MS = 60.0
MAX_COLD_START_S = 3.0
# A stalled or failing FHIR server may cost the EHR the deadline plus this much (issue 3).
DEADLINE_MARGIN_S = 0.25
FHIR_LATENCY_S = 0.020


@dataclass(frozen=True)
class Plan:
    seconds: float  # per measurement
    rounds: int  # alternating baseline/service rounds of the realistic workload
    warmup_seconds: float
    connections: int
    workers: int
    large_size: int
    cold_starts: int
    deadline_seconds: float
    generator: str


@dataclass
class Target:
    name: str
    measured: str
    limit: str
    ok: bool


@dataclass
class Row:
    workload: str
    server: str
    result: loadgen.LoadResult


@dataclass
class Report:
    machine: dict[str, Any]
    plan: Plan
    rows: list[Row] = field(default_factory=list)
    ratios: dict[str, float] = field(default_factory=dict)
    floor_ratio: float | None = None  # floor/baseline req/s on the realistic workload
    deadline_checks: list[dict[str, Any]] = field(default_factory=list)
    cold_starts: dict[str, list[float]] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)


def _machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        ).stdout.strip()
    return {
        "cpu": model or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "commit": commit,
    }


def _plan(args: argparse.Namespace) -> Plan:
    generator = args.generator
    if generator == "auto":
        generator = "wrk" if loadgen.wrk_available() else "python"
    if generator == "wrk" and not loadgen.wrk_available():
        raise SystemExit("bench: --generator wrk, but wrk is not on the PATH")
    if args.smoke:
        return Plan(1.0, 1, 0.5, args.connections, args.workers, 100, 1, 0.5, generator)
    return Plan(
        args.duration,
        args.rounds,
        2.0,
        args.connections,
        args.workers,
        args.large_size,
        args.cold_starts,
        2.0,
        generator,
    )


def _check_answer(server: servers.Server, workload: workloads.Workload, body: bytes) -> None:
    status, answer = servers.post(server.port, f"/cds-services/{workload.service}", body)
    if status != 200:
        raise RuntimeError(f"{workload.name}: HTTP {status}: {answer[:500]!r}")
    topics = servers.card_topics(answer)
    if topics != workload.expected_topics:
        raise RuntimeError(
            f"{workload.name}: cards {sorted(topics)}, expected {sorted(workload.expected_topics)}"
        )


def _measure(
    report: Report,
    plan: Plan,
    label: str,
    server: servers.Server,
    workload: workloads.Workload,
    body: bytes,
    connections: int,
    seconds: float,
) -> loadgen.LoadResult:
    url = f"{server.base_url}/cds-services/{workload.service}"
    result = loadgen.drive(url, body, connections, seconds, plan.generator)
    report.rows.append(Row(label, server.name, result))
    return result


def _median_round(results: list[loadgen.LoadResult]) -> loadgen.LoadResult:
    ordered = sorted(results, key=lambda r: r.rps)
    return ordered[(len(ordered) - 1) // 2]


def _fhir_routes(
    service: servers.Server, request: dict[str, Any], answers: dict[str, Any]
) -> dict[str, Any]:
    """What the stub FHIR server answers, at the exact URLs the discovery templates name."""
    with urllib.request.urlopen(f"{service.base_url}/cds-services", timeout=10) as response:
        templates = next(
            s["prefetch"]
            for s in json.load(response)["services"]
            if s["id"] == workloads.ORDER_SIGN
        )
    return {
        "/fhir/" + unquote(filled_template(templates[key], request["context"])): answers[key]
        for key in answers
    }


@contextlib.contextmanager
def _stub_fhir(routes: dict[str, Any]) -> Iterator[tuple[Any, dict[str, str]]]:
    mode = {"now": "slow"}

    def respond(path: str) -> Reply:
        if mode["now"] == "stall":
            return Reply.json({}, delay=30)
        if mode["now"] == "error":
            return Reply.json({"resourceType": "OperationOutcome"}, status=500)
        document = routes.get(unquote(path))
        if document is None:
            return Reply.json({"resourceType": "OperationOutcome"}, status=404)
        time.sleep(FHIR_LATENCY_S)
        return Reply.json(document)

    with local_fhir_server(respond) as fhir:
        yield fhir, mode


def _single_call_seconds(server: servers.Server, path: str, body: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    status, _ = servers.post(server.port, path, body)
    return status, time.perf_counter() - started


def _run_workloads(report: Report, plan: Plan, logs: Path) -> None:
    realistic = workloads.realistic()
    large = workloads.large_record(plan.large_size)
    fallback_base, answers = workloads.fallback(realistic)
    service_env = {"CDS_FHIR_DEADLINE_SECONDS": f"{plan.deadline_seconds:g}"}
    baseline = servers.start_baseline(servers.free_port(), plan.workers, logs)
    service = servers.start_service(servers.free_port(), plan.workers, service_env, logs)
    realistic_body = json.dumps(realistic.request).encode()
    realistic_file = logs / "realistic-request.json"
    realistic_file.write_bytes(realistic_body)
    floor = servers.start_floor(
        servers.free_port(), plan.workers, realistic.service, realistic_file, logs
    )
    try:
        path = f"/cds-services/{realistic.service}"
        for server in (baseline, service, floor):
            servers.wait_until_answering(server, path, realistic_body)
        routes = _fhir_routes(service, realistic.request, answers)
        with _stub_fhir(routes) as (fhir, mode):
            fallback_request = copy.deepcopy(fallback_base.request)
            fallback_request["fhirServer"] = fhir.base_url
            fallback = workloads.Workload(
                fallback_base.name,
                fallback_base.service,
                fallback_request,
                fallback_base.expected_topics,
            )
            bodies = {
                realistic.name: realistic_body,
                large.name: json.dumps(large.request).encode(),
                fallback.name: json.dumps(fallback.request).encode(),
            }
            for workload in (realistic, large, fallback):
                _check_answer(service, workload, bodies[workload.name])
            _check_answer(floor, realistic, realistic_body)
            _print_line(f"answers checked: {', '.join(sorted(realistic.expected_topics))}")

            # 1. Realistic order-sign: warm both, then alternate so drift hits both alike.
            label = (
                f"{realistic.name} ({realistic.prefetch_resources} resources), "
                f"{plan.connections} connections"
            )
            for server in (baseline, service, floor):
                loadgen.drive(
                    f"{server.base_url}{path}",
                    realistic_body,
                    plan.connections,
                    plan.warmup_seconds,
                    plan.generator,
                )
            rounds: dict[str, list[loadgen.LoadResult]] = {
                "baseline": [],
                "service": [],
                "floor": [],
            }
            for number in range(plan.rounds):
                for server in (baseline, service, floor):
                    result = loadgen.drive(
                        f"{server.base_url}{path}",
                        realistic_body,
                        plan.connections,
                        plan.seconds,
                        plan.generator,
                    )
                    rounds[server.name].append(result)
                    _print_line(
                        f"round {number + 1} {server.name}: {result.rps:.0f} req/s, "
                        f"p99 {result.p99_ms:.1f} ms"
                    )
            for name, results in rounds.items():
                report.rows.append(Row(label, name, _median_round(results)))
            base, served, floored = (
                _median_round(rounds[n]) for n in ("baseline", "service", "floor")
            )
            report.ratios[label] = served.rps / base.rps if base.rps else 0.0
            report.floor_ratio = floored.rps / base.rps if base.rps else 0.0
            report.targets += [
                Target(
                    "realistic order-sign throughput vs bare Flask",
                    f"{report.ratios[label]:.0%}",
                    f">= {MIN_THROUGHPUT_RATIO:.0%}",
                    report.ratios[label] >= MIN_THROUGHPUT_RATIO,
                ),
                Target(
                    f"realistic order-sign p99 at {plan.connections} connections",
                    f"{served.p99_ms:.1f} ms",
                    f"<= {MAX_REALISTIC_P99_MS:g} ms",
                    served.p99_ms <= MAX_REALISTIC_P99_MS,
                ),
                Target(
                    "realistic order-sign errors",
                    str(served.errors + base.errors),
                    "0",
                    served.errors + base.errors == 0,
                ),
            ]

            # 2 and 3. One client: latency is what the EHR waits.
            for workload, limit in ((large, MAX_LARGE_RECORD_MS), (fallback, MAX_FALLBACK_MS)):
                body = bodies[workload.name]
                label = f"{workload.name}, 1 connection"
                measured = {}
                for server in (baseline, service):
                    loadgen.drive(
                        f"{server.base_url}{path}", body, 1, plan.warmup_seconds / 2, plan.generator
                    )
                    measured[server.name] = _measure(
                        report, plan, label, server, workload, body, 1, plan.seconds
                    )
                served = measured["service"]
                base = measured["baseline"]
                report.ratios[label] = served.rps / base.rps if base.rps else 0.0
                report.targets += [
                    Target(
                        f"{workload.name}: p99 per request",
                        f"{served.p99_ms:.1f} ms",
                        f"<= {limit:g} ms",
                        served.p99_ms <= limit,
                    ),
                    Target(f"{workload.name}: errors", str(served.errors), "0", served.errors == 0),
                ]

            # A stalled or failing FHIR server costs at most the deadline.
            fallback_body = bodies[fallback.name]
            limit_s = plan.deadline_seconds + DEADLINE_MARGIN_S
            for name, words in (("stall", "FHIR server stalls"), ("error", "FHIR server HTTP 500")):
                mode["now"] = name
                status, seconds = _single_call_seconds(service, path, fallback_body)
                report.deadline_checks.append({"case": words, "status": status, "seconds": seconds})
                report.targets.append(
                    Target(
                        f"{words}: answered within the {plan.deadline_seconds:g} s deadline",
                        f"HTTP {status} in {seconds * 1000:.0f} ms",
                        f"<= {limit_s * 1000:.0f} ms, 412",
                        status == 412 and seconds <= limit_s,
                    )
                )
            mode["now"] = "slow"
    finally:
        baseline.stop()
        service.stop()
        floor.stop()

    # 4. Cold start: a fresh process each time, timed to its first answered order-sign call.
    starts: dict[str, list[float]] = {"baseline": [], "service": []}
    starters: dict[str, Callable[[], servers.Server]] = {
        "baseline": lambda: servers.start_baseline(servers.free_port(), plan.workers, logs),
        "service": lambda: servers.start_service(servers.free_port(), plan.workers, {}, logs),
    }
    for _ in range(plan.cold_starts):
        for name, start in starters.items():
            server = start()
            try:
                starts[name].append(servers.wait_until_answering(server, path, realistic_body))
            finally:
                server.stop()
    report.cold_starts = starts
    worst = max(starts["service"])
    report.targets.append(
        Target(
            f"cold start to first answer (worst of {plan.cold_starts})",
            f"{worst:.2f} s",
            f"<= {MAX_COLD_START_S:g} s",
            worst <= MAX_COLD_START_S,
        )
    )


def _print_line(text: str) -> None:
    print(f"  {text}", flush=True)


def _print_report(report: Report) -> None:
    plan = report.plan
    machine = report.machine
    print()
    print(
        f"machine: {machine['cores']} cores ({machine['cpu']}), {machine['system']}, "
        f"Python {machine['python']}, commit {machine['commit'] or '?'}"
    )
    print(
        f"load: {plan.generator}, gunicorn {plan.workers} sync workers each, "
        f"{plan.seconds:g} s per measurement, realistic workload median of {plan.rounds} "
        "alternating rounds"
    )
    print()
    header = (
        f"{'server':9} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'errors':>7}"
    )
    current = None
    for row in report.rows:
        if row.workload != current:
            if current is not None:
                print(f"{'ratio':9} {report.ratios[current]:>8.2f}  (service/baseline req/s)")
                print()
            current = row.workload
            print(row.workload)
            print(header)
        r = row.result
        print(
            f"{row.server:9} {r.rps:>8.1f} {r.p50_ms:>8.2f} {r.p95_ms:>8.2f} {r.p99_ms:>8.2f} "
            f"{r.max_ms:>8.2f} {r.errors:>7}"
        )
    if current is not None:
        print(f"{'ratio':9} {report.ratios[current]:>8.2f}  (service/baseline req/s)")
    print()
    if report.floor_ratio is not None:
        print(
            f"floor: {report.floor_ratio:.2f} of the baseline's req/s on the realistic workload "
            "(the service with its guideline work replayed; a diagnostic, not a target)"
        )
    for check in report.deadline_checks:
        print(
            f"{check['case']}: HTTP {check['status']} after {check['seconds'] * 1000:.0f} ms "
            f"(deadline {plan.deadline_seconds * 1000:.0f} ms)"
        )
    for name, values in report.cold_starts.items():
        shown = ", ".join(f"{v:.2f}" for v in values)
        print(f"cold start {name}: {shown} s (median {statistics.median(values):.2f} s)")
    print()
    for target in report.targets:
        verdict = "PASS" if target.ok else "FAIL"
        print(f"{verdict}  {target.name}: {target.measured} (target {target.limit})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds per measurement (default 10)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="alternating rounds of the realistic workload (default 3)",
    )
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--workers", type=int, default=2, help="gunicorn sync workers of each server (default 2)"
    )
    parser.add_argument(
        "--large-size",
        type=int,
        default=2000,
        help="resources of the large record: conditions, observations and medications "
        "(default 2000)",
    )
    parser.add_argument("--cold-starts", type=int, default=3)
    parser.add_argument(
        "--generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator (auto: wrk when installed)",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="print PASS/FAIL but exit 0 whatever the numbers"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes and durations, report only: checks the benchmark runs",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    plan = _plan(args)
    report = Report(_machine(), plan)
    print(f"benchmark: {plan.generator} load, {plan.workers} workers per server", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as folder:
        _run_workloads(report, plan, Path(folder))
    _print_report(report)
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2, default=str))
    failed = [target for target in report.targets if not target.ok]
    if failed and not (args.report_only or args.smoke):
        print(f"\n{len(failed)} target(s) missed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
