"""Stomach protection with an oral NSAID when a gastrointestinal risk factor is present
(ACG 2009, Lanza et al.; NICE NG59)."""

from __future__ import annotations

from cds_service.record.model import OrderEntry
from cds_service.rules.assessment import Assessment, order_words
from cds_service.rules.drafts import drafts, ref
from cds_service.rules.findings import (
    Fact,
    FactKind,
    Finding,
    Orderable,
    SuggestionIntent,
    SuggestionKind,
)
from cds_service.rules.unit import Recommendation
from cds_service.terminology.concepts import Concept
from cds_service.vocabulary import DataCategory as C

TOPIC = "gi-protection"
GI_RISK_AGE = 65  # ACG counts age over 65; the contract is 65 or over
# Medicines that, taken with an NSAID, raise the risk of ulcer bleeding: systemic
# corticosteroids, SSRIs and SNRIs, and aspirin in any dose. Anticoagulants are a
# contraindication (the nsaid-contraindicated card), not a risk factor to protect against.
_RISK_MEDICINES = (Concept.SYSTEMIC_CORTICOSTEROID, Concept.SSRI, Concept.SNRI, Concept.ASPIRIN)


def _risk_facts(a: Assessment, nsaid: OrderEntry) -> tuple[Fact, ...]:
    age = a.record.age
    by_age = (Fact.of(FactKind.GI_RISK_AGE, age=str(age)),) if age and age >= GI_RISK_AGE else ()
    medicines = tuple(
        Fact.of(FactKind.GI_RISK_MEDICATION, order=order_words(o))
        for o in a.active_orders_with(*_RISK_MEDICINES)
        if o is not nsaid
    )
    return (*by_age, *medicines)


def evaluate(a: Assessment) -> list[Finding]:
    nsaids = list(drafts(a, lambda o: o.is_medication and a.is_oral_nsaid(o)))
    # With a contraindication the NSAID should not be given at all (nsaid-contraindicated);
    # with stomach protection already active or drafted there is nothing to add.
    if not nsaids or a.nsaid_contraindications or a.active_orders_with(Concept.GASTROPROTECTIVE):
        return []
    protect = SuggestionIntent(
        SuggestionKind.ADD, create=Orderable.PROTON_PUMP_INHIBITOR, recommended=True
    )
    findings = []
    for order in nsaids:
        risks = _risk_facts(a, order)
        if risks:
            findings.append(
                Finding(
                    topic=TOPIC,
                    facts=(*a.back_pain_facts, *risks, Fact.of(FactKind.NO_GASTROPROTECTION)),
                    order=ref(order),
                    suggestions=(protect,),
                    alternative=Orderable.PROTON_PUMP_INHIBITOR,
                )
            )
    return findings


UNIT = Recommendation(
    topic=TOPIC,
    evaluate=evaluate,
    # Medications show the risk factors and any protection; conditions the contraindications.
    needs=frozenset({C.CONDITIONS, C.MEDICATIONS}),
    suggestions=frozenset({SuggestionKind.ADD}),
    placeholders=frozenset({"order", "alternative", "alternative_short"}),
)
