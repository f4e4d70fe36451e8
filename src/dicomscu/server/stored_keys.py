"""Query keys the index does not hold, matched and returned from a stored file (PS3.4 C.2.2.2).

The index keeps the attributes most queries name (:data:`~dicomscu.server.index.ATTRIBUTES`).  Any
other key of an identifier, a sequence (``ProcedureCodeSequence``) or an optional attribute
(``OtherPatientNames``), is read from one stored instance of each candidate answer, the instance
that stands for it (a study's attributes are the same in each of its instances), and then:

* matched when it has a value: single value, wildcard, range and list matching as for indexed
  keys (:func:`~dicomscu.server.matching.matches`), a multi-valued attribute matching when one of
  its values does; sequence matching (C.2.2.2.6) when a key item has values: a stored item must
  match every key of the key item, nested sequences included; an empty key, or a sequence key
  without item or with an item of empty keys, matches universally;
* returned: its value in that instance; for a sequence, each stored item with the attributes the
  key item names (all of them when the key has no item).

Files are read only for the answers that need them, their pixel data never.
"""

from __future__ import annotations

import logging
import os
from typing import Iterable

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomscu.server.matching import key_text, matches

LOGGER = logging.getLogger("dicomscu.server")

#: Keys a query carries that are not attributes of a stored instance (answered by the index or the query).
NOT_STORED = frozenset({"QueryRetrieveLevel", "SpecificCharacterSet", "NumberOfStudyRelatedInstances",
                        "NumberOfSeriesRelatedInstances", "NumberOfPatientRelatedInstances",
                        "NumberOfStudyRelatedSeries", "NumberOfPatientRelatedSeries",
                        "NumberOfPatientRelatedStudies", "ModalitiesInStudy", "SOPClassesInStudy",
                        "AvailableTransferSyntaxUID"})


def stored_keys(identifier: Dataset, indexed: Iterable[str]) -> list:
    """The elements of `identifier` that only a stored file can answer (neither indexed nor computed)."""
    known = set(indexed) | NOT_STORED
    return [element for element in identifier if element.keyword not in known and element.tag >> 16 != 0x0002]


def read_stored(path: str, keys: list) -> Dataset | None:
    """The top-level `keys` of the stored file at `path` (None, logged, when it cannot be read)."""
    from pydicom import dcmread

    try:
        return dcmread(path, stop_before_pixels=True, specific_tags=[element.tag for element in keys]
                       + [0x00080005])
    except Exception as exc:  # a file gone or broken: this answer cannot be matched on these keys
        LOGGER.warning("query: cannot read %s for %s: %s", os.path.basename(path),
                       ", ".join(element.keyword or str(element.tag) for element in keys), exc)
        return None


def all_match(keys: list, stored: Dataset) -> bool:
    """Whether `stored` matches every one of `keys` (elements of a query identifier or of a key item)."""
    return all(_element_matches(key, stored) for key in keys)


def _element_matches(key, stored: Dataset) -> bool:
    if key.VR == "SQ":
        items = list(key.value or [])
        wanted = [item for item in items if _has_values(item)]
        if not wanted:
            return True  # universal: no item, or an item of empty keys
        found = stored.get(key.tag)
        stored_items = list(found.value) if found is not None and found.VR == "SQ" and found.value else []
        # each key item needs one stored item matching all its keys (one key item: C.2.2.2.6)
        return all(any(all_match(list(item), candidate) for candidate in stored_items) for item in wanted)
    text = key_text(key.value)
    if text in ("", "*"):
        return True
    found = stored.get(key.tag)
    values = _values(found.value) if found is not None else [""]
    return any(matches(key.VR, text, value) for value in values)


def _has_values(item: Dataset) -> bool:
    return any((element.VR == "SQ" and any(_has_values(sub) for sub in element.value or []))
               or (element.VR != "SQ" and key_text(element.value) not in ("", "*")) for element in item)


def returned(key, stored: Dataset | None):
    """The value to answer for `key` from `stored`: its value, or for a sequence each stored item holding
    the attributes the key item names (all when the key has no item)."""
    if stored is None or key.tag not in stored:
        return Sequence() if key.VR == "SQ" else None
    found = stored[key.tag]
    if key.VR != "SQ" or found.VR != "SQ":
        return found.value if key.VR == found.VR or key.VR != "SQ" else None
    template = list(key.value[0]) if key.value else None
    items = []
    for stored_item in found.value or []:
        if template is None:
            items.append(stored_item)
            continue
        item = Dataset()
        for sub in template:
            value = returned(sub, stored_item)
            item.add_new(sub.tag, sub.VR, value if value not in ("",) else None)
        items.append(item)
    return Sequence(items)


def _values(value) -> list[str]:
    if value is None:
        return [""]
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value] or [""]
    return [str(value)]
