"""The staged Flower App matches the repository's registration; bad SuperNode settings are refused before any start."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

import core
from core.errors import BadInputError
from core.federated.launcher import APP_TOML, LocalFederation, SiteNode, stage_app

ROOT = Path(__file__).resolve().parents[3]


def test_the_staged_app_registers_the_apps_as_the_repository_does() -> None:
    repo = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    staged = tomllib.loads(APP_TOML)

    assert staged["tool"]["flwr"]["app"] == repo["tool"]["flwr"]["app"]
    assert repo["tool"]["flwr"]["app"]["components"] == {
        "serverapp": "core.federated.server_app:app",
        "clientapp": "core.federated.client_app:app",
    }


def test_staging_copies_the_package_code_and_data_files_only(tmp_path: Path) -> None:
    app = stage_app(Path(core.__file__).parent, tmp_path / "app")

    copied = [p for p in (app / "core").rglob("*") if p.is_file()]
    assert (app / "core" / "federated" / "server_app.py").is_file()
    assert (app / "pyproject.toml").read_text(encoding="utf-8") == APP_TOML
    assert {p.suffix for p in copied} <= {".py", ".json", ".toml"}
    assert not [p for p in copied if "__pycache__" in p.parts]


@pytest.mark.parametrize("bad", ["north field", "it's", "a=b"])
def test_a_value_flower_supernode_would_split_is_refused(tmp_path: Path, bad: str) -> None:
    node = SiteNode(bad, tmp_path / "m.json", tmp_path / "k.pem")

    with pytest.raises(BadInputError, match="cannot be passed to a SuperNode"):
        LocalFederation(work_dir=tmp_path, sites=[node], environ=dict(os.environ))
