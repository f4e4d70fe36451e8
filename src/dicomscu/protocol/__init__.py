"""The DICOM upper layer and DIMSE as pure bytes in, events out (PS3.7, PS3.8): no sockets, no threads.

Modules, from the wire up:

* :mod:`.pdu` -- the seven PDUs and their items, encoded and decoded, every length bounded;
* :mod:`.commands` -- DIMSE command sets (C-ECHO, C-STORE, C-FIND, C-GET, C-MOVE, C-CANCEL);
* :mod:`.messages` -- P-DATA fragmentation and the reassembly of messages;
* :mod:`.machine` -- the association state machine (PS3.8 9.2) for requestor and acceptor.

The I/O lives in :mod:`dicomscu.transport`, which feeds received bytes in and writes
what the machine returns, as an HTTP client drives h11.  Nothing here imports
pydicom or any network library, so a C-ECHO loads only this package.
"""
