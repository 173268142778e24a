"""Pseudonymous patient keys: a keyed HMAC-SHA256 of the patient id.

The same patient gets the same key (so cards can be counted per patient) but the key cannot
be turned back into the id without the secret. The secret comes from CDS_PATIENT_KEY_SECRET;
without it the store generates one and keeps it in `store_meta` (a development default:
anyone who can read the store can then test guesses of patient ids).
"""

from __future__ import annotations

import hashlib
import hmac

MIN_SECRET_LENGTH = 32
_KEY_ID_MESSAGE = b"cds-service patient key id"


class PatientPseudonymizer:
    def __init__(self, secret: str) -> None:
        self._secret = secret.encode("utf-8")
        # Names the secret without revealing it, so rows made under different secrets
        # (after a rotation) can be told apart.
        self.key_id = hmac.new(self._secret, _KEY_ID_MESSAGE, hashlib.sha256).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"PatientPseudonymizer(key_id={self.key_id!r})"

    def pseudonym(self, patient_id: str) -> str:
        return hmac.new(self._secret, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()
