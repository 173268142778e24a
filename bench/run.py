"""Benchmark the CDS service against a bare Flask baseline on this machine, in one run.

    python bench/run.py                 # full run (about four minutes), PASS/FAIL per target
    python bench/run.py --report-only   # the same, but exit 0 whatever the numbers
    python bench/run.py --smoke         # seconds: checks the benchmark itself works (CI)
    python bench/run.py --server uwsgi  # the service under another WSGI server, same workloads

Starts the baseline (bench/baseline_app.py: a bare Flask JSON endpoint under gunicorn with sync
workers, what a Flask user deploys by default) and the real service (`cds-service serve`) side
by side with the same number of workers, and drives them with the same load generator (wrk
when installed, else bench/loadgen.py's Python generator) and the same request bytes. Every
request is new to the service (fresh ids, references and hookInstance, see workloads.py); the
same requests repeated, which caches help, are measured beside and labelled so. Workloads:

1. the realistic mix: every scenario of fhir_fixtures/, each padded to 40 resources, at 16
   connections (baseline, service, service repeated and floor alternate, several rounds);
2. large records of 2,000 and 5,000 resources, one client: the extra time per resource over the
   baseline reading the same body, and the workers' memory afterwards;
3. FHIR fallback: only the patient prefetched, the other five searches answered by a local
   stub FHIR server after 20 ms each; a stalled and a failing FHIR server cost at most the
   deadline;
4. slow clients: 16 connections sending their headers one byte a second beside normal calls
   at 10 a second (and, reported only, slow request bodies);
5. a hanging FHIR server: 8 calls waiting on it at all times beside normal calls at 10 a second;
6. cold start: process start to the first answered order-sign call; discovery latency.

Every workload's answers are checked for the expected cards before they are timed.

The floor (bench/floor_app.py) is the real service whose guideline work is done once at start
and replayed on every call: its ratio to the baseline (a diagnostic, not a target) is what the
service could reach if the guideline work cost nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import re
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
import stress  # noqa: E402
import workloads  # noqa: E402
from fhir_fakes import Reply, filled_template, local_fhir_server  # noqa: E402

# Targets of issue 14.
MIN_THROUGHPUT_RATIO = 0.60
MAX_MIX_P99_MS = 30.0
MAX_EXTRA_US_PER_RESOURCE = 5.0
MAX_WORKER_RSS_MB = 100.0
MAX_SLOW_CLIENT_NORMAL_S = 2.0
MAX_HANGING_FHIR_NORMAL_S = 1.0
HANGING_MARGIN_S = 1.0
MAX_COLD_START_S = 2.0
MAX_DISCOVERY_MS = 5.0
# Of issue 7 (FHIR fallback) and issue 3 (a stalled or failing FHIR server).
MAX_FALLBACK_MS = 60.0
DEADLINE_MARGIN_S = 0.25
FHIR_LATENCY_S = 0.020

SLOW_CLIENTS = 16
HANGING_CALLS = 8
PACED_RATE = 10.0  # normal calls a second beside slow clients or a hanging FHIR server


@dataclass(frozen=True)
class Plan:
    seconds: float  # per throughput measurement
    rounds: int  # alternating rounds of the realistic mix
    warmup_seconds: float
    connections: int
    workers: int
    large_sizes: tuple[int, ...]
    stress_seconds: float  # slow clients and the hanging FHIR server
    cold_starts: int
    deadline_seconds: float
    generator: str
    server: str  # what runs the service: `serve` (granian) or another server to compare


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
    notes: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    def target(self, name: str, measured: str, limit: str, ok: bool) -> None:
        self.targets.append(Target(name, measured, limit, ok))


_blocks = itertools.count(1)


def fresh_numbers() -> int:
    """The first of a block of request numbers no other measurement of this run uses."""
    return next(_blocks) * 10_000_000


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
    load = ""
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return {
        "cpu": model or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "commit": commit,
        "load_before": load,
    }


def _plan(args: argparse.Namespace) -> Plan:
    generator = args.generator
    if generator == "auto":
        generator = "wrk" if loadgen.wrk_available() else "python"
    if generator == "wrk" and not loadgen.wrk_available():
        raise SystemExit("bench: --generator wrk, but wrk is not on the PATH")
    if args.smoke:
        return Plan(1.0, 1, 0.5, args.connections, args.workers, (100,), 2.0, 1, 0.5, generator,
                    args.server)  # fmt: skip
    return Plan(
        args.duration,
        args.rounds,
        2.0,
        args.connections,
        args.workers,
        tuple(args.large_sizes),
        args.stress_duration,
        args.cold_starts,
        2.0,
        generator,
        args.server,
    )


def _calls(mix: list[workloads.Workload]) -> list[loadgen.Call]:
    return [loadgen.Call(w.path, w.template) for w in mix]


def _check_answers(server: servers.Server, mix: list[workloads.Workload]) -> None:
    first = fresh_numbers()
    for number, workload in enumerate(mix):
        status, answer = servers.post(server.port, workload.path, workload.body(first + number))
        if status != 200:
            raise RuntimeError(f"{workload.name}: HTTP {status}: {answer[:500]!r}")
        topics = servers.card_topics(answer)
        if topics != workload.expected_topics:
            raise RuntimeError(
                f"{workload.name}: cards {sorted(topics)}, "
                f"expected {sorted(workload.expected_topics)}"
            )


def _median_round(results: list[loadgen.LoadResult]) -> loadgen.LoadResult:
    ordered = sorted(results, key=lambda r: r.rps)
    return ordered[(len(ordered) - 1) // 2]


def _print_line(text: str) -> None:
    print(f"  {text}", flush=True)


def _drive(
    plan: Plan, server: servers.Server, calls: list[loadgen.Call], connections: int,
    seconds: float, fresh: bool = True,
) -> loadgen.LoadResult:  # fmt: skip
    first = fresh_numbers() if fresh else None
    return loadgen.drive(server.base_url, calls, connections, seconds, plan.generator, first)


# --- 1. the realistic mix -----------------------------------------------------------------


def _realistic_mix(
    report: Report, plan: Plan, baseline: servers.Server, service: servers.Server,
    floor: servers.Server, mix: list[workloads.Workload],
) -> None:  # fmt: skip
    calls = _calls(mix)
    label = (
        f"realistic mix ({len(mix)} scenarios of about {mix[0].prefetch_resources} resources), "
        f"{plan.connections} connections"
    )
    contenders: dict[str, tuple[servers.Server, bool]] = {
        "baseline": (baseline, True),
        "service": (service, True),
        "cached": (service, False),  # the same requests again and again
        "floor": (floor, True),
    }
    for server, fresh in contenders.values():
        _drive(plan, server, calls, plan.connections, plan.warmup_seconds, fresh)
    rounds: dict[str, list[loadgen.LoadResult]] = {name: [] for name in contenders}
    for number in range(plan.rounds):
        for name, (server, fresh) in contenders.items():
            result = _drive(plan, server, calls, plan.connections, plan.seconds, fresh)
            rounds[name].append(result)
            _print_line(
                f"round {number + 1} {name}: {result.rps:.0f} req/s, p99 {result.p99_ms:.1f} ms"
            )
    medians = {name: _median_round(results) for name, results in rounds.items()}
    for name, result in medians.items():
        report.rows.append(Row(label, name, result))
    base = medians["baseline"].rps
    # Each round's ratio, then their median: drift between rounds hits both servers alike.
    per_round = sorted(
        s.rps / b.rps for s, b in zip(rounds["service"], rounds["baseline"], strict=True) if b.rps
    )
    ratio = per_round[(len(per_round) - 1) // 2] if per_round else 0.0
    report.ratios[label] = ratio
    cached = medians["cached"].rps / base if base else 0.0
    floor_ratio = medians["floor"].rps / base if base else 0.0
    report.notes.append(
        f"realistic mix: service {ratio:.2f} of the baseline's req/s (median of the rounds' "
        f"ratios); cached (the same requests repeated) {cached:.2f}; floor (guideline work "
        f"replayed, a diagnostic) {floor_ratio:.2f}"
    )
    served = medians["service"]
    errors = sum(r.errors for results in rounds.values() for r in results)
    report.target(
        "realistic mix throughput vs bare Flask (gunicorn sync), every request new",
        f"{ratio:.2f}",
        f">= {MIN_THROUGHPUT_RATIO:.2f}",
        ratio >= MIN_THROUGHPUT_RATIO,
    )
    report.target(
        f"realistic mix p99 at {plan.connections} connections",
        f"{served.p99_ms:.1f} ms",
        f"<= {MAX_MIX_P99_MS:g} ms",
        served.p99_ms <= MAX_MIX_P99_MS,
    )
    report.target("realistic mix errors", str(errors), "0", errors == 0)


# --- 2. large records -------------------------------------------------------------------------


def _large_records(
    report: Report, plan: Plan, baseline: servers.Server, service: servers.Server
) -> None:
    worst_extra = 0.0
    for size in plan.large_sizes:
        workload = workloads.large_record(size)
        _check_answers(service, [workload])
        calls = _calls([workload])
        label = (
            f"large record ({size} resources, {len(workload.template) // 1024} kB), 1 connection"
        )
        measured = {}
        for name, server, fresh in (
            ("baseline", baseline, True),
            ("service", service, True),
            ("cached", service, False),
        ):
            _drive(plan, server, calls, 1, plan.warmup_seconds / 2, fresh)
            measured[name] = _drive(plan, server, calls, 1, plan.seconds, fresh)
            report.rows.append(Row(label, name, measured[name]))
        base, served = measured["baseline"], measured["service"]
        report.ratios[label] = served.rps / base.rps if base.rps else 0.0
        extra = (served.p50_ms - base.p50_ms) * 1000 / size
        cached = (measured["cached"].p50_ms - base.p50_ms) * 1000 / size
        worst_extra = max(worst_extra, extra)
        report.notes.append(
            f"large record of {size}: {extra:.1f} µs a resource over the baseline reading the "
            f"same body (p50 {served.p50_ms:.1f} vs {base.p50_ms:.1f} ms); cached {cached:.1f} µs"
        )
        report.target(f"large record of {size}: errors", str(served.errors), "0", not served.errors)
    report.target(
        "large records, every call new: extra time per resource over the baseline",
        f"{worst_extra:.1f} µs",
        f"<= {MAX_EXTRA_US_PER_RESOURCE:g} µs",
        worst_extra <= MAX_EXTRA_US_PER_RESOURCE,
    )
    rss = servers.worker_rss_mb(service)
    largest = max(rss, default=0.0)
    report.notes.append(
        f"worker memory after the large records: {', '.join(f'{r:.0f}' for r in rss)} MB"
    )
    report.target(
        "worker RSS after the large records",
        f"{largest:.0f} MB",
        f"<= {MAX_WORKER_RSS_MB:g} MB",
        0 < largest <= MAX_WORKER_RSS_MB,
    )


# --- 3. FHIR fallback -------------------------------------------------------------------------


_NUMBERED = re.compile(r"-(\d{12})\b")


def _discovery_templates(service: servers.Server) -> dict[str, str]:
    with urllib.request.urlopen(f"{service.base_url}/cds-services", timeout=10) as response:
        return next(
            s["prefetch"]
            for s in json.load(response)["services"]
            if s["id"] == workloads.ORDER_SIGN
        )


@contextlib.contextmanager
def _stub_fhir(
    templates: dict[str, str], request: dict[str, Any], answers: dict[str, Any]
) -> Iterator[tuple[Any, dict[str, str]]]:
    """A FHIR server answering the fallback's searches (for any request number) after 20 ms,
    or stalling, or failing, as `mode["now"]` says."""
    routes = {
        "/fhir/" + unquote(filled_template(templates[key], request["context"])): json.dumps(doc)
        for key, doc in answers.items()
    }
    mode = {"now": "slow"}

    def respond(path: str) -> Reply:
        if mode["now"] == "stall":
            return Reply.json({}, delay=30)
        if mode["now"] == "error":
            return Reply.json({"resourceType": "OperationOutcome"}, status=500)
        path = unquote(path)
        found = _NUMBERED.search(path)
        document = routes.get(_NUMBERED.sub(f"-{workloads.MARK}", path))
        if document is None or found is None:
            return Reply.json({"resourceType": "OperationOutcome"}, status=404)
        time.sleep(FHIR_LATENCY_S)
        return Reply(200, document.replace(workloads.MARK, found.group(1)).encode())

    with local_fhir_server(respond) as fhir:
        yield fhir, mode


def _with_fhir_server(workload: workloads.Workload, base_url: str) -> workloads.Workload:
    request = dict(workload.request)
    request["fhirServer"] = base_url
    return workloads.Workload(workload.name, workload.service, request, workload.expected_topics)


def _fhir_fallback(
    report: Report, plan: Plan, baseline: servers.Server, service: servers.Server,
    realistic: workloads.Workload,
) -> None:  # fmt: skip
    base_workload, answers = workloads.fallback(realistic)
    templates = _discovery_templates(service)
    with _stub_fhir(templates, base_workload.request, answers) as (fhir, mode):
        fallback = _with_fhir_server(base_workload, fhir.base_url)
        _check_answers(service, [fallback])
        calls = _calls([fallback])
        label = f"{fallback.name}, 1 connection"
        measured = {}
        for name, server in (("baseline", baseline), ("service", service)):
            _drive(plan, server, calls, 1, plan.warmup_seconds / 2)
            measured[name] = _drive(plan, server, calls, 1, plan.seconds)
            report.rows.append(Row(label, name, measured[name]))
        served = measured["service"]
        report.ratios[label] = served.rps / measured["baseline"].rps
        report.target(
            "FHIR fallback (5 searches of 20 ms): p99",
            f"{served.p99_ms:.1f} ms",
            f"<= {MAX_FALLBACK_MS:g} ms",
            served.p99_ms <= MAX_FALLBACK_MS,
        )
        report.target("FHIR fallback: errors", str(served.errors), "0", served.errors == 0)
        limit_s = plan.deadline_seconds + DEADLINE_MARGIN_S
        for name, words in (("stall", "FHIR server stalls"), ("error", "FHIR server HTTP 500")):
            mode["now"] = name
            answer = stress.call(service.port, fallback.path, fallback.body(fresh_numbers()))
            report.notes.append(
                f"{words}: HTTP {answer.status} after {answer.seconds * 1000:.0f} ms"
            )
            report.target(
                f"{words}: answered within the {plan.deadline_seconds:g} s deadline",
                f"HTTP {answer.status} in {answer.seconds * 1000:.0f} ms",
                f"<= {limit_s * 1000:.0f} ms, 412",
                answer.status == 412 and answer.seconds <= limit_s,
            )
        mode["now"] = "slow"


# --- 4. slow clients --------------------------------------------------------------------------


def _paced_normal(
    plan: Plan, service: servers.Server, realistic: workloads.Workload
) -> stress.Answers:
    first = fresh_numbers()
    return stress.paced(
        service.port,
        lambda n: (realistic.path, realistic.body(first + n)),
        PACED_RATE,
        plan.stress_seconds,
    )


def _describe(answers: stress.Answers) -> str:
    return (
        f"{len(answers.answers)} calls, statuses {answers.statuses()}, "
        f"p50 {answers.percentile(0.5) * 1000:.0f} ms, slowest {answers.slowest * 1000:.0f} ms"
    )


def _slow_clients(
    report: Report, plan: Plan, service: servers.Server, realistic: workloads.Workload
) -> None:
    for slow_clients, what in (
        (stress.slow_headers, "headers"),
        (stress.slow_bodies, "body (reported, no target)"),
    ):
        with slow_clients(service.port, SLOW_CLIENTS, realistic.path) as slow:
            normal = _paced_normal(plan, service, realistic)
            dropped = sorted(slow.dropped_after)
        report.notes.append(
            f"{SLOW_CLIENTS} connections sending their {what} at 1 byte/s: normal calls at "
            f"{PACED_RATE:g}/s: {_describe(normal)}; slow connections dropped by the server: "
            f"{len(dropped)} of {slow.opened}"
            + (f", after {dropped[0]:.1f}-{dropped[-1]:.1f} s" if dropped else "")
        )
        if slow_clients is stress.slow_headers:
            _all_answered(
                report, f"{SLOW_CLIENTS} slow-header clients", normal, MAX_SLOW_CLIENT_NORMAL_S
            )


def _all_answered(report: Report, name: str, normal: stress.Answers, limit_s: float) -> None:
    ok = normal.statuses() == {200: len(normal.answers)}
    report.target(
        f"{name}: every normal call answered",
        f"slowest {normal.slowest:.2f} s, statuses {normal.statuses()}",
        f"<= {limit_s:g} s, all 200",
        ok and normal.slowest <= limit_s,
    )


# --- 5. a hanging FHIR server -----------------------------------------------------------------


def _hanging_fhir(
    report: Report, plan: Plan, service: servers.Server, realistic: workloads.Workload
) -> None:
    base_workload, _ = workloads.fallback(realistic)
    with local_fhir_server(lambda _path: Reply.json({}, delay=60)) as fhir:
        hanging = _with_fhir_server(base_workload, fhir.base_url)
        first = fresh_numbers()
        with stress.hammer(
            service.port, hanging.path, lambda n: hanging.body(first + n), HANGING_CALLS
        ) as waiting:
            time.sleep(0.5)  # all of them waiting on the FHIR server
            normal = _paced_normal(plan, service, realistic)
    report.notes.append(
        f"{HANGING_CALLS} calls kept waiting on a hanging FHIR server: normal calls at "
        f"{PACED_RATE:g}/s: {_describe(normal)}; the waiting calls: {_describe(waiting)}"
    )
    _all_answered(
        report,
        f"{HANGING_CALLS} calls on a hanging FHIR server",
        normal,
        MAX_HANGING_FHIR_NORMAL_S,
    )
    limit = plan.deadline_seconds + HANGING_MARGIN_S
    answered = waiting.statuses() == {412: len(waiting.answers)} and bool(waiting.answers)
    report.target(
        f"{HANGING_CALLS} calls on a hanging FHIR server: each answered 412",
        f"slowest {waiting.slowest:.2f} s, statuses {waiting.statuses()}",
        f"<= {limit:g} s (deadline + {HANGING_MARGIN_S:g} s)",
        answered and waiting.slowest <= limit,
    )


# --- 6. cold start and discovery --------------------------------------------------------------


def _discovery(report: Report, service: servers.Server, calls: int) -> None:
    for _ in range(20):
        servers.post(service.port, "/cds-services", None)
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        status, _ = servers.post(service.port, "/cds-services", None)
        seconds.append(time.perf_counter() - started)
        if status != 200:
            raise RuntimeError(f"discovery: HTTP {status}")
    seconds.sort()
    p99 = loadgen.percentile(seconds, 0.99) * 1000
    report.notes.append(
        f"discovery (GET /cds-services, a new connection each): p50 "
        f"{loadgen.percentile(seconds, 0.5) * 1000:.2f} ms, p99 {p99:.2f} ms"
    )
    report.target("discovery p99", f"{p99:.2f} ms", f"<= {MAX_DISCOVERY_MS:g} ms",
                  p99 <= MAX_DISCOVERY_MS)  # fmt: skip


def _cold_starts(report: Report, plan: Plan, logs: Path, realistic: workloads.Workload) -> None:
    starts: dict[str, list[float]] = {"baseline": [], "service": []}
    starters: dict[str, Callable[[], servers.Server]] = {
        "baseline": lambda: servers.start_baseline(servers.free_port(), plan.workers, logs),
        "service": lambda: servers.start_service(
            servers.free_port(), plan.workers, {}, logs, plan.server
        ),
    }
    for number in range(plan.cold_starts):
        for name, start in starters.items():
            server = start()
            try:
                body = realistic.body(fresh_numbers() + number)
                starts[name].append(servers.wait_until_answering(server, realistic.path, body))
            finally:
                server.stop()
    for name, values in starts.items():
        shown = ", ".join(f"{v:.2f}" for v in values)
        report.notes.append(f"cold start {name}: {shown} s")
    worst = max(starts["service"])
    report.target(
        f"cold start to first answer (worst of {plan.cold_starts})",
        f"{worst:.2f} s",
        f"<= {MAX_COLD_START_S:g} s",
        worst <= MAX_COLD_START_S,
    )


def _run_workloads(report: Report, plan: Plan, logs: Path) -> None:
    realistic = workloads.realistic()
    mix = workloads.fixture_mix()
    service_env = {"CDS_FHIR_DEADLINE_SECONDS": f"{plan.deadline_seconds:g}"}
    baseline = servers.start_baseline(servers.free_port(), plan.workers, logs)
    service = servers.start_service(
        servers.free_port(), plan.workers, service_env, logs, plan.server
    )
    realistic_file = logs / "realistic-request.json"
    realistic_file.write_bytes(realistic.body(0))
    floor = servers.start_floor(
        servers.free_port(), plan.workers, realistic.service, realistic_file, logs
    )
    try:
        for server in (baseline, service, floor):
            servers.wait_until_answering(server, realistic.path, realistic.body(fresh_numbers()))
        _check_answers(service, [realistic, *mix])
        _print_line(
            f"answers checked: {', '.join(sorted(realistic.expected_topics))}; and the "
            f"{len(mix)} scenarios of the mix"
        )
        _realistic_mix(report, plan, baseline, service, floor, mix)
        _large_records(report, plan, baseline, service)
        _fhir_fallback(report, plan, baseline, service, realistic)
        _slow_clients(report, plan, service, realistic)
        _hanging_fhir(report, plan, service, realistic)
        _discovery(report, service, 50 if plan.cold_starts == 1 else 500)
    finally:
        baseline.stop()
        service.stop()
        floor.stop()
    _cold_starts(report, plan, logs, realistic)


def _print_report(report: Report) -> None:
    plan = report.plan
    machine = report.machine
    print()
    print(
        f"machine: {machine['cores']} cores ({machine['cpu']}), {machine['system']}, "
        f"Python {machine['python']}, commit {machine['commit'] or '?'}, load average before "
        f"{machine['load_before']}"
    )
    print(
        f"load: {plan.generator}; service: {plan.server} ({plan.workers} workers), baseline: "
        f"gunicorn sync ({plan.workers} workers); {plan.seconds:g} s per measurement, realistic "
        f"mix median of {plan.rounds} alternating rounds; every request new unless 'cached'"
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
    for note in report.notes:
        print(note)
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
        "--duration", type=float, default=8.0, help="seconds per measurement (default 8)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds of the realistic mix (default 3)"
    )
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--workers", type=int, default=2, help="worker processes of each server (default 2)"
    )
    parser.add_argument(
        "--large-sizes",
        type=int,
        nargs="+",
        default=[2000, 5000],
        help="resources of the large records (default 2000 5000)",
    )
    parser.add_argument(
        "--stress-duration",
        type=float,
        default=10.0,
        help="seconds of normal calls beside slow clients or a hanging FHIR server (default 10)",
    )
    parser.add_argument("--cold-starts", type=int, default=3)
    parser.add_argument(
        "--server",
        choices=servers.SERVICE_SERVERS,
        default="serve",
        help="run the service with `cds-service serve` (default) or another WSGI server",
    )
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
