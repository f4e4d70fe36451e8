"""The text of ``dicomscu --help``: gdcmscu's options first, then what dicomscu adds.

The option lines come from the option table (:mod:`dicomscu.cli.options`), where
each option's help sits beside it; around them, the usage and the exit codes.
"""

from dicomscu.cli.options import SECTIONS, render

USAGE = """\
Usage: dicomscu [OPTION]... [OPERATION]... HOSTNAME [PORT] [FILE]...
Execute a DICOM operation on HOSTNAME, using port PORT (104 when not specified).
One argument is the host, two are host and port, three or more are host, port
and files to send (as gdcmscu).

"""

EPILOGUE = """\
Exit status:
  0 success                     4 unknown host
  1 something failed (a file,   5 timeout (connect, association, DIMSE, read)
    a status)                   6 association rejected / no context accepted
  2 usage error                 7 association aborted / protocol error
  3 connection refused or failed

Other commands:
  dicomscu serve [--port 11112] [--storage DIR] ...   the embedded PACS (serve --help)
  dicomscu demo                                       echo/store/find/get/move against it

Examples:
  dicomscu pacs.example.org 11112 --call PACS              C-ECHO
  dicomscu --store pacs.example.org 11112 -r study/        send a directory tree
"""

HELP = USAGE + render(SECTIONS) + "\n" + EPILOGUE
