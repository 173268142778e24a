"""JSON numbers no 64-bit float can hold are a 400 with an OperationOutcome wherever a body is
parsed (hook calls, feedback), never a 500; numbers a float can hold are read as before."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from cds_service import json_text
from cds_service.json_text import NumberOutOfRange, loads_json

SIGN = "/cds-services/back-pain-order-sign"
FEEDBACK = SIGN + "/feedback"
MARKER = 987654321.125  # replaced in the serialised body by the number under test

UNHOLDABLE = [
    "1" * 5000,  # beyond a float, and beyond Python's int() digit limit (a ValueError)
    "-" + "9" * 400,
    "1e-400",  # nonzero, would read as 0
    "-2.5E-0400",
    "0." + "0" * 400 + "1",
    "1e400",
    "-1E309",
    "NaN",  # not JSON at all
    "Infinity",
    "-Infinity",
]


def _feedback_body() -> dict[str, Any]:
    return {
        "feedback": [
            {
                "card": "0f8f5c2e-6f3a-4c55-9a0e-0c1d2e3f4a5b",
                "outcome": "overridden",
                "outcomeTimestamp": "2026-11-22T10:00:00Z",
                "extension": {"score": MARKER},
            }
        ]
    }


def _assert_400(response: Any) -> None:
    assert response.status_code == 400
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert "number" in body["issue"][0]["diagnostics"]
    assert "Traceback" not in response.get_data(as_text=True)


@pytest.mark.parametrize("number", UNHOLDABLE)
def test_a_number_no_float_can_hold_is_a_400_in_a_hook_call(
    client: FlaskClient, fixture_request: Any, number: str
) -> None:
    request = fixture_request("opioid-tramadol-acute-low-back-pain")
    conditions = request["prefetch"]["conditions"]["entry"][0]["resource"]
    conditions["extension"] = [{"url": "http://example.org/x", "valueDecimal": MARKER}]
    body = json.dumps(request).replace(str(MARKER), number)
    _assert_400(client.post(SIGN, data=body, content_type="application/json"))


@pytest.mark.parametrize("number", UNHOLDABLE)
def test_a_number_no_float_can_hold_is_a_400_in_feedback(client: FlaskClient, number: str) -> None:
    body = json.dumps(_feedback_body()).replace(str(MARKER), number)
    _assert_400(client.post(FEEDBACK, data=body, content_type="application/json"))


def test_a_huge_number_in_a_body_orjson_cannot_read_is_a_400_too(client: FlaskClient) -> None:
    # UTF-16 sends the body to the fallback parser, where int() raised a plain ValueError.
    body = json.dumps(_feedback_body()).replace(str(MARKER), "1" * 5000).encode("utf-16")
    _assert_400(client.post(FEEDBACK, data=body, content_type="application/json"))


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("123456789012345678901234567890", 1.2345678901234568e29),  # beyond 64 bits: a float
        ("5e-324", 5e-324),  # the smallest float there is
        ("1.5e-300", 1.5e-300),
        ("0.0e-999", 0.0),  # zero written with a big exponent is still zero
        ("-0", 0),
        ("1.7976931348623157e308", 1.7976931348623157e308),
    ],
)
def test_numbers_a_float_can_hold_are_read(literal: str, value: float) -> None:
    assert loads_json(f'{{"n": {literal}}}'.encode()) == {"n": value}
    assert loads_json(f'{{"n": {literal}}}'.encode("utf-16")) == {"n": value}


@pytest.mark.parametrize(
    "document",
    [
        b'{"id": "1234567e-8901-4abc-9def-0123456789ab"}',  # a UUID is not a number
        b'{"text": "dose 1e-400 in words"}',  # a number in a string is text
    ],
)
def test_number_like_text_in_strings_is_not_refused(document: bytes) -> None:
    assert loads_json(document) == json.loads(document)


def test_every_refusal_is_a_json_decode_error_for_existing_callers() -> None:
    for number in UNHOLDABLE:
        with pytest.raises(NumberOutOfRange) as caught:
            loads_json(f"[{number}]".encode())
        assert isinstance(caught.value, json.JSONDecodeError)


def test_the_underflow_check_skips_a_second_parse_for_ordinary_documents(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[object] = []
    monkeypatch.setattr(json_text, "_parse_checked", lambda raw: calls.append(raw))
    uuids = ",".join(f'"{i:07d}e-{i:04d}-4abc-9def-0123456789ab"' for i in range(200))
    loads_json(f'{{"ids": [{uuids}], "n": 1.5e-3}}'.encode())
    assert calls == []
