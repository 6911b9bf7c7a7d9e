"""DICOM de-identification to the PS3.15 Basic Application Level Confidentiality Profile.

- :mod:`~core.imaging.deid.profile`: the versioned, hashed table (``basic_profile.json``);
- :mod:`~core.imaging.deid.apply`: the pure function over a pydicom Dataset;
- :mod:`~core.imaging.deid.uids`: keyed pseudonymous UIDs;
- :mod:`~core.imaging.deid.burned_in`: which objects are quarantined for burned-in text;
- :mod:`~core.imaging.deid.private`: the private-element allow-list;
- :mod:`~core.imaging.depth`: how deeply sequences nest, counted without recursion;
- :mod:`~core.imaging.deid.encode`: bytes in, bytes out, for the services.
"""

from __future__ import annotations

from core.imaging.deid.apply import (
    PRIVATE_KEPT,
    PRIVATE_REMOVED,
    VIGIL_REMOVED,
    VIGIL_REPLACED_UID,
    DeidResult,
    deidentify,
)
from core.imaging.deid.burned_in import burned_in_risk
from core.imaging.deid.encode import DeidFile, deidentify_bytes
from core.imaging.deid.private import PrivateElement, parse_private_element
from core.imaging.deid.profile import Action, Profile, ProfileOption, Rule, load_profile, table_sha256
from core.imaging.deid.uids import MIN_SECRET_BYTES, pseudonymous_uid
from core.imaging.depth import MAX_SEQUENCE_DEPTH

__all__ = [
    "MAX_SEQUENCE_DEPTH",
    "MIN_SECRET_BYTES",
    "PRIVATE_KEPT",
    "PRIVATE_REMOVED",
    "VIGIL_REMOVED",
    "VIGIL_REPLACED_UID",
    "Action",
    "DeidFile",
    "DeidResult",
    "PrivateElement",
    "Profile",
    "ProfileOption",
    "Rule",
    "burned_in_risk",
    "deidentify",
    "deidentify_bytes",
    "load_profile",
    "parse_private_element",
    "pseudonymous_uid",
    "table_sha256",
]
