"""Training the demonstration model: a tiny run writes a complete card and weights that verify."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import BadInputError, DicomRejectedError
from core.models.card import ModelCard, read_card
from core.models.evaluate import auc_or_nan, evaluate_by_site, load_inputs, read_labelled_studies, youden_threshold
from core.models.loading import BUNDLED_DIR, load_model, sha256_file
from core.models.localization_term import nodule_cells
from core.models.preprocess import PreprocessParams
from core.models.training import TARGET_LAYER, TrainingConfig, _augment, train_model
from core.sampledata import generate_cohort
from core.store.engine import head_revision

TINY = TrainingConfig(epochs=1, crop_epochs=1, batch_size=8)


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cohort")
    generate_cohort(out, seed=0, studies_per_site=10)
    return out


def _train_tiny(cohort_dir: Path, out: Path) -> ModelCard:
    return train_model(
        cohort_dir=cohort_dir,
        out_dir=out,
        seed=5,
        store_revision=head_revision(),
        config=TINY,
        eval_cohort_dir=cohort_dir,
    )


@pytest.fixture(scope="module")
def trained(cohort_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelCard, Path]:
    out = tmp_path_factory.mktemp("model")
    torch.set_num_threads(2)
    return _train_tiny(cohort_dir, out), out


def test_tiny_run_writes_a_complete_card(trained: tuple[ModelCard, Path], cohort_dir: Path) -> None:
    # Prepare
    card, out = trained
    # Execute
    stored = json.loads((out / "card.json").read_text(encoding="utf-8"))
    # Assert: every field of the contract is present and filled
    assert set(stored) == {f.name for f in fields(ModelCard)}
    assert read_card(out / "card.json") == card
    assert card.target_layer == TARGET_LAYER
    assert card.data_schema["store_revision"] == head_revision()
    assert "PixelSpacing" in card.data_schema["dicom_attributes"]  # type: ignore[operator]
    assert card.training_data["manifest_sha256"] == sha256_file(cohort_dir / "manifest.csv")
    assert card.training_data["sites"] == ["benchmark"]
    assert {"torch", "monai", "numpy", "pydicom", "python", "cpu_capability", "processor"} <= set(card.environment)
    assert card.code_version and card.created_at and card.parent_version is None
    assert card.intended_use.modalities == ("DX", "CR") and card.intended_use.body_parts == ("CHEST",)
    assert card.intended_use.image_kinds == ("ORIGINAL",)
    assert 0.0 <= card.operating_threshold <= 1.0
    assert {"benchmark_auc", "site_auc", "auc_gap_vs_benchmark", "validation", "evaluation_cohort"} <= set(card.metrics)
    assert card.hyperparameters["seed"] == 5 and card.hyperparameters["epochs"] == 1


def test_weights_verify_and_load(trained: tuple[ModelCard, Path]) -> None:
    # Prepare
    card, out = trained
    # Execute
    loaded = load_model(card, out, device=torch.device("cpu"))
    # Assert
    assert card.weights["sha256"] == sha256_file(out / str(card.weights["path"]))
    x = torch.zeros((1, *card.input["shape"]))  # type: ignore[misc]
    assert loaded.network(x).shape == (1, 1)


def test_same_seed_reproduces_weights_and_metrics(
    trained: tuple[ModelCard, Path], cohort_dir: Path, tmp_path: Path
) -> None:
    # Prepare
    card, _ = trained
    # Execute
    again = _train_tiny(cohort_dir, tmp_path)
    # Assert
    assert again.weights["sha256"] == card.weights["sha256"]
    assert again.metrics == card.metrics


def test_float64_training_gives_the_same_network_on_one_and_two_threads(cohort_dir: Path, tmp_path: Path) -> None:
    # Another thread count reorders every parallel reduction, the same kind of rounding change
    # another CPU's kernels make. In float32 this recipe's stored weights then differ by ~2e-3
    # (measured); in float64 they agree to the float32 rounding of the result.
    # Prepare
    config = TrainingConfig(epochs=2, crop_epochs=4, batch_size=4, float64=True)
    before = torch.get_num_threads()
    cards, states = [], []
    # Execute
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out = tmp_path / f"threads{threads}"
            cards.append(
                train_model(cohort_dir=cohort_dir, out_dir=out, seed=5, store_revision=head_revision(), config=config)
            )
            states.append(torch.load(out / f"{cards[-1].version}.pt", weights_only=True))
    finally:
        torch.set_num_threads(before)
    # Assert
    assert cards[0].hyperparameters["precision"] == "float64 training, float32 weights"
    assert states[0].keys() == states[1].keys()
    for name, weight in states[0].items():
        assert weight.dtype in (torch.float32, torch.int64), name
        assert float((weight.double() - states[1][name].double()).abs().max()) <= 1e-6, name
    assert cards[0].metrics == cards[1].metrics


def test_nodule_cells_mark_the_cells_near_the_centre() -> None:
    # Prepare: a 32-px crop (8 x 8 cells of 4 px; cell i sits on pixel 4 i), nodule at (10, 20)
    where = torch.tensor([[10.0, 20.0], [-1.0, -1.0]])
    # Execute
    cells = nodule_cells(where, 32, stride=4)
    # Assert: cells whose pixel is within 6 px of (10, 20); none for the crop without a nodule
    assert cells.shape == (2, 1, 8, 8)
    marked = {(int(i), int(j)) for i, j in torch.nonzero(cells[0, 0])}
    expected = {(i, j) for i in range(8) for j in range(8) if (4 * i - 10) ** 2 + (4 * j - 20) ** 2 <= 36}
    assert marked == expected
    assert (2, 5) in marked and (0, 0) not in marked
    assert not cells[1].any()


def test_augmented_centres_follow_the_pixels() -> None:
    # Prepare: one bright pixel per film at its "nodule centre"; the third film has none
    batch = torch.zeros(3, 1, 32, 32)
    centres = torch.tensor([[5.0, 7.0], [20.0, 30.0], [-1.0, -1.0]])
    for i, (r, c) in enumerate(centres[:2].long().tolist()):
        batch[i, 0, r, c] = 1.0
    # Execute: many draws, so that flips and shifts both occur
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        out, moved = _augment(batch, centres, gen, max_shift=4)
        # Assert: the bright pixel sits where the moved centre says (when still inside the film)
        for i in range(2):
            r, c = moved[i].long().tolist()
            if 0 <= r < 32 and 0 <= c < 32:
                assert out[i, 0, r, c] == 1.0
        assert moved[2].tolist() == [-1.0, -1.0]


def test_localization_term_trains_a_head_that_is_not_stored(
    trained: tuple[ModelCard, Path], cohort_dir: Path, tmp_path: Path
) -> None:
    # Prepare: the tiny run has the term (the default recipe); train once more without it
    card, out = trained
    state = torch.load(out / f"{card.version}.pt", weights_only=True)
    # Execute
    plain = train_model(
        cohort_dir=cohort_dir,
        out_dir=tmp_path,
        seed=5,
        store_revision=head_revision(),
        config=replace(TINY, localization_weight=0.0),
    )
    # Assert: the card's network alone is stored, and the term changed what was learned (same
    # recipe and seed otherwise)
    assert card.hyperparameters["localization_weight"] == 1.0
    assert plain.hyperparameters["localization_weight"] == 0.0
    assert set(state) == set(load_model(card, out).network.state_dict())
    assert card.weights["sha256"] != plain.weights["sha256"]


def test_cohort_without_validation_studies_is_rejected(cohort_dir: Path, tmp_path: Path) -> None:
    # Prepare: a manifest whose benchmark rows are all in the train split
    lines = (cohort_dir / "manifest.csv").read_text(encoding="utf-8").splitlines()
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    (cohort / "manifest.csv").write_text("\n".join(line.replace(",val,", ",train,") for line in lines) + "\n")
    # Execute / Assert
    with pytest.raises(BadInputError, match="'val'"):
        train_model(cohort_dir=cohort, out_dir=tmp_path / "out", seed=0, store_revision=head_revision(), config=TINY)


def test_an_image_changed_after_its_manifest_is_refused(cohort_dir: Path, tmp_path: Path) -> None:
    # Prepare: a copy of the cohort whose first benchmark image is rewritten with one byte changed
    cohort = tmp_path / "cohort"
    shutil.copytree(cohort_dir, cohort)
    study = next(s for s in read_labelled_studies(cohort) if s.is_benchmark)
    data = bytearray(study.path.read_bytes())
    data[-1] ^= 0xFF
    study.path.write_bytes(bytes(data))
    # Execute / Assert
    with pytest.raises(DicomRejectedError, match=f"{study.path.name}.*not the {study.sha256}"):
        load_inputs([study], PreprocessParams())


def test_a_manifest_without_file_hashes_is_refused(cohort_dir: Path, tmp_path: Path) -> None:
    # Prepare
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    with (cohort_dir / "manifest.csv").open(encoding="utf-8", newline="") as fh:
        records = list(csv.DictReader(fh))
    columns = [c for c in records[0] if c != "file_sha256"]
    with (cohort / "manifest.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
    # Execute / Assert
    with pytest.raises(BadInputError, match="lacks columns: file_sha256"):
        read_labelled_studies(cohort)


def test_labelled_studies_carry_lesion_centres(cohort_dir: Path) -> None:
    # Execute
    studies = read_labelled_studies(cohort_dir)
    # Assert
    assert all((s.lesion_centre is not None) == (s.label == 1) for s in studies)
    assert all(0 < c < 1 for s in studies if s.lesion_centre for c in s.lesion_centre)


def test_metric_helpers_handle_degenerate_sites() -> None:
    # Prepare
    y = np.array([0, 0, 1, 1, 0, 0])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.3])
    sites = ["a", "a", "a", "a", "b", "b"]
    # Execute
    results = evaluate_by_site(y, s, sites, threshold=youden_threshold(y[:4], s[:4]))
    # Assert
    assert results["a"].auc == pytest.approx(0.75)
    assert np.isnan(results["b"].auc) and np.isnan(results["b"].sensitivity)
    assert results["b"].to_json()["auc"] is None
    with pytest.warns(UserWarning, match="single class"):
        assert np.isnan(auc_or_nan(np.zeros(3, dtype=int), np.arange(3.0)))


def test_cli_defaults_are_the_bundled_recipe() -> None:
    # The CLI keeps its own copies of the defaults (building the parser must not import torch); all
    # three (parser, TrainingConfig, the bundled card) must name one recipe.
    from core.cli import build_parser
    from core.cli.commands import training_config

    from_cli = training_config(build_parser().parse_args(["train", "--cohort", "c", "--out", "o"]))
    recipe = TrainingConfig()
    assert from_cli == recipe
    bundled = read_card(BUNDLED_DIR / "card.json").hyperparameters
    assert {key: bundled.get(key) for key in recipe.to_json()} == recipe.to_json()


@pytest.mark.parametrize("weight", [-1.0, float("nan"), float("inf")])
def test_bad_localization_weight_is_rejected_before_any_work(weight: float, tmp_path: Path) -> None:
    # Execute / Assert: the message names the value; no image is read (the cohort does not exist)
    with pytest.raises(BadInputError, match=f"localization weight.*{weight}"):
        train_model(
            cohort_dir=tmp_path / "missing",
            out_dir=tmp_path / "out",
            seed=0,
            store_revision=head_revision(),
            config=replace(TINY, localization_weight=weight),
        )
    assert not (tmp_path / "out").exists()
