"""Plant unique canary values in every identifying text element of a DICOM file, and search bytes for them.

What is planted (each value unique, ``ZQX`` + five digits for text, so that no fragment of pixel
data or header can look like one):

- every attribute of PS3.15 Table E.1-1 whose VR holds text (PN, LO, SH, LT, ST, UT, UC, UR, AE,
  CS, DA, TM, DT, DS, IS) or a UID (UI), at the top level and again inside an item of a kept
  sequence and inside an item of a sequence within that item (two levels deep);
- every public attribute the table does not list whose VR Vigil removes beyond the table (PN, LT,
  ST, UT, UC, UR, DA, DT, TM), at the same three levels;
- a private block (its creator too) with text, date and UN elements and a private sequence, at the
  same three levels;
- curve and overlay elements, the file meta's source AE title, implementation version and private
  information creator UID, and the 128-byte preamble;
- the file's own patient-identifying UIDs (study, series, SOP instance) are kept and searched for.

Not planted: AS (a 4-character value cannot be unique in a file) and the public attributes the
profile keeps (not in the table, VR outside Vigil's removal list: Manufacturer, BodyPartExamined,
ImageType ...), which are retained by design; the scan test checks element by element that only
such attributes survive.
"""

from __future__ import annotations

import io
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pydicom import dcmread
from pydicom.datadict import DicomDictionary, dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import DeflatedExplicitVRLittleEndian

from core.imaging.deid import Profile
from core.imaging.structure import file_meta_end

TEXT_VRS = frozenset({"PN", "LO", "SH", "LT", "ST", "UT", "UC", "UR", "AE", "CS", "DA", "TM", "DT"})
NUMBER_VRS = frozenset({"DS", "IS"})
#: The file's own UIDs: kept in place (so that the input stays a valid image) and searched for.
OWN_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
#: Kept sequences (not in the table) that carry the nested levels.
LEVEL_1 = 0x00082218  # AnatomicRegionSequence
LEVEL_2 = 0x00082220  # AnatomicRegionModifierSequence


@dataclass
class Planter:
    """Hands out unique canary values and remembers them."""

    canaries: list[str] = field(default_factory=list)

    def value(self, vr: str) -> str:
        n = len(self.canaries) + 1
        if vr in NUMBER_VRS:
            # The sign keeps it out of the digits of a UID: a keyed "2.25.<39 digits>" UID holds
            # any given run of 8 digits now and then, which a bare number would be taken for.
            text = f"+7{n:07d}"
        elif vr == "UI":
            text = f"1.3.6.1.4.1.58888.9{n:06d}"
        else:
            text = f"ZQX{n:05d}"
        self.canaries.append(text)
        return text

    def keep(self, text: str) -> None:
        self.canaries.append(text)


def _plantable(tag: int, vr: str) -> bool:
    group = tag >> 16
    # Groups below 0008 are the command, file meta and directory groups; FFFA-FFFC hold signatures
    # and padding, whose VRs hold no text.
    return 0x0008 <= group < 0xFFFA and (vr in TEXT_VRS or vr in NUMBER_VRS or vr == "UI")


def identifying_tags(profile: Profile) -> Iterator[tuple[int, str]]:
    """Every (tag, VR) that gets a canary: the table's text and UID rows, and Vigil's unlisted removals."""
    for tag in sorted(profile.rules):
        vr = dictionary_VR(tag)
        if _plantable(tag, vr):
            yield tag, vr
    for tag in sorted(DicomDictionary):
        vr = DicomDictionary[tag][0]
        if tag not in profile.rules and vr in profile.remove_unlisted_vrs and _plantable(tag, vr):
            yield tag, vr


def plant_level(ds: Dataset, planter: Planter, profile: Profile, *, top: bool) -> None:
    """Plant in one dataset (the file's top level or an item)."""
    for tag, vr in identifying_tags(profile):
        if top and vr == "UI" and tag in ds and ds[tag].keyword in OWN_UIDS:
            planter.keep(str(ds[tag].value))
            continue
        ds.add_new(tag, vr, planter.value(vr))
    _plant_private(ds, planter)


def _plant_private(ds: Dataset, planter: Planter) -> None:
    block = ds.private_block(0x0009, f"{planter.value('LO')} CREATOR", create=True)
    for offset, vr in enumerate(("LO", "SH", "PN", "UT", "LT", "DA", "CS"), start=0x10):
        block.add_new(offset, vr, planter.value(vr))
    block.add_new(0x20, "UN", planter.value("UN").encode("ascii"))
    inner = Dataset()
    inner.PatientName = planter.value("PN")
    inner.private_block(0x0011, planter.value("LO"), create=True).add_new(0x01, "LO", planter.value("LO"))
    block.add_new(0x30, "SQ", Sequence([inner]))


def plant_all(ds: Dataset, planter: Planter, profile: Profile) -> None:
    """Plant at the top level, one level down and two levels down, and in curves, overlays, meta, preamble."""
    level2 = Dataset()
    plant_level(level2, planter, profile, top=False)
    level1 = Dataset()
    plant_level(level1, planter, profile, top=False)
    level1.add_new(LEVEL_2, "SQ", Sequence([level2]))
    plant_level(ds, planter, profile, top=True)
    ds.add_new(LEVEL_1, "SQ", Sequence([level1]))
    ds.add_new(0x50002500, "LO", planter.value("LO"))  # Curve Label
    ds.add_new(0x50003000, "OB", planter.value("OB").encode("ascii"))  # Curve Data
    ds.add_new(0x60000022, "LO", planter.value("LO"))  # Overlay Description
    ds.add_new(0x60001500, "LO", planter.value("LO"))  # Overlay Label
    ds.add_new(0x60004000, "LT", planter.value("LT"))  # Overlay Comments
    ds.add_new(0x60003000, "OW", planter.value("OW").encode("ascii"))  # Overlay Data
    ds.file_meta.SourceApplicationEntityTitle = planter.value("AE")
    ds.file_meta.ImplementationVersionName = planter.value("SH")
    ds.file_meta.PrivateInformationCreatorUID = planter.value("UI")
    ds.file_meta.PrivateInformation = planter.value("OB").encode("ascii")
    ds.preamble = planter.value("OB").encode("ascii").ljust(128, b"\x00")


def searchable(data: bytes) -> bytes:
    """The file's bytes, plus its data set inflated when the transfer syntax is deflated."""
    end = file_meta_end(data)
    assert end is not None
    syntax = dcmread(io.BytesIO(data), stop_before_pixels=True).file_meta.TransferSyntaxUID
    if syntax != DeflatedExplicitVRLittleEndian:
        return data
    return data + b"\n" + zlib.decompressobj(-zlib.MAX_WBITS).decompress(data[end:])


def found(canary: str, haystack: bytes) -> bool:
    """``canary`` in ``haystack`` as ASCII/Latin-1/UTF-8, lower-cased, or as UTF-16 (either byte order)."""
    forms = {canary.encode("latin-1"), canary.lower().encode("latin-1")}
    forms |= {canary.encode("utf-16-le"), canary.encode("utf-16-be")}
    return any(form in haystack for form in forms) or canary.lower().encode() in haystack.lower()


Trie = dict[int, "Trie"]


def _trie_pattern(words: set[bytes]) -> bytes:
    """One regular expression matching any of ``words``, as a trie, so a scan costs one pass."""
    trie: Trie = {}
    for word in words:
        node = trie
        for byte in word:
            node = node.setdefault(byte, {})
        node[-1] = {}  # the end of a word

    def pattern(node: Trie) -> bytes:
        ends = -1 in node
        branches = [re.escape(bytes([b])) + pattern(child) for b, child in sorted(node.items()) if b != -1]
        if not branches:
            return b""
        body = branches[0] if len(branches) == 1 else b"(?:" + b"|".join(branches) + b")"
        return b"(?:" + body + b")?" if ends else body

    return pattern(trie)


def present(canaries: Iterable[str], haystack: bytes) -> set[str]:
    """The canaries :func:`found` would find in ``haystack``, in one pass over it (any letter case).

    Equivalent to ``{c for c in canaries if found(c, haystack)}`` for ASCII canaries (it also
    finds upper-cased forms, which only makes the search stricter), without one scan per canary.
    """
    forms: dict[bytes, str] = {}
    for canary in canaries:
        for encoding in ("latin-1", "utf-16-le", "utf-16-be"):
            forms[canary.lower().encode(encoding)] = canary
    regex = re.compile(b"(?=(" + _trie_pattern(set(forms)) + b"))", re.IGNORECASE)
    matches = {m.group(1).lower() for m in regex.finditer(haystack)}
    # The longest word wins at a position: a shorter one it begins with is there too.
    return {forms[m[:i]] for m in matches for i in range(1, len(m) + 1) if m[:i] in forms}
