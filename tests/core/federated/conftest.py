"""A small generated cohort, per-site manifests and signing keys, and Flower messages built as the SuperLink would."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from flwr.app import Message, Metadata, RecordDict

from core.federated.signing import generate_site_key
from core.federated.task import SiteManifest, write_site_manifest
from core.models.evaluate import read_labelled_studies
from core.models.finetune import TrainingExample
from core.sampledata import generate_cohort

SITES = ("northfield", "riverside")


@pytest.fixture(scope="session")
def fl_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fl-cohort")
    generate_cohort(out, seed=7, studies_per_site=4)
    return out


def site_examples(cohort: Path, site: str) -> tuple[TrainingExample, ...]:
    return tuple(
        TrainingExample(s.path.stem, s.path, s.sha256, s.site, s.label, "ground_truth")
        for s in read_labelled_studies(cohort)
        if s.site == site
    )


@pytest.fixture(scope="session")
def site_files(fl_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, bytes]]:
    """Per site: its manifest, its private key and its public key (PEM)."""
    out = tmp_path_factory.mktemp("fl-sites")
    files = {}
    for site in SITES:
        manifest = out / f"{site}.json"
        write_site_manifest(SiteManifest(site, site_examples(fl_cohort, site), frozenset()), manifest)
        key = out / f"{site}.pem"
        files[site] = (manifest, key, generate_site_key(key))
    return files


def instruction(content: RecordDict, *, message_type: str, dst_node_id: int = 7) -> Message:
    """A message as the SuperLink delivers it to a node (metadata set; no running Flower needed)."""
    metadata = Metadata(
        run_id=1,
        message_id="m-1",
        src_node_id=1,
        dst_node_id=dst_node_id,
        reply_to_message_id="",
        group_id="1",
        created_at=time.time(),
        ttl=3600.0,
        message_type=message_type,
    )
    return Message(content=content, metadata=metadata)
