"""Identifiers minted by the service: time-ordered card uuids and request ids."""

from __future__ import annotations

import os
import uuid

import pytest

from cds_service.ids import request_id, time_ordered_uuid


def test_card_uuids_are_rfc_9562_version_7() -> None:
    made = time_ordered_uuid()
    value = uuid.UUID(made)
    assert str(value) == made  # canonical: lower-case hex, dashes at 8-4-4-4-12
    assert value.version == 7
    assert value.variant == uuid.RFC_4122


def test_card_uuids_carry_the_millisecond_they_were_made() -> None:
    made_at_ns = 1_795_000_000_123_456_789
    value = uuid.UUID(time_ordered_uuid(made_at_ns))
    assert value.int >> 80 == made_at_ns // 1_000_000


def test_card_uuids_sort_by_time() -> None:
    earlier = time_ordered_uuid(1_000_000_000_000_000_000)
    later = time_ordered_uuid(1_000_000_000_001_000_000)  # one millisecond on
    assert earlier < later


def test_card_uuids_do_not_repeat_within_a_millisecond() -> None:
    same_moment = 1_795_000_000_000_000_000
    made = {time_ordered_uuid(same_moment) for _ in range(50_000)}
    assert len(made) == 50_000


def test_request_ids_are_32_hex_digits_and_distinct() -> None:
    made = {request_id() for _ in range(10_000)}
    assert len(made) == 10_000
    assert all(len(value) == 32 and int(value, 16) >= 0 for value in made)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_worker_does_not_repeat_its_parents_ids() -> None:
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the child: report its next id, then leave without running pytest's exit
        os.close(read_end)
        os.write(write_end, time_ordered_uuid(0).encode())
        os._exit(0)
    os.close(write_end)
    parent_next = time_ordered_uuid(0)
    with os.fdopen(read_end, "rb") as pipe:
        child_next = pipe.read().decode()
    os.waitpid(child, 0)
    assert child_next and child_next != parent_next
