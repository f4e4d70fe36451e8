"""Associations on pynetdicom with tuned sockets, bounded reads and clear failures.

Modules: :mod:`.peer` (who and how long), :mod:`.association` (open, drive, close),
:mod:`.socket` and :mod:`.dul` (the tuned socket and reactor), :mod:`.dimse`
(messages encoded directly).  Import them directly; this package imports nothing
so that ``dicomscu.transport.peer`` stays light.
"""
