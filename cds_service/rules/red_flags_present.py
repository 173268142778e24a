"""Red flags: name each with the first test it calls for (ACP/APS, Chou et al. 2007, 2011)."""

from __future__ import annotations

from cds_service.record.model import OrderEntry
from cds_service.rules.assessment import Assessment, RedFlagFinding
from cds_service.rules.drafts import drafts, order_fact, ref
from cds_service.rules.findings import FIRST_TEST, Finding, FirstTest, Indicator, RedFlag
from cds_service.rules.unit import Recommendation
from cds_service.terminology.concepts import Concept
from cds_service.vocabulary import DataCategory as C

TOPIC = "red-flags-present"
ADVANCED_IMAGING_TOO_SOON = "advanced-imaging-too-soon"  # CT/MRI where X-ray comes first
XRAY_NOT_ENOUGH = "xray-not-enough"  # X-ray drafted where MRI is the test


def _imaging_notes(imaging: OrderEntry, flags: tuple[RedFlagFinding, ...]) -> tuple[str, ...]:
    """Whether the drafted study is the first test the red flags call for."""
    first_tests = {FIRST_TEST[f.flag] for f in flags}
    advanced = imaging.has_any((Concept.SPINE_IMAGING_MRI, Concept.SPINE_IMAGING_CT))
    if FirstTest.MRI in first_tests:
        xray_only = imaging.has(Concept.SPINE_IMAGING_XRAY) and not advanced
        return (XRAY_NOT_ENOUGH,) if xray_only else ()
    if FirstTest.MARKERS_THEN_MRI in first_tests:
        return ()  # blood tests first; any study is the clinician's call on suspicion
    # CT is a first test after significant trauma; otherwise plain X-ray comes first.
    ct_for_trauma = imaging.has(Concept.SPINE_IMAGING_CT) and any(
        f.flag is RedFlag.SPINAL_TRAUMA for f in flags
    )
    return (ADVANCED_IMAGING_TOO_SOON,) if advanced and not ct_for_trauma else ()


def evaluate(a: Assessment) -> list[Finding]:
    flags = a.red_flags
    if not flags or not a.invites_general_advice:
        return []
    imaging = next(iter(drafts(a, lambda o: o.has(Concept.SPINE_IMAGING))), None)
    notes = _imaging_notes(imaging, flags) if imaging else ()
    # A drafted study the notes do not discuss is still named, as one of the facts.
    imaging_fact = (order_fact(imaging),) if imaging and not notes else ()
    return [
        Finding(
            topic=TOPIC,
            facts=(*a.back_pain_facts, *imaging_fact, *(fact for f in flags for fact in f.facts)),
            order=ref(imaging) if imaging else None,
            indicator=Indicator.CRITICAL if a.has_critical_red_flag else Indicator.WARNING,
            red_flags=tuple(f.flag for f in flags),
            known_red_flags=frozenset(f.flag for f in flags if f.known),
            notes=notes,
        )
    ]


UNIT = Recommendation(
    topic=TOPIC,
    evaluate=evaluate,
    # It reports what it finds: partial data gives fewer flags, never a wrong one.
    needs=frozenset({C.CONDITIONS}),
    placeholders=frozenset(
        {"order", "red_flags", "lead_flag", "flag_summary", "more_flags", "flag_lines"}
    ),
    notes=frozenset({ADVANCED_IMAGING_TOO_SOON, XRAY_NOT_ENOUGH}),
)
