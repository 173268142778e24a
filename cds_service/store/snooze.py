"""Snooze, read from the decision store: a clinician who overrode an info card of a topic with
a reason the site marks as snoozing ("not now", "already addressed") silences that topic for
that patient for the site's number of days.

The patient is found by the pseudonymous key the decision log keeps with every card; feedback
names the card. The lookup runs on a hook call's path, so it is bounded hard
(SNOOZE_CHECK_SECONDS, and not at all for SNOOZE_PAUSE_SECONDS after a look-up failed, nor
during the store's own cool-down): a store that cannot answer in time means the cards show,
never that the call waits, and a slow look-up never closes the store to anything else.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, select

from cds_service.protocol.feedback import Outcome
from cds_service.site.resolved import SnoozeRule
from cds_service.store.database import StoreUnavailable, ValuesRefused
from cds_service.store.schema import card_decisions, feedback
from cds_service.store.store import DecisionStore

log = logging.getLogger(__name__)

# How long a hook call may wait for the snooze lookup; it normally takes a millisecond or two.
SNOOZE_CHECK_SECONDS = 0.25
# After a look-up failed, the next ones are skipped this long (the cards show at once).
SNOOZE_PAUSE_SECONDS = 2.0
_UNAVAILABLE_LOG_SECONDS = 60.0


def snoozed_topics(
    connection: Connection, patient_key: str, rules: Mapping[str, SnoozeRule], now: datetime
) -> frozenset[str]:
    """The topics among `rules` whose snooze for this patient runs at `now`.

    A snooze starts at the override: its outcomeTimestamp, or when the service received it if
    that is earlier (a client clock ahead cannot lengthen a snooze), and lasts the rule's days.
    """
    if not rules:
        return frozenset()
    earliest = now - timedelta(days=max(rule.days for rule in rules.values()))
    query = (
        select(
            card_decisions.c.topic,
            feedback.c.override_system,
            feedback.c.override_code,
            feedback.c.outcome_at,
            feedback.c.received_at,
        )
        .select_from(
            feedback.join(card_decisions, feedback.c.card_uuid == card_decisions.c.card_uuid)
        )
        .where(
            card_decisions.c.patient_key == patient_key,
            card_decisions.c.topic.in_(sorted(rules)),
            feedback.c.outcome == Outcome.OVERRIDDEN.value,
            feedback.c.override_code.in_(sorted(set().union(*(r.codes for r in rules.values())))),
            feedback.c.received_at >= earliest,
            feedback.c.outcome_at >= earliest,
        )
    )
    snoozed: set[str] = set()
    for topic, system, code, outcome_at, received_at in connection.execute(query):
        rule = rules[topic]
        # A client that sends the code without its system still means the reason it offered.
        matches = (system, code) in rule.reasons if system else code in rule.codes
        if matches and now < min(outcome_at, received_at) + timedelta(days=rule.days):
            snoozed.add(topic)
    return frozenset(snoozed)


class StoreSnoozeCheck:
    """The snooze lookup of the service: bounded, and silent about PHI."""

    def __init__(
        self,
        store: DecisionStore,
        *,
        seconds: float = SNOOZE_CHECK_SECONDS,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._seconds = seconds
        self._now = now
        self._last_unavailable_log = 0.0
        self._paused_until = 0.0

    def snoozed_topics(
        self, patient_id: str, rules: Mapping[str, SnoozeRule]
    ) -> frozenset[str] | None:
        """The snoozed topics; None when the store cannot tell within the limit."""
        if time.monotonic() < self._paused_until:
            return None
        try:
            with self._store.reading(seconds=self._seconds) as connection:
                key = self._store.patient_key(patient_id)
                return snoozed_topics(connection, key, rules, self._now())
        except (StoreUnavailable, ValuesRefused) as error:
            self._paused_until = time.monotonic() + SNOOZE_PAUSE_SECONDS
            # Logged at most once a minute; each call concerned says so in its request line.
            if time.monotonic() - self._last_unavailable_log >= _UNAVAILABLE_LOG_SECONDS:
                self._last_unavailable_log = time.monotonic()
                log.warning(
                    "snooze not checked: the decision store is unavailable; the cards show",
                    extra={"event": "snooze_check_unavailable", "reason": str(error)},
                )
            return None
