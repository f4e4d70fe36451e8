"""Build the C-FIND/C-MOVE/C-GET identifier from the model, level and keys (pure functions).

gdcmscu's rules: the model's top level when none is given; (0008,0052) set from
the level (``--patientroot`` alone means ``--key 8,52=PATIENT``); the unique key of
every level down to the requested one added as a return key; Specific Character
Set from the locale when a value needs it.
"""

from __future__ import annotations

import codecs
import os
import re
from typing import Iterator, Mapping

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.valuerep import PersonName

from dicomscu.choices import LevelName, ModelName
from dicomscu.errors import UsageError
from dicomscu.printable import printable
from dicomscu.query.values import problem
from dicomscu.query.charsets import charset_from_locale, locale_codeset  # noqa: F401 - also this module's names
from dicomscu.query.identifier import CHARSET, QUERY_LEVEL, Query  # noqa: F401 - also this module's names
from dicomscu.query.keys import Key, parse_key
from dicomscu.query.model import MODELS, WORKLIST_DEFAULT_KEYS, Model, model_named

_INT_VRS = {"US", "UL", "SS", "SL", "UV", "SV"}
_FLOAT_VRS = {"FL", "FD"}
_BYTE_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "UN"}
def build_query(
    model_name: ModelName | None,
    level: LevelName | None,
    key_texts: list[str],
    *,
    charset: str | None = None,
    level_key: bool = True,
    environ: Mapping[str, str] | None = None,
) -> Query:
    """The identifier for `key_texts` at `level` of `model_name` (default patient root, STUDY level).

    The unique keys of the levels above `level` are added (empty: returned), as
    gdcmscu adds them; with `level_key` the level's own unique key too, which every
    answer then carries (the command line asks for it only where it needs it: its
    binary would not).  `charset`: a Specific Character Set term to declare, ``""``
    for none, or None to take it from the locale (as gdcmscu does), read from `environ`
    (default ``os.environ``).
    """
    model = model_named(model_name)
    keys = [parse_key(text) for text in key_texts]
    if model.name == "worklist" and not keys:
        keys = [parse_key(text) for text in WORKLIST_DEFAULT_KEYS]
    dataset = Dataset()
    for key in keys:
        _put(dataset, key)

    level_name = _resolve_level(model, level, dataset)
    if level_name is not None:
        dataset.QueryRetrieveLevel = level_name
        path = model.path_to(level_name)
        for step in path if level_key else path[:-1]:
            if step.unique not in dataset:
                setattr(dataset, step.unique, "")
    _restore_typed_bytes(dataset, charset, environ)
    _set_charset(dataset, charset, environ)
    _check_encodable(dataset)
    return Query(model, level_name, dataset, keys)


def _resolve_level(model: Model, level: str | None, dataset: Dataset) -> str | None:
    if not model.levels:
        if level is not None:
            raise UsageError(f"the worklist model has no levels: {level} does not apply to it")
        return None
    given = str(dataset.get("QueryRetrieveLevel", "") or "").strip().upper() or None
    wanted = level.upper() if level else None
    if given and wanted and given != wanted:
        raise UsageError(f"8,52={given} contradicts the {level} level", option="keys")
    name = wanted or given or model.default_level
    try:
        model.level(name)
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None
    return name


def _put(dataset: Dataset, key: Key) -> None:
    """Place `key` in `dataset`, creating sequence items along its path."""
    target = dataset
    for step in key.path[:-1]:
        if step.tag not in target:
            target.add_new(step.tag, "SQ", Sequence())
        sequence = target[step.tag].value
        index = step.item or 0
        while len(sequence) <= index:
            sequence.append(Dataset())
        target = sequence[index]
    last = key.path[-1]
    if last.tag in target:
        return  # given twice: the first one wins, as in gdcmscu
    target.add_new(last.tag, last.vr, Sequence() if last.vr == "SQ" else _value(key))


def _value(key: Key):
    value = key.value
    if value is None or value == "":
        return None
    if key.vr == "UI" and value == "*":
        # PS3.4 C.2.2.2.4: '*' alone is a universal match; UIs allow no wildcard, and
        # some servers (Orthanc) refuse it. An empty value means the same.
        return None
    if key.vr == "AT":
        raise UsageError(f"'{key.text}': attribute tag (AT) values are not supported as query keys", option="keys")
    reason = problem(key.vr, value)
    if reason is not None:
        raise UsageError(f"'{printable(key.text)}': the value {reason}", option="keys")
    if key.vr in _INT_VRS | _FLOAT_VRS:
        convert = int if key.vr in _INT_VRS else float
        parts = [convert(part) for part in value.split("\\")]
        return parts[0] if len(parts) == 1 else parts
    if key.vr in _BYTE_VRS:  # bytes (or a tag the dictionary does not know): as typed, NUL-padded as gdcmscu does
        raw = os.fsencode(value)
        return raw + b"\0" * (len(raw) % 2)  # (pydicom would write an odd length as it is)
    return value


def _set_charset(dataset: Dataset, charset: str | None, environ: Mapping[str, str] | None = None) -> None:
    if "SpecificCharacterSet" in dataset:
        return  # given as a key: the user knows best
    if charset == "":
        return
    if charset is None:
        # gdcmscu: the locale's character set (a UTF-8 locale gives ISO_IR 192); with an
        # ASCII locale none is declared, unless a value needs one.
        charset = charset_from_locale(environ) or (None if _is_ascii(dataset) else "ISO_IR 192")
        if charset == "ISO_IR 100" and not _is_latin1(dataset):
            charset = "ISO_IR 192"  # a value Latin-1 cannot hold (typed in a UTF-8 terminal, say)
    if charset:
        dataset.SpecificCharacterSet = charset


def _restore_typed_bytes(dataset: Dataset, charset: str | None, environ: Mapping[str, str] | None) -> None:
    """Read the bytes of values the locale could not decode in the character set they are in.

    Python decodes the command line as UTF-8 (or the locale's encoding) and keeps each byte it cannot
    decode as an escape (PEP 383): sent as such, pydicom would write ``?``, a wildcard that matches any
    character.  Those bytes are read instead in the character set declared for them (``--charset``, else the
    locale's; a C/POSIX locale's is Latin-1, as gdcmscu declares it), so they go out as given; bytes that are
    not valid there are a usage error naming the key and the byte.
    """
    if charset:
        term, codec = charset, _codec(charset)
    else:  # as the terminal wrote them: in the locale's encoding (C/POSIX: Latin-1, as gdcmscu declares it)
        term = charset_from_locale(environ) or "ISO_IR 100"
        try:
            codec = codecs.lookup(locale_codeset(environ)).name
        except LookupError:
            codec = None
        codec = "latin-1" if codec in (None, "ascii") else codec
    for element in dataset.iterall():
        value = element.value
        if not isinstance(value, (str, PersonName)) or not _ESCAPED.search(str(value)):
            continue
        raw = os.fsencode(str(value))  # the bytes as typed: undone the way Python decoded the command line
        try:
            element.value = raw.decode(codec or "ascii")
        except UnicodeDecodeError as exc:
            byte = raw[exc.start]
            raise UsageError(f"{_name(element)}: the byte 0x{byte:02X} is not valid in {term}"
                             f"{' (the locale' + chr(39) + 's character set)' if not charset else ''}",
                             option="keys", hint="give --charset with the character set the value is written "
                                                 "in (e.g. --charset 'ISO_IR 100' for Latin-1)") from None


def _check_encodable(dataset: Dataset) -> None:
    """Every text value can be written in the declared character set: never a silent ``?`` on the wire."""
    terms = dataset.get("SpecificCharacterSet") or "ISO_IR 6"
    if not isinstance(terms, str):
        if len(terms) > 1:
            return  # ISO 2022 code extensions: pydicom switches between them as each value needs
        terms = terms[0] if terms else "ISO_IR 6"
    term = terms.strip() or "ISO_IR 6"
    codec = _codec(term)
    if codec is None:
        raise UsageError(f"the character set {term!r} cannot be encoded here (pydicom has no codec for it)",
                         option="keys", hint="give --charset 'ISO_IR 192' (UTF-8) or 'ISO_IR 100' (Latin-1)")
    for element in dataset.iterall():
        value = element.value
        if element.tag == 0x00080005 or not isinstance(value, (str, PersonName)):
            continue
        text = str(value)
        try:
            text.encode(codec)
        except UnicodeEncodeError as exc:
            raise UsageError(f"{_name(element)}: {text[exc.start]!r} cannot be written in {term}", option="keys",
                             hint="give --charset 'ISO_IR 192' (UTF-8)") from None


_ESCAPED = re.compile("[\udc80-\udcff]")


def _codec(term: str) -> str | None:
    """Python's codec for a Specific Character Set term (ISO_IR 6, the default repertoire: ASCII), or None."""
    from pydicom.charset import python_encoding

    if term in ("", "ISO_IR 6"):
        return "ascii"
    return python_encoding.get(term)


def _name(element) -> str:
    tag = element.tag
    return f"({tag.group:04X},{tag.element:04X}) {element.keyword or ''}".rstrip()


def _texts(dataset: Dataset) -> Iterator[str]:
    """Every text value, person names included (pydicom holds those as PersonName, not str)."""
    for element in dataset.iterall():
        value = element.value
        if isinstance(value, (str, PersonName)):
            yield str(value)


def _is_latin1(dataset: Dataset) -> bool:
    try:
        for text in _texts(dataset):
            text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _is_ascii(dataset: Dataset) -> bool:
    return all(text.isascii() for text in _texts(dataset))
