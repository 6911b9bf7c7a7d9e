"""``vigil init``: one idempotent call that leaves a working installation behind.

Create or migrate the database, register the bundled demonstration model, register the
sample cohort's sites, ingest its DICOM files through the ordinary gate and predict them, load
the benchmark site's ground truth (the retrospective benchmark's reference labels), and ingest
the cohort's EMR outcomes (``outcomes/``, FHIR R4), from which the deployment sites' labels come,
as they would at a real site, which has no ground truth. Running it again changes nothing but
appending its audit entry: sites and the model are found, files are reported as duplicates,
studies already predicted are skipped, labels and EMR resources already stored are not stored again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from core.audit.events import AuditAction
from core.config import Settings
from core.errors import PathNotFoundError
from core.sampledata import MANIFEST_NAME, read_manifest
from core.sampledata.fhir_outcomes import OUTCOMES_DIR
from core.services import audit_checkpoints, auth, fhir_ingest, ingestion, oidc, outcomes, prediction
from core.services import models as model_service
from core.services import sites as site_service
from core.services.deidentify import ingest_deid
from core.services.store import open_store
from core.store import audit_log
from core.store.engine import SessionFactory, head_revision
from core.types import JSONObject

__all__ = ["InitReport", "initialize"]


@dataclass(frozen=True, slots=True)
class InitReport:
    """What ``vigil init`` found and did."""

    database_url: str
    schema_revision: str
    model_version: str
    model_registered: bool
    sites_added: tuple[str, ...]
    users_added: tuple[str, ...]
    ingested: int
    duplicates: int
    rejected: int
    scored: int
    skipped: int
    labels_loaded: int
    emr_files: int = 0
    emr_evidence: int = 0
    emr_linked: int = 0
    emr_outcomes: int = 0
    maps: int = 0

    def to_dict(self) -> JSONObject:
        """The ``--json`` object."""
        return {
            "database_url": self.database_url,
            "schema_revision": self.schema_revision,
            "model_version": self.model_version,
            "model_registered": self.model_registered,
            "sites_added": list(self.sites_added),
            "users_added": list(self.users_added),
            "ingested": self.ingested,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "scored": self.scored,
            "skipped": self.skipped,
            "maps": self.maps,
            "labels_loaded": self.labels_loaded,
            "emr_files": self.emr_files,
            "emr_evidence": self.emr_evidence,
            "emr_linked": self.emr_linked,
            "emr_outcomes": self.emr_outcomes,
        }

    def summary(self) -> str:
        """One paragraph for people."""
        return (
            f"database ready at schema {self.schema_revision}; serving model {self.model_version}"
            f"{' (registered now)' if self.model_registered else ''}; sites added: "
            f"{', '.join(self.sites_added) or 'none'}; sample cohort: {self.ingested} ingested, "
            f"{self.duplicates} already present, {self.rejected} rejected; predictions: {self.scored} scored, "
            f"{self.skipped} stored but not scored, {self.maps} Grad-CAM maps stored; "
            f"{self.labels_loaded} synthetic ground-truth labels loaded "
            f"(benchmark site); EMR outcomes: {self.emr_files} files, {self.emr_evidence} new evidence, "
            f"{self.emr_linked} linked, {self.emr_outcomes} outcome rows"
        )


def initialize(
    settings: Settings,
    *,
    actor: str,
    now: Callable[[], datetime],
    progress: Callable[[int], None] | None = None,
) -> InitReport:
    """Bring the configured installation to a working state (idempotent).

    Raises
    ------
    ConfigError
        ``[vigil.oidc]`` does not parse: found here, before anything is written, rather than at the
        sign-in screen, which shuts both ways in until it is fixed.
    DatabaseURLError
        The configured database cannot be used.
    PathNotFoundError
        The sample cohort's manifest is missing.
    """
    oidc.configured_policy(settings)
    manifest_path = settings.sample_data_dir / MANIFEST_NAME
    if not manifest_path.is_file():
        raise PathNotFoundError(manifest_path)
    sf = open_store(settings)
    models_dir = settings.home / "models"
    users_added = auth.seed_demo_users(sf, now=now)
    registered = model_service.register_bundled(sf, models_dir=models_dir, actor=actor, now=now)
    rows = read_manifest(manifest_path)
    cohort_sites = {r.site: r.is_benchmark for r in rows}
    added = _ensure_sites(sf, cohort_sites, actor=actor, now=now)
    ingested = duplicates = rejected = 0
    for site in cohort_sites:
        files = [settings.sample_data_dir / Path(r.path) for r in rows if r.site == site]
        rep = ingestion.ingest_paths(
            sf,
            files,
            site=site,
            dicom_dir=settings.home / "dicom",
            actor=actor,
            now=now,
            progress=progress,
            max_file_bytes=settings.max_file_bytes,
            deid=ingest_deid(settings, site),
        )
        ingested, duplicates, rejected = (
            ingested + len(rep.ingested),
            duplicates + len(rep.duplicates),
            rejected + len(rep.rejected),
        )
    model = model_service.load_serving(sf, models_dir=models_dir)
    # Each score's Grad-CAM map is stored with it: the sample cases open with their maps made.
    pred = prediction.predict_pending(
        sf,
        model,
        site=None,
        batch_size=settings.batch_size,
        actor=actor,
        now=now,
        progress=progress,
        maps_dir=settings.artifacts_dir,
    )
    benchmark = {name for name, is_benchmark in cohort_sites.items() if is_benchmark}
    labels = outcomes.load_ground_truth(sf, manifest_path, actor=actor, now=now, sites=benchmark)
    emr = _ingest_outcomes(sf, settings, actor=actor, now=now)
    report = InitReport(
        database_url=_shown_url(settings.database_url),
        schema_revision=head_revision(),
        model_version=model.card.version,
        model_registered=registered is not None,
        sites_added=tuple(added),
        users_added=tuple(users_added),
        ingested=ingested,
        duplicates=duplicates,
        rejected=rejected,
        scored=pred.scored,
        skipped=pred.skipped,
        labels_loaded=labels.loaded,
        emr_files=len(emr),
        emr_evidence=sum(r.evidence for r in emr),
        emr_linked=sum(sum(r.linked.values()) for r in emr),
        emr_outcomes=sum(r.outcomes for r in emr),
        maps=pred.maps,
    )
    with sf.begin() as session:
        audit_log.append(
            session,
            actor=actor,
            action=AuditAction.DATABASE_INITIALIZED,
            subject=report.schema_revision,
            payload=report.to_dict(),
            recorded_at=now().isoformat(),
        )
    # Sign what init wrote, so a truncated or re-hashed ledger is caught from the first run on.
    audit_checkpoints.make_checkpoint(sf, audit_checkpoints.CheckpointPlaces.from_settings(settings), now=now)
    return report


def _ingest_outcomes(
    sf: SessionFactory, settings: Settings, *, actor: str, now: Callable[[], datetime]
) -> list[fhir_ingest.IngestReport]:
    """Ingest every FHIR file of the sample cohort's ``outcomes/`` folder (none when it has none)."""
    folder = settings.sample_data_dir / OUTCOMES_DIR
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".json", ".ndjson")) if folder.is_dir() else []
    if not files:
        return []
    secret = fhir_ingest.site_secret(settings)
    return [
        fhir_ingest.ingest_payload(
            sf,
            f.read_bytes(),
            name=f.relative_to(settings.sample_data_dir).as_posix(),
            secret=secret,
            actor=actor,
            now=now,
        )
        for f in files
    ]


def _ensure_sites(
    sf: SessionFactory, cohort_sites: dict[str, bool], *, actor: str, now: Callable[[], datetime]
) -> list[str]:
    """Register the cohort's sites that are not registered yet; return the ones added."""
    existing = {s.name for s in site_service.list_sites(sf)}
    added = []
    for name, is_benchmark in cohort_sites.items():
        if name not in existing:
            site_service.add_site(sf, name, benchmark=is_benchmark, actor=actor, now=now)
            added.append(name)
    return added


def _shown_url(url: str) -> str:
    """The URL without any password, for output and the audit payload."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
