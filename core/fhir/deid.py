"""De-identification at the door: keyed pseudonyms, age bands, and scrubbed free text.

Nothing identifying leaves :func:`core.fhir.extract.extract`: patients become an HMAC-SHA256
pseudonym of their MRN under the site's secret (so outcomes still link to studies, whose
PatientID is hashed the same way), birth dates become an age band with everyone over 89 in
``"90+"``, and free text is scrubbed before it is returned.

Why no library: the maintained de-identification tools need what this deployment cannot fetch at
run time. Presidio's recognisers rest on a spaCy NER model download, Philter on its own models
and word lists, and scrubadub's name detectors on corpora or model downloads; without them they
find patterns only, which is what this module does. Instead the scrubber knows the identifiers
the payload itself carries (every name part of a Patient, Practitioner or RelatedPerson, every
identifier, telecom and address value, the birth date in common formats) and removes them
exactly, then removes what has the shape of an identifier (dates, phone numbers, e-mail and web
addresses, runs of five or more digits, titled names such as "Dr. A Smith", "Name: ..." fields).
It errs towards removing clinical words that look like names rather than keeping a name.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

__all__ = [
    "AttachmentError",
    "PatientRecord",
    "Scrubber",
    "age_band",
    "attachment_text",
    "identifying_values",
    "pseudonym",
]

_CHARSETS: Final = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "us-ascii": "ascii",
    "ascii": "ascii",
    "latin-1": "latin-1",
    "latin1": "latin-1",
    "iso-8859-1": "latin-1",
}
_MONTHS: Final = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def pseudonym(secret: bytes, kind: str, value: str) -> str:
    r"""Keyed pseudonym of ``value``: HMAC-SHA256 over ``kind + "\x1f" + value``, first 32 hex digits.

    The kind keeps an MRN and an accession number that happen to be equal from meeting.

    Examples
    --------
    >>> a = pseudonym(b"site-secret", "patient", "MRN-1")
    >>> len(a), a == pseudonym(b"site-secret", "patient", "MRN-1"), a == pseudonym(b"other", "patient", "MRN-1")
    (32, True, False)
    """
    return hmac.new(secret, f"{kind}\x1f{value}".encode(), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class PatientRecord:
    """What Vigil keeps of a Patient resource.

    Attributes
    ----------
    pseudonym : str
        ``pseudonym(secret, "patient", mrn)``.
    gender : str
        Patient.gender (``"male"``, ``"female"``, ``"other"``, ``"unknown"``) or ``""``.
    age_band : str
        ``"0-17"``, ``"18-29"``, ``"30-39"`` ... ``"80-89"``, ``"90+"``, or ``""`` without a birth date.
    """

    pseudonym: str
    gender: str
    age_band: str


def age_band(birth: date | None, at: date) -> str:
    """Age band at ``at`` of someone born on ``birth``; ages over 89 are one band (HIPAA Safe Harbor).

    Examples
    --------
    >>> [age_band(date(y, 6, 1), date(2025, 6, 1)) for y in (2010, 2000, 1990, 1936, 1935, 1900)]
    ['0-17', '18-29', '30-39', '80-89', '90+', '90+']
    >>> age_band(None, date(2025, 6, 1))
    ''
    """
    if birth is None:
        return ""
    years = at.year - birth.year - ((at.month, at.day) < (birth.month, birth.day))
    if years < 18:
        return "0-17"
    if years < 30:
        return "18-29"
    if years >= 90:
        return "90+"
    low = years // 10 * 10
    return f"{low}-{low + 9}"


class AttachmentError(ValueError):
    """An attachment whose text Vigil cannot read; ``element`` is ``"contentType"`` or ``"data"``."""

    def __init__(self, element: str, reason: str) -> None:
        super().__init__(reason)
        self.element = element
        self.reason = reason


def attachment_text(content_type: Any, data: Any) -> str:
    """Text of an Attachment's base64 ``data`` under its ``contentType`` charset.

    Only ``text/plain`` in UTF-8, US-ASCII or Latin-1 is read (no charset means UTF-8); anything
    else raises :class:`AttachmentError` naming the value.

    Examples
    --------
    >>> attachment_text("text/plain; charset=iso-8859-1", "bm9kdWxlIOk=")
    'nodule é'
    """
    if not isinstance(content_type, str) or not content_type.strip():
        raise AttachmentError("contentType", "an attachment with data must have a contentType")
    mime, *params = (part.strip() for part in content_type.split(";"))
    if mime.lower() != "text/plain":
        raise AttachmentError("contentType", f"contentType {mime!r} is not text/plain")
    charset = "utf-8"
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    codec = _CHARSETS.get(charset)
    if codec is None:
        raise AttachmentError("contentType", f"charset {charset!r} is not one Vigil reads (utf-8, us-ascii, latin-1)")
    raw = _base64_bytes(data)
    try:
        return raw.decode(codec)
    except UnicodeDecodeError as exc:
        raise AttachmentError("data", f"not {charset}: byte 0x{raw[exc.start]:02x} at offset {exc.start}") from exc


def _base64_bytes(data: Any) -> bytes:
    if isinstance(data, bytes):
        return data  # fhir.resources has already decoded Base64Binary
    if not isinstance(data, str):
        raise AttachmentError("data", "attachment data must be a base64 string")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AttachmentError("data", f"attachment data is not valid base64 ({exc})") from exc


# Elements whose Reference.display names a person (the subject, a clinician).
_PERSON_REFERENCES: Final = (
    "subject",
    "patient",
    "performer",
    "author",
    "requester",
    "recorder",
    "asserter",
    "resultsInterpreter",
    "authenticator",
    "referrer",
    "interpreter",
)


def identifying_values(resource: Mapping[str, Any]) -> Iterator[str]:
    """Every identifying string a resource's JSON carries, valid or not, for :class:`Scrubber`.

    Identifier values, every HumanName part, telecom values, address parts, the birth date in its
    common written forms, and the displays of references to people; contained resources too.
    Read from the raw JSON so that a resource rejected by validation still protects its names.

    Examples
    --------
    >>> resource = {"name": [{"family": "Quist", "given": ["Ada"]}], "identifier": [{"value": "MRN4471"}]}
    >>> sorted(set(identifying_values(resource)))
    ['Ada', 'MRN4471', 'Quist']
    """
    for identifier in _dicts(resource.get("identifier")):
        value = identifier.get("value")
        if isinstance(value, str) and len(value.strip()) >= 3:
            yield value
    for name in _dicts(resource.get("name")):
        yield from _name_parts(name)
    yield from _contact_parts(resource)
    yield from _birth_forms(resource.get("birthDate"))
    for key in _PERSON_REFERENCES:
        for ref in _dicts(resource.get(key)):
            for inner in (ref, *_dicts(ref.get("actor"))):
                yield from _words_too(inner.get("display"))
    for contained in _dicts(resource.get("contained")):
        yield from identifying_values(contained)


def _name_parts(name: Mapping[str, Any]) -> Iterator[str]:
    yield from _words_too(name.get("family"))
    yield from _words_too(name.get("text"))
    for key in ("given", "prefix", "suffix"):
        yield from _strings(name.get(key))


def _contact_parts(resource: Mapping[str, Any]) -> Iterator[str]:
    for telecom in _dicts(resource.get("telecom")):
        yield from _strings(telecom.get("value"))
    for address in _dicts(resource.get("address")):
        for key in ("text", "city", "district", "postalCode", "line"):
            yield from _strings(address.get(key))


def _words_too(value: Any) -> Iterator[str]:
    # "van der Berg" is known whole and word by word: a note may use any part of it.
    if isinstance(value, str):
        yield value
        yield from value.split()


def _birth_forms(birth: Any) -> Iterator[str]:
    if not isinstance(birth, str):
        return
    try:
        yield from _date_forms(date.fromisoformat(birth))
    except ValueError:
        if len(birth) >= 7:
            yield birth  # a partial date such as "1931-04"


def _dicts(value: Any) -> Iterator[Mapping[str, Any]]:
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, dict):
            yield item


def _strings(value: Any) -> Iterator[str]:
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, str):
            yield item


_WORD: Final = re.compile(r"\w+")
_PATTERNS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "[EMAIL]"),
    (re.compile(r"\b(?:https?://|www\.)\S+", re.IGNORECASE), "[URL]"),
    (re.compile(r"\b\d{4}-\d{1,2}-\d{1,2}(?:[T ][\d:.]+(?:Z|[+-]\d{2}:?\d{2})?)?"), "[DATE]"),
    (re.compile(r"\b\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}\b"), "[DATE]"),
    (
        re.compile(
            r"\b(?:\d{1,2}(?:st|nd|rd|th)?\s+)?(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"
            r"(?:\s+\d{1,2}(?:st|nd|rd|th)?)?,?\s+\d{4}\b",
            re.IGNORECASE,
        ),
        "[DATE]",
    ),
    (re.compile(r"(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?|\b\d{2,4}[\s.-])\d{3,4}[\s.-]\d{3,4}\b"), "[PHONE]"),
    (re.compile(r"\d{5,}"), "[NUMBER]"),
    (
        re.compile(
            r"\b(?:Dr|Mr|Mrs|Ms|Miss|Mx|Prof|Sr|Sra)\.?\s+(?:[A-Z][\w'’-]*\.?\s+){0,2}[A-Z][\w'’-]*",
        ),
        "[NAME]",
    ),
    (re.compile(r"\b(?:patient\s+)?name\s*:\s*[^\n.;,]*", re.IGNORECASE), "Name: [NAME]"),
)


def _date_forms(value: date) -> set[str]:
    month = _MONTHS[value.month - 1]
    d, m, y = value.day, value.month, value.year
    return {
        value.isoformat(),
        f"{y:04d}{m:02d}{d:02d}",
        f"{m:02d}/{d:02d}/{y:04d}",
        f"{d:02d}/{m:02d}/{y:04d}",
        f"{m}/{d}/{y}",
        f"{d}/{m}/{y}",
        f"{d:02d}.{m:02d}.{y:04d}",
        f"{month} {d}, {y}",
        f"{d} {month} {y}",
        f"{month[:3]} {d}, {y}",
        f"{d} {month[:3]} {y}",
    }


class Scrubber:
    """Removes the identifiers a payload carries, then identifier-shaped text, from free text.

    Parameters
    ----------
    known : iterable of str
        Identifying strings harvested from the payload (names, identifier values, telecom,
        address parts, birth dates already in their written forms).

    Examples
    --------
    >>> s = Scrubber(["Ada", "Quist", "MRN4471", "12 Elm Row"])
    >>> s.scrub("Ada Quist (MRN4471, 12 Elm Row, tel 555-123-4567) seen by Dr. B Okafor on 3 March 2024.")
    '[NAME] [NAME] ([ID], [ID], tel [PHONE]) seen by [NAME] on [DATE].'
    """

    def __init__(self, known: Iterable[str]) -> None:
        # Indexed by first word and length: one pass over the text looks each word up in a set per
        # length of value starting with it, so the cost does not grow with the payload's patients.
        self._values: set[str] = set()
        self._names: set[str] = set()
        lengths: dict[str, set[int]] = {}
        for raw in known:
            first = _WORD.search(raw)
            if first is None:
                continue
            value = _lower(raw[first.start() :].rstrip())  # a leading "+" or "(" is left to the patterns
            if len(value) < 2:
                continue
            self._values.add(value)
            lengths.setdefault(_lower(first.group(0)), set()).add(len(value))
            if value.replace("-", "").replace("'", "").isalpha():
                self._names.add(value)
        self._lengths = {word: sorted(n, reverse=True) for word, n in lengths.items()}

    def scrub(self, text: str) -> str:
        """``text`` with every known identifier and identifier-shaped string replaced by a placeholder."""
        out = self._remove_known(text) if self._values else text
        for pattern, replacement in _PATTERNS:
            out = pattern.sub(replacement, out)
        return out

    def _remove_known(self, text: str) -> str:
        lowered = _lower(text)
        pieces: list[str] = []
        done = 0
        for word in _WORD.finditer(lowered):
            start = word.start()
            if start < done:
                continue  # inside a value already replaced
            for length in self._lengths.get(word.group(0), ()):
                end = start + length
                value = lowered[start:end]
                if value in self._values and not (value[-1].isalnum() and end < len(text) and _is_word(text[end])):
                    pieces.extend((text[done:start], "[NAME]" if value in self._names else "[ID]"))
                    done = end
                    break
        pieces.append(text[done:])
        return "".join(pieces)


def _lower(text: str) -> str:
    """Lower case, keeping every index: the rare character whose lower case is longer stays as it is."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"
