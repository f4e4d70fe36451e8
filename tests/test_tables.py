"""Our own tables against the references: status codes (pynetdicom), UIDs (pydicom)."""

from __future__ import annotations

import pytest

from dicomscu import uids
from dicomscu.operations import status


@pytest.mark.parametrize("service, table", [
    ("echo", "VERIFICATION_SERVICE_CLASS_STATUS"), ("store", "STORAGE_SERVICE_CLASS_STATUS"),
    ("find", "QR_FIND_SERVICE_CLASS_STATUS"), ("move", "QR_MOVE_SERVICE_CLASS_STATUS"),
    ("get", "QR_GET_SERVICE_CLASS_STATUS"), ("worklist", "MODALITY_WORKLIST_SERVICE_CLASS_STATUS"),
])
def test_every_status_category_matches_pynetdicom(service, table):
    from pynetdicom import status as reference

    categories = {reference.STATUS_SUCCESS: status.SUCCESS, reference.STATUS_WARNING: status.WARNING,
                  reference.STATUS_FAILURE: status.FAILURE, reference.STATUS_PENDING: status.PENDING,
                  reference.STATUS_CANCEL: status.CANCEL}
    theirs = getattr(reference, table)
    wrong = {hex(code): (status.decode(code, service).category, categories[category])
             for code, (category, _) in theirs.items() if status.decode(code, service).category != categories[category]}
    assert not wrong


def test_status_words_and_ranges():
    assert str(status.decode(0xA801, "move")) == "0xA801 failure: Move destination unknown"
    assert status.decode(0xC123, "find").meaning == "Unable to Process"
    assert status.decode(0xC123, "store").meaning == "Error: Cannot understand"
    assert status.decode(0xB123, "store").category == status.WARNING
    assert status.decode(0x1234, "echo").category == status.FAILURE


def test_uids_are_the_registered_ones():
    from pydicom import uid as registry

    named = {uids.VERIFICATION: "Verification SOP Class",
             uids.PATIENT_ROOT_FIND: "Patient Root Query/Retrieve Information Model - FIND",
             uids.STUDY_ROOT_MOVE: "Study Root Query/Retrieve Information Model - MOVE",
             uids.STUDY_ROOT_GET: "Study Root Query/Retrieve Information Model - GET",
             uids.MODALITY_WORKLIST_FIND: "Modality Worklist Information Model - FIND",
             uids.SECONDARY_CAPTURE: "Secondary Capture Image Storage"}
    for uid, name in named.items():
        assert registry.UID(uid).name == name
    assert set(registry.AllTransferSyntaxes) <= set(uids.TRANSFER_SYNTAXES)
    for syntax in registry.AllTransferSyntaxes:
        assert (syntax in uids.COMPRESSED_SYNTAXES) == registry.UID(syntax).is_compressed, syntax
    assert uids.name_of(uids.VERIFICATION) == "Verification SOP Class" and uids.name_of("1.2.3") == "1.2.3"
