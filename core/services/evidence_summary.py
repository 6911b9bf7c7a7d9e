"""The human-readable parts of an evidence package: ``summary.html``, ``README.txt`` and ``export.json``.

Pure text from the facts :mod:`core.services.audit_export` gathered; every value that reaches
the HTML passes through :func:`html.escape` (actors, subjects and versions are user-controlled).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Final

__all__ = ["ExportFacts", "render_readme", "render_summary"]

_CSS: Final = (
    "body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}"
    "table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:.25rem .5rem;"
    "text-align:left;vertical-align:top}code{font-size:.9em;word-break:break-all}"
    ".ok{color:#0a6b2d;font-weight:bold}.bad{color:#b00020;font-weight:bold}"
)


@dataclass(frozen=True, slots=True)
class ExportFacts:
    """Everything the human-readable files say about one export.

    ``actions`` and ``actors`` are ``(name, count)`` pairs; ``checkpoints`` the external-file form
    of each exported checkpoint; ``models`` ``(version, created_at, weights_sha256, serving)``;
    ``deidentification`` what the export's ledger entry records about identifiers (whether the
    entries were de-identified, by which method and key, or why not), plus ``entries_exported``.
    """

    export_id: str
    export_seq: int
    created_at: str
    actor: str
    verified: bool
    reason: str | None
    entries: int
    first_at: str | None
    last_at: str | None
    actions: tuple[tuple[str, int], ...]
    actors: tuple[tuple[str, int], ...]
    checkpoints: tuple[dict[str, int | str], ...]
    key_hex: str
    key_id: str
    models: tuple[tuple[str, str, str, bool], ...]
    reports: tuple[str, ...]
    change_control: str
    deidentification: Mapping[str, object] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        """One line: PASSED, or FAILED and why."""
        return "PASSED" if self.verified else f"FAILED: {self.reason}"

    def export_json(self) -> dict[str, object]:
        """The machine-readable ``export.json``."""
        return {
            "format": "vigil-evidence/1",
            "export_id": self.export_id,
            "export_seq": self.export_seq,
            "created_at": self.created_at,
            "created_by": self.actor,
            "entries": self.entries,
            "checkpoint": self.checkpoints[-1] if self.checkpoints else None,
            "public_key_id": self.key_id,
            "verified_at_export": self.verified,
            "reason": self.reason,
            "change_control_plans": self.change_control,
            "deidentification": dict(self.deidentification),
        }

    @property
    def privacy(self) -> str:
        """One sentence: de-identified (how, how many entries changed) or identified (why)."""
        d = self.deidentification
        if not d.get("deidentified", False):
            return (
                f"IDENTIFIED: the entries are exported as stored, identifiers included; reason given: {d.get('reason')}"
            )
        return (
            f"DE-IDENTIFIED ({d.get('method')}, key id {d.get('key_id')}): {d.get('description')}. "
            f'{d.get("entries_exported")} exported entries were changed; each carries "deidentified": true and keeps '
            "its original hash, so its place in the chain is checked but its content cannot be"
        )


def _table(header: tuple[str, ...], rows: Sequence[tuple[object, ...]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body or '<tr><td colspan=99>none</td></tr>'}</table>"


def render_summary(f: ExportFacts) -> str:
    """``summary.html``: one self-contained page, no scripts, no external resources."""
    verdict_class = "ok" if f.verified else "bad"
    cps = [(c["tree_size"], c["root_hash"], c["timestamp"], c["key_id"]) for c in f.checkpoints]
    models = [(v, at, sha, "yes" if serving else "no") for v, at, sha, serving in f.models]
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        f"<title>Vigil audit evidence {escape(f.export_id)}</title><style>{_CSS}</style></head><body>",
        "<h1>Vigil audit evidence package</h1>",
        f"<p>Ledger verification at export time: <span class={verdict_class}>{escape(f.verdict)}</span></p>",
        f"<p>Identifiers: {escape(f.privacy)}</p>",
        _table(
            ("export", "value"),
            [
                ("export id", f.export_id),
                ("exported at", f.created_at),
                ("exported by", f.actor),
                ("the export's own ledger entry", f"seq {f.export_seq} (audit_exported)"),
                ("entries", f.entries),
                ("first entry recorded", f.first_at or "-"),
                ("last entry recorded", f.last_at or "-"),
                ("checkpoint-signing public key", f.key_hex),
                ("key id", f.key_id),
            ],
        ),
        "<h2>Actions</h2>",
        _table(("action", "entries"), list(f.actions)),
        "<h2>Actors</h2>",
        _table(("actor", "entries"), list(f.actors)),
        "<h2>Signed checkpoints</h2>",
        _table(("tree size", "root hash (SHA-256, hex)", "signed at", "key id"), cps),
        "<h2>Model versions</h2>",
        _table(("version", "registered", "weights SHA-256", "serving"), models),
        "<h2>Reports</h2>",
        _table(("file",), [(r,) for r in f.reports]),
        "<h2>Change-control plans</h2>",
        f"<p>{escape(f.change_control)}</p>",
        "<h2>How to verify</h2>",
        f"<pre>{escape(_HOW_TO)}</pre>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


_HOW_TO: Final = """\
pip install cryptography            # the only package the verifier needs, besides Python
python verify_evidence.py --public-key key.hex

key.hex: the checkpoint-signing public key you obtained from the hospital yourself
(`vigil audit public-key`), never the copy inside this package. Exit status 0: everything
verified; 1: the first failure is named (file, line, seq or checkpoint tree size)."""


def render_readme(f: ExportFacts) -> str:
    """``README.txt``: what the package is and how to verify it, in plain text."""
    return f"""Vigil audit evidence package {f.export_id}
Exported {f.created_at} by {f.actor}: {f.entries} ledger entries, {len(f.checkpoints)} signed checkpoint(s).
Ledger verification at export time: {f.verdict}
Identifiers: {f.privacy}

How to verify, on any machine with Python 3 (Vigil need not be installed):

{_HOW_TO}

What verify_evidence.py checks:
  - every entry's SHA-256 over its canonical JSON and its link to the previous entry;
  - every checkpoint's Ed25519 signature, and that the RFC 6962 Merkle root re-derived from
    the entries equals each signed root; the newest checkpoint covers every entry;
  - model cards and explanation reports against the SHA-256 values the export's own ledger
    entry (seq {f.export_seq}) records, and against the entries that registered them; each
    validation report against its ledger entry;
  - every file against MANIFEST.sha256 (also `sha256sum -c MANIFEST.sha256`).

What it cannot check: that the package's key is the hospital's (pass your own copy with
--public-key); anything the ledger does not record; records changed in the database before
they were ever audited. summary.html, README.txt, export.json and this script are covered
by the manifest only, which anyone can recompute: read the script you run, or use your own copy.

Files:
  entries.jsonl          every audit entry as stored, one JSON object per line
  checkpoints.jsonl      the signed checkpoints (tree_size, root_hash, timestamp, key_id, signature)
  public-key.hex         the installation's Ed25519 checkpoint-signing public key
  model-cards/           every registered model card, as stored
  reports/               explanation faithfulness reports; validation verdicts (reports/validation/seq-N.json)
  export.json            this export's id, its ledger entry, the result at export time
  summary.html           a human-readable summary
  verify_evidence.py     the standalone verifier (Python standard library + cryptography)
  MANIFEST.sha256        SHA-256 of every other file

Change-control plans: {f.change_control}.
"""
