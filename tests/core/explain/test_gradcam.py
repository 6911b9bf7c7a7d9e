from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.modules import module as torch_module

from core.errors import BadInputError, OutsideIntendedUseError
from core.explain.gradcam import cell_centred_upsample, explain_images, grad_cam_batch, scored_maps, stored_maps
from core.explain.result import ExplainMethod
from core.imaging.image import DicomImage
from core.models.inference import input_sha256, predict_tensor
from core.models.loading import LoadedModel
from core.models.preprocess import PreprocessParams, preprocess

# Worked out by hand in TinyCam's docstring: on x = arange(16).reshape(4, 4) the layer map is
# relu(0.75 * A0 - 0.25 * A1) = [[0, 0], [0.75, 1.25]]. Cell-centred upsampling at stride 2 reads
# the layer at p / 2 for input pixel p: rows (and columns) 0, 0.5, 1, 1 (the last clamped to the
# border), so the rows are 0, half of row 1, row 1, row 1, and row 1 = [.75, 1, 1.25, 1.25];
# then divided by the max 1.25.
EXPECTED_ARANGE = np.array(
    [
        [0.0, 0.0, 0.0, 0.0],
        [0.3, 0.4, 0.5, 0.5],
        [0.6, 0.8, 1.0, 1.0],
        [0.6, 0.8, 1.0, 1.0],
    ],
    dtype=np.float32,
)


def _arange() -> torch.Tensor:
    return torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)


def _all_negative() -> torch.Tensor:
    # Only x[2, 2] = 4: A0 = 0 and A1 = [0, 0, 0, 4], so the map is relu(-0.25 * A1) = 0 everywhere.
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 2, 2] = 4.0
    return x


def _cell_centred_reference(cells: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Input pixel p reads the layer at p * h / H, bilinearly, clamped to the last cell."""
    h, w = cells.shape

    def weights(count_in: int, count_out: int) -> np.ndarray:
        u = np.arange(count_out) * (count_in / count_out)
        lo = np.minimum(np.floor(u).astype(int), count_in - 1)
        hi = np.minimum(lo + 1, count_in - 1)
        frac = np.where(lo == count_in - 1, 0.0, u - lo)
        m = np.zeros((count_out, count_in))
        m[np.arange(count_out), lo] += 1.0 - frac
        m[np.arange(count_out), hi] += frac
        return m

    return weights(h, rows) @ cells @ weights(w, cols).T


@pytest.mark.parametrize(("cell_shape", "size"), [((4, 3), (16, 12)), ((56, 56), (224, 224)), ((5, 3), (12, 7))])
def test_cell_centred_upsample_reads_the_layer_at_p_over_s(cell_shape: tuple[int, int], size: tuple[int, int]) -> None:
    # Integer strides take the interpolate-and-pad path, others grid_sample; both must agree with
    # the definition.
    cells = torch.rand(2, 1, *cell_shape, generator=torch.Generator().manual_seed(0))
    got = cell_centred_upsample(cells, size).numpy()
    for i in range(2):
        np.testing.assert_allclose(got[i, 0], _cell_centred_reference(cells[i, 0].double().numpy(), *size), atol=1e-5)


def _hook_snapshot(net: nn.Module) -> dict[str, tuple[object, ...]]:
    snap: dict[str, tuple[object, ...]] = {
        name: (
            tuple(m._forward_hooks.items()),
            tuple(m._forward_pre_hooks.items()),
            tuple(m._backward_hooks.items()),
            tuple(m._backward_pre_hooks.items()),
        )
        for name, m in net.named_modules()
    }
    snap["<global>"] = (
        tuple(torch_module._global_forward_hooks.items()),
        tuple(torch_module._global_forward_pre_hooks.items()),
        tuple(torch_module._global_backward_hooks.items()),
    )
    return snap


def test_tiny_net_matches_hand_computed_map(tiny: nn.Module) -> None:
    # Prepare: the fixed-weight net and the arange input of the worked example.
    x = _arange()

    # Execute
    maps = grad_cam_batch(tiny, tiny.act, x)

    # Assert
    assert maps.shape == (1, 4, 4) and maps.dtype == np.float32
    np.testing.assert_allclose(maps[0], EXPECTED_ARANGE, atol=1e-6)


def test_map_with_no_positive_evidence_is_zeros_not_nan(tiny: nn.Module) -> None:
    # Prepare: an input whose Grad-CAM is negative everywhere before the ReLU.
    x = _all_negative()

    # Execute
    maps = grad_cam_batch(tiny, tiny.act, x)

    # Assert
    assert np.isfinite(maps).all()
    assert not maps.any()


def test_batched_equals_looped_on_tiny_mixed_batch(tiny: nn.Module) -> None:
    # Prepare: positive, all-negative and constant inputs in one batch.
    batch = torch.cat([_arange(), _all_negative(), torch.ones(1, 1, 4, 4), _arange().flip(-1)])

    # Execute
    batched = grad_cam_batch(tiny, tiny.act, batch)
    looped = np.concatenate([grad_cam_batch(tiny, tiny.act, batch[i : i + 1]) for i in range(len(batch))])

    # Assert
    np.testing.assert_allclose(batched, looped, atol=1e-5)
    np.testing.assert_allclose(batched[0], EXPECTED_ARANGE, atol=1e-6)
    assert not batched[1].any() and not batched[2].any()


def test_batched_equals_looped_on_resnet_mixed_batch(resnet: nn.Module) -> None:
    # Prepare: eight different images (one constant) through preprocessing.
    torch.manual_seed(1)
    batch = torch.rand(8, 1, 32, 32)
    batch[1] = 0.5
    batch[2] = 0.0
    batch[3, :, 8:16, 8:16] += 3.0

    # Execute
    batched = grad_cam_batch(resnet, resnet.layer4, batch)
    looped = np.concatenate([grad_cam_batch(resnet, resnet.layer4, batch[i : i + 1]) for i in range(8)])

    # Assert
    np.testing.assert_allclose(batched, looped, atol=1e-5)
    assert batched.min() >= 0.0 and batched.max() <= 1.0


def test_one_images_logit_has_zero_gradient_wrt_other_images_activation(resnet: nn.Module) -> None:
    # Prepare: replace layer4's output by a leaf we can differentiate against (test-only hook).
    torch.manual_seed(2)
    x = torch.rand(4, 1, 32, 32)
    leaf: dict[str, torch.Tensor] = {}

    def capture(_m: nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
        leaf["a"] = out.detach().requires_grad_(True)
        return leaf["a"]

    handle = resnet.layer4.register_forward_hook(capture)
    try:
        y = resnet(x)
    finally:
        handle.remove()

    # Execute: gradient of image 0's logit alone.
    (grad,) = torch.autograd.grad(y[0, 0], leaf["a"])

    # Assert: so captum's summed target gives each image exactly its own gradient.
    assert grad[0].abs().sum() > 0
    assert torch.count_nonzero(grad[1:]) == 0


def test_backward_stops_at_target_layer_and_populates_no_grads(resnet: nn.Module) -> None:
    # Prepare: record, per module, whether its output is part of an autograd graph.
    requires: dict[str, bool] = {}
    handles = [
        m.register_forward_hook(lambda _m, _i, out, n=name: requires.__setitem__(n, bool(out.requires_grad)))
        for name, m in resnet.named_modules()
        if name
    ]
    x = torch.rand(2, 1, 32, 32)

    # Execute
    try:
        grad_cam_batch(resnet, resnet.layer4, x)
    finally:
        for h in handles:
            h.remove()

    # Assert: only what follows layer4 is in the graph, so conv1's weight gradient cannot be
    # computed; and no parameter gets a .grad.
    in_graph = {name for name, flag in requires.items() if flag}
    assert in_graph == {"avgpool", "fc"}
    assert requires["conv1"] is False
    assert all(p.grad is None for p in resnet.parameters())


def test_network_with_trainable_parameters_is_refused(tiny: nn.Module) -> None:
    # Prepare
    tiny.conv.weight.requires_grad_(True)

    # Execute / Assert
    with pytest.raises(BadInputError, match="conv.weight"):
        grad_cam_batch(tiny, tiny.act, _arange())


def test_network_in_training_mode_is_refused(resnet: nn.Module) -> None:
    # Prepare: one BatchNorm left in training mode would mix the images of a batch.
    resnet.layer2.train()

    # Execute / Assert
    with pytest.raises(BadInputError, match="eval mode.*layer2"):
        grad_cam_batch(resnet, resnet.layer4, torch.rand(2, 1, 32, 32))


def test_called_inside_inference_mode_is_refused(tiny: nn.Module) -> None:
    # Prepare / Execute / Assert
    with torch.inference_mode(), pytest.raises(BadInputError, match="inference_mode"):
        grad_cam_batch(tiny, tiny.act, _arange())


def test_inference_tensor_input_is_accepted(tiny: nn.Module) -> None:
    # Prepare: a batch made under inference_mode, as a caller that just scored it would have.
    with torch.inference_mode():
        x = _arange().clone()

    # Execute
    maps = grad_cam_batch(tiny, tiny.act, x)

    # Assert
    np.testing.assert_allclose(maps[0], EXPECTED_ARANGE, atol=1e-6)


def test_hooks_unchanged_after_call(resnet: nn.Module) -> None:
    # Prepare
    before = _hook_snapshot(resnet)

    # Execute
    grad_cam_batch(resnet, resnet.layer4, torch.rand(2, 1, 32, 32))

    # Assert
    assert _hook_snapshot(resnet) == before


def test_hooks_unchanged_when_the_call_raises(tiny: nn.Module) -> None:
    # Prepare: the forward fails after the hooked layer has run.
    before = _hook_snapshot(tiny)
    tiny.fail = True

    # Execute
    with pytest.raises(RuntimeError, match="deliberate"):
        grad_cam_batch(tiny, tiny.act, _arange())

    # Assert
    assert _hook_snapshot(tiny) == before


def test_state_dict_bit_equal_after_twenty_calls(resnet_model: LoadedModel, mixed_factory: Callable) -> None:
    # Prepare
    before = {k: v.clone() for k, v in resnet_model.network.state_dict().items()}
    images = mixed_factory(2)
    lock = threading.Lock()

    # Execute
    for _ in range(20):
        explain_images(resnet_model, images, lock=lock)

    # Assert
    after = resnet_model.network.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert resnet_model.network.training is False
    assert all(not p.requires_grad and p.grad is None for p in resnet_model.network.parameters())


def test_explanations_on_image_grid_in_unit_range(resnet_model: LoadedModel, mixed_factory: Callable) -> None:
    # Prepare: images of different odd shapes, one constant.
    images: list[DicomImage] = mixed_factory(5)

    # Execute
    out = explain_images(resnet_model, images, batch_size=2)

    # Assert
    assert [e.heatmap.shape for e in out] == [im.pixels.shape for im in images]
    for e, im in zip(out, images, strict=True):
        assert e.method is ExplainMethod.GRADCAM and e.target == 0 and e.model_version == "test-0.1"
        assert e.heatmap.dtype == np.float32 and not e.heatmap.flags.writeable
        assert e.heatmap.min() >= 0.0 and e.heatmap.max() <= 1.0
        assert e.heatmap.max() == 1.0 or e.params["flat_map"] is True
        x = preprocess(im.pixels, PreprocessParams(size=32))
        assert e.params["input_sha256"] == input_sha256(x)


def test_explain_images_equals_grad_cam_batch_resampled(resnet_model: LoadedModel, mixed_factory: Callable) -> None:
    # Prepare: one image whose grid equals the model input, so no resampling changes the map.
    image = mixed_factory(1)[0]
    square = type(image)(pixels=np.resize(image.pixels, (32, 32)).astype(np.float32), meta=image.meta)
    x = torch.from_numpy(preprocess(square.pixels, PreprocessParams(size=32)))[None]

    # Execute
    (e,) = explain_images(resnet_model, [square])
    direct = grad_cam_batch(resnet_model.network, resnet_model.network.layer4, x)[0]

    # Assert
    # explain_images rebuilds the map from the float16 layer grid it stores: float16's rounding on [0, 1].
    np.testing.assert_allclose(e.heatmap, direct, atol=2**-11)


def test_outside_intended_use_is_refused_before_any_forward(resnet_model: LoadedModel, image_factory: Callable) -> None:
    # Prepare: count forward calls with a test-only pre-hook.
    calls = []
    handle = resnet_model.network.register_forward_pre_hook(lambda _m, _i: calls.append(1))
    images = [
        image_factory(np.random.default_rng(0).random((40, 40)), 0),
        image_factory(np.random.default_rng(1).random((40, 40)), 1, modality="MR"),
    ]

    # Execute
    try:
        with pytest.raises(OutsideIntendedUseError, match="Modality 'MR'"):
            explain_images(resnet_model, images)
    finally:
        handle.remove()

    # Assert
    assert calls == []


def test_forward_runs_while_the_lock_is_held(resnet_model: LoadedModel, mixed_factory: Callable) -> None:
    # Prepare: a test-only pre-hook records whether the lock is held at forward time.
    lock = threading.Lock()
    seen: list[bool] = []
    handle = resnet_model.network.register_forward_pre_hook(lambda _m, _i: seen.append(lock.locked()))

    # Execute
    try:
        explain_images(resnet_model, mixed_factory(3), lock=lock, batch_size=2)
    finally:
        handle.remove()

    # Assert: two batches, each forward under the lock; released afterwards.
    assert seen == [True, True]
    assert not lock.locked()


def test_call_waits_for_a_lock_held_elsewhere(resnet_model: LoadedModel, mixed_factory: Callable) -> None:
    # Prepare: hold the lock here; the worker's forward would set `started`.
    lock = threading.Lock()
    started = threading.Event()
    handle = resnet_model.network.register_forward_pre_hook(lambda _m, _i: started.set())
    results: list[object] = []
    images = mixed_factory(1)
    worker = threading.Thread(target=lambda: results.extend(explain_images(resnet_model, images, lock=lock)))

    # Execute
    try:
        with lock:
            worker.start()
            # A correct implementation cannot reach the forward while we hold the lock, so this
            # wait always times out; it can only fail if the lock is bypassed.
            reached_forward_while_held = started.wait(timeout=0.3)
        worker.join(timeout=60)
    finally:
        handle.remove()

    # Assert
    assert not reached_forward_while_held
    assert started.is_set() and not worker.is_alive() and len(results) == 1


def test_bad_batch_size_is_refused(resnet_model: LoadedModel, mixed_factory: Callable) -> None:
    # Prepare / Execute / Assert
    with pytest.raises(BadInputError, match="batch_size"):
        explain_images(resnet_model, mixed_factory(1), batch_size=0)


def test_scored_maps_score_as_predict_tensor_and_map_as_stored_maps(
    resnet_model: LoadedModel, mixed_factory: Callable
) -> None:
    # Prepare: five inputs over three chunks of two; one constant image (a flat map)
    images: list[DicomImage] = mixed_factory(5)
    inputs = [preprocess(im.pixels, PreprocessParams(size=32)) for im in images]
    shapes = [im.pixels.shape for im in images]
    calls: list[int] = []
    handle = resnet_model.network.register_forward_pre_hook(lambda _m, _i: calls.append(1))

    # Execute
    try:
        both = scored_maps(resnet_model, inputs, shapes, batch_size=2)
    finally:
        handle.remove()
    scores = predict_tensor(resnet_model, torch.from_numpy(np.stack(inputs)))
    maps = stored_maps(resnet_model, inputs, shapes, batch_size=2)

    # Assert: one forward per chunk made both; scores and maps are the two-pass ones
    assert both is not None and len(calls) == 3
    made_scores, made_maps = both
    np.testing.assert_allclose(made_scores.scores, scores.scores, rtol=0, atol=1e-7)
    assert made_scores.device == "cpu" and made_scores.amp is False and made_scores.latency_ms > 0
    assert not made_scores.scores.flags.writeable
    for made, two_pass in zip(made_maps, maps, strict=True):
        np.testing.assert_array_equal(made.cells, two_pass.cells)
        assert made.params == two_pass.params


def test_scored_maps_refuse_a_mismatch_or_nothing(resnet_model: LoadedModel, mixed_factory: Callable) -> None:
    x = preprocess(mixed_factory(1)[0].pixels, PreprocessParams(size=32))
    with pytest.raises(BadInputError, match="1 inputs and 2 image shapes"):
        scored_maps(resnet_model, [x], [(40, 40), (40, 40)])
    with pytest.raises(BadInputError, match="0 inputs"):
        scored_maps(resnet_model, [], [])
    with pytest.raises(BadInputError, match="batch_size must be >= 1, got 0"):
        scored_maps(resnet_model, [x], [(40, 40)], batch_size=0)
