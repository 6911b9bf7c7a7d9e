"""Fine-tuning the bundled model into a challenger on the committed sample cohort."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from core.audit.chain import canonical_json
from core.errors import BadInputError, HoldoutLeakError
from core.models.card import ModelCard, read_card
from core.models.evaluate import read_labelled_studies
from core.models.finetune import STUDY_COLUMNS, FinetuneConfig, TrainingExample, finetune_model, training_manifest
from core.models.loading import BUNDLED_DIR, load_model, sha256_file

SAMPLE_DIR = Path(__file__).resolve().parents[3] / "sample_data"
TINY = FinetuneConfig(epochs=1, batch_size=8)
STORE_REVISION = "rev-under-test"


def _sample_examples() -> dict[tuple[str, str], list[TrainingExample]]:
    """The committed cohort's studies as fine-tuning examples, by (site, split), in manifest order."""
    with (SAMPLE_DIR / "manifest.csv").open(encoding="utf-8", newline="") as fh:
        uids = [rec["study_uid"] for rec in csv.DictReader(fh)]
    by_group: dict[tuple[str, str], list[TrainingExample]] = {}
    for uid, study in zip(uids, read_labelled_studies(SAMPLE_DIR), strict=True):
        source = "benchmark" if study.is_benchmark else "adjudication" if study.site == "northfield" else "emr"
        example = TrainingExample(uid, study.path, study.sha256, study.site, study.label, source)
        by_group.setdefault((study.site, study.split), []).append(example)
    return by_group


@pytest.fixture(scope="module")
def cohort() -> tuple[tuple[TrainingExample, ...], tuple[TrainingExample, ...], frozenset[str]]:
    """Train: benchmark train split and 9 northfield studies; val: benchmark val and 7 eastgate; hold-out: riverside."""
    groups = _sample_examples()
    train = (*groups["benchmark", "train"], *groups["northfield", "deployment"][:9])
    val = (*groups["benchmark", "val"], *groups["eastgate", "deployment"][:7])
    holdout = frozenset(e.study_uid for e in groups["riverside", "deployment"])
    return train, val, holdout


def _finetune(
    cohort: tuple[Sequence[TrainingExample], Sequence[TrainingExample], frozenset[str]],
    out: Path,
    *,
    seed: int = 3,
    progress: list[tuple[int, int]] | None = None,
    config: FinetuneConfig = TINY,
) -> ModelCard:
    train, val, holdout = cohort
    return finetune_model(
        parent_card=read_card(BUNDLED_DIR / "card.json"),
        parent_dir=BUNDLED_DIR,
        train=train,
        val=val,
        holdout_uids=holdout,
        out_dir=out,
        version="cxr-nodule-1.1.0-rc1",
        seed=seed,
        store_revision=STORE_REVISION,
        config=config,
        device=torch.device("cpu"),
        progress=None if progress is None else lambda done, total: progress.append((done, total)),
    )


@pytest.fixture(scope="module")
def challenger(
    cohort: tuple[tuple[TrainingExample, ...], tuple[TrainingExample, ...], frozenset[str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[ModelCard, Path, list[tuple[int, int]]]:
    out = tmp_path_factory.mktemp("challenger")
    torch.set_num_threads(2)
    calls: list[tuple[int, int]] = []
    return _finetune(cohort, out, progress=calls), out, calls


def _missing(uid: str, label: int, tmp_path: Path) -> TrainingExample:
    """An example whose file does not exist: any attempt to read it would fail loudly."""
    return TrainingExample(uid, tmp_path / f"{uid}.dcm", "0" * 64, "harbor", label, "reader")


def _refuse(
    tmp_path: Path,
    train: Sequence[TrainingExample],
    val: Sequence[TrainingExample],
    *,
    holdout: frozenset[str] = frozenset(),
    config: FinetuneConfig = TINY,
) -> None:
    """Fine-tune with a parent directory that has no weights, so a check after any read would fail otherwise."""
    finetune_model(
        parent_card=read_card(BUNDLED_DIR / "card.json"),
        parent_dir=tmp_path / "no-weights",
        train=train,
        val=val,
        holdout_uids=holdout,
        out_dir=tmp_path / "out",
        version="v",
        seed=0,
        store_revision=STORE_REVISION,
        config=config,
    )


def test_a_holdout_study_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    # Prepare: files and parent weights that do not exist, two training studies in the hold-out
    train = [_missing(f"1.2.{i}", i % 2, tmp_path) for i in range(6)]
    val = [_missing(f"1.3.{i}", i % 2, tmp_path) for i in range(4)]
    holdout = frozenset({"1.2.4", "1.2.1", "9.9.9"})
    # Execute / Assert: the leak, not a missing file, is what stops it; the first offender is named
    with pytest.raises(HoldoutLeakError, match=r"2 training or validation studies .* the first '1\.2\.1'") as err:
        _refuse(tmp_path, train, val, holdout=holdout)
    assert err.value.study_uid == "1.2.1" and err.value.count == 2
    assert not (tmp_path / "out").exists()


def test_a_holdout_study_in_validation_is_refused_too(tmp_path: Path) -> None:
    # Prepare
    train = [_missing(f"1.2.{i}", i % 2, tmp_path) for i in range(4)]
    val = [_missing(f"1.3.{i}", i % 2, tmp_path) for i in range(4)]
    # Execute / Assert
    with pytest.raises(HoldoutLeakError, match=r"'1\.3\.3'"):
        _refuse(tmp_path, train, val, holdout=frozenset({"1.3.3"}))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("empty train", "at least one training study, got none"),
        ("one-class val", "both classes .* got 0 negatives and 4 positives"),
        ("label 2", r"label must be 0 or 1, got 2 for study '1\.2\.3'"),
        ("duplicate", r"study '1\.2\.0' is given more than once"),
        ("epochs 0", "epochs >= 1, got 0"),
        ("lr nan", "learning rate must be a finite number > 0, got nan"),
        ("lr inf", "learning rate must be a finite number > 0, got inf"),
        ("lr 0", "learning rate must be a finite number > 0, got 0.0"),
        ("batch 0", "batch_size >= 1 .* got 0"),
        ("rule", "threshold rule must be one of keep_sensitivity, dominate_parent, youden, got 'median'"),
        ("headroom", r"sensitivity headroom must be in \[0, 1\), got nan"),
        ("l2sp -1", "L2-SP weight must be a finite number >= 0, got -1.0"),
        ("l2sp inf", "L2-SP weight must be a finite number >= 0, got inf"),
    ],
)
def test_bad_inputs_are_named_before_anything_is_read(case: str, message: str, tmp_path: Path) -> None:
    # Prepare: a usable set of (absent) studies, then the one fault of this case
    train = [_missing(f"1.2.{i}", i % 2, tmp_path) for i in range(4)]
    val = [_missing(f"1.3.{i}", i % 2, tmp_path) for i in range(4)]
    config = TINY
    if case == "empty train":
        train = []
    elif case == "one-class val":
        val = [replace(e, label=1) for e in val]
    elif case == "label 2":
        train[3] = replace(train[3], label=2)
    elif case == "duplicate":
        val[2] = replace(val[2], study_uid="1.2.0")
    elif case == "epochs 0":
        config = replace(TINY, epochs=0)
    elif case.startswith("lr"):
        config = replace(TINY, learning_rate=float(case.split()[1]))
    elif case == "rule":
        config = replace(TINY, threshold_rule="median")
    elif case == "headroom":
        config = replace(TINY, sensitivity_headroom=float("nan"))
    elif case.startswith("l2sp"):
        config = replace(TINY, l2sp_weight=float(case.split()[1]))
    else:
        config = replace(TINY, batch_size=0)
    # Execute / Assert
    with pytest.raises(BadInputError, match=message) as err:
        _refuse(tmp_path, train, val, config=config)
    assert type(err.value) is BadInputError
    assert not (tmp_path / "out").exists()


def test_the_challenger_card_round_trips_and_loads(
    challenger: tuple[ModelCard, Path, list[tuple[int, int]]],
    cohort: tuple[tuple[TrainingExample, ...], tuple[TrainingExample, ...], frozenset[str]],
) -> None:
    # Prepare
    card, out, calls = challenger
    parent = read_card(BUNDLED_DIR / "card.json")
    train, val, holdout = cohort
    # Execute
    stored = json.loads((out / "card.json").read_text(encoding="utf-8"))
    loaded = load_model(ModelCard.from_dict(stored), out, device=torch.device("cpu"))
    # Assert: the card survives JSON and its weights verify and score
    assert ModelCard.from_dict(stored) == card == read_card(out / "card.json")
    assert card.weights == {"path": "cxr-nodule-1.1.0-rc1.pt", "sha256": sha256_file(out / "cxr-nodule-1.1.0-rc1.pt")}
    assert loaded.network(torch.zeros((1, 1, 224, 224))).shape == (1, 1)
    # Assert: the parent's network, input and use; its own schema revision, threshold and figures
    assert card.parent_version == parent.version
    same = ("network", "target_layer", "input", "preprocessing", "labels", "intended_use")
    assert all(getattr(card, name) == getattr(parent, name) for name in same)
    assert card.data_schema == {**parent.data_schema, "store_revision": STORE_REVISION}
    assert 0.0 <= card.operating_threshold <= 1.0
    hyper = card.hyperparameters
    assert hyper["recipe"] == "finetune" and hyper["seed"] == 3 and hyper["selected_epoch"] == 1
    assert {key: hyper[key] for key in TINY.to_json()} == TINY.to_json()
    assert hyper["parent_weights_sha256"] == parent.weights["sha256"]
    validation = card.metrics["validation"]
    assert isinstance(validation, dict) and validation["n"] == len(val) and "note" in card.metrics
    assert validation["n_positive"] == sum(e.label for e in val)
    # The card states the threshold rule and the parent's operating point it was measured against
    assert hyper["threshold_rule"] == "dominate_parent"
    scaling = hyper["logit_scaling_fit"]
    assert isinstance(scaling, dict) and scaling["applied"] is True
    assert isinstance(scaling["slope"], float) and scaling["slope"] > 0
    assert "smaller of the challenger's sensitivity and specificity gains" in str(validation["threshold_method"])
    assert "the parent's sensitivity" in str(validation["threshold_method"])
    assert calls == [(1, 1)]
    assert card.code_version and card.created_at and "torch" in card.environment


def test_the_manifest_names_every_study_and_recomputes(
    challenger: tuple[ModelCard, Path, list[tuple[int, int]]],
    cohort: tuple[tuple[TrainingExample, ...], tuple[TrainingExample, ...], frozenset[str]],
) -> None:
    # Prepare
    card, _, _ = challenger
    train, val, holdout = cohort
    data = card.training_data
    rows = data["studies"]
    assert isinstance(rows, list)
    # Execute: recompute the hash from the card alone
    digest = hashlib.sha256(canonical_json(rows)).hexdigest()
    # Assert
    assert digest == data["manifest_sha256"]
    assert data["study_columns"] == list(STUDY_COLUMNS)
    assert [row[0] for row in rows if isinstance(row, list)] == sorted(e.study_uid for e in (*train, *val))
    assert {row[0] for row in rows if isinstance(row, list)}.isdisjoint(holdout)
    assert all([e.study_uid, e.sha256, e.site, e.label, e.source, "train"] in rows for e in train)
    assert all([e.study_uid, e.sha256, e.site, e.label, e.source, "val"] in rows for e in val)
    assert data["sites"] == ["benchmark", "eastgate", "northfield"]
    assert (data["n_train"], data["n_val"]) == (len(train), len(val))
    assert data["label_sources"] == {"adjudication": 9, "benchmark": len(train) + len(val) - 16, "emr": 7}
    assert data["holdout_excluded"] == len(holdout)


def test_the_challenger_learned_from_its_parent(challenger: tuple[ModelCard, Path, list[tuple[int, int]]]) -> None:
    # Prepare
    card, out, _ = challenger
    parent = read_card(BUNDLED_DIR / "card.json")
    # Execute
    before = torch.load(BUNDLED_DIR / str(parent.weights["path"]), weights_only=True)
    after = torch.load(out / str(card.weights["path"]), weights_only=True)
    # Assert: the same tensors and dtypes, moved by training
    assert before.keys() == after.keys()
    assert all(after[name].dtype == weight.dtype for name, weight in before.items())
    assert any(not torch.equal(after[name], weight) for name, weight in before.items())
    # Assert: training continued the parent's (its batch-norm step counts went on from the parent's,
    # by the 4 steps of one epoch of 32 films in batches of 8), rather than starting afresh
    counts = [name for name in before if name.endswith("num_batches_tracked")]
    assert counts and all(int(after[name]) == int(before[name]) + 4 for name in counts)


def _distance_to_parent(out: Path, card: ModelCard) -> float:
    """Squared distance of the challenger's trained weights to the parent's (batch-norm statistics left out)."""
    parent = read_card(BUNDLED_DIR / "card.json")
    before = torch.load(BUNDLED_DIR / str(parent.weights["path"]), weights_only=True)
    after = torch.load(out / str(card.weights["path"]), weights_only=True)
    trained = [name for name in before if not name.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    return sum(float((after[name].double() - before[name].double()).square().sum()) for name in trained)


def test_l2sp_pulls_the_challenger_toward_its_parent(
    challenger: tuple[ModelCard, Path, list[tuple[int, int]]],
    cohort: tuple[tuple[TrainingExample, ...], tuple[TrainingExample, ...], frozenset[str]],
    tmp_path: Path,
) -> None:
    # Prepare: the fixture's run again (same seed, data and batches), with a far stronger pull
    card, out, _ = challenger
    strong = replace(TINY, l2sp_weight=max(1e3, 100 * TINY.l2sp_weight))
    # Execute
    pulled = _finetune(cohort, tmp_path, config=strong)
    # Assert: the weight is on the card, and the pulled network moved less from the parent
    assert pulled.hyperparameters["l2sp_weight"] == strong.l2sp_weight
    assert pulled.weights["sha256"] != card.weights["sha256"]
    assert _distance_to_parent(tmp_path, pulled) < 0.5 * _distance_to_parent(out, card)


def test_the_same_seed_gives_the_same_weights(
    challenger: tuple[ModelCard, Path, list[tuple[int, int]]],
    cohort: tuple[tuple[TrainingExample, ...], tuple[TrainingExample, ...], frozenset[str]],
    tmp_path: Path,
) -> None:
    # Prepare
    card, _, _ = challenger
    # Execute
    again = _finetune(cohort, tmp_path)
    # Assert
    assert card.hyperparameters["precision"] == "float64 training, float32 weights"
    assert again.weights["sha256"] == card.weights["sha256"]
    assert again.operating_threshold == card.operating_threshold
    assert again.metrics == card.metrics and again.training_data == card.training_data


@pytest.mark.parametrize(
    ("sites", "message"),
    [
        (("riverside",), r"threshold sites riverside need validation studies of both classes \(found labels \[\]"),
        (("harbor",), r"sites harbor need .* \(found labels \[1\]; validation sites: benchmark, harbor\)"),
        ((" ",), r"threshold sites must be site names, got \[' '\]"),
    ],
)
def test_threshold_sites_without_validation_studies_of_both_classes_are_refused_before_any_read(
    sites: tuple[str, ...], message: str, tmp_path: Path
) -> None:
    # Prepare: positives at harbor, one negative at the benchmark, none at riverside
    train = [_missing(f"1.2.{i}", i % 2, tmp_path) for i in range(4)]
    val = [_missing(f"1.3.{i}", 1, tmp_path) for i in range(3)]
    val.append(replace(val[0], study_uid="1.4.0", site="benchmark", label=0))
    # Execute / Assert
    with pytest.raises(BadInputError, match=message):
        _refuse(tmp_path, train, val, config=replace(TINY, threshold_sites=sites))
    assert not (tmp_path / "out").exists()


def test_threshold_sites_choose_the_threshold_on_their_validation_studies(
    cohort: tuple[tuple[TrainingExample, ...], tuple[TrainingExample, ...], frozenset[str]], tmp_path: Path
) -> None:
    # Execute: the validation split is the benchmark's val studies and 7 eastgate studies
    card = _finetune(cohort, tmp_path, config=replace(TINY, threshold_sites=("eastgate",)))

    # Assert: the card says where the threshold was chosen, on how many studies
    method = card.metrics["validation"]["threshold_method"]  # type: ignore[index]
    assert str(method).endswith(" at eastgate (7 studies)"), method
    assert card.hyperparameters["threshold_sites"] == ["eastgate"]


def test_a_manifest_of_thousands_of_studies_keeps_the_card_small() -> None:
    # Prepare: 3,000 studies with full-length UIDs and hashes
    def example(i: int) -> TrainingExample:
        uid = f"1.2.826.0.1.3680043.8.498.{i:039d}"
        return TrainingExample(uid, Path(f"{i}.dcm"), f"{i:064x}", f"site-{i % 7}", i % 2, "adjudication")

    train = [example(i) for i in range(2_500)]
    val = [example(i) for i in range(2_500, 3_000)]
    # Execute: serialized as write_card does
    manifest = training_manifest(train, val, holdout_excluded=400)
    size = len(json.dumps({"training_data": manifest}, indent=2, sort_keys=True).encode("utf-8"))
    # Assert
    assert size < 1_000_000
    assert manifest["n_train"] == 2_500 and manifest["label_sources"] == {"adjudication": 3_000}


# --- the operating point a retrain keeps ----------------------------------------------------------


def test_the_sensitivity_keeping_threshold_is_the_highest_that_reaches_the_target() -> None:
    import numpy as np

    from core.models.evaluate import sensitivity_keeping_threshold

    y = np.array([1, 1, 1, 1, 0, 0])
    s = np.array([0.9, 0.7, 0.4, 0.2, 0.8, 0.1])
    found = {t: sensitivity_keeping_threshold(y, s, t) for t in (0.0, 0.25, 0.5, 0.51, 0.75, 1.0)}
    assert found == {0.0: 0.9, 0.25: 0.9, 0.5: 0.7, 0.51: 0.4, 0.75: 0.4, 1.0: 0.2}
    for target, threshold in found.items():
        assert np.mean(s[y == 1] >= threshold) >= target


@pytest.mark.parametrize(("target", "labels"), [(1.5, [1, 0]), (-0.1, [1, 0]), (0.5, [0, 0])])
def test_the_sensitivity_keeping_threshold_refuses_what_it_cannot_reach(target: float, labels: list[int]) -> None:
    import numpy as np

    from core.models.evaluate import sensitivity_keeping_threshold

    with pytest.raises(ValueError):
        sensitivity_keeping_threshold(np.array(labels), np.array([0.5, 0.4]), target)


def test_the_dominating_threshold_gains_on_both_rates_where_the_curve_allows() -> None:
    import numpy as np

    from core.models.finetune import dominating_threshold

    # Prepare: the reference finds half the positives and 90 % of the negatives
    y = np.array([1, 1, 1, 0, 0, 0])
    s = np.array([0.9, 0.6, 0.3, 0.5, 0.2, 0.1])
    # Execute
    threshold = dominating_threshold(y, s, 0.5, 0.9)
    # Assert: 0.6 gains on both (2/3 and 1); 0.3, the sensitivity-keeping choice, loses specificity
    assert threshold == 0.6
    assert np.mean(s[y == 1] >= threshold) > 0.5 and np.mean(s[y == 0] < threshold) > 0.9


def test_the_dominating_threshold_is_the_best_worse_gain_of_every_candidate() -> None:
    import numpy as np

    from core.models.finetune import dominating_threshold

    # Prepare: 200 noisy scores with ties, against a reference point below their ROC curve
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.normal(y * 1.5, 1.0), 1)
    sens_ref, spec_ref = 0.8, 0.6

    def worse_gain(t: float) -> float:
        return min(float(np.mean(s[y == 1] >= t)) - sens_ref, float(np.mean(s[y == 0] < t)) - spec_ref)

    # Execute
    threshold = dominating_threshold(y, s, sens_ref, spec_ref)
    # Assert: no score does better on the worse of the two gains, and both gains are positive here
    assert threshold in s
    assert worse_gain(threshold) == max(worse_gain(t) for t in np.unique(s))
    assert worse_gain(threshold) > 0


def test_the_dominating_threshold_needs_both_classes() -> None:
    import numpy as np

    from core.models.finetune import dominating_threshold

    with pytest.raises(ValueError, match="both classes"):
        dominating_threshold(np.array([1, 1]), np.array([0.2, 0.3]), 0.5, 0.5)
