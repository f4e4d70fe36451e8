"""Presentation context and role negotiation (PS3.8 9.3.2.2, 9.3.3.2; PS3.7 D.3.3.4): pure decisions.

The requestor numbers what it proposes (:func:`number`) and reads the answer
(:func:`agreed`); the acceptor answers a request from what it supports
(:func:`answer`): for each proposed context the first of the requestor's transfer
syntaxes it supports, in the requestor's order of preference, and the roles asked
for on the classes it supports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, NamedTuple, Sequence

from dicomscu import uids
from dicomscu.protocol import pdu as pdus

#: Our Implementation Class UID and Version Name (PS3.7 D.3.3.2), under the project's UID root.
IMPLEMENTATION_CLASS = uids.IMPLEMENTATION_CLASS
IMPLEMENTATION_VERSION = "DICOMSCU_1"
#: PS3.8 9.3.2.2: presentation context IDs are odd numbers 1 to 255.
MAX_CONTEXTS = 128


@dataclass(frozen=True)
class Proposal:
    """What we propose for one abstract syntax: the transfer syntaxes, most preferred first."""

    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]

    def __init__(self, abstract_syntax: str, transfer_syntaxes: Iterable[str]) -> None:
        object.__setattr__(self, "abstract_syntax", str(abstract_syntax))
        object.__setattr__(self, "transfer_syntaxes", tuple(str(ts) for ts in transfer_syntaxes))
        if not self.transfer_syntaxes:
            raise ValueError(f"no transfer syntax proposed for {abstract_syntax}")


class AcceptedContext(NamedTuple):
    context_id: int
    abstract_syntax: str
    transfer_syntax: str


def number(proposals: Sequence[Proposal]) -> tuple[pdus.ProposedContext, ...]:
    """Proposals as presentation context items with IDs 1, 3, 5, ... (at most 128)."""
    if len(proposals) > MAX_CONTEXTS:
        raise ValueError(f"{len(proposals)} presentation contexts proposed, at most {MAX_CONTEXTS}")
    return tuple(pdus.ProposedContext(2 * i + 1, p.abstract_syntax, p.transfer_syntaxes)
                 for i, p in enumerate(proposals))


def agreed(request: pdus.AssociateRQ, accept: pdus.AssociateAC) -> tuple[list[AcceptedContext], list[pdus.ProposedContext]]:
    """(accepted, refused) contexts: a result for an ID we never proposed, or a transfer syntax we never
    offered, counts as refused (the acceptor broke PS3.8 9.3.3.2, we will not use it)."""
    proposed = {cx.context_id: cx for cx in request.contexts}
    accepted: list[AcceptedContext] = []
    for result in accept.contexts:
        mine = proposed.get(result.context_id)
        if mine is not None and result.accepted and result.transfer_syntax in mine.transfer_syntaxes:
            accepted.append(AcceptedContext(result.context_id, mine.abstract_syntax, result.transfer_syntax))
    ids = {cx.context_id for cx in accepted}
    return accepted, [cx for cx in request.contexts if cx.context_id not in ids]


def answer(request: pdus.AssociateRQ, supported: Mapping[str, Sequence[str]], max_length: int,
           roles_allowed: Iterable[str] = (), window: int = 1) -> pdus.AssociateAC:
    """The A-ASSOCIATE-AC we send for `request`: `supported` maps abstract syntax -> transfer syntaxes;
    the requestor may take the roles it asks for on the classes in `roles_allowed`, and have up to `window`
    operations outstanding when it asked for an asynchronous operations window (answered only then)."""
    results = []
    for cx in request.contexts:
        ours = supported.get(cx.abstract_syntax)
        if ours is None:
            results.append(pdus.ContextResult(cx.context_id, pdus.ABSTRACT_SYNTAX_NOT_SUPPORTED))
            continue
        syntax = next((ts for ts in cx.transfer_syntaxes if ts in ours), None)
        results.append(pdus.ContextResult(cx.context_id, pdus.ACCEPTANCE, syntax) if syntax else
                       pdus.ContextResult(cx.context_id, pdus.TRANSFER_SYNTAXES_NOT_SUPPORTED))
    allowed = set(roles_allowed)
    roles = tuple(role for role in request.user.roles if role.sop_class in allowed)
    asked = request.user.async_window
    granted = None if asked is None else (_smaller(asked[0], max(window, 1)), 1)  # we perform one at a time
    user = pdus.UserInformation(max_length, IMPLEMENTATION_CLASS, IMPLEMENTATION_VERSION, async_window=granted,
                                roles=roles)
    return pdus.AssociateAC(request.called_ae, request.calling_ae, tuple(results), user,
                            protocol_version=1)


def requestor_roles(request: pdus.AssociateRQ, accept: pdus.AssociateAC) -> dict[str, tuple[bool, bool]]:
    """SOP class -> (requestor may be SCU, requestor may be SCP) as agreed; classes absent keep the default
    (SCU only).  A role is held when both sides said yes (PS3.7 Table D.3-11)."""
    asked = {role.sop_class: role for role in request.user.roles}
    agreed_roles = {}
    for role in accept.user.roles:
        mine = asked.get(role.sop_class)
        if mine is not None:
            agreed_roles[role.sop_class] = (mine.scu and role.scu, mine.scp and role.scp)
    return agreed_roles


def _smaller(one: int, other: int) -> int:
    """The smaller of two window sizes, where 0 means unlimited (PS3.7 D.3.3.3)."""
    return max(one, other) if 0 in (one, other) else min(one, other)


def window(request: pdus.AssociateRQ, accept: pdus.AssociateAC) -> int:
    """How many operations the requestor may have outstanding at once, as agreed (PS3.7 D.3.3.3): 1 unless
    both sides sent an asynchronous operations window; never more than the requestor asked for, and never
    unlimited (0 from both sides counts as 1: nothing bounds it, so nothing is assumed)."""
    if request.user.async_window is None or accept.user.async_window is None:
        return 1
    return _smaller(request.user.async_window[0], accept.user.async_window[0]) or 1
