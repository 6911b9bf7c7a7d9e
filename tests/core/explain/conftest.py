"""Fixtures for explanation tests: a tiny fixed-weight CNN, a small MONAI ResNet, cards and images."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from core.imaging.image import DicomImage, DicomMeta
from core.models.card import IntendedUse, ModelCard
from core.models.loading import LoadedModel
from core.models.networks import DEFAULT_NETWORK, build_network

torch.set_num_threads(2)

BASE_META = DicomMeta(
    sop_instance_uid="1.2.826.0.1.3680043.8.498.1",
    sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1",
    study_instance_uid="1.2.826.0.1.3680043.8.498.2",
    series_instance_uid="1.2.826.0.1.3680043.8.498.3",
    modality="DX",
    body_part_examined="CHEST",
    view_position="PA",
    image_type=("ORIGINAL", "PRIMARY"),
    manufacturer="ACME",
    manufacturer_model_name="X1",
    station_name="",
    institution_name="",
    software_versions="",
    protocol_name="",
    patient_id="P1",
    patient_age="050Y",
    patient_sex="F",
    kvp=120.0,
    accession_number="",
    study_date="20240101",
    rows=0,
    columns=0,
    pixel_spacing_mm=(0.2, 0.2),
    photometric_interpretation="MONOCHROME2",
    bits_stored=12,
    transfer_syntax_uid="1.2.840.10008.1.2.1",
    window_center=None,
    window_width=None,
)


class TinyCam(nn.Module):
    """conv (2 fixed 3x3 kernels, no bias) -> ReLU -> global mean -> linear [3, -1].

    Channel 0 copies the top-left pixel of each 3x3 patch, channel 1 its centre, so on a 4x4
    input A0[i, j] = x[i, j] and A1[i, j] = x[i + 1, j + 1] (i, j in {0, 1}). At the ReLU,
    dy/dA_k = w_k / 4 everywhere, so the Grad-CAM weights are (0.75, -0.25).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, kernel_size=3, bias=False)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 1)
        self.fail = False
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0, 0, 0] = 1.0
            self.conv.weight[1, 0, 1, 1] = 1.0
            self.fc.weight.copy_(torch.tensor([[3.0, -1.0]]))
            self.fc.bias.zero_()
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act(self.conv(x))
        if self.fail:
            raise RuntimeError("deliberate failure after the target layer")
        return self.fc(self.pool(a).flatten(1))


def make_card(*, target_layer: str = "layer4", size: int = 32, threshold: float = 0.5) -> ModelCard:
    return ModelCard(
        version="test-0.1",
        network=dict(DEFAULT_NETWORK),
        weights={"path": "none.pt", "sha256": "0" * 64},
        target_layer=target_layer,
        input={"shape": [1, size, size], "channels": 1, "spacing": f"resampled to {size} x {size}"},
        preprocessing={"size": size, "low_percentile": 0.5, "high_percentile": 99.5},
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
        intended_use=IntendedUse(("DX", "CR"), ("CHEST",), ("PA", "AP"), ("ORIGINAL",), "adult chest PA/AP"),
    )


def frozen_resnet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = build_network(DEFAULT_NETWORK).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def make_image(pixels: np.ndarray, index: int = 0, **meta: object) -> DicomImage:
    rows, cols = pixels.shape
    m = replace(BASE_META, sop_instance_uid=f"{BASE_META.sop_instance_uid}.{index}", rows=rows, columns=cols)
    return DicomImage(pixels=pixels.astype(np.float32), meta=replace(m, **meta))  # type: ignore[arg-type]


def mixed_images(n: int, *, seed: int = 0) -> list[DicomImage]:
    """Blobs at different places and sizes, a constant image and noise: maps that differ a lot."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        rows, cols = int(rng.integers(40, 90)), int(rng.integers(40, 90))
        yy, xx = np.mgrid[0:rows, 0:cols]
        cy, cx, r = rng.uniform(0, rows), rng.uniform(0, cols), rng.uniform(4, 20)
        px = 1000.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)) + rng.normal(0, 30, (rows, cols))
        if i == 1:
            px = np.full((rows, cols), 500.0)
        out.append(make_image(px, i))
    return out


@pytest.fixture
def card_factory() -> Callable[..., ModelCard]:
    return make_card


@pytest.fixture
def image_factory() -> Callable[..., DicomImage]:
    return make_image


@pytest.fixture
def mixed_factory() -> Callable[..., list[DicomImage]]:
    return mixed_images


@pytest.fixture
def tiny() -> TinyCam:
    return TinyCam()


@pytest.fixture
def resnet() -> nn.Module:
    return frozen_resnet()


@pytest.fixture
def resnet_model(resnet: nn.Module) -> LoadedModel:
    return LoadedModel(card=make_card(), network=resnet, device=torch.device("cpu"))
