from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from pydicom import examples
from torch import nn

from core.errors import BadInputError
from core.imaging.dicom import read_dicom
from core.imaging.image import DicomImage
from core.models import inference
from core.models.card import IntendedUse, ModelCard
from core.models.inference import (
    BatchScores,
    input_sha256,
    pick_device,
    pin_threads,
    predict_images,
    predict_tensor,
)
from core.models.intended_use import _example_meta
from core.models.loading import LoadedModel
from core.models.networks import DEFAULT_NETWORK, build_network
from core.models.preprocess import PreprocessParams, preprocess, preprocess_batch

torch.set_num_threads(2)
SIZE = 32


def _card(threshold: float = 0.5) -> ModelCard:
    return ModelCard(
        version="test-0.1",
        network=dict(DEFAULT_NETWORK),
        weights={"path": "none.pt", "sha256": "0" * 64},
        target_layer="layer4",
        input={"shape": [1, SIZE, SIZE], "channels": 1, "spacing": "resampled"},
        preprocessing=PreprocessParams(size=SIZE).to_dict(),
        data_schema={},
        labels=["no nodule", "nodule"],
        operating_threshold=threshold,
        hyperparameters={},
        training_data={},
        code_version="test",
        environment={},
        metrics={},
        created_at="2024-01-01T00:00:00Z",
        parent_version=None,
        intended_use=IntendedUse(("DX", "CR"), ("CHEST",), ("PA", "AP"), ("ORIGINAL",), "adult chest"),
    )


def _model(threshold: float = 0.5, device: str = "cpu") -> LoadedModel:
    torch.manual_seed(0)
    net = build_network(DEFAULT_NETWORK).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return LoadedModel(card=_card(threshold), network=net, device=torch.device(device))


def _images(n: int, seed: int = 0) -> list[DicomImage]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        rows, cols = int(rng.integers(40, 80)), int(rng.integers(40, 80))
        px = rng.normal(1000.0, 200.0, (rows, cols)) * rng.uniform(0.2, 3.0)
        px[: rows // 3] += rng.uniform(0, 3000)
        meta = replace(_example_meta(), sop_instance_uid=f"1.2.3.{i}", rows=rows, columns=cols)
        out.append(DicomImage(pixels=px.astype(np.float32), meta=meta))
    return out


class _ForwardCounter:
    """Test-only forward pre-hook: counts calls and the images each one carried."""

    def __init__(self, net: nn.Module) -> None:
        self.batch_sizes: list[int] = []
        self._handle = net.register_forward_pre_hook(lambda _m, args: self.batch_sizes.append(int(args[0].shape[0])))

    def remove(self) -> None:
        self._handle.remove()


def test_scores_equal_sigmoid_of_raw_forward() -> None:
    # Prepare
    model = _model()
    batch = preprocess_batch([im.pixels for im in _images(6)], PreprocessParams(size=SIZE))

    # Execute
    out = predict_tensor(model, batch)
    with torch.inference_mode():
        raw = torch.sigmoid(model.network(batch))[:, 0].double().numpy()

    # Assert
    assert isinstance(out, BatchScores)
    assert out.scores.dtype == np.float64 and out.scores.shape == (6,)
    np.testing.assert_allclose(out.scores, raw, rtol=0, atol=1e-6)
    assert out.device == "cpu" and out.amp is False and out.fallback is None
    assert out.latency_ms > 0 and out.peak_memory_bytes >= 0


def test_predict_images_matches_predict_tensor_and_keeps_order() -> None:
    # Prepare
    model = _model()
    images = _images(7)
    batch = preprocess_batch([im.pixels for im in images], PreprocessParams(size=SIZE))

    # Execute
    preds = predict_images(model, images, batch_size=3)
    expected = predict_tensor(model, batch).scores

    # Assert
    assert [p.sop_instance_uid for p in preds] == [im.meta.sop_instance_uid for im in images]
    np.testing.assert_allclose([p.score for p in preds], expected, rtol=0, atol=1e-6)


def test_batched_equals_per_image() -> None:
    # Prepare
    model = _model()
    images = _images(5, seed=3)

    # Execute
    batched = predict_images(model, images, batch_size=16)
    single = predict_images(model, images, batch_size=1)

    # Assert
    np.testing.assert_allclose([p.score for p in batched], [p.score for p in single], rtol=0, atol=1e-6)
    assert [p.input_sha256 for p in batched] == [p.input_sha256 for p in single]


def test_labels_follow_the_operating_threshold() -> None:
    # Prepare: put the threshold at the median score so both labels occur.
    images = _images(6, seed=4)
    scores = [p.score for p in predict_images(_model(), images)]
    threshold = float(np.median(np.asarray(scores, dtype=float)))
    model = _model(threshold)

    # Execute
    preds = predict_images(model, images)

    # Assert
    assert {p.label for p in preds} == {True, False}
    assert all(p.label == (p.score is not None and p.score >= threshold) for p in preds)


def test_latency_is_the_batch_share_and_metadata_is_filled() -> None:
    # Prepare
    model = _model()

    # Execute
    preds = predict_images(model, _images(4), batch_size=2)

    # Assert: images of one batch share one latency share and one peak.
    assert preds[0].latency_ms == preds[1].latency_ms and preds[2].latency_ms == preds[3].latency_ms
    assert all(p.device == "cpu" and p.model_version == "test-0.1" and p.fallback is None for p in preds)
    assert all(p.peak_memory_bytes is not None and p.peak_memory_bytes >= 0 for p in preds)


def test_mr_is_refused_and_never_sent_to_the_model() -> None:
    # Prepare: a real MR file between two chest radiographs; count forward calls.
    model = _model()
    mr = read_dicom(examples.get_path("mr"))
    dx = _images(2)
    counter = _ForwardCounter(model.network)

    # Execute
    try:
        preds = predict_images(model, [dx[0], mr, dx[1]])
    finally:
        counter.remove()

    # Assert
    assert counter.batch_sizes == [2]
    refused = preds[1]
    assert refused.sop_instance_uid == mr.meta.sop_instance_uid
    assert refused.score is None and refused.label is None and refused.input_sha256 is None
    assert refused.fallback == "outside intended use: Modality 'MR' is not one of DX, CR"
    assert preds[0].score is not None and preds[2].score is not None


def test_all_refused_means_no_forward() -> None:
    # Prepare
    model = _model()
    images = [DicomImage(im.pixels, replace(im.meta, view_position="")) for im in _images(3)]
    counter = _ForwardCounter(model.network)

    # Execute
    try:
        preds = predict_images(model, images)
    finally:
        counter.remove()

    # Assert
    assert counter.batch_sizes == []
    assert [p.fallback for p in preds] == ["outside intended use: ViewPosition missing"] * 3


def test_input_sha256_is_deterministic_and_is_the_preprocessed_bytes() -> None:
    # Prepare
    model = _model()
    images = _images(3, seed=5)

    # Execute
    first = [p.input_sha256 for p in predict_images(model, images)]
    second = [p.input_sha256 for p in predict_images(model, images, batch_size=1)]

    # Assert
    assert first == second
    assert len(set(first)) == 3
    assert first[0] == input_sha256(preprocess(images[0].pixels, PreprocessParams(size=SIZE)))


def test_progress_counts_every_image_once() -> None:
    # Prepare
    model = _model()
    images = _images(5)
    images[2] = DicomImage(images[2].pixels, replace(images[2].meta, modality="CT"))
    ticks: list[int] = []

    # Execute
    predict_images(model, images, batch_size=2, progress=ticks.append)

    # Assert
    assert sum(ticks) == 5


def test_cuda_failure_falls_back_to_a_cpu_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: a model that claims CUDA, whose CUDA forward runs out of memory.
    model = _model(device="cuda")
    real_forward = inference._forward

    def failing_on_cuda(
        net: nn.Module, batch: torch.Tensor, device: torch.device, *, dtype: torch.dtype | None
    ) -> BatchScores:
        if device.type == "cuda":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_forward(net, batch, device, dtype=dtype)

    monkeypatch.setattr(inference, "_forward", failing_on_cuda)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    batch = preprocess_batch([im.pixels for im in _images(3)], PreprocessParams(size=SIZE))

    # Execute
    out = predict_tensor(model, batch)

    # Assert: scored on a separate CPU network equal to the original; the original untouched.
    with torch.inference_mode():
        raw = torch.sigmoid(model.network(batch))[:, 0].double().numpy()
    np.testing.assert_allclose(out.scores, raw, rtol=0, atol=1e-6)
    assert out.device == "cpu" and out.fallback is not None
    assert "OutOfMemoryError" in out.fallback and out.fallback.endswith("scored on CPU")
    assert inference._cpu_copy(model) is not model.network


def test_non_cuda_errors_are_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: a CUDA model whose forward fails for a reason that is not CUDA's.
    model = _model(device="cuda")

    def broken(*_a: object, **_k: object) -> BatchScores:
        raise RuntimeError("shape mismatch in layer1")

    monkeypatch.setattr(inference, "_forward", broken)

    # Execute / Assert
    with pytest.raises(RuntimeError, match="shape mismatch"):
        predict_tensor(model, torch.zeros(1, 1, SIZE, SIZE))


def test_bad_batches_are_refused() -> None:
    # Prepare
    model = _model()

    # Execute / Assert
    with pytest.raises(BadInputError, match="shape"):
        predict_tensor(model, torch.zeros(1, SIZE, SIZE))
    with pytest.raises(BadInputError, match="shape"):
        predict_tensor(model, torch.zeros(0, 1, SIZE, SIZE))
    with pytest.raises(BadInputError, match="batch_size"):
        predict_images(model, _images(1), batch_size=0)


def test_network_with_several_outputs_is_refused() -> None:
    # Prepare: a card whose network returns two logits.
    model = _model()
    two = LoadedModel(
        card=model.card, network=nn.Sequential(nn.Flatten(), nn.LazyLinear(2)).eval(), device=model.device
    )

    # Execute / Assert
    with pytest.raises(BadInputError, match="one logit per image"):
        predict_tensor(two, torch.zeros(2, 1, SIZE, SIZE))


def test_pin_threads_is_idempotent() -> None:
    # Prepare: parallel work has run, so torch would raise on a second inter-op change.
    _model().network(torch.zeros(2, 1, SIZE, SIZE))

    # Execute: a repeated call must warn at most, never raise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = pin_threads(2)
        second = pin_threads(2)

    # Assert
    assert first == second and first[0] == 2 and torch.get_num_threads() == 2


def test_pin_threads_refuses_zero() -> None:
    # Prepare / Execute / Assert
    with pytest.raises(BadInputError, match="thread count"):
        pin_threads(0)


def test_pick_device(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare / Execute / Assert
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device().type == "cuda"
