"""The Specific Character Set a query declares from the user's locale, as gdcmscu does (light: no pydicom).

Both identifier builders use it (:mod:`.build`, and :mod:`.identifier` for retrievals by unique keys),
so that what goes on the wire is what ``--store-query`` writes, whichever builds it.
"""

from __future__ import annotations

import codecs
import locale
import os
from typing import Mapping

#: Python codec name -> DICOM Specific Character Set defined term.
_CHARSETS = {"utf-8": "ISO_IR 192", "iso8859-1": "ISO_IR 100", "latin-1": "ISO_IR 100",
             "iso8859-2": "ISO_IR 101", "iso8859-5": "ISO_IR 144", "iso8859-7": "ISO_IR 126",
             "iso8859-9": "ISO_IR 148", "ascii": "ISO_IR 100",  # a C/POSIX locale: gdcmscu says Latin-1
             # Latin-9 (ISO_IR 203) has no codec in pydicom: declared as Latin-1, which becomes ISO_IR 192
             # when a value is not Latin-1 (the euro sign), as for a Latin-1 locale
             "iso8859-15": "ISO_IR 100",
             # locales DICOM has no term for: gdcmscu's choices where they are terms (a value outside
             # Latin-1 is then sent as ISO_IR 192), the right term where gdcmscu misspells it (GB13080)
             "cp1252": "ISO_IR 100", "koi8-r": "ISO_IR 100", "euc_jp": "ISO_IR 13", "gb18030": "GB18030"}
#: What gdcmscu declares for a locale it has no term for (its default).
_FALLBACK = "ISO_IR 100"


def locale_codeset(environ: Mapping[str, str] | None = None) -> str:
    """The character set the user's locale names (LC_ALL, LC_CTYPE, LANG), as C's setlocale sees it.

    Python itself runs the "C" locale as UTF-8 (PEP 538/540), so its own answer
    cannot tell an ASCII locale from a UTF-8 one; gdcmscu, a C++ program, can.
    """
    environ = os.environ if environ is None else environ
    value = next((environ[name] for name in ("LC_ALL", "LC_CTYPE", "LANG") if environ.get(name)), "C")
    if value in ("C", "POSIX"):
        return "ascii"
    if "." not in value:  # de_DE, de_DE@euro: the C library's default codeset for the name
        value = locale.normalize(value)
    if "." in value:
        return value.split(".", 1)[1].split("@", 1)[0]
    return "ascii"  # a name the C library does not know: setlocale fails, and it runs as "C"


def charset_from_locale(environ: Mapping[str, str] | None = None) -> str | None:
    """The Specific Character Set matching the user's locale (gdcmscu's: ISO_IR 100 for a C/POSIX one)."""
    encoding = locale_codeset(environ)
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        return None
    return _CHARSETS.get(name, "ISO_IR 192" if name.startswith("utf") else _FALLBACK)
