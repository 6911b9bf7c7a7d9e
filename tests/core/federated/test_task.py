"""One site's training and evaluation: only its own studies, never the hold-out, only aggregates out."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from core.errors import BadInputError, HoldoutLeakError
from core.federated.task import (
    LocalTrainConfig,
    SiteManifest,
    architecture_sha256,
    evaluate_local,
    load_site_data,
    network_arrays,
    read_site_manifest,
    split_site,
    train_local,
    update_norm,
    write_site_manifest,
)
from core.models.networks import DEFAULT_NETWORK, build_network
from core.models.preprocess import PreprocessParams
from tests.core.federated.conftest import site_examples


def test_a_site_trains_on_its_studies_and_returns_weights_of_the_model_shapes(fl_cohort: Path) -> None:
    # Prepare
    examples = site_examples(fl_cohort, "northfield")
    data = load_site_data("northfield", examples, frozenset(), PreprocessParams())
    start = network_arrays(build_network(DEFAULT_NETWORK))

    # Execute
    update = train_local(DEFAULT_NETWORK, start, data, LocalTrainConfig(batch_size=2), server_round=1)
    evaluation = evaluate_local(DEFAULT_NETWORK, update.weights, data)

    # Assert
    assert [w.shape for w in update.weights] == [w.shape for w in start]
    assert all(w.dtype == np.float32 for w in update.weights)
    assert update.n_examples == len(examples)
    assert np.isfinite(update.train_loss)
    assert update_norm(update.weights, start) > 0
    assert evaluation.n_examples == len(examples)
    assert np.isfinite(evaluation.loss)


def test_a_holdout_study_is_refused_before_any_image_is_read(fl_cohort: Path) -> None:
    # Prepare: the file behind the hold-out study is gone, so reading it would fail differently
    examples = list(site_examples(fl_cohort, "riverside"))
    examples[0] = dataclasses.replace(examples[0], path=Path("/nonexistent.dcm"))

    # Execute / Assert
    with pytest.raises(HoldoutLeakError, match=examples[0].study_uid):
        load_site_data("riverside", examples, frozenset({examples[0].study_uid}), PreprocessParams())


def test_another_sites_study_is_refused(fl_cohort: Path) -> None:
    foreign = site_examples(fl_cohort, "northfield")[:1]

    with pytest.raises(BadInputError, match="of site 'northfield'"):
        load_site_data("riverside", foreign, frozenset(), PreprocessParams())


def test_the_manifest_round_trips_and_the_split_is_deterministic(fl_cohort: Path, tmp_path: Path) -> None:
    # Prepare
    manifest = SiteManifest("northfield", site_examples(fl_cohort, "northfield"), frozenset({"1.2.3"}))

    # Execute
    write_site_manifest(manifest, tmp_path / "m.json")
    again = read_site_manifest(tmp_path / "m.json")
    first = split_site(again.examples, max_studies=3, val_fraction=0.34, seed=1)
    second = split_site(again.examples, max_studies=3, val_fraction=0.34, seed=1)

    # Assert
    assert again == manifest
    assert first == second
    assert len(first[0]) + len(first[1]) == 3
    assert not {e.study_uid for e in first[0]} & {e.study_uid for e in first[1]}


def test_a_manifest_with_a_bad_label_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text(
        '{"format": "vigil-fl-site-manifest/1", "site": "a", "holdout_uids": [], '
        '"examples": [{"study_uid": "1.2", "path": "/x", "sha256": "0", "label": 2, "source": "emr"}]}'
    )

    with pytest.raises(BadInputError, match="label must be 0 or 1, got 2"):
        read_site_manifest(tmp_path / "m.json")


def test_the_architecture_hash_tells_networks_apart() -> None:
    other = {**DEFAULT_NETWORK, "kwargs": {**DEFAULT_NETWORK["kwargs"], "block_inplanes": [8, 16, 32, 32]}}

    assert architecture_sha256(DEFAULT_NETWORK) == architecture_sha256(dict(DEFAULT_NETWORK))
    assert architecture_sha256(DEFAULT_NETWORK) != architecture_sha256(other)
