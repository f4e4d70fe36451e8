"""The upper-layer PDUs and their items (PS3.8 9.3, Annex D): plain data, encoded and decoded.

Each PDU is an immutable record (a NamedTuple: cheap to define, which keeps start-up short); :func:`encode` turns one into bytes and
:func:`decode` turns a PDU type and body back into one, raising
:class:`ProtocolError` for anything malformed: a length that overruns its
container, an item where it does not belong, a missing mandatory item.  Unknown
user-information sub-items are kept as raw bytes (PS3.7 D.3.3 lets peers add
their own), so nothing a peer sends is silently lost.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

#: PS3.7 Annex A.2.1: the one DICOM application context name.
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"

ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ, P_DATA_TF, RELEASE_RQ, RELEASE_RP, ABORT = range(1, 8)
PDU_NAMES = {ASSOCIATE_RQ: "A-ASSOCIATE-RQ", ASSOCIATE_AC: "A-ASSOCIATE-AC", ASSOCIATE_RJ: "A-ASSOCIATE-RJ",
             P_DATA_TF: "P-DATA-TF", RELEASE_RQ: "A-RELEASE-RQ", RELEASE_RP: "A-RELEASE-RP", ABORT: "A-ABORT"}
#: A PDU header: type, reserved, length of what follows (PS3.8 9.3.1).
HEADER = struct.Struct(">BBL")

# Presentation context results (PS3.8 Table 9-18).
ACCEPTANCE, USER_REJECTION, NO_REASON, ABSTRACT_SYNTAX_NOT_SUPPORTED, TRANSFER_SYNTAXES_NOT_SUPPORTED = range(5)


class ProtocolError(ValueError):
    """The peer sent bytes that are not a valid PDU (the association must be aborted)."""


class ProposedContext(NamedTuple):
    """A presentation context of an A-ASSOCIATE-RQ: one abstract syntax, the transfer syntaxes offered."""

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


class ContextResult(NamedTuple):
    """A presentation context of an A-ASSOCIATE-AC: accepted with one transfer syntax, or refused."""

    context_id: int
    result: int
    transfer_syntax: str = ""

    @property
    def accepted(self) -> bool:
        return self.result == ACCEPTANCE


class RoleSelection(NamedTuple):
    """SCP/SCU role selection (PS3.7 D.3.3.4): which roles the requestor takes for a SOP class."""

    sop_class: str
    scu: bool
    scp: bool


class UserIdentity(NamedTuple):
    """User identity negotiation request (PS3.7 D.3.3.7): 1 username, 2 + passcode, 3 Kerberos, 4 SAML, 5 JWT."""

    kind: int
    primary: bytes
    secondary: bytes = b""
    response_requested: bool = False


class ExtendedNegotiation(NamedTuple):
    """SOP class extended negotiation (PS3.7 D.3.3.5): service-class specific bytes."""

    sop_class: str
    info: bytes


class CommonExtendedNegotiation(NamedTuple):
    """SOP class common extended negotiation (PS3.7 D.3.3.6)."""

    sop_class: str
    service_class: str
    related_classes: tuple[str, ...] = ()


class UserInformation(NamedTuple):
    """The user information item: maximum length and the optional negotiations."""

    max_length: int = 0
    implementation_class: str = ""
    implementation_version: str = ""
    #: Asynchronous operations window (PS3.7 D.3.3.3): (invoked, performed), or None (1, 1).
    async_window: tuple[int, int] | None = None
    roles: tuple[RoleSelection, ...] = ()
    extended: tuple[ExtendedNegotiation, ...] = ()
    common_extended: tuple[CommonExtendedNegotiation, ...] = ()
    identity: UserIdentity | None = None
    #: The acceptor's answer to a user identity request (A-ASSOCIATE-AC only), or None.
    identity_response: bytes | None = None
    #: Sub-items we do not interpret, as (item type, raw value).
    unknown: tuple[tuple[int, bytes], ...] = ()


class AssociateRQ(NamedTuple):
    called_ae: str
    calling_ae: str
    contexts: tuple[ProposedContext, ...]
    user: UserInformation = UserInformation()
    application_context: str = APPLICATION_CONTEXT
    protocol_version: int = 1


class AssociateAC(NamedTuple):
    called_ae: str
    calling_ae: str
    contexts: tuple[ContextResult, ...]
    user: UserInformation = UserInformation()
    application_context: str = APPLICATION_CONTEXT
    protocol_version: int = 1


class AssociateRJ(NamedTuple):
    """result 1 permanent / 2 transient; source 1 user, 2 ACSE, 3 presentation; reason (PS3.8 9.3.4)."""

    result: int
    source: int
    reason: int


class PDataTF(NamedTuple):
    """Presentation data values: (context ID, message control header, fragment)."""

    values: tuple[tuple[int, int, bytes], ...]


class Signal:
    """A PDU or event without fields: equal to its own kind only."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ReleaseRQ(Signal):
    __slots__ = ()


class ReleaseRP(Signal):
    __slots__ = ()


class Abort(NamedTuple):
    """source 0 service user, 2 service provider; reason only meaningful from the provider (PS3.8 9.3.8)."""

    source: int = 0
    reason: int = 0


PDU = AssociateRQ | AssociateAC | AssociateRJ | PDataTF | ReleaseRQ | ReleaseRP | Abort


# -- encoding --------------------------------------------------------------------------------------------

def _item(item_type: int, value: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(value)) + value


def _ascii(value: str) -> bytes:
    return value.encode("ascii")


def _u16_prefixed(value: bytes) -> bytes:
    return struct.pack(">H", len(value)) + value


def _ae(value: str) -> bytes:
    return _ascii(value).ljust(16)[:16]


def _user_items(user: UserInformation) -> bytes:
    items = [_item(0x51, struct.pack(">L", user.max_length))]
    if user.implementation_class:
        items.append(_item(0x52, _ascii(user.implementation_class)))
    if user.async_window is not None:
        items.append(_item(0x53, struct.pack(">HH", *user.async_window)))
    items += [_item(0x54, _u16_prefixed(_ascii(r.sop_class)) + bytes([r.scu, r.scp])) for r in user.roles]
    if user.implementation_version:
        items.append(_item(0x55, _ascii(user.implementation_version)))
    items += [_item(0x56, _u16_prefixed(_ascii(e.sop_class)) + e.info) for e in user.extended]
    for common in user.common_extended:
        related = b"".join(_u16_prefixed(_ascii(uid)) for uid in common.related_classes)
        items.append(_item(0x57, _u16_prefixed(_ascii(common.sop_class)) + _u16_prefixed(_ascii(common.service_class))
                           + _u16_prefixed(related)))
    if user.identity is not None:
        identity = user.identity
        items.append(_item(0x58, bytes([identity.kind, identity.response_requested]) + _u16_prefixed(identity.primary)
                           + _u16_prefixed(identity.secondary)))
    if user.identity_response is not None:
        items.append(_item(0x59, _u16_prefixed(user.identity_response)))
    items += [_item(kind, raw) for kind, raw in user.unknown]
    return _item(0x50, b"".join(items))


def _associate(pdu_type: int, pdu: AssociateRQ | AssociateAC, contexts: bytes) -> bytes:
    body = (struct.pack(">HH", pdu.protocol_version, 0) + _ae(pdu.called_ae) + _ae(pdu.calling_ae) + bytes(32)
            + _item(0x10, _ascii(pdu.application_context)) + contexts + _user_items(pdu.user))
    return HEADER.pack(pdu_type, 0, len(body)) + body


def encode(pdu: PDU) -> bytes:
    """The bytes of `pdu`, header included."""
    if isinstance(pdu, AssociateRQ):
        contexts = b"".join(
            _item(0x20, bytes([cx.context_id, 0, 0, 0]) + _item(0x30, _ascii(cx.abstract_syntax))
                  + b"".join(_item(0x40, _ascii(ts)) for ts in cx.transfer_syntaxes))
            for cx in pdu.contexts)
        return _associate(ASSOCIATE_RQ, pdu, contexts)
    if isinstance(pdu, AssociateAC):
        contexts = b"".join(
            _item(0x21, bytes([cx.context_id, 0, cx.result, 0])
                  + (_item(0x40, _ascii(cx.transfer_syntax)) if cx.transfer_syntax or cx.accepted else b""))
            for cx in pdu.contexts)
        return _associate(ASSOCIATE_AC, pdu, contexts)
    if isinstance(pdu, AssociateRJ):
        return HEADER.pack(ASSOCIATE_RJ, 0, 4) + bytes([0, pdu.result, pdu.source, pdu.reason])
    if isinstance(pdu, PDataTF):
        body = b"".join(struct.pack(">LBB", len(data) + 2, cid, control) + data for cid, control, data in pdu.values)
        return HEADER.pack(P_DATA_TF, 0, len(body)) + body
    if isinstance(pdu, ReleaseRQ):
        return HEADER.pack(RELEASE_RQ, 0, 4) + bytes(4)
    if isinstance(pdu, ReleaseRP):
        return HEADER.pack(RELEASE_RP, 0, 4) + bytes(4)
    if isinstance(pdu, Abort):
        return HEADER.pack(ABORT, 0, 4) + bytes([0, 0, pdu.source, pdu.reason])
    raise TypeError(f"not a PDU: {pdu!r}")


# -- decoding --------------------------------------------------------------------------------------------

def _text(raw: bytes | memoryview, what: str) -> str:
    """An ASCII UID or name, trailing NUL and space padding removed (peers do pad, PS3.8 9.3.2.2 says not to)."""
    try:
        return bytes(raw).rstrip(b"\0 ").decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError(f"{what} is not ASCII") from None


def _items(body: memoryview, what: str):
    """(item type, value) of the items that fill `body`."""
    pos, end = 0, len(body)
    while pos < end:
        if end - pos < 4:
            raise ProtocolError(f"{what}: {end - pos} stray byte(s) after the last item")
        item_type, _, length = struct.unpack_from(">BBH", body, pos)
        if pos + 4 + length > end:
            raise ProtocolError(f"{what}: item 0x{item_type:02X} of {length} bytes overruns its container")
        yield item_type, body[pos + 4: pos + 4 + length]
        pos += 4 + length


def _prefixed(raw: memoryview, pos: int, what: str) -> tuple[memoryview, int]:
    if pos + 2 > len(raw):
        raise ProtocolError(f"{what} is cut short")
    (length,) = struct.unpack_from(">H", raw, pos)
    if pos + 2 + length > len(raw):
        raise ProtocolError(f"{what} overruns its item")
    return raw[pos + 2: pos + 2 + length], pos + 2 + length


def _user_information(raw: memoryview) -> UserInformation:
    values: dict = {"roles": [], "extended": [], "common_extended": [], "unknown": []}
    for kind, value in _items(raw, "user information"):
        if kind == 0x51:
            if len(value) != 4:
                raise ProtocolError("maximum length sub-item is not 4 bytes")
            values["max_length"] = struct.unpack(">L", value)[0]
        elif kind == 0x52:
            values["implementation_class"] = _text(value, "implementation class UID")
        elif kind == 0x53:
            if len(value) != 4:
                raise ProtocolError("asynchronous operations window sub-item is not 4 bytes")
            values["async_window"] = struct.unpack(">HH", value)
        elif kind == 0x54:
            uid, pos = _prefixed(value, 0, "role selection SOP class UID")
            if pos + 2 != len(value):
                raise ProtocolError("role selection sub-item has the wrong length")
            values["roles"].append(RoleSelection(_text(uid, "role selection UID"), bool(value[pos]),
                                                 bool(value[pos + 1])))
        elif kind == 0x55:
            values["implementation_version"] = _text(value, "implementation version name")
        elif kind == 0x56:
            uid, pos = _prefixed(value, 0, "extended negotiation SOP class UID")
            values["extended"].append(ExtendedNegotiation(_text(uid, "extended negotiation UID"), bytes(value[pos:])))
        elif kind == 0x57:
            uid, pos = _prefixed(value, 0, "common extended negotiation SOP class UID")
            service, pos = _prefixed(value, pos, "common extended negotiation service class UID")
            related, pos = _prefixed(value, pos, "related general SOP classes")
            uids, at = [], 0
            while at < len(related):
                one, at = _prefixed(related, at, "related general SOP class UID")
                uids.append(_text(one, "related general SOP class UID"))
            values["common_extended"].append(CommonExtendedNegotiation(
                _text(uid, "SOP class UID"), _text(service, "service class UID"), tuple(uids)))
        elif kind == 0x58:
            if len(value) < 2:
                raise ProtocolError("user identity sub-item is cut short")
            primary, pos = _prefixed(value, 2, "user identity primary field")
            secondary, pos = _prefixed(value, pos, "user identity secondary field")
            values["identity"] = UserIdentity(value[0], bytes(primary), bytes(secondary), bool(value[1]))
        elif kind == 0x59:
            response, _ = _prefixed(value, 0, "user identity server response")
            values["identity_response"] = bytes(response)
        else:
            values["unknown"].append((kind, bytes(value)))
    if "max_length" not in values:
        raise ProtocolError("the user information item has no maximum length sub-item")
    for name in ("roles", "extended", "common_extended", "unknown"):
        values[name] = tuple(values[name])
    return UserInformation(**values)


def _associate_parts(body: memoryview, name: str):
    if len(body) < 68:
        raise ProtocolError(f"{name} is {len(body)} bytes, shorter than its fixed fields")
    (version,) = struct.unpack_from(">H", body, 0)
    called, calling = _text(body[4:20], "called AE title"), _text(body[20:36], "calling AE title")
    application, user, contexts = None, None, []
    for kind, value in _items(body[68:], name):
        if kind == 0x10:
            application = _text(value, "application context name")
        elif kind in (0x20, 0x21):
            if len(value) < 4:
                raise ProtocolError(f"{name}: presentation context item is cut short")
            contexts.append((kind, value))
        elif kind == 0x50:
            user = _user_information(value)
        else:
            raise ProtocolError(f"{name}: unexpected item type 0x{kind:02X}")
    if application is None:
        raise ProtocolError(f"{name} has no application context item")
    if user is None:
        raise ProtocolError(f"{name} has no user information item")
    return version, called, calling, application, user, contexts


def _proposed(value: memoryview) -> ProposedContext:
    abstract, syntaxes = None, []
    for kind, sub in _items(value[4:], "presentation context"):
        if kind == 0x30:
            abstract = _text(sub, "abstract syntax")
        elif kind == 0x40:
            syntaxes.append(_text(sub, "transfer syntax"))
        else:
            raise ProtocolError(f"presentation context: unexpected sub-item 0x{kind:02X}")
    if abstract is None or not syntaxes:
        raise ProtocolError(f"presentation context {value[0]} lacks its abstract or transfer syntax")
    return ProposedContext(value[0], abstract, tuple(syntaxes))


def _result(value: memoryview) -> ContextResult:
    syntax = ""
    for kind, sub in _items(value[4:], "presentation context"):
        if kind != 0x40:
            raise ProtocolError(f"presentation context result: unexpected sub-item 0x{kind:02X}")
        syntax = _text(sub, "transfer syntax")
    if value[2] == ACCEPTANCE and not syntax:
        raise ProtocolError(f"presentation context {value[0]} is accepted without a transfer syntax")
    return ContextResult(value[0], value[2], syntax)


def decode(pdu_type: int, body: bytes | bytearray | memoryview) -> PDU:
    """The PDU of type `pdu_type` whose body (what follows the 6-byte header) is `body`."""
    body = memoryview(body).cast("B") if not isinstance(body, memoryview) else body
    if pdu_type == ASSOCIATE_RQ:
        version, called, calling, application, user, raw = _associate_parts(body, "A-ASSOCIATE-RQ")
        if any(kind != 0x20 for kind, _ in raw):
            raise ProtocolError("A-ASSOCIATE-RQ holds an accepted-context item")
        return AssociateRQ(called, calling, tuple(_proposed(v) for _, v in raw), user, application, version)
    if pdu_type == ASSOCIATE_AC:
        version, called, calling, application, user, raw = _associate_parts(body, "A-ASSOCIATE-AC")
        if any(kind != 0x21 for kind, _ in raw):
            raise ProtocolError("A-ASSOCIATE-AC holds a proposed-context item")
        return AssociateAC(called, calling, tuple(_result(v) for _, v in raw), user, application, version)
    if pdu_type in (ASSOCIATE_RJ, RELEASE_RQ, RELEASE_RP, ABORT):
        if len(body) != 4:
            raise ProtocolError(f"{PDU_NAMES[pdu_type]} is {len(body)} bytes long, not 4")
        if pdu_type == ASSOCIATE_RJ:
            return AssociateRJ(body[1], body[2], body[3])
        if pdu_type == ABORT:
            return Abort(body[2], body[3])
        return ReleaseRQ() if pdu_type == RELEASE_RQ else ReleaseRP()
    if pdu_type == P_DATA_TF:
        return PDataTF(tuple(pdvs(body)))
    raise ProtocolError(f"unknown PDU type 0x{pdu_type:02X}")


def pdvs(body: memoryview):
    """(context ID, control, fragment) of each PDV item of a P-DATA-TF body; fragments are views, not copies."""
    pos, end = 0, len(body)
    if not end:
        raise ProtocolError("P-DATA-TF without any presentation data value")
    while pos < end:
        if end - pos < 6:
            raise ProtocolError("P-DATA-TF: a PDV item is cut short")
        (length,) = struct.unpack_from(">L", body, pos)
        if length < 2 or pos + 4 + length > end:
            raise ProtocolError(f"P-DATA-TF: a PDV item of {length} bytes does not fit its PDU")
        yield body[pos + 4], body[pos + 5], body[pos + 6: pos + 4 + length]
        pos += 4 + length
