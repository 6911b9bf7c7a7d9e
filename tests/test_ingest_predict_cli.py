"""``vigil ingest --predict / --workers``: the streaming pipeline behind the ingest command's contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import Settings
from core.models.card import read_card
from core.sampledata import generate_cohort
from core.services import models, sites
from core.services.store import open_store
from core.store import explanations, predictions
from tests.cli_home import point_vigil_at, run_json
from tests.core.pipeline.conftest import fixed_clock
from tests.factories import write_random_model


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The command's home with the random model serving and a site ``A``."""
    point_vigil_at(tmp_path, monkeypatch)
    settings = Settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'vigil.db'}")
    sf = open_store(settings)
    write_random_model(tmp_path / "model")
    card = read_card(tmp_path / "model" / "card.json")
    models.register_model(
        sf, card, source_dir=tmp_path / "model", models_dir=settings.home / "models", actor="t", now=fixed_clock
    )
    sites.add_site(sf, "A", benchmark=True, actor="t", now=fixed_clock)
    return settings


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cohort")
    generate_cohort(out, seed=3, studies_per_site={"benchmark": 4})
    (out / "dicom" / "junk.dcm").write_bytes(b"not DICOM")
    return out / "dicom"


def test_ingest_predict_reports_ingest_and_prediction_counts(
    home: Settings, files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    code, data, _ = run_json(capsys, "ingest", str(files), "--site", "A", "--predict", "--workers", "2")
    # Assert: the ingest contract, plus `vigil predict`'s counts under "predict"
    assert code == 0
    assert data["ingested"] == 4 and data["duplicates"] == 0 and data["workers"] == 2
    assert [Path(str(r["path"])).name for r in data["rejected"]] == ["junk.dcm"]  # type: ignore[union-attr,index]
    predicted = data["predict"]
    assert isinstance(predicted, dict)
    assert predicted["scored"] == 4 and predicted["skipped"] == 0 and predicted["device"] == "cpu"
    assert predicted["superseded"] == [] and predicted["maps"] == 4
    with open_store(home)() as s:
        assert len(predictions.list_predictions(s)) == 4
        assert all(len(explanations.list_explanations(s, p.id)) == 1 for p in predictions.list_predictions(s))


def test_no_maps_stores_scores_only_and_needs_predict(
    home: Settings, files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    refused, _, err = run_json(capsys, "ingest", str(files), "--site", "A", "--no-maps")
    code, data, _ = run_json(capsys, "ingest", str(files), "--site", "A", "--predict", "--no-maps")
    # Assert
    assert refused == 2 and "--no-maps goes with --predict" in err
    assert code == 0 and data["predict"]["scored"] == 4 and data["predict"]["maps"] == 0  # type: ignore[index]
    with open_store(home)() as s:
        assert all(explanations.list_explanations(s, p.id) == [] for p in predictions.list_predictions(s))


@pytest.mark.parametrize("flags", [[], ["--no-maps"], ["--workers", "2"]], ids=["maps", "no-maps", "worker-processes"])
def test_predict_stores_each_new_scores_map_unless_told_not_to(
    home: Settings, files: Path, capsys: pytest.CaptureFixture[str], flags: list[str]
) -> None:
    # Prepare: stored, not scored
    assert run_json(capsys, "ingest", str(files), "--site", "A")[0] == 0
    # Execute
    code, data, _ = run_json(capsys, "predict", *flags)
    again, second, _ = run_json(capsys, "predict", *flags)
    # Assert: one map per score, recorded with it; a second run has nothing to score and no map to add
    expected = 0 if "--no-maps" in flags else 4
    assert code == again == 0 and data["scored"] == 4 and data["maps"] == expected
    assert data["workers"] == (2 if "--workers" in flags else 0)
    assert second["scored"] == 0 and second["maps"] == 0
    with open_store(home)() as s:
        stored = [len(explanations.list_explanations(s, p.id)) for p in predictions.list_predictions(s)]
    assert stored == [expected // 4] * 4
    assert len(list(home.artifacts_dir.rglob("*.npz"))) == expected


def test_ingest_workers_without_predict_only_ingests(
    home: Settings, files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    code, data, _ = run_json(capsys, "ingest", str(files), "--site", "A", "--workers", "1")
    again, second, _ = run_json(capsys, "ingest", str(files), "--site", "A")
    # Assert: the pipeline's ingest is what the one-at-a-time ingest then sees as duplicates
    assert code == again == 0
    assert data["ingested"] == 4 and "predict" not in data
    assert second["duplicates"] == 4 and second["ingested"] == 0
    with open_store(home)() as s:
        assert predictions.list_predictions(s) == []


@pytest.mark.parametrize("value", ["0", "-1", "many", "513"])
def test_bad_worker_count_exits_2_before_anything_is_read(
    home: Settings, files: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    # Execute
    code, _, err = run_json(capsys, "ingest", str(files), "--site", "A", "--workers", value)
    # Assert
    assert code == 2
    assert "--workers" in err
    assert not (home.home / "dicom").exists()


@pytest.mark.parametrize("value", ["0", "many", "513"])
def test_bad_worker_count_for_predict_exits_2_before_anything_is_scored(
    home: Settings, files: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    # Prepare
    assert run_json(capsys, "ingest", str(files), "--site", "A")[0] == 0
    # Execute
    code, _, err = run_json(capsys, "predict", "--workers", value)
    # Assert
    assert code == 2 and "--workers" in err
    with open_store(home)() as s:
        assert predictions.list_predictions(s) == []


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["bench", "--suite", "metrics", "--studies", "5"], "throughput"),
        (["bench", "--suite", "throughput", "--film-size", "63"], "--film-size"),
        (["bench", "--suite", "throughput", "--studies", "0"], "--studies"),
    ],
)
def test_bench_throughput_sizes_are_checked_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str], named: str
) -> None:
    # Prepare
    point_vigil_at(tmp_path, monkeypatch)
    # Execute
    code, data, err = run_json(capsys, *argv)
    # Assert: exit 2 with one line naming the option, no result
    assert code == 2 and not data
    assert named in err and err.count("\n") == 1
