"""Our list of Storage SOP classes against pydicom's UID dictionary (the library's copy of PS3.6)."""

from __future__ import annotations

from pydicom.uid import UID

from dicomscu.storage_classes import RETIRED, STORAGE_CLASSES, STORAGE_UIDS


def test_every_entry_is_a_storage_sop_class_named_and_flagged_as_pydicom_has_it():
    assert len(STORAGE_UIDS) == len(set(STORAGE_UIDS)) > 200
    for entry in STORAGE_CLASSES:
        uid = UID(entry[0])
        assert uid.type == "SOP Class" and "Storage" in uid.name, entry
        assert uid.name == entry[1], entry
        assert uid.is_retired == (entry[2:] == (RETIRED,)), entry


def test_no_storage_class_pydicom_knows_is_missing():
    from pydicom._uid_dict import UID_dictionary  # the test may read the library's table; the code does not

    excluded = ("Query", "Retrieve", "Commitment", "Storage Management")
    known = {uid for uid, (name, kind, *_rest) in UID_dictionary.items()
             if kind == "SOP Class" and "Storage" in name and not any(word in name for word in excluded)}
    known.discard("1.2.840.10008.1.3.10")  # Media Storage Directory Storage: a DICOMDIR, not an instance
    assert known == set(STORAGE_UIDS)


def test_priority_order_puts_common_current_classes_first():
    position = {uid: index for index, uid in enumerate(STORAGE_UIDS)}
    first_127 = set(STORAGE_UIDS[:127])
    for common in ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.7",
                   "1.2.840.10008.5.1.4.1.1.104.1", "1.2.840.10008.5.1.4.1.1.88.22"):
        assert common in first_127
    retired = [position[entry[0]] for entry in STORAGE_CLASSES if entry[2:]]
    current = [position[entry[0]] for entry in STORAGE_CLASSES if not entry[2:]]
    assert min(retired) > max(current)
