"""``--store-query``: the identifier written as a DICOM file, as gdcmscu does.

Implicit VR Little Endian, with a file meta whose Media Storage SOP Class is the
model's FIND class and whose instance UID uses the root UID (``--root-uid`` or
``GDCM_ROOT_UID``) when one is given.  Written before anything is sent, so an
unwritable path is a usage error and nothing goes on the network.
"""

from __future__ import annotations

import os
from io import BytesIO

from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import UID, ImplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

from dicomscu.errors import UsageError
from dicomscu.files.instances import write_atomically
from dicomscu.query.build import Query


def write_query(query: Query, path: str, root_uid: str | None = None) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(query.model.find)
    meta.MediaStorageSOPInstanceUID = generate_uid(prefix=f"{root_uid}." if root_uid else None)
    meta.TransferSyntaxUID = ImplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    dataset = query.dataset.copy()
    dataset.file_meta = meta
    buffer = BytesIO()
    dcmwrite(buffer, dataset, implicit_vr=True, little_endian=True, enforce_file_format=True)
    try:
        if os.path.exists(path) and not os.path.isfile(path):  # /dev/stdout, /dev/null, a FIFO: write into
            with open(path, "wb") as target:                     # it, never rename a file over it
                target.write(buffer.getvalue())
        else:
            write_atomically(os.path.abspath(path), [buffer.getvalue()], create_folder=False)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write: {exc.strerror or exc}", option="store_query") from None
