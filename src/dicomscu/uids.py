"""The UIDs dicomscu names: services, query models and transfer syntaxes (PS3.6 Annex A), as plain strings.

Plain strings, so that an echo need not load pydicom; tests/test_uids.py checks
each against pydicom's registry.
"""

from __future__ import annotations

#: Our Implementation Class UID (PS3.7 D.3.3.2; under the root 1.2.826.0.1.3680043.10.1137): in the
#: associations we negotiate and the file meta of the files we write.
IMPLEMENTATION_CLASS = "1.2.826.0.1.3680043.10.1137.0.1"
VERIFICATION = "1.2.840.10008.1.1"

PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"
#: Storage Commitment Push Model SOP Class and its well-known SOP Instance (PS3.4 J.3.5).
STORAGE_COMMITMENT_PUSH = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"
#: Transfer syntaxes not compressed and not deflated: a data set can be re-encoded between them.
NATIVE_SYNTAXES = (EXPLICIT_VR_LE, IMPLICIT_VR_LE, EXPLICIT_VR_BE)
#: Those and deflate: a data set in them is re-encoded without decoding pixel data.
CONVERTIBLE_SYNTAXES = (*NATIVE_SYNTAXES, DEFLATED_EXPLICIT_VR_LE)

#: Every transfer syntax a storage SCP accepts as it comes (data sets are kept as received).
TRANSFER_SYNTAXES = (
    IMPLICIT_VR_LE, EXPLICIT_VR_LE, DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE,
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.93", "1.2.840.10008.1.2.4.94", "1.2.840.10008.1.2.4.95",
    "1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.100.1", "1.2.840.10008.1.2.4.101", "1.2.840.10008.1.2.4.101.1",
    "1.2.840.10008.1.2.4.102", "1.2.840.10008.1.2.4.102.1", "1.2.840.10008.1.2.4.103", "1.2.840.10008.1.2.4.103.1",
    "1.2.840.10008.1.2.4.104", "1.2.840.10008.1.2.4.104.1", "1.2.840.10008.1.2.4.105", "1.2.840.10008.1.2.4.105.1",
    "1.2.840.10008.1.2.4.106", "1.2.840.10008.1.2.4.106.1", "1.2.840.10008.1.2.4.107", "1.2.840.10008.1.2.4.108",
    "1.2.840.10008.1.2.4.110", "1.2.840.10008.1.2.4.111", "1.2.840.10008.1.2.4.112", "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203", "1.2.840.10008.1.2.4.204", "1.2.840.10008.1.2.4.205",
    "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.7.1", "1.2.840.10008.1.2.7.2", "1.2.840.10008.1.2.7.3",
    "1.2.840.10008.1.2.8.1",
)
#: The compressed ones (pixel data encapsulated), in the order above.
COMPRESSED_SYNTAXES = tuple(ts for ts in TRANSFER_SYNTAXES if ts not in NATIVE_SYNTAXES
                            and ts != DEFLATED_EXPLICIT_VR_LE)


def name_of(uid: str) -> str:
    """The registered name of `uid` (for messages), or the UID itself."""
    from pydicom.uid import UID

    name = UID(uid).name
    return name if name != uid else uid


class TransferSyntax(str):
    """A transfer syntax UID that says how it encodes, as pydicom's UID does (same property names), for
    code that must not load pydicom (a C-FIND answer's syntax, read by the output layer)."""

    @property
    def is_implicit_VR(self) -> bool:
        return self == IMPLICIT_VR_LE

    @property
    def is_little_endian(self) -> bool:
        return self != EXPLICIT_VR_BE

    @property
    def is_deflated(self) -> bool:
        return self == DEFLATED_EXPLICIT_VR_LE


def new_uid(root: str | None = None) -> str:
    """A new UID: under `root` (``--root-uid``) when given, else a UUID-derived one (PS3.5 B.2, ``2.25.``)."""
    import uuid

    digits = str(uuid.uuid4().int)
    prefix = f"{root.rstrip('.')}." if root else "2.25."
    return (prefix + digits)[:64].rstrip(".")
