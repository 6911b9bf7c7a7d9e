"""The standalone verifier agrees with Vigil's own hashing, and needs nothing but the stdlib and cryptography."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from core.audit import merkle, verify_evidence
from core.audit.chain import GENESIS_HASH, canonical_json, compute_entry_hash, link
from core.audit.checkpoint import Checkpoint, checkpoint_text
from core.audit.events import AuditAction

SCRIPT = Path(verify_evidence.__file__)
PAYLOADS = [
    {},
    {"x": 0.1, "tiny": 1e-300, "huge": 1.7976931348623157e308, "neg": -0.0, "big": 2**70, "n": -3},
    {"text": 'Ä ü 结节 🏥 \u2028 "quoted" \\ \n\t', "nested": {"b": [1, 2.5, None, True, False], "a": {}}},
    {"é": "keys sort by code point", "Z": 1, "a": 2},
]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "the script must not use relative imports"
            names.add(str(node.module).split(".")[0])
    return names


def test_script_imports_only_the_standard_library_and_cryptography() -> None:
    # Execute
    foreign = {m for m in _imports(SCRIPT) if m not in sys.stdlib_module_names and m != "__future__"}

    # Assert
    assert foreign == {"cryptography"}


@pytest.mark.parametrize("payload", PAYLOADS)
def test_entry_hash_and_canonical_json_agree(payload: dict[str, object]) -> None:
    # Prepare
    first = link(
        None,
        recorded_at="2024-05-01T09:30:00+00:00",
        actor="Dr. Müller",
        action=AuditAction.SITE_ADDED,
        subject="süd",
        payload=payload,  # type: ignore[arg-type]
    )
    line = {
        "seq": first.seq,
        "recorded_at": first.recorded_at,
        "actor": first.actor,
        "action": str(first.action),
        "subject": first.subject,
        "payload": dict(first.payload),
        "prev_hash": GENESIS_HASH,
        "entry_hash": first.entry_hash,
    }

    # Execute
    parsed = verify_evidence.strict_loads(canonical_json(line))

    # Assert
    assert verify_evidence.canonical_json(payload) == canonical_json(payload)
    assert (
        verify_evidence.entry_hash(parsed)
        == first.entry_hash
        == compute_entry_hash(**{k: v for k, v in line.items() if k != "entry_hash"})
    )  # type: ignore[arg-type]


def test_merkle_roots_agree_for_every_size_up_to_70() -> None:
    # Prepare
    hashes = [f"{i:064x}" for i in range(70)]

    # Execute / Assert
    for n in range(71):
        leaves = [merkle.leaf_hash(bytes.fromhex(h)) for h in hashes[:n]]
        assert verify_evidence.merkle_root([verify_evidence.leaf_hash(h) for h in hashes[:n]]) == merkle.root_hash(
            leaves
        ), n


def test_checkpoint_text_agrees() -> None:
    # Prepare
    cp = Checkpoint(12, "ab" * 32, "2024-05-01T09:30:00+00:00", "0123456789abcdef")

    # Execute
    text = verify_evidence.checkpoint_text(
        {"tree_size": 12, "root_hash": "ab" * 32, "timestamp": cp.timestamp, "key_id": cp.key_id}
    )

    # Assert
    assert text == checkpoint_text(cp)


@pytest.mark.parametrize("text", ['{"a":1,"a":2}', '{"a":NaN}', '{"a":Infinity}'])
def test_strict_loads_refuses_what_readers_disagree_on(text: str) -> None:
    with pytest.raises(ValueError):
        verify_evidence.strict_loads(text)


def test_unusable_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare
    afile = tmp_path / "afile"
    afile.write_text("x")

    # Execute
    not_a_folder = verify_evidence.main([str(afile)])
    no_key = verify_evidence.main([str(tmp_path), "--public-key", str(tmp_path / "missing.hex")])

    # Assert
    err = capsys.readouterr().err
    assert not_a_folder == 2 and no_key == 2
    assert f"{afile} is not a folder" in err and "missing.hex not found" in err


def test_an_empty_folder_fails_naming_the_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    code = verify_evidence.main([str(tmp_path)])

    # Assert
    assert code == 1 and "FAILED: public-key.hex is missing" in capsys.readouterr().out
