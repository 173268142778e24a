"""Client profiles: how suggestions are shaped for the CDS client that will apply them.

CDS Hooks leaves the order in which a client applies a suggestion's actions open, and clients
differ (see docs/integrators.md, "Connect your EHR"). A profile is chosen per trusted
client, or for every caller by `CDS_CLIENT_PROFILE`; the rules never see it.
"""

from __future__ import annotations

from enum import StrEnum


class ClientProfile(StrEnum):
    # One suggestion per intent ("replace" = create the alternative, then delete the draft);
    # the clinician takes at most one.
    STANDARD = "standard"
    # Every suggestion holds exactly one action and any number may be taken together: for
    # clients that apply one action per suggestion (Epic and projects built for it).
    SINGLE_ACTION = "single-action"


DEFAULT_PROFILE = ClientProfile.STANDARD
PROFILE_NAMES = tuple(profile.value for profile in ClientProfile)
