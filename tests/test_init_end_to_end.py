"""`vigil init` on the committed sample cohort, then the commands a new user runs next.

This is the issue's "done when": init, then predict --all, produce predictions for the whole
sample cohort with audit entries that verify; it runs the real bundled model on real files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.cli import main
from core.config import SAMPLE_DATA_DIR
from core.sampledata import MANIFEST_NAME, read_manifest


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("init")
    env = {"VIGIL_HOME": str(root / "home"), "VIGIL_DATABASE_URL": f"sqlite:///{root / 'vigil.db'}"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        mp.delenv("VIGIL_CONFIG", raising=False)
        assert main(["init", "--json"]) == 0
    return env


def _run(env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *argv: str):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    capsys.readouterr()
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_init_predicts_the_whole_cohort_and_the_chain_verifies(
    initialised: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    n_studies = len(read_manifest(SAMPLE_DATA_DIR / MANIFEST_NAME))
    # Execute: the second init is idempotent, then predict finds nothing left to do
    code, again = _run(initialised, capsys, monkeypatch, "init")
    pcode, predicted = _run(initialised, capsys, monkeypatch, "predict", "--all")
    vcode, verified = _run(initialised, capsys, monkeypatch, "audit", "verify")
    # Assert
    assert code == 0 and again["ingested"] == 0 and again["duplicates"] == n_studies and again["rejected"] == 0
    assert again["sites_added"] == [] and again["model_registered"] is False
    assert pcode == 0 and predicted["scored"] == 0
    assert vcode == 0 and verified["ok"] is True
    # every study ingested (n), scored (n) with its Grad-CAM map stored (n), and the setup actions
    assert verified["checked"] >= 3 * n_studies
    assert verified["records_checked"]["prediction"] == verified["records_checked"]["explanation"] == n_studies


def test_models_and_cards_are_shown(
    initialised: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, listed = _run(initialised, capsys, monkeypatch, "model", "list")
    (only,) = listed["models"]
    scode, card = _run(initialised, capsys, monkeypatch, "model", "show", only["version"])
    assert code == scode == 0 and only["serving"] is True
    assert card["metrics"]["benchmark_auc"] >= 0.90
    assert card["intended_use"]["modalities"] == ["DX", "CR"]


def test_explain_writes_a_map_on_the_pixel_grid(
    initialised: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import numpy as np

    row = read_manifest(SAMPLE_DATA_DIR / MANIFEST_NAME)[0]
    out = tmp_path / "map.npy"
    code, data = _run(
        initialised, capsys, monkeypatch, "explain", row.study_uid, "--method", "gradcam", "--out", str(out)
    )
    heat = np.load(out)
    assert code == 0 and heat.dtype == np.float32 and heat.shape == (row.rows, row.columns)
    assert data["sha256"] and 0.0 <= heat.min() and heat.max() <= 1.0


def test_init_names_a_broken_oidc_table_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: local_sign_in as a string, which would shut both ways into the app
    config = tmp_path / "vigil.toml"
    config.write_text('[vigil.oidc]\nrole_claim = "groups"\nroles = { "rad" = "radiologist" }\nlocal_sign_in = "no"\n')
    monkeypatch.setenv("VIGIL_CONFIG", str(config))
    monkeypatch.setenv("VIGIL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VIGIL_DATABASE_URL", f"sqlite:///{tmp_path / 'vigil.db'}")
    capsys.readouterr()
    # Execute
    code = main(["init"])
    # Assert: exit 2, the key and value named, no database and no home
    assert code == 2
    assert "oidc.local_sign_in must be true or false, got 'no'" in capsys.readouterr().err
    assert not (tmp_path / "vigil.db").exists() and not (tmp_path / "home").exists()
