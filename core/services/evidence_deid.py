"""De-identify the audit entries an evidence package takes off site: pure, entry in, exported line out.

The ledger keeps few identifiers by design (free text is stored as a hash and a length, FHIR
identifiers as keyed pseudonyms), but it does keep what points back to a patient's images:
StudyInstanceUIDs as entry subjects, SOP Instance UIDs in payloads, and the local paths of
ingested and rejected files, which sites often spell with the patient's name. An evidence package
is de-identified by default (``core.services.audit_export``), with these rules, version
:data:`METHOD`:

- every DICOM instance UID (a subject, a payload value, a list item, at any depth) is replaced by
  :func:`core.imaging.deid.pseudonymous_uid` under the site's de-identification key: the same
  replacement ``vigil deid`` makes, so an entry and the de-identified image it is about still
  name the same UID, and two packages name one study alike. UIDs of DICOM's own registry
  (``1.2.840.10008.``: SOP classes, transfer syntaxes) name kinds, not patients, and are kept;
- every text value under a key that names a path (``path``, ``source_path``, ``out_dir``, any
  ``*_path`` or ``*_dir``, ``rejected``) and the subject of an ``ingest_rejected`` entry (its
  path) become :data:`PATH_REMOVED`;
- every text value under a key that names a patient or an accession (``patient``, ``mrn``,
  ``accession`` in the key) becomes a keyed pseudonym (``patient:<16 hex>``).

The entries the package's records are checked against (``audit_exported``, ``model_registered``,
``explain_report_created``, ``validation_reported``) are exported as stored. An entry is changed
only when a rule applies; its ``entry_hash`` and ``prev_hash`` are kept, so
its place in the chain and under the signed checkpoints still verifies, while its content can no
longer be checked against its hash (the exported line says ``"deidentified": true``). The
export's own ledger entry records how many such lines precede it and the SHA-256 of them, so a
reviewer can tell that none was edited after the export.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Final

from core.audit.events import AuditAction, AuditEntry
from core.imaging.deid import pseudonymous_uid
from core.types import JSONObject, JSONValue

__all__ = ["DEIDENTIFIED_FIELD", "METHOD", "METHOD_TEXT", "PATH_REMOVED", "exported_line", "pseudonymous_id"]

#: Names these rules; changes whenever a rule does.
METHOD: Final = "vigil-evidence-deid/1"
#: One sentence per rule, for ``export.json`` and the summary.
METHOD_TEXT: Final = (
    "DICOM instance UIDs replaced by keyed 2.25 UIDs (HMAC-SHA256 under the site's de-identification "
    "key, as `vigil deid` replaces them); local file paths removed; patient and accession identifiers "
    "replaced by keyed pseudonyms"
)
#: The field an exported line carries when its content was changed.
DEIDENTIFIED_FIELD: Final = "deidentified"
PATH_REMOVED: Final = "[removed: local path]"
# A UID (PS3.5 9.1) with at least four components: an instance UID has an organisation root and
# more; model versions such as "1.0.2" have three and stay as they are.
_UID: Final = re.compile(r"[0-2](?:\.(?:0|[1-9][0-9]*)){3,}")
_REGISTERED_ROOT: Final = "1.2.840.10008."
_PATH_KEYS: Final = frozenset({"path", "paths", "source_path", "out_dir", "src", "out", "folder", "rejected"})
_ID_WORDS: Final = ("patient", "mrn", "accession")
_ID_DOMAIN: Final = b"vigil-evidence-id\x1f"
#: Actions whose subject is a local path.
_PATH_SUBJECTS: Final = frozenset({AuditAction.INGEST_REJECTED.value})
#: Entries the package's records are checked against (the verifier's anchors): exported as stored,
#: so that their content still verifies against their hashes. They hold no patient data by
#: construction (model cards' and reports' hashes, per-site validation figures, the export's own
#: facts), which the evidence export's canary test checks.
_ANCHORS: Final = frozenset(
    {
        AuditAction.AUDIT_EXPORTED.value,
        AuditAction.MODEL_REGISTERED.value,
        AuditAction.EXPLAIN_REPORT_CREATED.value,
        AuditAction.VALIDATION_REPORTED.value,
    }
)


def pseudonymous_id(secret: bytes, kind: str, value: str) -> str:
    """``kind:<16 hex>``: HMAC-SHA256 of ``value`` under ``secret``, the same for the same value.

    Examples
    --------
    >>> a = pseudonymous_id(b"k" * 32, "patient", "SYN-NF-7-00001")
    >>> a.startswith("patient:"), len(a), a == pseudonymous_id(b"k" * 32, "patient", "SYN-NF-7-00001")
    (True, 24, True)
    """
    digest = hmac.new(secret, _ID_DOMAIN + f"{kind}\x1f{value}".encode("utf-8", "surrogatepass"), hashlib.sha256)
    return f"{kind}:{digest.hexdigest()[:16]}"


def _uid(secret: bytes, text: str) -> str:
    if _UID.fullmatch(text) and not text.startswith(_REGISTERED_ROOT):
        return pseudonymous_uid(secret, text)
    return text


def _key_rule(key: str) -> str | None:
    """``"path"``, an identifier kind, or None: what a payload key says its text values are."""
    lowered = key.lower()
    if lowered in _PATH_KEYS or lowered.endswith(("_path", "_dir", "_paths")):
        return "path"
    return next((word for word in _ID_WORDS if word in lowered), None)


def _value(secret: bytes, value: JSONValue, rule: str | None) -> JSONValue:
    if isinstance(value, str):
        if rule == "path":
            return PATH_REMOVED
        if rule is not None:
            return pseudonymous_id(secret, rule, value)
        return _uid(secret, value)
    if isinstance(value, list):
        return [_value(secret, v, rule) for v in value]
    if isinstance(value, Mapping):
        return _payload(secret, value, rule)
    return value


def _payload(secret: bytes, payload: Mapping[str, JSONValue], inherited: str | None = None) -> JSONObject:
    return {key: _value(secret, v, _key_rule(key) or inherited) for key, v in payload.items()}


def exported_line(entry: AuditEntry, secret: bytes | None) -> tuple[JSONObject, bool]:
    """The ``entries.jsonl`` object for ``entry``, and whether de-identification changed it.

    Parameters
    ----------
    entry : AuditEntry
        As stored.
    secret : bytes or None
        The site's de-identification key; None for an identified export (the entry as stored).

    Returns
    -------
    tuple of dict and bool
        The line (with ``"deidentified": true`` when changed) and whether it was changed.
    """
    line: JSONObject = {
        "seq": entry.seq,
        "recorded_at": entry.recorded_at,
        "actor": entry.actor,
        "action": str(entry.action),
        "subject": entry.subject,
        "payload": dict(entry.payload),
        "prev_hash": entry.prev_hash,
        "entry_hash": entry.entry_hash,
    }
    if secret is None or str(entry.action) in _ANCHORS:
        return line, False
    subject = PATH_REMOVED if str(entry.action) in _PATH_SUBJECTS else _uid(secret, entry.subject)
    payload = _payload(secret, entry.payload)
    if subject == entry.subject and payload == line["payload"]:
        return line, False
    return {**line, "subject": subject, "payload": payload, DEIDENTIFIED_FIELD: True}, True
