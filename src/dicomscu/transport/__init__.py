"""The I/O edge of the protocol core: sockets, deadlines, TLS.

Modules: :mod:`.peer` (who and how long), :mod:`.link` (the one socket driver),
:mod:`.channel` (an established association, either side), :mod:`.association`
(requesting one), :mod:`.listener` (accepting them).  Import them directly; this
package imports nothing so that ``dicomscu.transport.peer`` stays light.
"""
