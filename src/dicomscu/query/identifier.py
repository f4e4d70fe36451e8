"""Identifiers of retrieval keys only, built and encoded without pydicom.

Most retrievals name what they want by its unique keys alone: ``-k
StudyInstanceUID=...`` for a study, the Patient ID for a patient.  Their identifier is a
handful of short text elements, which this module builds from the ``-k`` strings and
encodes in Implicit or Explicit VR Little Endian itself, so that C-GET, C-MOVE (and
the C-FIND survey before a C-GET) and WADO-RS start without loading pydicom, whose
import costs more than the retrieval of a patient.  Anything else (another key, a
sequence, a character set, a level to reconcile) is left to :mod:`.build`, which
answers for it exactly as before: :func:`from_keys` then returns None.

Checked against pydicom's encoding in tests/test_pure.py.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from dicomscu.query.keys import UNIQUE_KEYS, Key
from dicomscu.query.model import Model
from dicomscu.uids import EXPLICIT_VR_LE, IMPLICIT_VR_LE

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

QUERY_LEVEL = 0x00080052
CHARSET = 0x00080005

#: Keys a flat identifier may hold: the retrieval keys, and what a C-GET's survey asks for.
ELEMENTS = {**UNIQUE_KEYS, "SOPClassUID": (0x00080016, "UI"), "AvailableTransferSyntaxUID": (0x00083002, "UI"),
            "SpecificCharacterSet": (CHARSET, "CS")}
_IMPLICIT = struct.Struct("<HHL")
_EXPLICIT = struct.Struct("<HH2sH")


@dataclass
class Query:
    """A ready identifier and what it was built from."""

    model: Model
    level: str | None
    dataset: Dataset  # (or a flat Identifier, for a retrieval: see query_of)
    keys: list[Key] = field(default_factory=list)

    @property
    def columns(self) -> list[tuple[str, int]]:
        """(keyword, tag) of the identifier's top-level keys (for tables and CSV): the user's -k keys in
        the order given, then the keys added for them (the unique keys), in tag order."""
        present = {int(elem.tag): elem.keyword or str(elem.tag) for elem in self.dataset
                   if elem.tag not in (CHARSET, QUERY_LEVEL)}
        given = [key.path[0].tag for key in self.keys]
        order = list(dict.fromkeys(tag for tag in given if tag in present)) + \
            [tag for tag in present if tag not in given]
        return [(present[tag], tag) for tag in order]


class Identifier(dict):
    """Keyword -> text value (empty: a return key), read as a data set is (``get``), encoded without
    pydicom (:meth:`encode`)."""

    def encode(self, transfer_syntax: str) -> bytes:
        """The elements in tag order, in Implicit or Explicit VR Little Endian (PS3.5 7.1)."""
        if transfer_syntax not in (IMPLICIT_VR_LE, EXPLICIT_VR_LE):
            raise ValueError(f"a flat identifier is encoded in Little Endian VR only, not {transfer_syntax}")
        implicit = transfer_syntax == IMPLICIT_VR_LE
        out = []
        for keyword in sorted(self, key=lambda name: ELEMENTS[name][0]):
            tag, vr = ELEMENTS[keyword]
            value = str(self[keyword]).encode("ascii")
            if len(value) % 2:
                value += b"\0" if vr == "UI" else b" "
            header = (_IMPLICIT.pack(tag >> 16, tag & 0xFFFF, len(value)) if implicit else
                      _EXPLICIT.pack(tag >> 16, tag & 0xFFFF, vr.encode(), len(value)))
            out.append(header + value)
        return b"".join(out)

    def keys_text(self, skip: Iterable[str] = ("QueryRetrieveLevel",)) -> list[str]:
        """The ``-k`` strings of its keys that have values (for a query built from them)."""
        return [f"{keyword}={value}" for keyword, value in self.items() if value and keyword not in skip]


def encode_identifier(identifier: Any, transfer_syntax: str) -> bytes:
    """A flat identifier encoded here, a pydicom data set by pydicom."""
    if isinstance(identifier, Identifier):
        return identifier.encode(transfer_syntax)
    from dicomscu.files.codec import encode

    return encode(identifier, transfer_syntax)


def from_keys(model_name: str | None, level: str | None, key_texts: list[str], operation: str,
              environ: Mapping[str, str] | None = None) -> Identifier | None:
    """The retrieval identifier of `key_texts`, checked as any (:func:`~dicomscu.operations.retrieval.
    check_identifier`), when they name only retrieval keys with ASCII values; None when they need the query
    builder (which then answers for them).

    Its bytes are exactly those :func:`~dicomscu.query.build.build_query` gives (and ``--store-query`` writes):
    the Specific Character Set of the locale (`environ`), the level, the keys as typed.  Whatever the query
    builder would write otherwise (a return key, a value with spaces around it, ``*`` on a UID, a missing
    key of a level above) goes to the query builder; tests/test_gdcmscu.py compares the two on the wire.
    """
    from dicomscu.operations.retrieval import check_identifier
    from dicomscu.query.charsets import charset_from_locale
    from dicomscu.query.keys import UNIQUE_BY_TAG, parse_key
    from dicomscu.query.model import MODELS

    values: dict[str, str] = {}
    for text in key_texts:
        key = parse_key(text)
        if len(key.path) != 1 or key.tag not in UNIQUE_BY_TAG or not (key.value or "").isascii():
            return None
        values.setdefault(UNIQUE_BY_TAG[key.tag][0], key.value or "")
    model = MODELS[model_name or "patientroot"]
    given, wanted = values.pop("QueryRetrieveLevel", "").strip().upper(), (level or "").upper()
    name = wanted or given or model.default_level
    if (given and wanted and given != wanted) or name not in [item.name for item in model.levels]:
        return None
    check_identifier({keyword: value.strip() for keyword, value in values.items() if value.strip()}, model, name,
                     operation)
    uniques = [step.unique for step in model.path_to(name)]
    if any(not value or value != value.strip() or value == "*" for value in values.values()) or \
            any(unique not in values for unique in uniques[:-1]):
        return None  # an element the query builder writes its own way
    charset = charset_from_locale(environ)
    return Identifier(**({"SpecificCharacterSet": charset} if charset else {}), QueryRetrieveLevel=name, **values)


def query_of(model_name: str | None, identifier: Identifier) -> Query:
    """A query holding a flat identifier (for the model and level a retrieval needs)."""
    from dicomscu.query.model import MODELS

    dataset: Any = identifier
    return Query(MODELS[model_name or "patientroot"], identifier["QueryRetrieveLevel"], dataset)
