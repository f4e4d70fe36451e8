"""The closed sets of names dicomscu's options take, as types: a misspelt one is a type error before it is a
:class:`~dicomscu.errors.UsageError`.

Each Literal here is the one list of its names: the option table's choices are these tuples, and the runtime
tables that give the names their meaning (query models, levels) are checked equal to them by
tests/test_api_types.py.
"""

from __future__ import annotations

from typing import Literal, get_args

#: Query/Retrieve information models (``--patientroot``, ``--studyroot``, ``--worklist``).
ModelName = Literal["patientroot", "studyroot", "worklist"]
#: Query/Retrieve levels, as the command line spells them and as QueryRetrieveLevel holds them.
LevelName = Literal["patient", "study", "series", "image", "PATIENT", "STUDY", "SERIES", "IMAGE"]
#: How retrieved files are named (``--layout``).
Layout = Literal["flat", "hierarchical"]
#: ``--format``.
OutputFormat = Literal["table", "json", "csv", "dump"]

MODEL_NAMES: tuple[str, ...] = get_args(ModelName)
LAYOUTS: tuple[str, ...] = get_args(Layout)
FORMATS: tuple[str, ...] = get_args(OutputFormat)
