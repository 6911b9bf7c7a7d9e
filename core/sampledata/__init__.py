"""The synthetic multi-site cohort: chest radiograph phantoms written as DICOM, with ground truth.

Everything generated here is SYNTHETIC: phantoms, not patients. See ``generate_cohort``.
"""

from __future__ import annotations

from core.sampledata.cohort import COHORT_INFO_NAME, GENERATOR_VERSION, CohortSummary, generate_cohort
from core.sampledata.manifest import MANIFEST_NAME, MASKS_NAME, ManifestRow, read_manifest, read_masks
from core.sampledata.sites import SITES, SiteSpec, benchmark_site, site_by_name

__all__ = [
    "COHORT_INFO_NAME",
    "GENERATOR_VERSION",
    "MANIFEST_NAME",
    "MASKS_NAME",
    "SITES",
    "CohortSummary",
    "ManifestRow",
    "SiteSpec",
    "benchmark_site",
    "generate_cohort",
    "read_manifest",
    "read_masks",
    "site_by_name",
]
