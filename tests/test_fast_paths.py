"""The shortcuts taken for speed decide exactly as the slow paths they replace.

Each fast path is compared with the plain computation it stands for: checking only the
elements the service reads (against the FHIR models), triaging the drafts without a record
(against the assessment's own test), accepting requests with the quick schema (against the
original schema), remembering texts and codings, parsing JSON with the collector paused. No
timings here: speed is measured in bench/.
"""

from __future__ import annotations

import copy
import gc
import itertools
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pydantic
import pytest
from conftest import EVALUATION_DATE, PROJECT_ROOT, fixture_dirs
from flask.testing import FlaskClient

from cds_service import json_text
from cds_service.fhir import checks, parsing
from cds_service.performance import Memo, remembered
from cds_service.protocol.errors import CdsError
from cds_service.protocol.request import (
    parse_json_object,
    schema_problems,
    schema_validator,
)
from cds_service.record import builder as record_builder
from cds_service.record.builder import RecordBuilder, RecordInput
from cds_service.rules.assessment import Assessment
from cds_service.rules.engine import evaluate
from cds_service.runtime import Runtime
from cds_service.terminology.concepts import Concept
from cds_service.terminology.index import Terminology, canonical_system, normalise_code
from cds_service.vocabulary import DataCategory

PROJECT = PROJECT_ROOT
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"


def _day(days_ago: int) -> str:
    return (EVALUATION_DATE - timedelta(days=days_ago)).isoformat()


def _condition(rid: str, code: str, display: str, *, malformed: bool = False) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": rid,
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [{"system": ICD10, "code": code, "display": display}]},
        "subject": {"reference": "Patient/p1"},
        "onsetDateTime": _day(10),
    }
    if malformed:
        resource["clinicalStatus"] = "active"  # a CodeableConcept in R4, not a string
    return resource


def _vital(rid: str, code: str, value: float, unit: str, days_ago: int, malformed: bool) -> dict:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": _day(days_ago),
        "valueQuantity": {"value": value, "unit": unit, "code": unit},
    }
    if malformed:
        resource["valueQuantity"] = {**resource["valueQuantity"], "value": str(value)}
    return resource


def _record(runtime: Runtime, conditions: list[dict], observations: list[dict]) -> Any:
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1970-01-01"}
    source = RecordInput(
        patient_id="p1",
        hook="patient-view",
        today=EVALUATION_DATE,
        encounter_id=None,
        user_id=None,
        draft_orders=(),
        selections=None,
        data={
            DataCategory.PATIENT: [patient],
            DataCategory.CONDITIONS: conditions,
            DataCategory.OBSERVATIONS: observations,
            DataCategory.MEDICATIONS: [],
            DataCategory.PROCEDURES: [],
            DataCategory.SERVICE_REQUESTS: [],
        },
    )
    return RecordBuilder(runtime.terminology).build(source)


def _well_formed_only(resources: list[dict]) -> list[dict]:
    """The record as if the malformed resources had never been sent."""
    return [r for r in resources if checks.problem_of(r) is None]


def _outcome(record: Any) -> tuple[Any, ...]:
    evaluation = evaluate(record)
    assessment = Assessment(record)
    return (
        tuple((f.topic, f.indicator, f.facts) for f in evaluation.findings),
        evaluation.back_pain,
        evaluation.condition_refs,
        tuple(f.flag for f in assessment.red_flags),
        tuple(f.facts for f in assessment.red_flags),
        assessment.opioid_advice_excluded,
    )


def test_the_malformed_markers_are_problems_of_elements_the_service_reads() -> None:
    assert checks.problem_of(_condition("c", "M54.50", "x", malformed=True)) == checks.Problem(
        "clinicalStatus", "not an object"
    )
    assert checks.problem_of(_vital("o", "29463-7", 80, "kg", 5, True)) == checks.Problem(
        "valueQuantity.value", "not a number"
    )
    assert checks.problem_of(_condition("c", "M54.50", "x")) is None
    assert checks.problem_of(_vital("o", "29463-7", 80, "kg", 5, False)) is None


def test_an_error_in_an_element_no_rule_reads_does_not_cost_the_resource(runtime: Runtime) -> None:
    odd = {**_condition("lbp", "M54.50", "Low back pain"), "severity": "severe", "note": 5}
    assert checks.problem_of(odd) is None
    record = _record(runtime, [odd], [])
    assert [c.resource_id for c in record.conditions] == ["lbp"]


WEIGHTS = ((82.0, 200), (90.0, 120), (90.0, 150), (85.0, 60), (80.0, 20), (79.0, 5))


@pytest.mark.parametrize("malformed", list(itertools.product((False, True), repeat=6))[::3])
def test_malformed_weights_decide_as_if_they_were_absent(
    runtime: Runtime, malformed: tuple[bool, ...]
) -> None:
    observations = [
        _vital(f"w{i}", "29463-7", kg, "kg", days, bad)
        for i, ((kg, days), bad) in enumerate(zip(WEIGHTS, malformed, strict=True))
    ] + [_vital("t1", "8310-5", 38.6, "Cel", 2, malformed[0])]
    conditions = [_condition("lbp", "M54.50", "Low back pain")]
    with_malformed = _record(runtime, conditions, observations)
    without = _record(runtime, conditions, _well_formed_only(observations))
    assert _outcome(with_malformed) == _outcome(without)
    assert len(with_malformed.observations) == len(without.observations)


@pytest.mark.parametrize(
    ("back_pain_bad", "cancer_bad", "fracture_bad"),
    list(itertools.product((False, True), repeat=3)),
)
def test_malformed_conditions_decide_as_if_they_were_absent(
    runtime: Runtime, back_pain_bad: bool, cancer_bad: bool, fracture_bad: bool
) -> None:
    conditions = [
        _condition("lbp", "M54.50", "Low back pain", malformed=back_pain_bad),
        _condition("lbp2", "M54.59", "Other low back pain"),
        _condition("ca", "C79.51", "Secondary malignant neoplasm of bone", malformed=cancer_bad),
        _condition("fx", "S32.009A", "Fracture of lumbar vertebra", malformed=fracture_bad),
    ]
    with_malformed = _record(runtime, conditions, [])
    without = _record(runtime, _well_formed_only(conditions), [])
    assert _outcome(with_malformed) == _outcome(without)
    assert with_malformed.conditions == without.conditions


def test_a_malformed_fever_reading_raises_no_red_flag(runtime: Runtime) -> None:
    conditions = [_condition("lbp", "M54.50", "Low back pain")]
    for malformed, flagged in ((True, False), (False, True)):
        fever = _vital("t1", "8310-5", 39.2, "Cel", 1, malformed)
        record = _record(runtime, conditions, [fever])
        flags = {f.flag.value for f in Assessment(record).red_flags}
        assert ("fever" in flags) is flagged


def test_a_skipped_resource_is_logged_by_type_and_location_never_by_value(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    bad = {**_condition("lbp", "M54.50", "Low back pain"), "onsetDateTime": "Moreno spring"}
    with caplog.at_level("WARNING", logger="cds_service"):
        for _ in range(2):  # logged on every call it is skipped in
            assert _record(runtime, [bad], []).conditions == ()
    skipped = [r for r in caplog.records if getattr(r, "event", None) == "resource_skipped"]
    assert len(skipped) == 2
    assert skipped[0].resource_type == "Condition"
    assert skipped[0].problems == [{"at": "onsetDateTime", "type": "not a FHIR dateTime"}]
    assert all("Moreno" not in f"{r.getMessage()} {r.__dict__}" for r in caplog.records)


def test_a_draft_may_leave_out_its_status_a_history_order_may_not() -> None:
    order = {
        "resourceType": "MedicationRequest",
        "id": "d",
        "medicationCodeableConcept": {"text": "tramadol"},
    }
    assert checks.problem_of(order, draft=True) is None
    assert checks.problem_of(order) == checks.Problem("status", "missing")
    # The sandbox's single objects where R4 has arrays are read as arrays of one.
    single = {**order, "status": "active", "reasonCode": {"text": "back pain"}}
    single["dosageInstruction"] = {"route": {"text": "oral"}, "doseAndRate": {"x": 1}}
    assert checks.problem_of(single) is None
    assert checks.problem_of({**single, "reasonCode": {"text": ""}}) == checks.Problem(
        "reasonCode.text", "not a string"
    )


def test_a_drafts_contained_medication_is_checked_and_must_be_a_medication() -> None:
    draft = {
        "resourceType": "MedicationRequest",
        "id": "d",
        "medicationReference": {"reference": "#m"},
        "contained": [{"resourceType": "Medication", "id": "m", "code": {"text": "tramadol"}}],
    }
    assert checks.problem_of(draft, draft=True) is None
    draft["contained"][0]["code"] = {"coding": {"code": "x"}}
    assert checks.problem_of(draft, draft=True) == checks.Problem(
        "contained[0].code.coding", "not an array"
    )
    draft["contained"][0] = {"resourceType": "MedicationOrder", "id": "m"}
    assert checks.problem_of(draft, draft=True) == checks.Problem(
        "contained[0]", "not a Medication"
    )
    draft["contained"][0] = {"resourceType": 5, "id": "m"}
    assert checks.problem_of(draft, draft=True) == checks.Problem("contained[0]", "not a resource")
    # One medication[x] only: with two, which one is ordered?
    draft = {**draft, "contained": [], "medicationCodeableConcept": {"text": "tramadol"}}
    assert checks.problem_of(draft, draft=True) == checks.Problem(
        "medicationReference", "a second value of a choice element"
    )


# Values that break the rules of an element in one way each; the FHIR models decide whether a
# value is allowed where it is put, and the fast checks must agree on every element they read.
_BROKEN_VALUES: tuple[Any, ...] = (
    5,
    "",
    " x",
    [],
    {},
    "not a date",
    "2026-02-30",
    "2026-11-12T10:00:00",
    "2026-11-12T10:00:00Z",
    "2026",
    {"coding": {"code": "x"}},
    {"coding": [{"code": ""}]},
    {"coding": [{"code": "a b", "system": "http://x"}]},
    {"text": ""},
    {"value": "80"},
    {"value": True},
    {"start": "yesterday"},
    {"reference": 7},
)


_READ_AS_ARRAYS = ("reasonCode", "dosageInstruction")


def _converted_by_the_models(element: str, value: Any) -> bool:
    """The models turn a number into a date (a timestamp) or a string, and a numeric string
    into a quantity's number; FHIR's JSON has no such conversions, nor have the checks."""
    return value == 5 or (element == "valueQuantity" and value == {"value": "80"})


def _broken_values(element: str) -> list[Any]:
    if element != "dosageInstruction":
        return list(_BROKEN_VALUES)
    # Of a dosage only the route is read: break the dosage, or its route.
    return [v for v in _BROKEN_VALUES if not isinstance(v, dict)] + [
        {"route": v} for v in _BROKEN_VALUES
    ]


def _resources_read(document: dict[str, Any]) -> list[dict[str, Any]]:
    found = [
        resource
        for value in (document.get("prefetch") or {}).values()
        for resource in parsing.resources_of(value)
    ]
    found += parsing.resources_of(document["context"].get("draftOrders"))
    return [r for r in found if r["resourceType"] in checks._ELEMENTS]


def _models_refuse(resource: dict[str, Any]) -> bool:
    """Whether the FHIR models refuse a resource once the members R4 does not define are
    dropped (as the service always dropped them)."""
    from fhir.resources.R4B import get_fhir_model_class

    model = get_fhir_model_class(resource["resourceType"])
    try:
        model.model_validate(resource)
    except pydantic.ValidationError as error:
        problems = error.errors()
        unknown = [p["loc"] for p in problems if p["type"] == "extra_forbidden"]
        if len(unknown) < len(problems):
            return True
        trimmed = copy.deepcopy(resource)
        for location in unknown:
            node: Any = trimmed
            for step in location[:-1]:
                node = node[step]
            node.pop(location[-1])
        return _models_refuse(trimmed)
    except (ValueError, TypeError, KeyError):
        return True
    return False


def test_the_fast_checks_refuse_exactly_what_the_fhir_models_refuse_in_the_elements_read() -> None:
    seen: set[tuple[str, str]] = set()
    compared = 0
    for folder in fixture_dirs():
        document = json.loads((folder / "request.json").read_text())
        for resource in _resources_read(document):
            resource_type = resource["resourceType"]
            resource = {**resource, "status": resource.get("status", "active")}
            resource.setdefault("intent", "order")
            resource.setdefault("subject", {"reference": "Patient/p"})
            for key in (*_READ_AS_ARRAYS, "category"):
                if isinstance(resource.get(key), dict):  # the models know no such leniency
                    resource[key] = [resource[key]]
            if resource_type in {"Patient", "Medication", "Condition"}:
                resource = {k: v for k, v in resource.items() if k not in {"status", "intent"}}
            if resource_type in {"Patient", "Medication"}:
                resource.pop("subject")
            if _models_refuse(resource):
                continue
            assert checks.problem_of(resource) is None, (folder.name, resource_type)
            for element, _check in checks._ELEMENTS[resource_type]:
                if (resource_type, element) in seen or element == "reasonCode":
                    continue
                seen.add((resource_type, element))
                siblings = checks.CHOICES.get(resource_type, ())
                others = set(siblings) - {element} if element in siblings else set()
                for value in _broken_values(element):
                    changed = {k: v for k, v in resource.items() if k not in others}
                    changed[element] = value
                    refused = checks.problem_of(changed) is not None
                    if _converted_by_the_models(element, value):
                        assert refused, (resource_type, element, value)
                    else:
                        if element in _READ_AS_ARRAYS and isinstance(value, dict):
                            changed[element] = [value]  # the models know no such leniency
                        assert refused == _models_refuse(changed), (resource_type, element, value)
                    compared += 1
    assert compared > 500


def test_the_triage_drafts_are_reused_by_the_full_record(
    client: FlaskClient, fixture_request: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    original = RecordBuilder._draft_orders

    def counting(self: RecordBuilder, source: RecordInput, *args: Any) -> Any:
        built.append(source.hook)
        return original(self, source, *args)

    monkeypatch.setattr(RecordBuilder, "_draft_orders", counting)
    body = fixture_request("opioid-tramadol-acute-low-back-pain")
    response = client.post("/cds-services/back-pain-order-sign", json=body)
    assert {c["source"]["topic"]["code"] for c in response.get_json()["cards"]} >= {
        "opioid-avoidance"
    }
    assert built == ["order-sign"]  # built once, by the triage


def test_the_triage_on_the_drafts_agrees_with_the_assessment(runtime: Runtime) -> None:
    from cds_service.protocol.handler import record_input
    from cds_service.protocol.request import parse_hook_request
    from cds_service.record.model import PatientRecord
    from cds_service.rules.engine import concerns_back_pain

    builder = RecordBuilder(runtime.terminology)
    verdicts = set()
    for folder in fixture_dirs():
        document = json.loads((folder / "request.json").read_text())
        service = runtime.handler.service(
            json.loads((folder / "scenario.json").read_text())["service"]
        )
        request = parse_hook_request(document, service)
        drafts = builder.draft_orders(record_input(request, EVALUATION_DATE, {})).orders
        for draft in drafts:
            alone = PatientRecord(
                request.patient_id, request.hook, EVALUATION_DATE, orders=(draft,)
            )
            expected = bool(Assessment(alone).related_orders_under_review)
            assert concerns_back_pain([draft]) is expected, folder.name
            verdicts.add(expected)
    assert verdicts == {True, False}


def test_a_drafted_medication_known_only_from_the_patients_data_is_not_triaged_away(
    client: FlaskClient, fixture_request: Any
) -> None:
    # The opioid draft names its Medication by reference, and that Medication came with the
    # medications prefetch (an _include), not with the drafts: the drafts alone cannot tell
    # what is being ordered, so the call must not be answered "nothing to say" from them.
    body = fixture_request("messy-medication-reference-bundle")
    entries = body["context"]["draftOrders"]["entry"]
    medication = next(e for e in entries if e["resource"]["resourceType"] == "Medication")
    entries.remove(medication)
    body["prefetch"]["medications"]["entry"].append(medication)
    response = client.post("/cds-services/back-pain-order-sign", json=body)
    assert response.status_code == 200
    topics = {c["source"]["topic"]["code"] for c in response.get_json()["cards"]}
    assert "opioid-avoidance" in topics


# --- the request schema ---------------------------------------------------------------------


def _bad_requests() -> list[dict[str, Any]]:
    good = json.loads((fixture_dirs()[0] / "request.json").read_text())
    mutations = [
        lambda d: d["prefetch"].__setitem__("patient", "Patient/1"),
        lambda d: d["prefetch"].__setitem__("patient", 42),
        lambda d: d["prefetch"].__setitem__("patient", []),
        lambda d: d["prefetch"].__setitem__("patient", {"id": "no-type"}),
        lambda d: d["prefetch"].__setitem__("patient", {"resourceType": ""}),
        lambda d: d["prefetch"].__setitem__("conditions", {"resourceType": 7}),
        lambda d: d.__setitem__("prefetch", []),
        lambda d: d.pop("hookInstance"),
        lambda d: d.__setitem__("hook", ""),
        lambda d: d["context"].pop("patientId"),
        lambda d: d["context"].__setitem__("patientId", "a/b"),
        lambda d: d["context"].__setitem__("userId", "dr lee"),
        lambda d: d.__setitem__("fhirAuthorization", {"access_token": "t"}),
        lambda d: (
            d.pop("fhirServer", None),
            d.__setitem__("fhirAuthorization", {"access_token": "t", "token_type": "Bearer"}),
        ),
    ]
    bad = []
    for mutate in mutations:
        document = copy.deepcopy(good)
        mutate(document)
        bad.append(document)
    return bad


def _good_requests() -> list[dict[str, Any]]:
    documents = [json.loads((d / "request.json").read_text()) for d in fixture_dirs()]
    nulls = copy.deepcopy(documents[0])
    nulls["prefetch"] = dict.fromkeys(nulls["prefetch"])
    return [*documents, nulls]


def test_refused_requests_report_the_problems_of_the_original_schema() -> None:
    for document in _bad_requests():
        problems = schema_problems("request", document)
        assert problems, document
        errors = list(schema_validator("request").iter_errors(document))
        assert {p for p, _ in problems} <= {
            "$" + "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in e.absolute_path)
            for e in errors
            for e in ([e, *e.context] if e.context else [e])
        }


def test_prefetch_that_is_neither_null_nor_a_resource_is_still_named() -> None:
    document = _bad_requests()[0]
    messages = [message for _, message in schema_problems("request", document)]
    assert "$.prefetch.patient: must be of type null" in messages
    assert "$.prefetch.patient: must be of type object" in messages


# --- remembered texts and codings, JSON parsing ----------------------------------------------


def test_remembered_text_and_codings_answer_as_computed(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh: Terminology = copy.copy(runtime.terminology)
    object.__setattr__(fresh, "_text_memory", Memo(3))  # tiny: it starts afresh often
    object.__setattr__(fresh, "_code_memory", Memo(3))
    texts = ["tramadol 50 mg", "diclofenac 1% gel", "MRI lumbar spine", "x" * 400, "hospice"]
    expected = {
        text: frozenset(c for c, p in fresh.text_patterns.items() if p.search(text))
        for text in texts
    }
    for text in texts * 3:
        assert fresh.concepts_for_text(text) == expected[text]
    assert fresh.concepts_for_code("http://snomed.info/sct", "M54.50") == frozenset()
    assert Concept.BACK_PAIN_LOW in fresh.concepts_for_code(
        "urn:oid:2.16.840.1.113883.6.90", "m54.5"
    )
    assert Concept.BACK_PAIN_LOW in fresh.concepts_for_code(ICD10 + "/", "M54.50")
    assert Concept.BACK_PAIN_LOW in fresh.concepts_for_code(ICD10 + "/", "M54.50")


def _plain_concepts(terminology: Terminology, codeable: Any) -> frozenset[Concept]:
    """CodeableConcept matching without any memory: every code, display and text afresh."""
    found: set[Concept] = set()
    if not isinstance(codeable, dict):
        return frozenset()

    def text_concepts(text: str) -> set[Concept]:
        return {c for c, p in terminology.text_patterns.items() if p.search(text)}

    for coding in codeable.get("coding") or []:
        if not isinstance(coding, dict):
            continue
        system, code, display = coding.get("system"), coding.get("code"), coding.get("display")
        if isinstance(code, str):
            canonical = canonical_system(system if isinstance(system, str) else None)
            key = (canonical, normalise_code(canonical, code))
            found |= terminology.code_index.get(key, frozenset())
        if isinstance(display, str):
            found |= text_concepts(display)
    if isinstance(codeable.get("text"), str):
        found |= text_concepts(codeable["text"])
    return frozenset(found)


def test_remembered_codeable_concepts_answer_as_computed(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh: Terminology = copy.copy(runtime.terminology)
    for memory in ("_text_memory", "_code_memory", "_coding_memory", "_interned"):
        object.__setattr__(fresh, memory, Memo(4))  # tiny: it starts afresh often
    tramadol = {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "10689"}
    codeables: list[Any] = [
        {"coding": [{"system": ICD10, "code": "M54.50", "display": "Low back pain"}]},
        {"coding": [{"system": ICD10, "code": "M54.50"}], "text": "tramadol for back pain"},
        {"coding": [tramadol, {**tramadol, "display": "tramadol"}], "text": "MRI lumbar spine"},
        {"coding": [{"system": ["not", "a", "string"], "code": "M54.50"}]},
        {"coding": [{"system": ICD10, "code": {"odd": 1}, "display": "hospice care"}]},
        {"coding": [{"system": ICD10, "code": "M54.50", "display": "low back " + "x" * 400}]},
        {"coding": ["not a coding", None], "text": "osteoporosis"},
        {"coding": {"system": ICD10, "code": "M54.50"}},  # not a list: codings ignored
        {"text": 42},
        "not a codeable",
        None,
    ]
    for codeable in codeables * 3:
        assert fresh.concepts_for_codeable(codeable) == _plain_concepts(fresh, codeable)


def test_a_memo_is_bounded_and_holds_no_long_text() -> None:
    memo: Memo[str, int] = Memo(2)
    for key in "abc":
        memo.keep(key, ord(key))
    assert len(memo) <= 2 and memo.get("c") == ord("c")
    calls: list[tuple[object, ...]] = []

    @remembered(8)
    def length(*texts: str) -> int:
        calls.append(texts)
        return sum(map(len, texts))

    assert [length("short"), length("short")] == [5, 5] and len(calls) == 1
    long = "x" * 400
    assert [length(long), length(long)] == [400, 400] and len(calls) == 3  # never held


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": [1, 2.5, null, "x"]}',
        b"[1]",
        b'{"a": 1',
        b"\xff",
        b'"\\ud83d\\ude00"',  # a surrogate pair: one character
        b'{"big": 1234567890123456789, "small": 5e-324, "zero": 0.0e-999}',
        b'{"a": 1, "a": 2}',
        '{"text": "\u00e9 \u4e2d"}'.encode("utf-16"),
        b'\xef\xbb\xbf{"bom": true}',
    ],
)
def test_json_parsing_with_collector_paused_matches_json(raw: bytes) -> None:
    try:
        expected: Any = ("ok", json.loads(raw))
    except (ValueError, RecursionError) as error:
        expected = ("error", type(error))
    try:
        got: Any = ("ok", json_text.loads_json(raw))
    except (ValueError, RecursionError) as error:
        got = ("error", type(error))
    assert got == expected
    assert gc.isenabled()


@pytest.mark.parametrize("raw", [b'"\\ud800"', b'{"a": ["x\\udfff"]}', b'{"\\udc00": 1}'])
def test_json_with_a_lone_surrogate_is_refused_though_json_accepts_it(raw: bytes) -> None:
    json.loads(raw)  # Python's parser lets it through ...
    with pytest.raises(json.JSONDecodeError):  # ... but no text could hold it
        json_text.loads_json(raw)
    assert gc.isenabled()


def test_request_parsing_still_refuses_what_it_refused() -> None:
    for raw in (b"", b"[]", b"{", b"\xff\xfe", b"1" * 10):
        with pytest.raises(CdsError) as caught:
            parse_json_object(raw)
        assert caught.value.status == 400


def test_deeply_nested_json_is_refused_and_collection_resumes() -> None:
    with pytest.raises(CdsError):
        parse_json_object(b"[" * 100_000 + b"]" * 100_000)
    assert gc.isenabled()


def test_benchmark_records_answer_with_their_cards(client: FlaskClient) -> None:
    sys.path.insert(0, str(PROJECT / "bench"))
    import workloads

    for number, workload in enumerate(
        [
            workloads.realistic(EVALUATION_DATE),
            workloads.large_record(600, EVALUATION_DATE),
            *workloads.fixture_mix(EVALUATION_DATE),
        ]
    ):
        body = workload.body(number)
        response = client.post(workload.path, data=body, content_type="application/json")
        assert response.status_code == 200
        topics = {card["source"]["topic"]["code"] for card in response.get_json()["cards"]}
        assert topics == workload.expected_topics, workload.name


def test_suggested_orders_of_a_new_shape_are_validated(runtime: Runtime) -> None:
    from dataclasses import replace as replaced

    from cds_service.card_builder.builder import CardBuilder, CardContext
    from cds_service.rules.findings import Finding, Orderable, SuggestionIntent, SuggestionKind

    builder = CardBuilder(runtime.content, runtime.terminology)
    finding = Finding(
        topic="exercise-therapy",
        facts=(),
        suggestions=(
            SuggestionIntent(SuggestionKind.REFER, create=Orderable.PHYSICAL_THERAPY_REFERRAL),
        ),
    )
    builder.card(finding, CardContext(patient_id="p1"))
    broken = runtime.terminology.orderables["physical-therapy-referral"]
    runtime.terminology.orderables["physical-therapy-referral"] = replaced(
        broken, code={"coding": "x"}
    )
    try:
        # Same shape: already vouched for by the first validation.
        builder.card(finding, CardContext(patient_id="p2"))
        # A new shape (with an encounter) is validated, and the broken code is caught.
        with pytest.raises(pydantic.ValidationError):
            builder.card(finding, CardContext(patient_id="p2", encounter_id="e1"))
    finally:
        runtime.terminology.orderables["physical-therapy-referral"] = broken


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every member and item path of a JSON document, outermost first."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


_ODD_VALUES = (
    None,
    "",
    "x",
    "a/b",
    "A/b",
    "two words",
    "Bearer",
    0,
    7,
    1.5,
    True,
    [],
    [{}],
    {},
    {"resourceType": "X"},
)


def _envelope_mutations(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The document with each shallow member (within the envelope and context) removed or
    replaced by an odd value: hundreds of near-misses of a valid request."""
    mutated = []
    shallow = [p for p in _paths(document) if len(p) <= 3]
    for path in shallow:
        parent_path, last = path[:-1], path[-1]
        for replacement in (*_ODD_VALUES, KeyError):
            copy_ = copy.deepcopy(document)
            parent = copy_
            for step in parent_path:
                parent = parent[step]
            if replacement is KeyError:
                if isinstance(parent, dict):
                    del parent[last]
                else:
                    parent.pop(last)
            else:
                parent[last] = replacement
            mutated.append(copy_)
    return mutated


def test_plain_python_request_check_never_accepts_what_the_schema_refuses() -> None:
    from cds_service.protocol.request import _plainly_valid_request

    original = schema_validator("request")
    checked = accepted = 0
    hooks = set()
    # A spread of the library keeps the run short; the first fixture of each hook is in it.
    folders = fixture_dirs()
    first_of_hook: dict[str, Path] = {}
    for folder in folders:
        hook = json.loads((folder / "request.json").read_text())["hook"]
        first_of_hook.setdefault(hook, folder)
    for folder in dict.fromkeys([*folders[::4], *first_of_hook.values()]):
        document = json.loads((folder / "request.json").read_text())
        hooks.add(document["hook"])
        for candidate in [document, *_envelope_mutations(document)]:
            checked += 1
            if _plainly_valid_request(candidate):
                accepted += 1
                assert original.is_valid(candidate), json.dumps(candidate)[:300]
    for document in _bad_requests():
        assert not _plainly_valid_request(document)
    # The shortcut must also be useful: every fixture request is taken by it.
    assert all(
        _plainly_valid_request(json.loads((f / "request.json").read_text())) for f in fixture_dirs()
    )
    assert hooks == {"order-sign", "order-select", "patient-view"}
    assert checked > 3000 and accepted > 100


def test_code_facts_prefer_known_codes_and_keep_long_displays_whole(runtime: Runtime) -> None:
    long_display = "Low back pain " + "with a very long free-text display " * 20
    codeable = {
        "coding": [
            {"system": "http://example.org/local", "code": "LBP-1", "display": "local"},
            {"system": ICD10, "code": "M54.50", "display": long_display},
        ]
    }
    for _ in range(2):  # the second answer comes from memory where one is kept
        facts = record_builder._facts_for(codeable, runtime.terminology)
        assert [(f.system_label, f.code, f.display) for f in facts] == [
            ("ICD-10-CM", "M54.50", long_display)
        ]
    unknown_only = {"coding": [{"system": "http://example.org/local", "code": "LBP-1"}]}
    facts = record_builder._facts_for(unknown_only, runtime.terminology)
    assert [str(f) for f in facts] == ["http://example.org/local LBP-1"]


# --- the collector paused for a hook call ---------------------------------------------------


def _post(client: FlaskClient, body: Any, raw: bytes | None = None) -> int:
    response = client.post(
        "/cds-services/back-pain-order-sign",
        data=raw if raw is not None else json.dumps(body),
        content_type="application/json",
    )
    response.close()  # what a WSGI server does once the answer is sent
    return response.status_code


def test_the_collector_is_paused_during_a_call_and_resumed_after_it(
    client: FlaskClient, fixture_request: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[bool] = []
    original = record_builder.RecordBuilder.build

    def watching(self: RecordBuilder, *args: Any, **kwargs: Any) -> Any:
        seen.append(gc.isenabled())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(record_builder.RecordBuilder, "build", watching)
    assert gc.isenabled()
    assert _post(client, fixture_request("opioid-tramadol-acute-low-back-pain")) == 200
    assert seen and not any(seen)
    assert gc.isenabled()


@pytest.mark.parametrize(
    "broken",
    [
        lambda body: b"{not json",  # refused while parsing
        lambda body: json.dumps({**body, "hook": "patient-view"}).encode(),  # refused later
        lambda body: json.dumps({**body, "prefetch": {}}).encode(),  # 412, no FHIR server
    ],
)
def test_the_collector_is_resumed_after_a_refused_call(
    client: FlaskClient, fixture_request: Any, broken: Any
) -> None:
    body = fixture_request("opioid-tramadol-acute-low-back-pain")
    body.pop("fhirServer", None)
    assert _post(client, body, broken(body)) in {400, 412}
    assert gc.isenabled()


def test_a_collector_paused_by_someone_else_stays_paused(
    client: FlaskClient, fixture_request: Any
) -> None:
    gc.disable()
    try:
        assert _post(client, fixture_request("opioid-tramadol-acute-low-back-pain")) == 200
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_an_answer_the_server_never_closes_does_not_leave_the_collector_paused(
    client: FlaskClient, fixture_request: Any
) -> None:
    body = fixture_request("opioid-tramadol-acute-low-back-pain")
    unclosed = client.post("/cds-services/back-pain-order-sign", json=body)
    assert unclosed.status_code == 200 and not gc.isenabled()  # until the answer is closed
    assert client.get("/health").status_code == 200  # the next request ends the pause
    assert gc.isenabled()
    unclosed.close()
    assert gc.isenabled()


def test_the_collector_is_resumed_when_the_handler_fails(
    client: FlaskClient, fixture_request: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(record_builder.RecordBuilder, "build", failing)
    assert _post(client, fixture_request("opioid-tramadol-acute-low-back-pain")) == 500
    assert gc.isenabled()
