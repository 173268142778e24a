"""Unit tests of the guideline rules: pure functions over hand-built patient records."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest

from cds_service.record.model import (
    CodeFact,
    ConditionEntry,
    ObservationEntry,
    OrderEntry,
    PatientRecord,
    ProcedureEntry,
)
from cds_service.rules.assessment import Assessment
from cds_service.rules.engine import evaluate
from cds_service.rules.findings import (
    Contraindication,
    FactKind,
    Finding,
    Indicator,
    Orderable,
    RedFlag,
)
from cds_service.terminology.concepts import Concept as K
from cds_service.vocabulary import DataCategory

TODAY = date(2026, 11, 22)


def ago(days: int) -> date:
    return TODAY - timedelta(days=days)


def cond(
    *concepts: K,
    onset: int | None = 10,
    status: str | None = "active",
    verification: str | None = "confirmed",
    rid: str = "c1",
) -> ConditionEntry:
    return ConditionEntry(
        resource_id=rid,
        concepts=frozenset(concepts),
        codes=(CodeFact("ICD-10-CM", "X00", "test condition"),),
        label="test condition",
        clinical_status=status,
        verification_status=verification,
        onset=ago(onset) if onset is not None else None,
        recorded=None,
    )


def draft(
    *concepts: K,
    rid: str = "d1",
    kind: str = "MedicationRequest",
    selected: bool = True,
    reasons: frozenset[K] = frozenset(),
    code: str = "1",
) -> OrderEntry:
    return OrderEntry(
        resource_type=kind,
        resource_id=rid,
        concepts=frozenset(concepts),
        codes=(CodeFact("RxNorm", code, "drug"),),
        label=f"drafted {rid}",
        status="draft",
        authored=TODAY,
        reason_concepts=reasons,
        is_draft=True,
        is_selected=selected,
    )


def history(
    *concepts: K,
    rid: str = "h1",
    status: str = "active",
    authored: int = 30,
    kind: str = "MedicationRequest",
) -> OrderEntry:
    return OrderEntry(
        resource_type=kind,
        resource_id=rid,
        concepts=frozenset(concepts),
        codes=(),
        label=f"history {rid}",
        status=status,
        authored=ago(authored),
    )


def record(
    *,
    hook: str = "order-sign",
    age: int | None = 40,
    conditions=(),
    orders=(),
    procedures=(),
    observations=(),
    available=None,
) -> PatientRecord:
    birth = date(TODAY.year - age, 1, 1) if age is not None else None
    return PatientRecord(
        patient_id="p1",
        hook=hook,
        today=TODAY,
        birth_date=birth,
        conditions=tuple(conditions),
        orders=tuple(orders),
        procedures=tuple(procedures),
        observations=tuple(observations),
        available=frozenset(DataCategory) if available is None else frozenset(available),
    )


LBP = cond(K.BACK_PAIN_LOW, rid="lbp")


def topics(rec: PatientRecord) -> list[str]:
    return sorted(f.topic for f in evaluate(rec).findings)


# --- back pain ------------------------------------------------------------------------------


def test_no_back_pain_no_findings() -> None:
    assert topics(record(conditions=[cond(K.DEPRESSION)], orders=[draft(K.OPIOID)])) == []


@pytest.mark.parametrize(
    ("status", "verification", "expected"),
    [
        ("active", "confirmed", True),
        ("recurrence", "confirmed", True),
        ("relapse", None, True),
        (None, None, True),
        ("resolved", "confirmed", False),
        ("inactive", "confirmed", False),
        ("active", "refuted", False),
        ("active", "entered-in-error", False),
    ],
)
def test_back_pain_condition_status(
    status: str | None, verification: str | None, expected: bool
) -> None:
    rec = record(conditions=[cond(K.BACK_PAIN_THORACIC, status=status, verification=verification)])
    assert Assessment(rec).has_back_pain is expected


def test_back_pain_from_draft_reason_code() -> None:
    rec = record(orders=[draft(K.OPIOID, reasons=frozenset({K.BACK_PAIN_LOW}))])
    assessment = Assessment(rec)
    assert assessment.has_back_pain
    assert assessment.back_pain_facts[0].kind == FactKind.BACK_PAIN_REASON
    assert "opioid-avoidance" in topics(rec)


def test_pain_duration_from_earliest_active_onset() -> None:
    rec = record(
        conditions=[
            cond(K.BACK_PAIN_LOW, onset=30, rid="a"),
            cond(K.BACK_PAIN_THORACIC, onset=70, rid="b"),
        ]
    )
    assert Assessment(rec).pain_duration_days == 70


def test_minors_get_no_back_pain_advice() -> None:
    assert topics(record(age=16, conditions=[LBP], orders=[draft(K.OPIOID)])) == []


# --- opioid-avoidance -----------------------------------------------------------------------


def test_opioid_card_suggests_topical_nsaid_and_removal() -> None:
    findings = [
        f
        for f in evaluate(record(conditions=[LBP], orders=[draft(K.OPIOID)])).findings
        if f.topic == "opioid-avoidance"
    ]
    assert len(findings) == 1
    replace_, remove = findings[0].suggestions
    assert replace_.kind == "replace" and replace_.create == Orderable.TOPICAL_NSAID
    assert replace_.delete and replace_.delete.reference == "MedicationRequest/d1"
    assert remove.kind == "remove" and remove.create is None


@pytest.mark.parametrize("exclusion", [K.ACTIVE_CANCER, K.END_OF_LIFE, K.SICKLE_CELL_DISEASE])
def test_opioid_card_excluded(exclusion: K) -> None:
    rec = record(conditions=[LBP, cond(exclusion, rid="x")], orders=[draft(K.OPIOID)])
    assert "opioid-avoidance" not in topics(rec)


def test_opioid_card_excluded_by_hospice_procedure_and_referral() -> None:
    hospice = ProcedureEntry(frozenset({K.HOSPICE_CARE}), (), "hospice", "completed", ago(20))
    assert "opioid-avoidance" not in topics(
        record(conditions=[LBP], orders=[draft(K.OPIOID)], procedures=[hospice])
    )
    referral = history(K.HOSPICE_CARE, kind="ServiceRequest")
    assert "opioid-avoidance" not in topics(
        record(conditions=[LBP], orders=[draft(K.OPIOID), referral])
    )


def test_resolved_cancer_does_not_exclude_but_is_a_red_flag() -> None:
    rec = record(
        conditions=[
            LBP,
            cond(K.ACTIVE_CANCER, K.RED_FLAG_CANCER_HISTORY, status="resolved", rid="ca"),
        ],
        orders=[draft(K.OPIOID)],
    )
    assert {"opioid-avoidance", "red-flags-present"} <= set(topics(rec))


def test_opioid_alternative_is_acetaminophen_when_nsaids_contraindicated() -> None:
    rec = record(conditions=[LBP, cond(K.HEART_FAILURE, rid="hf")], orders=[draft(K.OPIOID)])
    finding = next(f for f in evaluate(rec).findings if f.topic == "opioid-avoidance")
    assert finding.alternative == Orderable.ACETAMINOPHEN
    assert finding.contraindications == (Contraindication.HEART_FAILURE,)


def test_opioid_nsaid_combination_is_treated_as_opioid_only() -> None:
    rec = record(conditions=[LBP], orders=[draft(K.OPIOID, K.NSAID)])
    found = topics(rec)
    assert "opioid-avoidance" in found and "topical-nsaid-first" not in found


def test_order_select_evaluates_only_selections() -> None:
    rec = record(
        conditions=[LBP], orders=[draft(K.OPIOID, rid="o", selected=False), draft(K.NSAID, rid="n")]
    )
    found = topics(rec)
    assert "opioid-avoidance" not in found and "topical-nsaid-first" in found


def test_one_card_per_drafted_opioid() -> None:
    drafts = [draft(K.OPIOID, rid="a", code="1"), draft(K.OPIOID, rid="b", code="2")]
    rec = record(conditions=[LBP], orders=drafts)
    assert topics(rec).count("opioid-avoidance") == 2


def test_identical_drafts_are_one_finding_that_answers_for_all_of_them() -> None:
    products = {"a": "1", "b": "2", "c": "1", "d": "1"}  # draft id: product code
    drafts = [draft(K.OPIOID, rid=rid, code=code) for rid, code in products.items()]
    evaluation = evaluate(record(conditions=[LBP], orders=drafts))
    opioid = [f for f in evaluation.findings if f.topic == "opioid-avoidance"]
    assert [f.order.reference for f in opioid] == ["MedicationRequest/a", "MedicationRequest/b"]
    assert [o.reference for o in opioid[0].same_orders] == [
        "MedicationRequest/c",
        "MedicationRequest/d",
    ]
    assert opioid[1].same_orders == ()


# --- red flags and imaging ------------------------------------------------------------------


def red_flags(rec: PatientRecord) -> set[RedFlag]:
    return {f.flag for f in Assessment(rec).red_flags}


def imaging(**kwargs) -> PatientRecord:
    kwargs.setdefault("conditions", [LBP])
    return record(orders=[draft(K.SPINE_IMAGING, kind="ServiceRequest")], **kwargs)


def test_imaging_without_red_flags_fires_with_cancel_suggestion() -> None:
    finding = next(
        f for f in evaluate(imaging()).findings if f.topic == "imaging-without-red-flags"
    )
    assert [s.kind for s in finding.suggestions] == ["cancel"]
    assert finding.suggestions[0].delete.reference == "ServiceRequest/d1"


@pytest.mark.parametrize(
    ("concept", "flag"),
    [
        (K.RED_FLAG_NEUROLOGIC_DEFICIT, RedFlag.NEUROLOGIC_DEFICIT),
        (K.RED_FLAG_SPINAL_INFECTION, RedFlag.SPINAL_INFECTION),
        (K.RED_FLAG_FEVER, RedFlag.FEVER),
        (K.RED_FLAG_IV_DRUG_USE, RedFlag.IV_DRUG_USE),
        (K.RED_FLAG_IMMUNOSUPPRESSION, RedFlag.IMMUNOSUPPRESSION),
        (K.RED_FLAG_CANCER_HISTORY, RedFlag.CANCER_HISTORY),
        (K.RED_FLAG_WEIGHT_LOSS, RedFlag.WEIGHT_LOSS),
        (K.RED_FLAG_SPINAL_TRAUMA, RedFlag.SPINAL_TRAUMA),
        (K.RED_FLAG_OSTEOPOROSIS, RedFlag.OSTEOPOROSIS),
    ],
)
def test_each_coded_red_flag_silences_imaging_and_raises_a_red_flag_card(
    concept: K, flag: RedFlag
) -> None:
    rec = imaging(conditions=[LBP, cond(concept, onset=5, rid="rf")])
    assert red_flags(rec) == {flag}
    evaluation = evaluate(rec)
    card = next(f for f in evaluation.findings if f.topic == "red-flags-present")
    assert card.red_flags == (flag,)
    expected = (
        Indicator.CRITICAL
        if flag in {RedFlag.NEUROLOGIC_DEFICIT, RedFlag.SPINAL_INFECTION}
        else Indicator.WARNING
    )
    assert card.indicator == expected
    assert "imaging-without-red-flags" not in [f.topic for f in evaluation.findings]


def test_old_trauma_is_not_a_red_flag_but_recent_is() -> None:
    assert (
        red_flags(imaging(conditions=[LBP, cond(K.RED_FLAG_SPINAL_TRAUMA, onset=120, rid="t")]))
        == set()
    )
    assert red_flags(
        imaging(conditions=[LBP, cond(K.RED_FLAG_SPINAL_TRAUMA, onset=60, rid="t")])
    ) == {RedFlag.SPINAL_TRAUMA}


def test_fever_from_temperature_in_last_7_days() -> None:
    def temp(value: float, days: int) -> ObservationEntry:
        return ObservationEntry(
            frozenset({K.BODY_TEMPERATURE}), (), value, "Cel", ago(days), "final"
        )

    assert red_flags(imaging(observations=[temp(38.0, 3)])) == {RedFlag.FEVER}
    assert red_flags(imaging(observations=[temp(37.9, 3)])) == set()
    assert red_flags(imaging(observations=[temp(39.0, 8)])) == set()


def test_measured_weight_loss_over_5_percent() -> None:
    def kg(value: float, days: int) -> ObservationEntry:
        return ObservationEntry(frozenset({K.BODY_WEIGHT}), (), value, "kg", ago(days), "final")

    assert red_flags(imaging(observations=[kg(80, 200), kg(75, 1)])) == {RedFlag.WEIGHT_LOSS}
    assert red_flags(imaging(observations=[kg(80, 200), kg(77, 1)])) == set()
    assert red_flags(imaging(observations=[kg(80, 10), kg(70, 1)])) == set()  # too short a span


def test_age_over_50_with_new_pain() -> None:
    assert red_flags(imaging(age=51, conditions=[cond(K.BACK_PAIN_LOW, onset=20)])) == {
        RedFlag.AGE_OVER_50_NEW_PAIN
    }
    assert red_flags(imaging(age=50, conditions=[cond(K.BACK_PAIN_LOW, onset=20)])) == set()
    assert red_flags(imaging(age=70, conditions=[cond(K.BACK_PAIN_LOW, onset=60)])) == set()


def test_long_term_systemic_steroids() -> None:
    long_course = history(K.SYSTEMIC_CORTICOSTEROID, authored=120)
    short_course = history(K.SYSTEMIC_CORTICOSTEROID, authored=20)
    assert RedFlag.LONG_TERM_STEROIDS in red_flags(record(conditions=[LBP], orders=[long_course]))
    assert red_flags(record(conditions=[LBP], orders=[short_course])) == set()


def test_transplant_procedure_is_immunosuppression() -> None:
    transplant = ProcedureEntry(
        frozenset({K.TRANSPLANT_PROCEDURE}), (), "kidney transplant", "completed", ago(2000)
    )
    assert red_flags(imaging(procedures=[transplant])) == {RedFlag.IMMUNOSUPPRESSION}


def test_imaging_rule_silent_without_the_data_to_rule_out_red_flags() -> None:
    rec = imaging(available=set(DataCategory) - {DataCategory.OBSERVATIONS})
    evaluation = evaluate(rec)
    assert "imaging-without-red-flags" in evaluation.skipped
    assert "imaging-without-red-flags" not in [f.topic for f in evaluation.findings]


def test_red_flag_card_on_patient_view_but_not_for_unrelated_orders() -> None:
    flagged = [LBP, cond(K.RED_FLAG_OSTEOPOROSIS, rid="o")]
    assert "red-flags-present" in topics(record(hook="patient-view", conditions=flagged))
    unrelated = draft(rid="statin")
    assert "red-flags-present" not in topics(record(conditions=flagged, orders=[unrelated]))


# --- NSAIDs ----------------------------------------------------------------------------------


def test_topical_nsaid_first_for_oral_nsaid() -> None:
    finding = next(
        f
        for f in evaluate(record(conditions=[LBP], orders=[draft(K.NSAID)])).findings
        if f.topic == "topical-nsaid-first"
    )
    assert finding.suggestions[0].create == Orderable.TOPICAL_NSAID


def test_topical_nsaid_draft_itself_gets_no_card() -> None:
    assert "topical-nsaid-first" not in topics(
        record(conditions=[LBP], orders=[draft(K.NSAID, K.TOPICAL_FORM)])
    )
    assert "topical-nsaid-first" not in topics(
        record(conditions=[LBP], orders=[draft(K.NSAID_TOPICAL, K.NSAID)])
    )


@pytest.mark.parametrize(
    ("status", "authored", "fires"),
    [("completed", 30, False), ("completed", 100, True), ("active", 400, False)],
)
def test_topical_nsaid_tried_within_90_days(status: str, authored: int, fires: bool) -> None:
    tried = history(K.NSAID, K.TOPICAL_FORM, status=status, authored=authored)
    assert (
        "topical-nsaid-first" in topics(record(conditions=[LBP], orders=[draft(K.NSAID), tried]))
    ) is fires


@pytest.mark.parametrize(
    ("contraindication", "extra"),
    [
        (Contraindication.CKD_SEVERE, cond(K.CKD_SEVERE, rid="x")),
        (Contraindication.GI_BLEED_OR_ULCER, cond(K.GI_BLEED_OR_ULCER, rid="x")),
        (Contraindication.HEART_FAILURE, cond(K.HEART_FAILURE, rid="x")),
        (Contraindication.ANTICOAGULANT, history(K.ANTICOAGULANT)),
    ],
)
def test_nsaid_contraindications(contraindication: Contraindication, extra: object) -> None:
    conditions = [LBP] + ([extra] if isinstance(extra, ConditionEntry) else [])
    orders = [draft(K.NSAID)] + ([extra] if isinstance(extra, OrderEntry) else [])
    evaluation = evaluate(record(conditions=conditions, orders=orders))
    finding = next(f for f in evaluation.findings if f.topic == "nsaid-contraindicated")
    assert finding.contraindications == (contraindication,)
    assert finding.suggestions[0].create == Orderable.ACETAMINOPHEN
    assert "topical-nsaid-first" not in [f.topic for f in evaluation.findings]


def test_stopped_anticoagulant_is_no_contraindication() -> None:
    stopped = history(K.ANTICOAGULANT, status="stopped")
    assert "nsaid-contraindicated" not in topics(
        record(conditions=[LBP], orders=[draft(K.NSAID), stopped])
    )


# --- antidepressants, glucosamine, injections ------------------------------------------------


@pytest.mark.parametrize("drug", [K.SSRI, K.SNRI, K.TCA])
def test_antidepressant_without_indication(drug: K) -> None:
    assert "avoid-antidepressant" in topics(record(conditions=[LBP], orders=[draft(drug)]))


@pytest.mark.parametrize(
    "indication", [K.DEPRESSION, K.ANXIETY, K.NEUROPATHIC_PAIN, K.RADICULAR_PAIN]
)
def test_antidepressant_with_indication_is_silent(indication: K) -> None:
    assert "avoid-antidepressant" not in topics(
        record(conditions=[LBP, cond(indication, rid="i")], orders=[draft(K.SNRI)])
    )


def test_glucosamine() -> None:
    finding = next(
        f
        for f in evaluate(
            record(conditions=[LBP], orders=[draft(K.GLUCOSAMINE_CHONDROITIN)])
        ).findings
        if f.topic == "avoid-glucosamine"
    )
    assert [s.kind for s in finding.suggestions] == ["remove"]


def test_spinal_injection_axial_vs_radicular() -> None:
    injection = draft(K.SPINAL_INJECTION, kind="ServiceRequest")
    assert "avoid-spinal-injection" in topics(record(conditions=[LBP], orders=[injection]))
    assert "avoid-spinal-injection" not in topics(
        record(conditions=[LBP, cond(K.RADICULAR_PAIN, rid="r")], orders=[injection])
    )


def test_removal_needs_an_order_id() -> None:
    unnamed = replace(draft(K.GLUCOSAMINE_CHONDROITIN), resource_id=None)
    finding = next(
        f
        for f in evaluate(record(conditions=[LBP], orders=[unnamed])).findings
        if f.topic == "avoid-glucosamine"
    )
    assert finding.suggestions == ()


# --- exercise and chronic pain ----------------------------------------------------------------


def test_exercise_therapy_unless_pt_in_place() -> None:
    assert "exercise-therapy" in topics(record(hook="patient-view", conditions=[LBP]))
    referral = history(K.PHYSICAL_THERAPY, kind="ServiceRequest")
    assert "exercise-therapy" not in topics(
        record(hook="patient-view", conditions=[LBP], orders=[referral])
    )
    session = ProcedureEntry(frozenset({K.PHYSICAL_THERAPY}), (), "PT", "completed", ago(10))
    assert "exercise-therapy" not in topics(
        record(hook="patient-view", conditions=[LBP], procedures=[session])
    )
    pt_draft = draft(K.PHYSICAL_THERAPY, kind="ServiceRequest")
    assert "exercise-therapy" not in topics(record(conditions=[LBP], orders=[pt_draft]))


def test_exercise_therapy_silent_with_emergency_red_flag() -> None:
    rec = record(
        hook="patient-view", conditions=[LBP, cond(K.RED_FLAG_NEUROLOGIC_DEFICIT, rid="n")]
    )
    assert topics(rec) == ["red-flags-present"]


@pytest.mark.parametrize(
    ("onset", "fires", "refers"),
    [(27, False, False), (28, True, False), (83, True, False), (84, True, True)],
)
def test_chronic_pain_thresholds(onset: int, fires: bool, refers: bool) -> None:
    rec = record(hook="patient-view", conditions=[cond(K.BACK_PAIN_LOW, onset=onset)])
    findings = [f for f in evaluate(rec).findings if f.topic == "chronic-pain-assessment"]
    assert bool(findings) is fires
    if findings:
        assert bool(findings[0].suggestions) is refers


def test_chronic_pain_referral_not_repeated() -> None:
    referral = history(K.PAIN_MANAGEMENT_REFERRAL, kind="ServiceRequest")
    rec = record(
        hook="patient-view", conditions=[cond(K.BACK_PAIN_LOW, onset=200)], orders=[referral]
    )
    finding = next(f for f in evaluate(rec).findings if f.topic == "chronic-pain-assessment")
    assert finding.suggestions == ()


def test_rules_needing_missing_data_stay_silent() -> None:
    rec = record(
        conditions=[LBP],
        orders=[draft(K.OPIOID)],
        available=set(DataCategory) - {DataCategory.PROCEDURES},
    )
    evaluation = evaluate(rec)
    assert "opioid-avoidance" in evaluation.skipped
    assert "opioid-avoidance" not in [f.topic for f in evaluation.findings]


def test_rehabilitation_advice_stays_silent_when_hospice_care_cannot_be_seen() -> None:
    # Without procedures, a hospice stay cannot be ruled out: neither card may go out.
    chronic = cond(K.BACK_PAIN_LOW, onset=120)
    rec = record(
        hook="patient-view",
        conditions=[chronic],
        available=set(DataCategory) - {DataCategory.PROCEDURES},
    )
    evaluation = evaluate(rec)
    assert {"exercise-therapy", "chronic-pain-assessment"} <= set(evaluation.skipped)
    assert not {"exercise-therapy", "chronic-pain-assessment"} & set(topics(rec))


def test_end_of_life_care_holds_back_rehabilitation_advice() -> None:
    chronic = cond(K.BACK_PAIN_LOW, onset=120)
    assert {"exercise-therapy", "chronic-pain-assessment"} <= set(
        topics(record(hook="patient-view", conditions=[chronic]))
    )
    terminal = cond(K.END_OF_LIFE, rid="eol")
    assert topics(record(hook="patient-view", conditions=[chronic, terminal])) == []
    hospice = ProcedureEntry(frozenset({K.HOSPICE_CARE}), (), "hospice", "completed", ago(20))
    assert topics(record(hook="patient-view", conditions=[chronic], procedures=[hospice])) == []
    # Sickle cell disease silences only the opioid advice.
    sickle = cond(K.SICKLE_CELL_DISEASE, rid="scd")
    assert "exercise-therapy" in topics(record(hook="patient-view", conditions=[chronic, sickle]))


# --- advice that fits the patient -------------------------------------------------------------


def _finding(rec: PatientRecord, topic: str) -> Finding:
    return next(f for f in evaluate(rec).findings if f.topic == topic)


def _fever(days: int = 1) -> ObservationEntry:
    return ObservationEntry(frozenset({K.BODY_TEMPERATURE}), (), 38.9, "Cel", ago(days), "final")


@pytest.mark.parametrize(
    "flag_condition",
    [
        cond(K.RED_FLAG_OSTEOPOROSIS, onset=400, rid="op"),
        cond(K.RED_FLAG_WEIGHT_LOSS, onset=30, rid="wl"),
        cond(K.RED_FLAG_CANCER_HISTORY, onset=2000, status="resolved", rid="ca"),
    ],
)
def test_any_red_flag_holds_back_exercise_and_chronic_pain_advice(
    flag_condition: ConditionEntry,
) -> None:
    chronic = cond(K.BACK_PAIN_LOW, onset=120)
    assert {"exercise-therapy", "chronic-pain-assessment"} <= set(
        topics(record(hook="patient-view", conditions=[chronic]))
    )
    rec = record(hook="patient-view", conditions=[chronic, flag_condition])
    assert topics(rec) == ["red-flags-present"]
    pt_referral = draft(K.PHYSICAL_THERAPY, kind="ServiceRequest")
    at_order = record(conditions=[chronic, flag_condition], orders=[pt_referral])
    assert topics(at_order) == ["red-flags-present"]


def test_active_and_past_cancer_are_told_apart_by_status() -> None:
    active = cond(K.ACTIVE_CANCER, K.RED_FLAG_CANCER_HISTORY, onset=100, rid="ca")
    past = replace(active, clinical_status="remission")
    history_code = cond(K.RED_FLAG_CANCER_HISTORY, onset=900, rid="z85")
    assert red_flags(imaging(conditions=[LBP, active])) == {RedFlag.ACTIVE_CANCER}
    assert red_flags(imaging(conditions=[LBP, past])) == {RedFlag.CANCER_HISTORY}
    assert red_flags(imaging(conditions=[LBP, history_code])) == {RedFlag.CANCER_HISTORY}
    # Active cancer also takes the opioid advice off the table; a past cancer does not.
    assert "opioid-avoidance" not in topics(
        record(conditions=[LBP, active], orders=[draft(K.OPIOID)])
    )
    assert "opioid-avoidance" in topics(record(conditions=[LBP, past], orders=[draft(K.OPIOID)]))


@pytest.mark.parametrize(
    ("concept", "flag"),
    [
        (K.RED_FLAG_SPINAL_INFECTION, RedFlag.SPINAL_INFECTION),
        (K.RED_FLAG_NEUROLOGIC_DEFICIT, RedFlag.NEUROLOGIC_DEFICIT),
    ],
)
def test_an_established_diagnosis_is_known_not_an_emergency(concept: K, flag: RedFlag) -> None:
    new = _finding(
        record(hook="patient-view", conditions=[LBP, cond(concept, onset=20, rid="dx")]),
        "red-flags-present",
    )
    assert (new.indicator, new.known_red_flags) == (Indicator.CRITICAL, frozenset())
    known = _finding(
        record(hook="patient-view", conditions=[LBP, cond(concept, onset=120, rid="dx")]),
        "red-flags-present",
    )
    assert (known.indicator, known.known_red_flags) == (Indicator.WARNING, frozenset({flag}))


def test_fever_with_iv_drug_use_is_a_suspected_spinal_infection() -> None:
    ivdu = cond(K.RED_FLAG_IV_DRUG_USE, onset=200, rid="ivdu")
    rec = imaging(conditions=[LBP, ivdu], observations=[_fever()])
    finding = _finding(rec, "red-flags-present")
    assert finding.red_flags == (RedFlag.SUSPECTED_SPINAL_INFECTION,)
    assert finding.indicator == Indicator.CRITICAL
    # Both facts stay on the card, under the one suspicion.
    kinds = {f.kind for f in finding.facts}
    assert {FactKind.RED_FLAG_TEMPERATURE, FactKind.RED_FLAG_CONDITION} <= kinds
    # Fever alone is a warning.
    alone = _finding(imaging(observations=[_fever()]), "red-flags-present")
    assert (alone.red_flags, alone.indicator) == ((RedFlag.FEVER,), Indicator.WARNING)


def test_red_flags_are_listed_most_serious_first() -> None:
    rec = imaging(
        age=70,
        conditions=[
            cond(K.BACK_PAIN_LOW, onset=10),
            cond(K.RED_FLAG_OSTEOPOROSIS, onset=900, rid="op"),
            cond(K.RED_FLAG_NEUROLOGIC_DEFICIT, onset=2, rid="ce"),
        ],
    )
    assert _finding(rec, "red-flags-present").red_flags == (
        RedFlag.NEUROLOGIC_DEFICIT,
        RedFlag.AGE_OVER_50_NEW_PAIN,
        RedFlag.OSTEOPOROSIS,
    )


@pytest.mark.parametrize(
    ("flag_condition", "age", "modality", "notes"),
    [
        (None, 64, K.SPINE_IMAGING_MRI, ("advanced-imaging-too-soon",)),
        (None, 64, K.SPINE_IMAGING_XRAY, ()),
        (
            cond(K.RED_FLAG_OSTEOPOROSIS, onset=900, rid="op"),
            40,
            K.SPINE_IMAGING_CT,
            ("advanced-imaging-too-soon",),
        ),
        (cond(K.RED_FLAG_SPINAL_TRAUMA, onset=20, rid="tr"), 40, K.SPINE_IMAGING_CT, ()),
        (
            cond(K.RED_FLAG_SPINAL_TRAUMA, onset=20, rid="tr"),
            40,
            K.SPINE_IMAGING_MRI,
            ("advanced-imaging-too-soon",),
        ),
        (
            cond(K.RED_FLAG_CANCER_HISTORY, onset=900, rid="ca"),
            40,
            K.SPINE_IMAGING_XRAY,
            ("xray-not-enough",),
        ),
        (cond(K.RED_FLAG_CANCER_HISTORY, onset=900, rid="ca"), 40, K.SPINE_IMAGING_MRI, ()),
        (cond(K.RED_FLAG_IV_DRUG_USE, onset=90, rid="iv"), 40, K.SPINE_IMAGING_XRAY, ()),
    ],
)
def test_drafted_imaging_is_checked_against_the_red_flags_first_test(
    flag_condition: ConditionEntry | None, age: int, modality: K, notes: tuple[str, ...]
) -> None:
    conditions = [cond(K.BACK_PAIN_LOW, onset=10)]
    if flag_condition is not None:
        conditions.append(flag_condition)
    study = draft(K.SPINE_IMAGING, modality, kind="ServiceRequest")
    rec = record(age=age, conditions=conditions, orders=[study])
    finding = _finding(rec, "red-flags-present")
    assert finding.notes == notes
    # The study is named once: in the note when there is one, else among the facts.
    named = any(f.kind == FactKind.DRAFT_ORDER for f in finding.facts)
    assert named is (not notes)


def test_opioid_notes_extended_release_and_unsafe_nsaids() -> None:
    plain = _finding(record(conditions=[LBP], orders=[draft(K.OPIOID)]), "opioid-avoidance")
    assert plain.notes == ()
    er = draft(K.OPIOID, K.OPIOID_EXTENDED_RELEASE)
    hf = cond(K.HEART_FAILURE, rid="hf")
    noted = _finding(record(conditions=[LBP, hf], orders=[er]), "opioid-avoidance")
    assert noted.notes == ("extended-release", "nsaids-contraindicated")


def test_chronic_pain_card_names_the_referral_when_it_is_due() -> None:
    def card(onset: int) -> Finding:
        rec = record(hook="patient-view", conditions=[cond(K.BACK_PAIN_LOW, onset=onset)])
        return _finding(rec, "chronic-pain-assessment")

    assert card(83).notes == ()
    assert card(84).notes == ("referral-due",)
    # The duration is one of the facts, once.
    assert [f.kind for f in card(84).facts] == [FactKind.BACK_PAIN]


# --- spine surgery referral -------------------------------------------------------------------


def surgery(*concepts: K, reasons: frozenset[K] = frozenset()) -> OrderEntry:
    return draft(*(concepts or (K.SPINE_SURGERY,)), kind="ServiceRequest", reasons=reasons)


def test_spine_surgery_without_indication_is_cancelled() -> None:
    finding = _finding(record(conditions=[LBP], orders=[surgery()]), "avoid-surgery-referral")
    assert [s.kind for s in finding.suggestions] == ["cancel"]
    assert finding.suggestions[0].delete.reference == "ServiceRequest/d1"
    assert FactKind.NO_SURGICAL_INDICATION in {f.kind for f in finding.facts}


def test_a_surgeon_referral_naming_no_body_part_counts_only_for_back_pain() -> None:
    for_back_pain = surgery(K.SURGICAL_REFERRAL, reasons=frozenset({K.BACK_PAIN_LOW}))
    assert "avoid-surgery-referral" in topics(record(conditions=[LBP], orders=[for_back_pain]))
    no_reason = surgery(K.SURGICAL_REFERRAL)
    assert "avoid-surgery-referral" not in topics(record(conditions=[LBP], orders=[no_reason]))


@pytest.mark.parametrize(
    "reason_to_operate",
    [
        cond(K.RED_FLAG_NEUROLOGIC_DEFICIT, onset=2, rid="ces"),  # cauda equina
        # Recorded years ago: no longer a red flag, but still a structural diagnosis.
        cond(K.RED_FLAG_NEUROLOGIC_DEFICIT, K.SPINE_SURGICAL_DIAGNOSIS, onset=2000, rid="old"),
        cond(K.RED_FLAG_CANCER_HISTORY, onset=900, rid="ca"),
        cond(K.SPINE_SURGICAL_DIAGNOSIS, onset=300, rid="stenosis"),
        cond(K.RADICULAR_PAIN, K.SPINE_SURGICAL_DIAGNOSIS, onset=60, rid="radic"),
    ],
)
def test_spine_surgery_with_a_red_flag_or_structural_diagnosis_is_silent(
    reason_to_operate: ConditionEntry,
) -> None:
    rec = record(conditions=[LBP, reason_to_operate], orders=[surgery()])
    assert "avoid-surgery-referral" not in topics(rec)


def test_resolved_structural_diagnosis_does_not_silence_the_surgery_card() -> None:
    resolved = cond(K.SPINE_SURGICAL_DIAGNOSIS, status="resolved", rid="old")
    assert "avoid-surgery-referral" in topics(
        record(conditions=[LBP, resolved], orders=[surgery()])
    )


def test_the_orders_own_structural_reason_silences_the_surgery_card() -> None:
    reasoned = surgery(reasons=frozenset({K.RADICULAR_PAIN, K.SPINE_SURGICAL_DIAGNOSIS}))
    assert "avoid-surgery-referral" not in topics(record(conditions=[LBP], orders=[reasoned]))


def test_surgery_card_needs_every_kind_of_red_flag_data() -> None:
    rec = record(
        conditions=[LBP],
        orders=[surgery()],
        available=set(DataCategory) - {DataCategory.OBSERVATIONS},
    )
    evaluation = evaluate(rec)
    assert "avoid-surgery-referral" in evaluation.skipped
    assert "avoid-surgery-referral" not in [f.topic for f in evaluation.findings]


# --- passive modalities ------------------------------------------------------------------------


def tens() -> OrderEntry:
    return draft(K.PASSIVE_MODALITY, kind="ServiceRequest", rid="tens")


def test_passive_modality_without_exercise_gets_the_referral_and_no_general_exercise_card() -> None:
    rec = record(conditions=[LBP], orders=[tens()])
    finding = _finding(rec, "avoid-passive-modalities")
    (referral,) = finding.suggestions
    assert (referral.kind, referral.create) == ("refer", Orderable.PHYSICAL_THERAPY_REFERRAL)
    assert referral.delete is None  # the modality may stay, beside exercise
    assert "exercise-therapy" not in topics(rec)


@pytest.mark.parametrize(
    ("in_place", "silent"),
    [
        (history(K.PHYSICAL_THERAPY, kind="ServiceRequest"), True),
        (draft(K.PHYSICAL_THERAPY, kind="ServiceRequest", rid="pt", selected=False), True),
        (history(K.PHYSICAL_THERAPY, kind="ServiceRequest", status="completed"), False),
    ],
)
def test_passive_modality_beside_physical_therapy_is_silent(
    in_place: OrderEntry, silent: bool
) -> None:
    rec = record(conditions=[LBP], orders=[tens(), in_place])
    assert ("avoid-passive-modalities" not in topics(rec)) is silent


def test_passive_modality_beside_recent_physical_therapy_sessions_is_silent() -> None:
    def session(days: int) -> ProcedureEntry:
        return ProcedureEntry(frozenset({K.PHYSICAL_THERAPY}), (), "PT", "completed", ago(days))

    assert "avoid-passive-modalities" not in topics(
        record(conditions=[LBP], orders=[tens()], procedures=[session(90)])
    )
    assert "avoid-passive-modalities" in topics(
        record(conditions=[LBP], orders=[tens()], procedures=[session(91)])
    )


@pytest.mark.parametrize(
    "unfit",
    [cond(K.RED_FLAG_OSTEOPOROSIS, onset=400, rid="op"), cond(K.END_OF_LIFE, rid="eol")],
)
def test_passive_modality_advice_held_back_with_red_flags_or_at_end_of_life(
    unfit: ConditionEntry,
) -> None:
    assert "avoid-passive-modalities" not in topics(
        record(conditions=[LBP, unfit], orders=[tens()])
    )


# --- stomach protection with an oral NSAID -----------------------------------------------------


def gi_record(age: int = 40, orders: tuple[OrderEntry, ...] = (), conditions=()) -> PatientRecord:
    return record(age=age, conditions=[LBP, *conditions], orders=[draft(K.NSAID), *orders])


@pytest.mark.parametrize(("age", "fires"), [(64, False), (65, True), (80, True)])
def test_gi_protection_from_age_65(age: int, fires: bool) -> None:
    assert ("gi-protection" in topics(gi_record(age=age))) is fires


@pytest.mark.parametrize("risk", [K.SYSTEMIC_CORTICOSTEROID, K.SSRI, K.SNRI, K.ASPIRIN])
def test_gi_protection_for_each_risk_medicine(risk: K) -> None:
    active = history(risk, rid="risk")
    finding = _finding(gi_record(orders=(active,)), "gi-protection")
    (add,) = finding.suggestions
    assert (add.kind, add.create, add.delete) == ("add", Orderable.PROTON_PUMP_INHIBITOR, None)
    assert finding.alternative == Orderable.PROTON_PUMP_INHIBITOR
    kinds = [f.kind for f in finding.facts]
    assert FactKind.GI_RISK_MEDICATION in kinds and FactKind.NO_GASTROPROTECTION in kinds
    # A stopped course is no risk today.
    stopped = history(risk, rid="risk", status="stopped")
    assert "gi-protection" not in topics(gi_record(orders=(stopped,)))


def test_a_drafted_risk_medicine_counts_too() -> None:
    ssri = draft(K.SSRI, rid="ssri", selected=False)
    assert "gi-protection" in topics(gi_record(orders=(ssri,)))


@pytest.mark.parametrize(
    "protection",
    [
        history(K.GASTROPROTECTIVE, rid="ppi"),
        draft(K.GASTROPROTECTIVE, rid="ppi", selected=False),
    ],
)
def test_gi_protection_silent_when_protection_is_active_or_drafted(protection: OrderEntry) -> None:
    assert "gi-protection" not in topics(gi_record(age=70, orders=(protection,)))


def test_an_nsaid_that_carries_its_own_protection_gets_no_card() -> None:
    combined = record(age=70, conditions=[LBP], orders=[draft(K.NSAID, K.GASTROPROTECTIVE)])
    assert "gi-protection" not in topics(combined)


def test_nsaid_contraindication_takes_precedence_over_gi_protection() -> None:
    found = topics(gi_record(age=70, conditions=(cond(K.GI_BLEED_OR_ULCER, rid="ulcer"),)))
    assert "nsaid-contraindicated" in found and "gi-protection" not in found


@pytest.mark.parametrize(
    "not_oral",
    [draft(K.NSAID, K.TOPICAL_FORM), draft(K.NSAID_TOPICAL, K.NSAID), draft(K.OPIOID, K.NSAID)],
)
def test_gi_protection_only_for_oral_nsaids(not_oral: OrderEntry) -> None:
    assert "gi-protection" not in topics(record(age=70, conditions=[LBP], orders=[not_oral]))


def test_protection_is_suggested_once_for_two_nsaid_drafts() -> None:
    rec = record(
        age=70,
        conditions=[LBP],
        orders=[draft(K.NSAID, rid="a", code="1"), draft(K.NSAID, rid="b", code="2")],
    )
    cards = [f for f in evaluate(rec).findings if f.topic == "gi-protection"]
    assert [len(f.suggestions) for f in cards] == [1, 0]


# --- acetaminophen alone for chronic pain ------------------------------------------------------


def acetaminophen_record(onset: int = 100, orders: tuple[OrderEntry, ...] = ()) -> PatientRecord:
    return record(
        conditions=[cond(K.BACK_PAIN_LOW, onset=onset)],
        orders=[draft(K.ACETAMINOPHEN), *orders],
    )


@pytest.mark.parametrize(("onset", "fires"), [(83, False), (84, True)])
def test_acetaminophen_alone_from_12_weeks(onset: int, fires: bool) -> None:
    assert ("acetaminophen-monotherapy" in topics(acetaminophen_record(onset))) is fires


def test_acetaminophen_alone_gets_the_referral_and_no_general_exercise_card() -> None:
    rec = acetaminophen_record()
    finding = _finding(rec, "acetaminophen-monotherapy")
    assert [(s.kind, s.create) for s in finding.suggestions] == [
        ("refer", Orderable.PHYSICAL_THERAPY_REFERRAL)
    ]
    assert "exercise-therapy" not in topics(rec)


def test_acetaminophen_in_an_opioid_or_nsaid_combination_is_not_alone() -> None:
    for combination in (draft(K.ACETAMINOPHEN, K.OPIOID), draft(K.ACETAMINOPHEN, K.NSAID)):
        rec = record(conditions=[cond(K.BACK_PAIN_LOW, onset=100)], orders=[combination])
        assert "acetaminophen-monotherapy" not in topics(rec)


@pytest.mark.parametrize(
    "other",
    [
        history(K.NSAID, rid="o"),
        history(K.NSAID_TOPICAL, K.NSAID, rid="o"),
        history(K.OPIOID, rid="o"),
        history(K.SNRI, rid="o"),
        history(K.TCA, rid="o"),
        draft(K.NSAID, rid="o", selected=False),
        history(K.PHYSICAL_THERAPY, kind="ServiceRequest", rid="o"),
    ],
)
def test_acetaminophen_beside_other_treatment_is_silent(other: OrderEntry) -> None:
    assert "acetaminophen-monotherapy" not in topics(acetaminophen_record(orders=(other,)))


def test_acetaminophen_advice_held_back_with_red_flags_or_unknown_duration() -> None:
    flagged = record(
        conditions=[cond(K.BACK_PAIN_LOW, onset=100), cond(K.RED_FLAG_OSTEOPOROSIS, rid="op")],
        orders=[draft(K.ACETAMINOPHEN)],
    )
    assert "acetaminophen-monotherapy" not in topics(flagged)
    undated = record(
        conditions=[cond(K.BACK_PAIN_LOW, onset=None)], orders=[draft(K.ACETAMINOPHEN)]
    )
    assert "acetaminophen-monotherapy" not in topics(undated)


def test_one_referral_per_answer_when_two_cards_would_offer_it() -> None:
    rec = acetaminophen_record(orders=(tens(),))
    findings = {f.topic: f for f in evaluate(rec).findings}
    assert [s.create for s in findings["avoid-passive-modalities"].suggestions] == [
        Orderable.PHYSICAL_THERAPY_REFERRAL
    ]
    assert findings["acetaminophen-monotherapy"].suggestions == ()
    assert "exercise-therapy" not in findings
    # The other referral (pain management) is a different order: still offered.
    assert findings["chronic-pain-assessment"].suggestions


def test_general_exercise_card_stays_when_no_other_card_offers_its_referral() -> None:
    rec = acetaminophen_record(onset=40)  # too early for the acetaminophen card
    assert "exercise-therapy" in topics(rec)
