"""Burned-in annotation risk: which objects may carry identifying text in their pixels.

The Basic Profile de-identifies the header only. Text burned into the pixels (a name on an
ultrasound screen grab, a scanned requisition, a secondary capture of a worklist) survives it, and
cleaning pixels reliably needs OCR and review Vigil does not do. So an object that says it has
burned-in text, or that belongs to a kind where such text is common and does not say it has none,
is quarantined: never released, whatever its header looks like afterwards.

Reasons name only constants (attribute names, SOP class names, defined terms), never a value read
from the file, so they can be shown and stored without carrying PHI.
"""

from __future__ import annotations

from typing import Final

from pydicom.dataset import Dataset

__all__ = ["RISKY_MODALITIES", "RISKY_SOP_CLASSES", "burned_in_risk"]

#: SOP classes whose pixels are commonly screen captures, scans or displays with text on them.
RISKY_SOP_CLASSES: Final = {
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.1": "Multi-frame Single Bit Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.6": "Ultrasound Image Storage (Retired)",
    "1.2.840.10008.5.1.4.1.1.6.1": "Ultrasound Image Storage",
    "1.2.840.10008.5.1.4.1.1.3": "Ultrasound Multi-frame Image Storage (Retired)",
    "1.2.840.10008.5.1.4.1.1.3.1": "Ultrasound Multi-frame Image Storage",
    "1.2.840.10008.5.1.4.1.1.77.1.1.1": "Video Endoscopic Image Storage",
    "1.2.840.10008.5.1.4.1.1.77.1.4.1": "Video Photographic Image Storage",
}
#: Modalities whose images often carry text drawn by the device (ultrasound and fluoroscopy
#: displays, photographs, scanned documents, "other").
RISKY_MODALITIES: Final = frozenset({"US", "IVUS", "XA", "RF", "OT", "XC", "ES", "GM", "OP", "DOC", "SC"})
_DERIVED_TYPES: Final = ("SECONDARY", "DERIVED")


def burned_in_risk(ds: Dataset) -> str | None:
    """One sentence saying why ``ds`` must be quarantined, or None when it may be released.

    Quarantined: BurnedInAnnotation or RecognizableVisualFeatures is YES; BurnedInAnnotation is
    neither YES nor NO (not a statement); or BurnedInAnnotation is absent or empty and the object
    is of a risky SOP class (:data:`RISKY_SOP_CLASSES`), modality (:data:`RISKY_MODALITIES`) or
    ImageType (SECONDARY or DERIVED). A clear ``NO`` releases any object.
    """
    stated = _code(ds, "BurnedInAnnotation")
    if stated == "YES":
        return "BurnedInAnnotation is YES: text burned into the pixels can identify the patient."
    if _code(ds, "RecognizableVisualFeatures") == "YES":
        return "RecognizableVisualFeatures is YES: the pixels can show the patient's face or other features."
    if stated == "NO":
        return None
    if stated:
        return "BurnedInAnnotation is neither YES nor NO, so it does not state that the pixels hold no text."
    risk = _risky_kind(ds)
    if risk is None:
        return None
    return f"BurnedInAnnotation is absent for {risk}, where text burned into the pixels is common."


def _risky_kind(ds: Dataset) -> str | None:
    sop_class = str(ds.get("SOPClassUID", "") or "").strip()
    if sop_class in RISKY_SOP_CLASSES:
        return f"a {RISKY_SOP_CLASSES[sop_class]} object"
    modality = _code(ds, "Modality")
    if modality in RISKY_MODALITIES:
        return f"modality {modality}"
    image_type = {str(v).strip().upper() for v in _values(ds, "ImageType")}
    flagged = [t for t in _DERIVED_TYPES if t in image_type]
    if flagged:
        return f"an ImageType of {' and '.join(flagged)}"
    return None


def _code(ds: Dataset, keyword: str) -> str:
    values = _values(ds, keyword)
    return str(values[0]).strip().upper() if values else ""


def _values(ds: Dataset, keyword: str) -> list[object]:
    value = ds.get(keyword)
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes | int | float):
        return [value]
    try:
        return list(value)
    except TypeError:
        return [value]
