"""Keyed pseudonymous UIDs: the same UID under the same key always maps to the same new UID.

The profile's ``U`` action asks for UIDs that are "internally consistent within a set of
Instances". Vigil makes them consistent across runs and folders too: the new UID is an HMAC of
the old one under the site's de-identification key, so two exports of one study, months apart,
still file into one study at the receiver, while nobody without the key can map a new UID back
or test a guessed original against it.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

from core.errors import BadInputError

__all__ = ["MIN_SECRET_BYTES", "check_secret", "pseudonymous_uid"]

#: The shortest key accepted: 128 bits, so that the mapping cannot be brute-forced.
MIN_SECRET_BYTES: Final = 16
# Domain separation: the same key could serve another keyed purpose without the values meeting.
_DOMAIN: Final = b"vigil-dicom-uid\x1f"
# RFC 9562 UUIDv8 ("custom"): version nibble 8 and variant bits 10 make the 128-bit value a valid
# UUID, which is what a 2.25 UID is meant to hold (PS3.5 B.2).
_VERSION_MASK: Final = 0xF << 76
_VERSION_8: Final = 0x8 << 76
_VARIANT_MASK: Final = 0x3 << 62
_VARIANT_RFC: Final = 0x2 << 62


def check_secret(secret: bytes) -> None:
    """Refuse a key too short to keep the mapping secret (its bytes are never shown).

    Raises
    ------
    BadInputError
        ``secret`` is shorter than :data:`MIN_SECRET_BYTES`.
    """
    if len(secret) < MIN_SECRET_BYTES:
        raise BadInputError(
            f"the de-identification key holds {len(secret)} bytes; at least {MIN_SECRET_BYTES} are needed"
        )


def pseudonymous_uid(secret: bytes, uid: str) -> str:
    """``2.25.<n>``, where ``n`` is a UUIDv8 made from HMAC-SHA256 of ``uid`` under ``secret``.

    Trailing spaces and NULs (DICOM padding) do not change the result. At most 44 characters.

    Examples
    --------
    >>> a = pseudonymous_uid(b"k" * 16, "1.2.3.4")
    >>> a.startswith("2.25."), a == pseudonymous_uid(b"k" * 16, "1.2.3.4 "), a == pseudonymous_uid(b"j" * 16, "1.2.3.4")
    (True, True, False)
    """
    check_secret(secret)
    message = _DOMAIN + uid.rstrip("\x00 ").encode("utf-8", "surrogatepass")
    n = int.from_bytes(hmac.new(secret, message, hashlib.sha256).digest()[:16], "big")
    n = (n & ~_VERSION_MASK & ~_VARIANT_MASK) | _VERSION_8 | _VARIANT_RFC
    return f"2.25.{n}"
