"""What a retrieval sends, decided before anything is sent: the query, or the identifiers, or both.

A C-GET, C-MOVE or WADO-RS is asked for with keys (``-k``), with the answers of an earlier find
(``--from-json``, ``--then``), or both; :func:`plan_retrieval` turns that into a :class:`RetrievalPlan`:

* keys that are only retrieval keys with ASCII values become the identifier directly, read and checked
  without pydicom (:func:`dicomscu.query.identifier.from_keys`), when the target can take one so
  (``light``: a cluster splits its work by a find first, and needs a built query);
* otherwise the query is built (:func:`dicomscu.query.build.build_query`), and answers given become one
  identifier each at the requested level (:func:`.retrieve.identifiers_from_answers`);
* a WADO-RS of given identifiers needs no query at all.

The command line and the Python API plan the same way; the command line only adds its files
(``--store-query`` writes :meth:`RetrievalPlan.sent`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from dicomscu.choices import LevelName, ModelName

if TYPE_CHECKING:  # pragma: no cover
    from dicomscu.operations.target import Target
    from dicomscu.query.build import Query

LOGGER = logging.getLogger("dicomscu")


@dataclass
class RetrievalPlan:
    """The query a retrieval runs (None: a WADO-RS of given identifiers needs none), and the identifiers it
    fetches (None: whatever the query selects)."""

    query: "Query | None"
    identifiers: list | None
    #: How the target names the retrieval ("C-GET", "C-MOVE", "WADO-RS").
    name: str

    def sent(self) -> "Query":
        """The query as it goes on the wire (its keys that have values: an empty key is no key value in a
        retrieval), for ``--store-query``; raises the UsageError the retrieval itself would."""
        from dicomscu.operations.retrieve import retrieve_identifier

        if self.query is None:
            raise ValueError("a retrieval of given identifiers sends no query")
        return replace(self.query, dataset=retrieve_identifier(self.query, self.name))


def plan_retrieval(target: "Target", operation: str, model: ModelName | None, level: LevelName | None,
                   keys: Sequence[str], *, charset: str | None = None, environ: Mapping[str, str] | None = None,
                   identifiers: list | None = None, answers: list[Any] | None = None,
                   light: bool = True) -> RetrievalPlan:
    """Plan a retrieval of `operation` ("get" or "move") on `target` from `keys` at `level` of `model`, and
    `answers` of an earlier find (datasets) or ready `identifiers`.  `light` allows an identifier read without
    pydicom (a caller that needs the built query, to write it, says no)."""
    name = target.retrieval_name(operation)
    if identifiers is None and answers is None and light and charset is None and target.light_identifiers:
        from dicomscu.query.identifier import from_keys, query_of

        identifier = from_keys(model, level, list(keys), name, environ)  # no pydicom
        if identifier is not None:
            LOGGER.info("%s identifier: %s", name, identifier)
            return RetrievalPlan(query_of(model, identifier), [identifier], name)
    if not target.query_needed(identifiers if answers is None else None):
        return RetrievalPlan(None, identifiers, name)
    from dicomscu.query.build import build_query

    query = build_query(model, level, list(keys), charset=charset, level_key=False, environ=environ)
    if answers is not None:
        from dicomscu.operations.retrieve import identifiers_from_answers

        identifiers = identifiers_from_answers(answers, query, level)
    LOGGER.info("%s identifier:\n%s", operation.upper(), query.dataset)
    return RetrievalPlan(query, identifiers, name)
