"""The private-attribute allow-list: a private element is kept only when a site names it.

A private element is identified by its odd group, the private creator that reserved its block and
its element offset within the block (PS3.5 7.8.1): ``(0019,xx0C)`` under creator ``"ACME 1.1"``
is the same element whichever block ``xx`` the file gave the creator.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import BadInputError

__all__ = ["PrivateElement", "parse_private_element"]


@dataclass(frozen=True, slots=True)
class PrivateElement:
    """One allow-listed private element.

    Attributes
    ----------
    group : int
        Odd, from 0x0009 to 0xFFFF (groups 0001 to 0007 are reserved, PS3.5 7.8.1).
    creator : str
        The Private Creator value, compared with surrounding spaces removed.
    offset : int
        The element's low byte, 0x00 to 0xFF.
    """

    group: int
    creator: str
    offset: int

    def __post_init__(self) -> None:
        if not (0x0009 <= self.group <= 0xFFFF and self.group % 2 == 1):
            raise BadInputError(f"private group must be odd, from 0009 to FFFF, got {self.group:#06x}")
        if not self.creator.strip():
            raise BadInputError("a private creator must not be empty")
        if not 0x00 <= self.offset <= 0xFF:
            raise BadInputError(f"private element offset must be from 00 to FF, got {self.offset:#x}")


def parse_private_element(text: str) -> PrivateElement:
    """Read ``"GGGG,CREATOR,EE"`` (hex group, creator, hex offset), the form a site writes in a list.

    Examples
    --------
    >>> parse_private_element("0019,ACME 1.1,0c")
    PrivateElement(group=25, creator='ACME 1.1', offset=12)

    Raises
    ------
    BadInputError
        Not three comma-separated parts, or a part out of range.
    """
    group, sep, rest = text.partition(",")
    creator, sep2, offset = rest.rpartition(",")
    try:
        if not (sep and sep2):
            raise ValueError
        numbers = int(group, 16), int(offset, 16)
    except ValueError:
        raise BadInputError(f"private element must be written GGGG,CREATOR,EE, got {text!r}") from None
    try:
        return PrivateElement(numbers[0], creator.strip(), numbers[1])
    except BadInputError as exc:
        raise BadInputError(f"private element {text!r}: {exc}") from None
