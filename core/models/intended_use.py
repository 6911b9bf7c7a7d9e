"""The intended-use gate, which decides whether a model may score an image at all.

A model card's :class:`~core.models.card.IntendedUse` lists the modalities, body parts, views
and image kinds the model was validated on. Anything else is stored but never sent to the
model, and the reason is kept beside the (absent) prediction so a reviewer sees why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from core.imaging.image import DicomMeta
from core.models.card import IntendedUse

__all__ = ["check_intended_use"]

#: (DICOM keyword, how to read it from the header, which IntendedUse field restricts it),
#: in the order they are checked, so the first reason given is the most basic one.
_CHECKS: Final[tuple[tuple[str, Callable[[DicomMeta], str], Callable[[IntendedUse], tuple[str, ...]]], ...]] = (
    ("Modality", lambda m: m.modality, lambda u: u.modalities),
    ("BodyPartExamined", lambda m: m.body_part_examined, lambda u: u.body_parts),
    ("ViewPosition", lambda m: m.view_position, lambda u: u.views),
    # ImageType[0] is ORIGINAL or DERIVED (PS3.3 C.7.6.1.1.2); derived images (reformats,
    # processed copies, screenshots) are not what the model was validated on.
    ("ImageType[0]", lambda m: m.image_type[0] if m.image_type else "", lambda u: u.image_kinds),
)


def _norm(value: str) -> str:
    return value.strip().upper()


def check_intended_use(meta: DicomMeta, use: IntendedUse) -> str | None:
    """Say why an image is outside a model's intended use, or ``None`` when it is inside.

    Parameters
    ----------
    meta : DicomMeta
        The image's header.
    use : IntendedUse
        The model card's intended use. An empty tuple means "any value".

    Returns
    -------
    str or None
        ``None`` when every restricted attribute matches; otherwise one sentence naming the
        first attribute that does not, with its value, e.g.
        ``"Modality 'MR' is not one of DX, CR"``.

    Notes
    -----
    Values are compared upper-cased and stripped on both sides. When the card restricts an
    attribute and the header lacks it (``""``), the image is refused with
    ``"<Keyword> missing"``: a chest radiograph without ViewPosition could be a lateral, which
    the model was never validated on, and Vigil does not guess it from pixels or protocol
    names. Harmonization of site-specific spellings (e.g. ``THORAX`` for ``CHEST``) belongs
    upstream in ``core.imaging``; this gate only compares.

    Examples
    --------
    >>> from dataclasses import replace
    >>> use = IntendedUse(("DX", "CR"), ("CHEST",), ("PA", "AP"), ("ORIGINAL",), "adult chest")
    >>> check_intended_use(_example_meta(), use) is None
    True
    >>> check_intended_use(replace(_example_meta(), modality="mr"), use)
    "Modality 'MR' is not one of DX, CR"
    >>> check_intended_use(replace(_example_meta(), view_position=""), use)
    'ViewPosition missing'
    """
    for keyword, read, allowed_of in _CHECKS:
        allowed = allowed_of(use)
        if not allowed:
            continue
        value = _norm(read(meta))
        if not value:
            return f"{keyword} missing"
        if value not in {_norm(a) for a in allowed}:
            return f"{keyword} {value!r} is not one of {', '.join(allowed)}"
    return None


def _example_meta() -> DicomMeta:
    """Build a chest PA header for the doctest (not part of the API)."""
    return DicomMeta(
        sop_instance_uid="1.2.3.4",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1",
        study_instance_uid="1.2.3",
        series_instance_uid="1.2.3.1",
        modality="DX",
        body_part_examined="CHEST",
        view_position="PA",
        image_type=("ORIGINAL", "PRIMARY"),
        manufacturer="",
        manufacturer_model_name="",
        station_name="",
        institution_name="",
        software_versions="",
        protocol_name="",
        patient_id="",
        patient_age="",
        patient_sex="",
        kvp=None,
        accession_number="",
        study_date="",
        rows=8,
        columns=8,
        pixel_spacing_mm=None,
        photometric_interpretation="MONOCHROME2",
        bits_stored=12,
        transfer_syntax_uid="",
        window_center=None,
        window_width=None,
    )
