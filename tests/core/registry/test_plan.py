"""The change-control plan file: the default parses, every bad input is refused naming the key and value."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from core.errors import BadInputError, ChangePlanError
from core.registry.plan import (
    DEFAULT_PLAN_PATH,
    MAX_PLAN_BYTES,
    AcceptanceCriteria,
    InsufficientSitePolicy,
    Modification,
    parse_plan,
    read_plan,
)

GOOD = b"""
[plan]
id = "p"
version = "2"
allowed_modifications = ["retrain"]

[acceptance]
site_auc_margin = 0.04
max_ece = 1
"""


def _with(line: str, table: str = "acceptance") -> bytes:
    """GOOD with ``line`` added to ``table``."""
    head, tail = GOOD.decode().split(f"[{table}]\n")
    return f"{head}[{table}]\n{line}\n{tail}".encode()


def test_default_plan_parses_with_the_documented_values() -> None:
    # Execute
    plan = read_plan(DEFAULT_PLAN_PATH)

    # Assert
    assert plan.id == "cxr-nodule-pccp"
    assert plan.version == "1"
    assert plan.label == "cxr-nodule-pccp v1"
    assert plan.allowed == {Modification.RETRAIN, Modification.RECALIBRATE, Modification.THRESHOLD}
    assert plan.acceptance == AcceptanceCriteria()
    assert plan.acceptance.insufficient_site is InsufficientSitePolicy.FAIL
    assert plan.source == str(DEFAULT_PLAN_PATH)


def test_sha256_is_over_the_exact_file_bytes() -> None:
    data = DEFAULT_PLAN_PATH.read_bytes()

    assert read_plan(DEFAULT_PLAN_PATH).sha256 == hashlib.sha256(data).hexdigest()
    assert parse_plan(data + b"\n", source="<text>").sha256 == hashlib.sha256(data + b"\n").hexdigest()


def test_missing_acceptance_keys_take_the_defaults_and_to_dict_is_sorted() -> None:
    plan = parse_plan(GOOD.replace(b'["retrain"]', b'["threshold", "retrain"]'), source="<text>")

    d = plan.to_dict()

    assert plan.acceptance.site_auc_margin == 0.04
    assert plan.acceptance.max_ece == 1.0
    assert plan.acceptance.ece_bins == 10
    assert d["allowed_modifications"] == ["retrain", "threshold"]
    assert d["source"] == "<text>"
    assert isinstance(d["acceptance"], dict) and d["acceptance"]["insufficient_site"] == "fail"


@pytest.mark.parametrize(
    ("data", "key", "shown"),
    [
        (b"\xff\xfe[plan]", "", "not UTF-8"),
        (b"[plan\nid = 1", "", "not TOML"),
        (b"[acceptance]\nmax_ece = 0.1\n", "[plan]", "missing table"),
        (GOOD.replace(b'id = "p"\n', b""), "plan.id", "missing key"),
        (GOOD.replace(b'version = "2"\n', b""), "plan.version", "missing key"),
        (GOOD.replace(b'allowed_modifications = ["retrain"]\n', b""), "plan.allowed_modifications", "missing"),
        (GOOD.replace(b'id = "p"', b'id = "  "'), "plan.id", "'  '"),
        (GOOD.replace(b'version = "2"', b"version = 2"), "plan.version", "2 (int)"),
        (_with("site_auc_margn = 0.05"), "acceptance.site_auc_margn", "'site_auc_margn'"),
        (_with("owner = 'x'", "plan"), "plan.owner", "'owner'"),
        (GOOD + b"\n[extra]\nx = 1\n", "extra", "'extra'"),
        (_with("max_ece = true").replace(b"max_ece = 1\n", b""), "acceptance.max_ece", "True (bool)"),
        (_with("ece_bins = true"), "acceptance.ece_bins", "True (bool)"),
        (_with("ece_bins = 10.0"), "acceptance.ece_bins", "10.0 (float)"),
        (_with("ece_bins = 1"), "acceptance.ece_bins", "got 1"),
        (_with("ece_bins = 101"), "acceptance.ece_bins", "got 101"),
        (_with("confidence = '0.95'"), "acceptance.confidence", "'0.95' (str)"),
        (_with("confidence = 0.5"), "acceptance.confidence", "got 0.5"),
        (_with("confidence = 1.0"), "acceptance.confidence", "got 1.0"),
        (_with("overall_auc_margin = -0.01"), "acceptance.overall_auc_margin", "got -0.01"),
        (_with("sensitivity_margin = 1.0"), "acceptance.sensitivity_margin", "got 1.0"),
        (GOOD.replace(b"site_auc_margin = 0.04", b"site_auc_margin = 0.0"), "acceptance.site_auc_margin", "got 0.0"),
        (GOOD.replace(b"site_auc_margin = 0.04", b"site_auc_margin = 0.5"), "acceptance.site_auc_margin", "got 0.5"),
        (GOOD.replace(b"site_auc_margin = 0.04", b"site_auc_margin = nan"), "acceptance.site_auc_margin", "nan"),
        (GOOD.replace(b"max_ece = 1", b"max_ece = inf"), "acceptance.max_ece", "inf"),
        (GOOD.replace(b"max_ece = 1", b"max_ece = 0"), "acceptance.max_ece", "got 0.0"),
        (_with("min_site_positives = 1"), "acceptance.min_site_positives", "got 1"),
        (_with("min_site_negatives = -5"), "acceptance.min_site_negatives", "got -5"),
        (_with("insufficient_site = 'ignore'"), "acceptance.insufficient_site", "'ignore'"),
        (_with("require_explanation = 'yes'"), "acceptance.require_explanation", "'yes'"),
        (GOOD.replace(b'["retrain"]', b'["retrian"]'), "plan.allowed_modifications", "'retrian'"),
        (GOOD.replace(b'["retrain"]', b'["architecture"]'), "plan.allowed_modifications", "'architecture'"),
        (GOOD.replace(b'["retrain"]', b'"retrain"'), "plan.allowed_modifications", "'retrain'"),
        (GOOD.replace(b'["retrain"]', b"[1]"), "plan.allowed_modifications", "1"),
        (b'plan = "x"\n', "plan", "'x'"),
    ],
)
def test_bad_plans_are_refused_naming_the_file_key_and_value(data: bytes, key: str, shown: str) -> None:
    with pytest.raises(ChangePlanError) as info:
        parse_plan(data, source="plans/p.toml")

    message = str(info.value)
    assert isinstance(info.value, BadInputError)
    assert message.startswith("change-control plan plans/p.toml")
    assert info.value.key == key
    assert key in message
    assert shown in message


def test_oversized_text_is_refused() -> None:
    with pytest.raises(ChangePlanError, match="limit"):
        parse_plan(GOOD + b"#" * MAX_PLAN_BYTES, source="<text>")


def test_read_plan_refuses_missing_folder_and_oversized_files(tmp_path: Path) -> None:
    big = tmp_path / "big.toml"
    big.write_bytes(GOOD + b"#" * MAX_PLAN_BYTES)

    with pytest.raises(ChangePlanError, match=r"absent\.toml: the file cannot be read \(FileNotFoundError"):
        read_plan(tmp_path / "absent.toml")
    with pytest.raises(ChangePlanError, match="not a regular file"):
        read_plan(tmp_path)
    with pytest.raises(ChangePlanError, match="limit") as info:
        read_plan(big)
    assert str(big) in str(info.value)


def test_read_plan_reads_a_file_through_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real.toml"
    real.write_bytes(GOOD)
    link = tmp_path / "link.toml"
    link.symlink_to(real)

    assert read_plan(link).id == "p"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_read_plan_refuses_a_fifo_without_waiting_for_a_writer(tmp_path: Path) -> None:
    # Prepare: nobody ever writes to this FIFO, so opening it for reading would block forever.
    fifo = tmp_path / "plan.toml"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def attempt() -> None:
        try:
            read_plan(fifo)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test thread
            outcome.append(exc)

    # Execute
    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout=5)

    # Assert
    if worker.is_alive():  # unblock the thread so the test run can end, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("read_plan blocked on a FIFO")
    assert len(outcome) == 1 and isinstance(outcome[0], ChangePlanError)
    assert "not a regular file" in str(outcome[0])
