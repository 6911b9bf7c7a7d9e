"""The shared taxonomy loader: one mechanism, with each caller's file, section and error wording kept."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from core.errors import ConfigError
from core.imaging import harmonize, protocol, taxonomy
from core.imaging.taxonomy import Taxonomy, header_tokens

# The uncached loaders behind the public cached functions, with the file and section each reads.
LOADERS = [
    pytest.param(harmonize.vendor_aliases.__wrapped__, "vendor_taxonomy.json", "vendors", "vendor", id="vendor"),
    pytest.param(
        protocol.protocol_aliases.__wrapped__, "protocol_taxonomy.json", "protocols", "protocol", id="protocol"
    ),
]


@pytest.fixture
def package_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder that stands in for the ``core.imaging`` package data."""
    monkeypatch.setattr(taxonomy, "resources", SimpleNamespace(files=lambda _package: tmp_path))
    return tmp_path


@pytest.mark.parametrize(("load", "file", "section", "noun"), LOADERS)
@pytest.mark.parametrize("content", [[], {"version": 3}, {}])
def test_file_without_a_string_version_is_a_config_error(
    package_dir: Path, load: Callable[[], dict[str, str]], file: str, section: str, noun: str, content: object
) -> None:
    # Prepare
    (package_dir / file).write_text(json.dumps(content), encoding="utf-8")

    # Execute / Assert
    with pytest.raises(ConfigError, match=f"^{file} must be an object with a string 'version'$"):
        load()


@pytest.mark.parametrize(("load", "file", "section", "noun"), LOADERS)
def test_missing_section_is_a_config_error(
    package_dir: Path, load: Callable[[], dict[str, str]], file: str, section: str, noun: str
) -> None:
    # Prepare
    (package_dir / file).write_text(json.dumps({"version": "1", section: ["not", "a", "mapping"]}), encoding="utf-8")

    # Execute / Assert: the wording is each module's own, as before the loader was shared
    expected = f"{file}: '{section}' must map {noun} names to lists of aliases"
    with pytest.raises(ConfigError) as caught:
        load()
    assert str(caught.value) == expected


@pytest.mark.parametrize(("load", "file", "section", "noun"), LOADERS)
def test_alias_naming_two_names_is_a_config_error(
    package_dir: Path, load: Callable[[], dict[str, str]], file: str, section: str, noun: str
) -> None:
    # Prepare
    names = {"Alpha": ["Shared Name"], "Beta": ["SHARED-NAME"]}
    (package_dir / file).write_text(json.dumps({"version": "1", section: names}), encoding="utf-8")

    # Execute / Assert
    with pytest.raises(ConfigError) as caught:
        load()
    assert str(caught.value) == f"{file}: alias 'sharedname' maps to both 'Alpha' and 'Beta'"


def test_missing_file_is_not_swallowed(package_dir: Path) -> None:
    # Prepare
    missing = Taxonomy(file="absent.json", section="things", noun="thing", normalize=str)

    # Execute / Assert: a taxonomy that is not shipped fails loudly, as before
    with pytest.raises(FileNotFoundError):
        missing.aliases()


def test_aliases_use_the_given_normalization_include_names_and_drop_empty_keys(package_dir: Path) -> None:
    # Prepare
    content = {"version": "7", "things": {"Thing One": ["T-1", "", "..."], "Thing Two": []}}
    (package_dir / "things.json").write_text(json.dumps(content), encoding="utf-8")
    things = Taxonomy(file="things.json", section="things", noun="thing", normalize=lambda r: "".join(header_tokens(r)))

    # Execute
    aliases = things.aliases()

    # Assert
    assert things.version() == "7"
    assert aliases == {"thingone": "Thing One", "t1": "Thing One", "thingtwo": "Thing Two"}


def test_vendor_and_protocol_keys_differ_only_in_legal_forms() -> None:
    # Execute / Assert: a trailing legal form is dropped for a vendor, kept for a protocol
    assert harmonize.normalize_vendor("Chest PA Co.") == "chestpa"
    assert protocol.normalize_protocol("Chest PA Co.") == "chestpaco"
    assert header_tokens("  Thorax  p.a. ") == ["thorax", "p", "a"]


def test_resolve_normalizes_the_raw_value_and_keeps_unlisted_values_unmapped() -> None:
    # Prepare
    things = Taxonomy(file="unused.json", section="things", noun="thing", normalize=lambda r: "".join(header_tokens(r)))
    aliases = {"thingone": "Thing One"}

    # Execute / Assert
    assert things.resolve("  THING-one ", aliases) == ("Thing One", True)
    assert things.resolve("Thing Three", aliases) == (taxonomy.UNMAPPED, False)
    assert things.resolve("", aliases) == ("Unmapped", False)
