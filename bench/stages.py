"""What one realistic order-sign call costs in process, stage by stage (no HTTP, no server).

    python bench/stages.py [--calls 2000] [--batches 7]

Each call is new content (fresh ids, references and hookInstance, made before the clock
starts), parses the request bytes afresh, as the service does, and runs the stages of
`HookHandler.handle` one after the other, with the garbage collector paused as it is during a
served call: parse, request check, triage of the drafts, gather, record view, rules, cards,
then the answer's serialisation. Prints microseconds per call for each stage (the median of
the batches, and the fastest batch), then the whole `handle` the same way. Single-threaded
and quiet-machine numbers: a served call costs more (caches shared with the server and the
load generator), but the shares are the same.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import orjson  # noqa: E402
import workloads  # noqa: E402

from cds_service.card_builder.builder import CardBuilder  # noqa: E402
from cds_service.config import Settings  # noqa: E402
from cds_service.fhir.access import PatientDataGatherer  # noqa: E402
from cds_service.protocol.handler import card_context, record_input  # noqa: E402
from cds_service.protocol.request import parse_hook_request, parse_json_object  # noqa: E402
from cds_service.record.builder import RecordBuilder  # noqa: E402
from cds_service.rules.engine import concerns_back_pain, evaluate  # noqa: E402
from cds_service.runtime import Runtime, utc_today  # noqa: E402
from cds_service.vocabulary import DataCategory  # noqa: E402

STAGES = ("parse", "check", "triage", "gather", "record", "rules", "cards", "answer")


class Pipeline:
    """The stages of one hook call, built from the runtime's parts as the handler builds them."""

    def __init__(self, runtime: Runtime, workload: workloads.Workload) -> None:
        self.workload = workload
        self.numbers = itertools.count(1)
        self.body = workload.body(0)
        self.service_id = workload.service
        self.runtime = runtime
        self.service = runtime.handler.service(workload.service)
        self.records = RecordBuilder(runtime.terminology)
        self.cards = CardBuilder(runtime.content, runtime.terminology)
        self.gatherer = PatientDataGatherer()

    def fresh(self) -> None:
        """The next call's request: new to the service."""
        self.body = self.workload.body(next(self.numbers))

    def call(self, spent: Counter[str]) -> list[dict[str, Any]]:
        clock = time.perf_counter
        started = clock()
        document = parse_json_object(self.body)
        parsed = clock()
        request = parse_hook_request(document, self.service)
        today = utc_today()
        checked = clock()
        drafts = self.records.draft_orders(record_input(request, today, {}))
        if not concerns_back_pain(drafts.orders):
            raise SystemExit("stages: the realistic request should be triaged in")
        triaged = clock()
        gathered = self.gatherer.gather(request, tuple(DataCategory), self.service.prefetch)
        fetched = clock()
        record = self.records.build(record_input(request, today, gathered.data), drafts.orders)
        built = clock()
        evaluation = evaluate(record)
        evaluated = clock()
        cards = self.cards.cards(evaluation.findings, card_context(request, evaluation))
        carded = clock()
        orjson.dumps({"cards": [card.json for card in cards]})  # as the service writes it
        answered = clock()
        marks = (started, parsed, checked, triaged, fetched, built, evaluated, carded, answered)
        for stage, (begin, end) in zip(STAGES, itertools.pairwise(marks), strict=True):
            spent[stage] += end - begin
        return cards

    def handle(self) -> None:
        self.runtime.handler.handle(self.service_id, parse_json_object(self.body))


def _batches(pipeline: Pipeline, calls: int, batches: int) -> list[float]:
    seconds = []
    for _ in range(batches):
        spent = 0.0
        for _ in range(calls):
            pipeline.fresh()
            started = time.perf_counter()
            pipeline.handle()
            spent += time.perf_counter() - started
        seconds.append(spent / calls * 1e6)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per batch")
    parser.add_argument("--batches", type=int, default=7)
    args = parser.parse_args(argv)
    runtime = Runtime.load(Settings())
    workload = workloads.realistic()
    pipeline = Pipeline(runtime, workload)
    topics = {card.topic for card in pipeline.call(Counter())}
    if topics != workload.expected_topics:
        raise SystemExit(
            f"stages: cards {sorted(topics)}, expected {sorted(workload.expected_topics)}"
        )

    gc.disable()  # as during a served hook call (cds_service.http.collector)
    try:
        for _ in range(max(args.calls // 10, 1)):  # warm the per-worker memories
            pipeline.fresh()
            pipeline.call(Counter())
        per_batch: list[Counter[str]] = []
        for _ in range(args.batches):
            spent: Counter[str] = Counter()
            for _ in range(args.calls):
                pipeline.fresh()
                pipeline.call(spent)
            per_batch.append(spent)
        whole = _batches(pipeline, args.calls, args.batches)
    finally:
        gc.enable()

    print(f"realistic order-sign, in process, µs per call ({args.batches} batches of {args.calls})")
    print(f"{'stage':10} {'median':>8} {'fastest':>8}")
    total_median = 0.0
    for stage in STAGES:
        values = [batch[stage] / args.calls * 1e6 for batch in per_batch]
        total_median += statistics.median(values)
        print(f"{stage:10} {statistics.median(values):>8.1f} {min(values):>8.1f}")
    print(f"{'sum':10} {total_median:>8.1f}")
    print(f"{'handle':10} {statistics.median(whole):>8.1f} {min(whole):>8.1f}  (parse + handle)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
