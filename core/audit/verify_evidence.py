#!/usr/bin/env python3
"""Verify a Vigil audit evidence package with the Python standard library and ``cryptography`` only.

Usage::

    python verify_evidence.py [DIR] [--public-key HEXFILE]

``DIR`` is the package (default: the folder this script is in). ``--public-key`` is the audit
signing public key you obtained from the hospital yourself (``vigil audit public-key`` prints it:
64 hex digits; 32 raw bytes are accepted too). Without it the package's own ``public-key.hex`` is
trusted, which catches corruption and careless edits but not whoever prepared the package.

Checks, in order; the first failure is named (file, line, ``seq`` or tree size) and the exit
status is 1, 0 when everything verified, 2 when the arguments are unusable:

1. ``public-key.hex`` is a key and, with ``--public-key``, the key you trust.
2. ``entries.jsonl``: every entry's SHA-256 over the canonical JSON of its fields, and every link
   to the previous entry (``seq`` 0, 1, ... without gaps; the first links to 64 zeros). In a
   de-identified package an entry whose identifiers were replaced says ``"deidentified": true``
   and keeps its original hashes: its links are checked, its content cannot be (step 4 checks
   those lines against the SHA-256 the export's own entry recorded).
3. ``checkpoints.jsonl``: every checkpoint's Ed25519 signature over its exact signed text; the
   RFC 6962 Merkle root re-derived from the first ``tree_size`` entries equals the signed root
   (so successive checkpoints are consistent: each is a prefix of the same entries); the newest
   checkpoint covers every exported entry.
4. ``export.json``, ``model-cards/`` and ``reports/``: the export's own ledger entry records each
   file's SHA-256; each model card matches the weights hash its ``model_registered`` entry signed,
   each explanation report the hash of its ``explain_report_created`` entry, each validation
   report the payload of its ``validation_reported`` entry; none is missing. When the export's
   entry records a de-identified export, the de-identified lines before it match the count and
   SHA-256 it recorded; otherwise no line may be marked de-identified.
5. ``MANIFEST.sha256``: every file in the package is listed and matches (``sha256sum -c`` format).

This is an independent re-implementation of Vigil's hashing (``core/audit/chain.py``,
``core/audit/merkle.py``, ``core/audit/checkpoint.py``); it imports nothing from Vigil, so a
reviewer can read it whole. Tested with Python 3.11.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

#: First line of every signed checkpoint (core/audit/checkpoint.py ``ORIGIN``).
ORIGIN = "vigil.audit-ledger/v1"
#: ``prev_hash`` of the first entry.
GENESIS_HASH = "0" * 64
ENTRY_FIELDS = frozenset({"seq", "recorded_at", "actor", "action", "subject", "payload", "prev_hash", "entry_hash"})
#: The extra field of a line whose content de-identification changed (``core/services/evidence_deid.py``).
DEIDENTIFIED = "deidentified"
CHECKPOINT_FIELDS = frozenset({"tree_size", "root_hash", "timestamp", "key_id", "signature"})
ENTRIES, CHECKPOINTS, PUBLIC_KEY, EXPORT, MANIFEST = (
    "entries.jsonl",
    "checkpoints.jsonl",
    "public-key.hex",
    "export.json",
    "MANIFEST.sha256",
)
#: Folders whose every file the export's own ledger entry records by SHA-256; validation reports are
#: checked against the ledger entries they copy instead.
ANCHORED, VALIDATION_DIR = ("model-cards", "reports"), "reports/validation/"
#: Ledger actions whose payloads the records are checked against.
MODEL_REGISTERED, EXPLAIN_REPORT_CREATED, VALIDATION_REPORTED, AUDIT_EXPORTED = (
    "model_registered",
    "explain_report_created",
    "validation_reported",
    "audit_exported",
)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_VALIDATION_NAME = re.compile(r"seq-(\d+)\.json")


class Failure(Exception):
    """One check failed; the message names the file and the line, ``seq`` or tree size."""


# --- hashing (the same definitions as Vigil's, written independently) ---------------------------


def canonical_json(value: object) -> bytes:
    """Sorted keys, no whitespace, UTF-8 (not ASCII-escaped), NaN and infinities refused."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


def entry_hash(entry: dict[str, Any]) -> str:
    """Hex SHA-256 over the canonical JSON of every field of an entry except ``entry_hash``."""
    body = {name: entry[name] for name in ENTRY_FIELDS if name != "entry_hash"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def leaf_hash(entry_hash_hex: str) -> bytes:
    """RFC 6962 leaf: SHA-256(0x00 || the 32 bytes of the entry hash)."""
    return hashlib.sha256(b"\x00" + bytes.fromhex(entry_hash_hex)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 inner node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


class MerkleTree:
    """RFC 6962 tree over leaf hashes added one at a time; its root (MTH) at any size.

    The leaves split into perfect subtrees of decreasing size (the binary digits of their
    count); hashing those subtrees' roots together from the right is exactly the RFC's
    recursive split at the largest power of two below the size. Keeping only those roots lets
    every checkpoint be checked in one pass over the entries.
    """

    def __init__(self) -> None:
        self.size = 0
        self._peaks: list[tuple[int, bytes]] = []  # (number of leaves, root) of each perfect subtree

    def add(self, leaf: bytes) -> None:
        """Append one leaf hash."""
        count, node = 1, leaf
        while self._peaks and self._peaks[-1][0] == count:
            count, node = count * 2, node_hash(self._peaks.pop()[1], node)
        self._peaks.append((count, node))
        self.size += 1

    def root(self) -> bytes:
        """MTH of the leaves so far (SHA-256 of nothing for none)."""
        if not self._peaks:
            return hashlib.sha256(b"").digest()
        root = self._peaks[-1][1]
        for _, peak in reversed(self._peaks[:-1]):
            root = node_hash(peak, root)
        return root


def merkle_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 MTH over leaf hashes."""
    tree = MerkleTree()
    for leaf in leaves:
        tree.add(leaf)
    return tree.root()


def key_id(public_key: bytes) -> str:
    """First 16 hex digits of SHA-256 of the raw public key, as each checkpoint names its signer."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def checkpoint_text(cp: dict[str, Any]) -> bytes:
    """The exact bytes Vigil signs: origin, size, base64 root, timestamp and key lines."""
    root_b64 = base64.b64encode(bytes.fromhex(cp["root_hash"])).decode("ascii")
    lines = [ORIGIN, str(cp["tree_size"]), root_b64, f"timestamp {cp['timestamp']}", f"key {cp['key_id']}"]
    return ("\n".join(lines) + "\n").encode("utf-8")


# --- reading --------------------------------------------------------------------------------------


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise ValueError("an object repeats a key")
    return found


def strict_loads(text: str | bytes) -> Any:
    """``json.loads`` refusing NaN, infinities and repeated keys (which readers resolve differently)."""
    return json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)


def _read_text(path: Path, name: str) -> str:
    if not path.is_file():
        raise Failure(f"{name} is missing")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Failure(f"{name} cannot be read: {exc}") from exc


def _lines(path: Path, name: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(_read_text(path, name).split("\n"), start=1):
        if line.strip():
            yield number, line


def read_public_key(path: Path, name: str) -> bytes:
    """A raw Ed25519 public key from 64 hex digits or 32 raw bytes."""
    if not path.is_file():
        raise Failure(f"{name} is missing")
    raw = path.read_bytes()
    if len(raw) == 32:
        return raw
    text = raw.decode("ascii", errors="replace").strip()
    if not _HEX64.fullmatch(text.lower()):
        raise Failure(f"{name} is not a public key (64 hex digits or 32 raw bytes)")
    return bytes.fromhex(text)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- 2. the ledger --------------------------------------------------------------------------------


@dataclass
class Ledger:
    """What the checks after the chain need from ``entries.jsonl``."""

    leaves: list[bytes] = field(default_factory=list)
    first_at: str | None = None
    last_at: str | None = None
    #: seq -> (action, subject, payload) of the entries the records are checked against.
    anchors: dict[int, tuple[str, str, dict[str, Any]]] = field(default_factory=dict)
    #: De-identified lines before the export's own entry (their SHA-256, in order) and after it.
    deid_before: int = 0
    deid_after: int = 0
    deid_sha256: Any = field(default_factory=hashlib.sha256)

    @property
    def size(self) -> int:
        """Entries read."""
        return len(self.leaves)


def _deidentified(entry: object) -> bool:
    return isinstance(entry, dict) and entry.get(DEIDENTIFIED) is True and set(entry) == ENTRY_FIELDS | {DEIDENTIFIED}


def _entry_problem(entry: object, *, expected_seq: int, expected_prev: str) -> str | None:
    deidentified = _deidentified(entry)
    if not isinstance(entry, dict) or (set(entry) != ENTRY_FIELDS and not deidentified):
        return f"not an entry object with exactly the fields {sorted(ENTRY_FIELDS)} (and {DEIDENTIFIED!r}: true)"
    if type(entry["seq"]) is not int or entry["seq"] != expected_seq:
        return f"expected seq {expected_seq}, found {entry['seq']!r}"
    text_fields = ("recorded_at", "actor", "action", "subject", "prev_hash", "entry_hash")
    if not all(isinstance(entry[name], str) for name in text_fields) or not isinstance(entry["payload"], dict):
        return "a field has the wrong type (payload must be an object, the others but seq text)"
    if entry["prev_hash"] != expected_prev:
        return "prev_hash does not match the previous entry's hash (an entry was removed, inserted or reordered)"
    if deidentified:
        if entry["action"] in (MODEL_REGISTERED, EXPLAIN_REPORT_CREATED, VALIDATION_REPORTED, AUDIT_EXPORTED):
            return (
                "an entry the records are checked against is marked de-identified; such entries are exported as stored"
            )
        if not _HEX64.fullmatch(entry["entry_hash"]):
            return "entry_hash is not 64 lower-case hex digits"
        return None  # its content was changed on purpose; step 4 checks it against the export's entry
    try:
        recomputed = entry_hash(entry)
    except (TypeError, ValueError) as exc:
        return f"content is not canonical JSON: {exc}"
    if recomputed != entry["entry_hash"]:
        return "entry_hash does not match the entry's content (the entry was edited)"
    return None


def read_ledger(folder: Path) -> Ledger:
    """Recompute every entry hash and link of ``entries.jsonl``; raise naming the first bad line."""
    ledger = Ledger()
    expected_prev = GENESIS_HASH
    boundary = _export_seq_hint(folder)
    for number, line in _lines(folder / ENTRIES, ENTRIES):
        seq = ledger.size
        try:
            entry = strict_loads(line)
        except ValueError as exc:
            raise Failure(f"{ENTRIES} line {number} (seq {seq}): not JSON: {exc}") from exc
        problem = _entry_problem(entry, expected_seq=seq, expected_prev=expected_prev)
        if problem is not None:
            raise Failure(f"{ENTRIES} line {number} (seq {seq}): {problem}")
        if _deidentified(entry):
            if seq < boundary:
                ledger.deid_before += 1
                ledger.deid_sha256.update(canonical_json(entry) + b"\n")
            else:
                ledger.deid_after += 1
        ledger.leaves.append(leaf_hash(entry["entry_hash"]))
        ledger.first_at = ledger.first_at or entry["recorded_at"]
        ledger.last_at = entry["recorded_at"]
        if entry["action"] in (MODEL_REGISTERED, EXPLAIN_REPORT_CREATED, VALIDATION_REPORTED, AUDIT_EXPORTED):
            ledger.anchors[seq] = (entry["action"], entry["subject"], entry["payload"])
        expected_prev = entry["entry_hash"]
    if not ledger.size:
        raise Failure(f"{ENTRIES} holds no entries")
    return ledger


def _export_seq_hint(folder: Path) -> int | float:
    """``export.json``'s ``export_seq`` (checked in step 4); infinity when it cannot be read."""
    try:
        seq = strict_loads((folder / EXPORT).read_text(encoding="utf-8"))["export_seq"]
    except (OSError, ValueError, TypeError, KeyError, UnicodeDecodeError):
        return float("inf")
    return seq if type(seq) is int else float("inf")


# --- 3. checkpoints -------------------------------------------------------------------------------


def _checkpoint_shape(cp: object) -> str | None:
    if not isinstance(cp, dict) or set(cp) != CHECKPOINT_FIELDS:
        return f"not a checkpoint object with exactly the fields {sorted(CHECKPOINT_FIELDS)}"
    if type(cp["tree_size"]) is not int or cp["tree_size"] < 0:
        return f"tree_size {cp['tree_size']!r} is not a count"
    if not isinstance(cp["root_hash"], str) or not _HEX64.fullmatch(cp["root_hash"]):
        return "root_hash is not 64 lower-case hex digits"
    if not all(isinstance(cp[name], str) for name in ("timestamp", "key_id", "signature")):
        return "timestamp, key_id and signature must be text"
    return None


def _signature_problem(cp: dict[str, Any], public_key: bytes) -> str | None:
    if cp["key_id"] != key_id(public_key):
        return f"signed by key {cp['key_id']!r}, not the trusted key {key_id(public_key)!r}"
    try:
        signature = base64.b64decode(cp["signature"], validate=True)
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, checkpoint_text(cp))
    except (binascii.Error, ValueError):
        return "the signature is not base64 of an Ed25519 signature"
    except InvalidSignature:
        return "the Ed25519 signature does not match the checkpoint (it was edited or signed by another key)"
    return None


def _checkpoint_problem(
    cp: dict[str, Any], ledger: Ledger, public_key: bytes, tree: MerkleTree, previous: int
) -> str | None:
    size = cp["tree_size"]
    if size <= previous:
        return f"does not grow the tree (the previous checkpoint covered {previous} entries)"
    problem = _signature_problem(cp, public_key)
    if problem is not None:
        return problem
    if size > ledger.size:
        return f"signed {size} entries but {ENTRIES} holds {ledger.size}: entries were removed (tail truncated)"
    for leaf in ledger.leaves[tree.size : size]:
        tree.add(leaf)
    if tree.root().hex() != cp["root_hash"]:
        return f"the first {size} entries of {ENTRIES} do not hash to the signed root"
    return None


def check_checkpoints(folder: Path, ledger: Ledger, public_key: bytes) -> str:
    """Check every checkpoint's signature and root; raise naming the first bad one."""
    tree, count, previous = MerkleTree(), 0, -1
    for number, line in _lines(folder / CHECKPOINTS, CHECKPOINTS):
        try:
            cp = strict_loads(line)
        except ValueError as exc:
            raise Failure(f"{CHECKPOINTS} line {number}: not JSON: {exc}") from exc
        shape = _checkpoint_shape(cp)
        if shape is not None:
            raise Failure(f"{CHECKPOINTS} line {number}: {shape}")
        problem = _checkpoint_problem(cp, ledger, public_key, tree, previous)
        if problem is not None:
            raise Failure(f"{CHECKPOINTS} line {number} (tree size {cp['tree_size']}): {problem}")
        count, previous = count + 1, cp["tree_size"]
    if count == 0:
        raise Failure(f"{CHECKPOINTS} holds no checkpoint: nothing vouches for the entries")
    if tree.size < ledger.size:
        raise Failure(
            f"{ENTRIES}: entries seq {tree.size} to {ledger.size - 1} are not covered by any signed checkpoint"
        )
    return (
        f"{count} signed checkpoint(s); every Ed25519 signature verifies; every root re-derived from the "
        f"entries; the newest covers all {ledger.size} entries"
    )


# --- 4. records -----------------------------------------------------------------------------------


def _export_entry(folder: Path, ledger: Ledger) -> tuple[int, dict[str, str], object]:
    try:
        meta = strict_loads(_read_text(folder / EXPORT, EXPORT))
        seq, export_id = meta["export_seq"], meta["export_id"]
    except (ValueError, TypeError, KeyError) as exc:
        raise Failure(f"{EXPORT} does not name the export's ledger entry: {exc}") from exc
    action, _, payload = ledger.anchors.get(seq, ("", "", {})) if type(seq) is int else ("", "", {})
    if action != AUDIT_EXPORTED or payload.get("export_id") != export_id:
        raise Failure(f"{EXPORT}: seq {seq!r} is not the audit_exported entry of export {export_id!r}")
    files = payload.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise Failure(f"{ENTRIES} seq {seq}: the audit_exported entry records no file hashes")
    return seq, files, payload.get("deidentification")


def _check_deidentification(ledger: Ledger, seq: int, record: object) -> str:
    """De-identified lines only in a de-identified export, and those before its entry as it recorded them."""
    changed = ledger.deid_before + ledger.deid_after
    if not isinstance(record, dict) or record.get("deidentified") is not True:
        if changed:
            raise Failure(
                f"{ENTRIES}: {changed} entries are marked de-identified, but the export's ledger entry (seq {seq}) "
                "does not record a de-identified export"
            )
        return "identified export: entries as stored"
    if record.get("entries") != ledger.deid_before or record.get("sha256") != ledger.deid_sha256.hexdigest():
        raise Failure(
            f"{ENTRIES}: the {ledger.deid_before} de-identified entries before seq {seq} do not match the count "
            f"({record.get('entries')!r}) and SHA-256 the export's entry recorded: one was edited, added or removed"
        )
    return (
        f"de-identified ({record.get('method')}): the {ledger.deid_before} changed entries before the export's entry "
        f"match the SHA-256 it recorded; {ledger.deid_after} after it are vouched for by their place in the chain only"
    )


def _record_files(folder: Path) -> list[str]:
    return sorted(
        p.relative_to(folder).as_posix() for name in ANCHORED for p in (folder / name).rglob("*") if p.is_file()
    )


def _check_anchors(folder: Path, seq: int, files: dict[str, str]) -> list[str]:
    present = _record_files(folder)
    for name in (n for n in present if not n.startswith(VALIDATION_DIR)):
        if name not in files:
            raise Failure(f"{name}: not recorded by the export's ledger entry (seq {seq}); it was added")
        if sha256_file(folder / name) != files[name]:
            raise Failure(f"{name}: its SHA-256 differs from the one the export's ledger entry (seq {seq}) recorded")
    for name in sorted(set(files) - set(present)):
        raise Failure(f"{name}: recorded by the export's ledger entry (seq {seq}) but missing")
    return present


def _before(ledger: Ledger, export_seq: int, action: str) -> dict[int, tuple[str, dict[str, Any]]]:
    return {s: (subj, p) for s, (a, subj, p) in ledger.anchors.items() if a == action and s < export_seq}


def _check_cards(folder: Path, ledger: Ledger, export_seq: int, names: list[str]) -> int:
    registered = {subj: (s, p) for s, (subj, p) in _before(ledger, export_seq, MODEL_REGISTERED).items()}
    seen: set[str] = set()
    cards = [n for n in names if n.startswith("model-cards/")]
    for name in cards:
        try:
            card = strict_loads((folder / name).read_bytes())
            version, weights = str(card["version"]), str(card["weights"]["sha256"])
        except (ValueError, TypeError, KeyError) as exc:
            raise Failure(f"{name}: not a model card: {exc}") from exc
        if version not in registered:
            raise Failure(f"{name}: the ledger has no model_registered entry for version {version!r}")
        seq, payload = registered[version]
        if payload.get("weights_sha256") != weights:
            raise Failure(f"{name}: weights SHA-256 differs from the one model_registered (seq {seq}) signed")
        card_sha = payload.get("card_sha256")
        if card_sha is not None and card_sha != sha256_file(folder / name):
            raise Failure(f"{name}: the card's SHA-256 differs from the one model_registered (seq {seq}) signed")
        seen.add(version)
    for version in sorted(set(registered) - seen):
        raise Failure(
            f"model-cards/: no card for version {version!r} (model_registered at seq {registered[version][0]})"
        )
    return len(cards)


def _check_explain_reports(folder: Path, ledger: Ledger, export_seq: int, names: list[str]) -> int:
    signed = {
        str(p.get("report_sha256")): s for s, (_, p) in _before(ledger, export_seq, EXPLAIN_REPORT_CREATED).items()
    }
    reports = [n for n in names if n.startswith("reports/explanations/")]
    hashes = {sha256_file(folder / n): n for n in reports}
    for digest, name in sorted(hashes.items(), key=lambda item: item[1]):
        if digest not in signed:
            raise Failure(f"{name}: its SHA-256 is not the report_sha256 of any explain_report_created entry")
    for digest, seq in sorted(signed.items(), key=lambda item: item[1]):
        if digest not in hashes:
            raise Failure(f"reports/explanations/: no report for explain_report_created at seq {seq}")
    return len(reports)


def _check_validation_reports(folder: Path, ledger: Ledger, names: list[str]) -> int:
    expected = _before(ledger, ledger.size, VALIDATION_REPORTED)
    reports = [n for n in names if n.startswith(VALIDATION_DIR)]
    for name in reports:
        match = _VALIDATION_NAME.fullmatch(name.rsplit("/", 1)[-1])
        seq = int(match.group(1)) if match else -1
        if seq not in expected:
            raise Failure(f"{name}: names no validation_reported entry of the ledger")
        try:
            same = canonical_json(strict_loads((folder / name).read_bytes())) == canonical_json(expected[seq][1])
        except ValueError as exc:
            raise Failure(f"{name}: not JSON: {exc}") from exc
        if not same:
            raise Failure(f"{name}: differs from the payload of validation_reported at seq {seq}")
    covered = {int(m.group(1)) for n in reports if (m := _VALIDATION_NAME.fullmatch(n.rsplit("/", 1)[-1]))}
    for seq in sorted(set(expected) - covered):
        raise Failure(f"reports/validation/: no report for validation_reported at seq {seq}")
    return len(reports)


def check_records(folder: Path, ledger: Ledger) -> str:
    """Check model cards and reports against the export's entry and the entries that made them."""
    seq, files, deidentification = _export_entry(folder, ledger)
    privacy = _check_deidentification(ledger, seq, deidentification)
    names = _check_anchors(folder, seq, files)
    cards = _check_cards(folder, ledger, seq, names)
    explain = _check_explain_reports(folder, ledger, seq, names)
    validation = _check_validation_reports(folder, ledger, names)
    return (
        f"{cards} model card(s) and {explain} explanation report(s) recorded by the export's ledger entry "
        f"(seq {seq}), each matching the entry that made it; {validation} validation report(s), each equal to "
        f"its ledger entry's payload; {privacy}"
    )


# --- 5. manifest ----------------------------------------------------------------------------------


def check_manifest(folder: Path) -> str:
    """Every file but the manifest is listed in ``MANIFEST.sha256`` with its SHA-256."""
    listed: dict[str, str] = {}
    for number, line in _lines(folder / MANIFEST, MANIFEST):
        digest, sep, name = line.partition("  ")
        if not sep or not _HEX64.fullmatch(digest) or name.startswith("/") or ".." in name.split("/"):
            raise Failure(f"{MANIFEST} line {number}: not '<sha256>  <relative path>'")
        listed[name] = digest
    present = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    for name in present:
        if name not in listed:
            raise Failure(f"{name}: not listed in {MANIFEST}; it was added")
        if sha256_file(folder / name) != listed[name]:
            raise Failure(f"{name}: its SHA-256 differs from {MANIFEST}")
    for name in sorted(set(listed) - set(present)):
        raise Failure(f"{name}: listed in {MANIFEST} but missing")
    return f"{len(present)} files match {MANIFEST}"


# --- the report -----------------------------------------------------------------------------------


def _trusted_key(folder: Path, key_file: Path | None) -> tuple[bytes, str]:
    own = read_public_key(folder / PUBLIC_KEY, PUBLIC_KEY)
    if key_file is None:
        note = (
            f"the package's own {PUBLIC_KEY} (key id {key_id(own)}); pass the key you obtained from the "
            "hospital with --public-key, or anyone who rewrote the package could have signed it"
        )
        return own, note
    trusted = read_public_key(key_file, str(key_file))
    if trusted != own:
        raise Failure(f"{PUBLIC_KEY}: key id {key_id(own)} is not the key you trust (key id {key_id(trusted)})")
    return trusted, f"{key_file} (key id {key_id(trusted)}), the same as the package's {PUBLIC_KEY}"


def verify(folder: Path, key_file: Path | None, out: list[str]) -> bool:
    """Run every check, appending one report line per section to ``out``; False at the first failure."""
    steps = ["public key", "ledger", "checkpoints", "records", "manifest"]
    step = steps[0]
    try:
        public_key, note = _trusted_key(folder, key_file)
        out.append(f"[PASS] {step}: {note}")
        step = steps[1]
        ledger = read_ledger(folder)
        span = f"recorded {ledger.first_at} to {ledger.last_at}"
        changed = ledger.deid_before + ledger.deid_after
        intact = (
            f"hashes and links intact ({changed} de-identified: links only)" if changed else "hashes and links intact"
        )
        out.append(f"[PASS] {step}: {ledger.size} entries, seq 0 to {ledger.size - 1}, {intact}; {span}")
        step = steps[2]
        out.append(f"[PASS] {step}: {check_checkpoints(folder, ledger, public_key)}")
        step = steps[3]
        out.append(f"[PASS] {step}: {check_records(folder, ledger)}")
        step = steps[4]
        out.append(f"[PASS] {step}: {check_manifest(folder)}")
    except (Failure, OSError) as exc:
        out.append(f"[FAIL] {step}: {exc}")
        out.append(f"FAILED: {exc}")
        return False
    out.append("VERIFIED: every entry, checkpoint and record in the package checks out")
    return True


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: 0 verified, 1 a check failed, 2 unusable arguments."""
    parser = argparse.ArgumentParser(description="Verify a Vigil audit evidence package.")
    parser.add_argument("folder", nargs="?", type=Path, default=Path(__file__).resolve().parent, metavar="DIR")
    parser.add_argument("--public-key", type=Path, default=None, metavar="HEXFILE", help="the key you trust")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        sys.stderr.write(f"verify_evidence.py: {args.folder} is not a folder\n")
        return 2
    if args.public_key is not None and not args.public_key.is_file():
        sys.stderr.write(f"verify_evidence.py: public key file {args.public_key} not found\n")
        return 2
    lines = [f"Vigil evidence package: {args.folder.resolve()}"]
    ok = verify(args.folder, args.public_key, lines)
    sys.stdout.write("\n".join(lines) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
