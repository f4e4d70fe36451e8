"""dicomscu.protocol in memory: PDUs against pynetdicom's codec, DIMSE command sets, two cores talking, fuzzing.

pynetdicom is the oracle here (a test dependency only): what we encode it decodes
to the same values and re-encodes to the same bytes, and the other way round.
"""

from __future__ import annotations

import random
import struct

import pytest
from pynetdicom.pdu import A_ABORT_RQ, A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ASSOCIATE_RQ, P_DATA_TF

from dicomscu.protocol import commands, machine as m, negotiation, pdu as P
from dicomscu.protocol.messages import Reassembler, SequenceError, fragments
from dicomscu.protocol.pdu import ProtocolError

CT = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT, EXPLICIT = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1"
FULL_USER = P.UserInformation(
    16384, "1.2.826.0.1.3680043.10.1137.0.1", "DICOMSCU_1", (5, 3), (P.RoleSelection(CT, False, True),),
    (P.ExtendedNegotiation("1.2.840.10008.5.1.4.1.2.2.1", b"\x01\x00\x01"),),
    (P.CommonExtendedNegotiation(CT, "1.2.840.10008.4.2", ("1.2.840.10008.5.1.4.1.1.2.1",)),),
    P.UserIdentity(2, b"alice", b"secret", True))


def full_request() -> P.AssociateRQ:
    contexts = (P.ProposedContext(1, "1.2.840.10008.1.1", (IMPLICIT,)), P.ProposedContext(3, CT, (EXPLICIT, IMPLICIT)))
    return P.AssociateRQ("STORESCP", "DICOMSCU", contexts, FULL_USER)


# -- PDUs --------------------------------------------------------------------------------------------------

def test_associate_rq_round_trips_and_matches_pynetdicom():
    data = P.encode(full_request())
    assert P.decode(data[0], data[6:]) == full_request()
    theirs = A_ASSOCIATE_RQ()
    theirs.decode(data)
    assert theirs.encode() == data  # pynetdicom reads every item and writes the same bytes
    primitive = theirs.to_primitive()
    assert (primitive.called_ae_title, primitive.calling_ae_title) == ("STORESCP", "DICOMSCU")
    assert [(cx.context_id, cx.abstract_syntax, cx.transfer_syntax) for cx in
            primitive.presentation_context_definition_list] == [(1, "1.2.840.10008.1.1", [IMPLICIT]),
                                                              (3, CT, [EXPLICIT, IMPLICIT])]
    kinds = {type(item).__name__: item for item in primitive.user_information}
    assert kinds["MaximumLengthNotification"].maximum_length_received == 16384
    assert kinds["UserIdentityNegotiation"].primary_field == b"alice"
    assert kinds["SCP_SCU_RoleSelectionNegotiation"].scp_role is True
    assert kinds["AsynchronousOperationsWindowNegotiation"].maximum_number_operations_invoked == 5


def test_associate_ac_rj_abort_release_match_pynetdicom():
    accept = negotiation.answer(full_request(), {CT: (IMPLICIT,)}, 32768, roles_allowed=[CT])
    data = P.encode(accept)
    theirs = A_ASSOCIATE_AC()
    theirs.decode(data)
    assert theirs.encode() == data
    results = {cx.context_id: (cx.result, cx.transfer_syntax) for cx in theirs.to_primitive().
               presentation_context_definition_results_list}
    assert results == {1: (3, []), 3: (0, [IMPLICIT])}
    assert P.decode(data[0], data[6:]) == accept
    for ours, cls in ((P.AssociateRJ(2, 3, 2), A_ASSOCIATE_RJ), (P.Abort(2, 6), A_ABORT_RQ)):
        raw = P.encode(ours)
        other = cls()
        other.decode(raw)
        assert other.encode() == raw and P.decode(raw[0], raw[6:]) == ours
    assert P.encode(P.ReleaseRQ()) == b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00"
    assert P.encode(P.ReleaseRP()) == b"\x06\x00\x00\x00\x00\x04\x00\x00\x00\x00"


def test_pynetdicom_requests_decode_to_the_same_values():
    from pynetdicom import AE, build_context
    from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification, SCP_SCU_RoleSelectionNegotiation

    primitive = A_ASSOCIATE()
    primitive.application_context_name = P.APPLICATION_CONTEXT
    primitive.calling_ae_title, primitive.called_ae_title = "THEM", "US"
    context = build_context(CT, [EXPLICIT, IMPLICIT])
    context.context_id = 7
    primitive.presentation_context_definition_list = [context]
    length = MaximumLengthNotification()
    length.maximum_length_received = 0
    role = SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid, role.scu_role, role.scp_role = CT, True, True
    primitive.user_information = [length, role]
    raw = A_ASSOCIATE_RQ()
    raw.from_primitive(primitive)
    data = raw.encode()
    ours = P.decode(data[0], data[6:])
    assert ours.calling_ae == "THEM" and ours.contexts == (P.ProposedContext(7, CT, (EXPLICIT, IMPLICIT)),)
    assert ours.user.max_length == 0 and ours.user.roles == (P.RoleSelection(CT, True, True),)
    assert P.encode(ours) == data
    assert AE  # imported for its side effect of registering pynetdicom's classes


def test_p_data_values_match_pynetdicom():
    raw = P.encode(P.PDataTF(((1, 0x03, b"\x01\x02"), (1, 0x02, b"abc\0"))))
    theirs = P_DATA_TF()
    theirs.decode(raw)
    assert theirs.encode() == raw
    assert [(i.context_id, i.data) for i in theirs.presentation_data_value_items] == [(1, b"\x03\x01\x02"),
                                                                                     (1, b"\x02abc\0")]


def _cut(data: bytes, count: int) -> bytes:
    """`data` without its last `count` bytes, the PDU length adjusted: a whole PDU, its last item cut."""
    return data[:2] + struct.pack(">L", len(data) - 6 - count) + data[6:-count]


@pytest.mark.parametrize("data, fragment", [
    (b"\x01\x00\x00\x00\x00\x02\x00\x01", "shorter than its fixed fields"),
    (_cut(P.encode(full_request()), 3), "overruns"),
    (_cut(P.encode(P.AssociateRQ("A", "B", (), P.UserInformation(0))), 12), "no user information"),
    (b"\x04\x00\x00\x00\x00\x05\x00\x00\x00\x01\x01", "PDV item"),
    (b"\x03\x00\x00\x00\x00\x03\x00\x01\x01", "not 4"),
    (b"\x09\x00\x00\x00\x00\x00", "unknown PDU type"),
])
def test_malformed_pdus_are_protocol_errors(data, fragment):
    with pytest.raises(ProtocolError, match=fragment):
        core = m.Association(m.ACCEPTOR)
        core.receive_data(data if data[0] != 0x04 else data)
        if data[0] == 0x04:  # P-DATA in Sta2 would be refused for its state; decode the body itself
            list(P.pdvs(memoryview(data[6:])))
        core.next_event()


# -- DIMSE ---------------------------------------------------------------------------------------------------

def pynetdicom_command(primitive, message_class) -> bytes:
    from pynetdicom.dsutils import encode

    message = message_class()
    message.primitive_to_message(primitive)
    return encode(message.command_set, True, True)


def test_command_sets_equal_pynetdicom():
    from io import BytesIO

    from pynetdicom.dimse_messages import C_CANCEL_RQ, C_ECHO_RQ, C_FIND_RQ, C_GET_RSP, C_MOVE_RQ, C_STORE_RQ
    from pynetdicom.dimse_primitives import C_CANCEL, C_ECHO, C_FIND, C_GET, C_MOVE, C_STORE

    store = C_STORE()
    store.MessageID, store.AffectedSOPClassUID, store.AffectedSOPInstanceUID, store.Priority = 65535, CT, "1.2.3", 0
    store.MoveOriginatorApplicationEntityTitle, store.MoveOriginatorMessageID = "ORIGIN", 9
    store.DataSet = BytesIO(b"\0\0")
    assert commands.c_store_rq(65535, CT, "1.2.3", move_originator=("ORIGIN", 9)) == \
        pynetdicom_command(store, C_STORE_RQ)
    echo = C_ECHO()
    echo.MessageID, echo.AffectedSOPClassUID = 3, "1.2.840.10008.1.1"
    assert commands.c_echo_rq(3) == pynetdicom_command(echo, C_ECHO_RQ)
    find = C_FIND()
    find.MessageID, find.AffectedSOPClassUID, find.Priority, find.Identifier = 4, "1.2.840.10008.5.1.4.1.2.2.1", 0, \
        BytesIO(b"\0")
    assert commands.c_find_rq(4, "1.2.840.10008.5.1.4.1.2.2.1") == pynetdicom_command(find, C_FIND_RQ)
    move = C_MOVE()
    move.MessageID, move.AffectedSOPClassUID, move.Priority, move.MoveDestination = 5, "1.2.840.10008.5.1.4.1.2.2.2", \
        0, "DEST"
    move.Identifier = BytesIO(b"\0")
    assert commands.c_move_rq(5, "1.2.840.10008.5.1.4.1.2.2.2", "DEST") == pynetdicom_command(move, C_MOVE_RQ)
    cancel = C_CANCEL()
    cancel.MessageIDBeingRespondedTo = 5
    assert commands.c_cancel_rq(5) == pynetdicom_command(cancel, C_CANCEL_RQ)
    get = C_GET()
    get.MessageIDBeingRespondedTo, get.AffectedSOPClassUID, get.Status = 6, "1.2.840.10008.5.1.4.1.2.2.3", 0xFF00
    get.NumberOfRemainingSuboperations, get.NumberOfCompletedSuboperations = 3, 2
    get.NumberOfFailedSuboperations, get.NumberOfWarningSuboperations = 1, 0
    ours = commands.retrieve_rsp(commands.C_GET_RSP, 6, "1.2.840.10008.5.1.4.1.2.2.3", 0xFF00, (3, 2, 1, 0))
    assert ours == pynetdicom_command(get, C_GET_RSP)
    decoded = commands.decode(ours)
    assert (decoded.Status, decoded.NumberOfRemainingSuboperations, decoded.NumberOfFailedSuboperations,
            decoded.has_dataset, decoded.name) == (0xFF00, 3, 1, False, "C-GET-RSP")


def test_commands_decode_pynetdicom_responses_and_refuse_garbage():
    from pynetdicom.dimse_messages import C_STORE_RSP
    from pynetdicom.dimse_primitives import C_STORE

    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo, rsp.AffectedSOPClassUID, rsp.AffectedSOPInstanceUID = 42, CT, "1.2.3.4"
    rsp.Status, rsp.ErrorComment = 0xB000, "coerced"
    decoded = commands.decode(pynetdicom_command(rsp, C_STORE_RSP))
    assert (decoded.MessageIDBeingRespondedTo, decoded.Status, decoded.ErrorComment,
            decoded.AffectedSOPInstanceUID, decoded.is_response) == (42, 0xB000, "coerced", "1.2.3.4", True)
    for garbage in (b"\x00\x00\x00\x01garbage", b"\x08\x00\x00\x01\x02\x00\x00\x00ab",
                    commands.encode(MessageID=1)):
        with pytest.raises(commands.CommandError):
            commands.decode(garbage)


def test_fragments_respect_max_pdu_and_reassemble():
    command = commands.c_store_rq(7, CT, "1.2.3")
    dataset = bytes(range(256)) * 100
    pieces = fragments(5, command, dataset, 4096)
    pdus = [bytes(pieces[i]) + bytes(pieces[i + 1]) for i in range(0, len(pieces), 2)]
    assert all(len(pdu) - 6 <= 4096 for pdu in pdus)
    assembler = Reassembler()
    done = [assembler.add(*pdv) for pdu in pdus for pdv in P.pdvs(memoryview(pdu[6:]))]
    assert all(x is None for x in done[:-1])
    message = done[-1]
    assert message.context_id == 5 and bytes(message.dataset) == dataset and message.command.MessageID == 7
    small = Reassembler(max_dataset=1000)
    last = [small.add(*pdv) for pdu in pdus for pdv in P.pdvs(memoryview(pdu[6:]))][-1]
    assert last.oversize and last.dataset is None  # dropped as it came: never held
    with pytest.raises(SequenceError):
        Reassembler().add(1, 0x02, b"data before command")


# -- two cores talking -----------------------------------------------------------------------------------------

class Pair:
    """A requestor and an acceptor core wired back to back (what h11's ConnectionPair is to HTTP)."""

    def __init__(self, max_receive: int = 16384) -> None:
        self.requestor = m.Association(m.REQUESTOR, max_receive)
        self.acceptor = m.Association(m.ACCEPTOR, max_receive)

    def to_acceptor(self, data) -> list:
        return self._deliver(self.acceptor, data)

    def to_requestor(self, data) -> list:
        return self._deliver(self.requestor, data)

    @staticmethod
    def _deliver(core, data) -> list:
        for chunk in (data if isinstance(data, list) else [data]):
            raw = bytes(chunk)
            for i in range(0, len(raw), 7):  # in small pieces: no event may depend on how bytes arrive
                core.receive_data(raw[i:i + 7])
        events = []
        while (event := core.next_event()) is not m.NEED_DATA:
            events.append(event)
        return events

    def establish(self) -> P.AssociateAC:
        request = full_request()
        (event,) = self.to_acceptor(self.requestor.request(request))
        assert isinstance(event, m.AssociationRequested) and event.request == request
        accept = negotiation.answer(request, {CT: (IMPLICIT, EXPLICIT), "1.2.840.10008.1.1": (IMPLICIT,)}, 16384,
                                    [CT])
        (event,) = self.to_requestor(self.acceptor.accept(accept))
        assert isinstance(event, m.AssociationAccepted) and self.requestor.established and self.acceptor.established
        return accept


def test_negotiate_exchange_and_release_in_memory():
    pair = Pair()
    accept = pair.establish()
    accepted, refused = negotiation.agreed(full_request(), accept)
    assert [(cx.context_id, cx.transfer_syntax) for cx in accepted] == [(1, IMPLICIT), (3, EXPLICIT)] and not refused
    assert negotiation.requestor_roles(full_request(), accept) == {CT: (False, True)}
    dataset = b"\x08\x00\x18\x00\x06\x00\x001.2.3\0" * 5000  # fragmented at the acceptor's 16384
    (event,) = pair.to_acceptor(pair.requestor.send_message(3, commands.c_store_rq(1, CT, "1.2.3"), dataset))
    assert bytes(event.message.dataset) == dataset and event.message.command.AffectedSOPInstanceUID == "1.2.3"
    (event,) = pair.to_requestor(pair.acceptor.send_message(3, commands.c_store_rsp(1, CT, "1.2.3", 0), None))
    assert event.message.command.Status == 0 and event.message.dataset is None
    assert pair.to_acceptor(pair.requestor.release()) == [m.ReleaseRequested()]
    assert pair.to_requestor(pair.acceptor.release_response()) == [m.ReleaseConfirmed()]
    pair.requestor.receive_data(b"")
    assert pair.requestor.next_event() == m.ConnectionClosed(expected=True)


@pytest.mark.parametrize("first", ["requestor", "acceptor"])
def test_release_collision(first):
    """Both sides ask to release at once (PS3.8 7.2.2, states Sta9 to Sta12): both end released."""
    pair = Pair()
    pair.establish()
    from_requestor, from_acceptor = pair.requestor.release(), pair.acceptor.release()
    assert pair.to_acceptor(from_requestor) == [m.ReleaseRequested(collision=True)]
    assert pair.to_requestor(from_acceptor) == [m.ReleaseRequested(collision=True)]
    assert (pair.requestor.state, pair.acceptor.state) == ("Sta9", "Sta10")
    assert pair.to_acceptor(pair.requestor.release_response()) == [m.ReleaseConfirmed()]  # Sta11, Sta12
    assert pair.to_requestor(pair.acceptor.release_response()) == [m.ReleaseConfirmed()]
    assert (pair.requestor.state, pair.acceptor.state) == ("Sta13", "Sta13")


def test_reject_abort_and_violations():
    pair = Pair()
    pair.to_acceptor(pair.requestor.request(full_request()))
    assert pair.to_requestor(pair.acceptor.reject(P.AssociateRJ(1, 1, 3))) == [m.AssociationRejected(
        P.AssociateRJ(1, 1, 3))]
    pair = Pair()
    pair.establish()
    assert pair.to_requestor(pair.acceptor.abort(2, 6)) == [m.Aborted(P.Abort(2, 6))]
    pair = Pair()
    pair.establish()
    with pytest.raises(ProtocolError, match="A-ASSOCIATE-AC in state Sta6"):
        pair.to_requestor(P.encode(negotiation.answer(full_request(), {}, 0)))
    assert pair.requestor.abort(2, 2) == P.encode(P.Abort(2, 2))  # AA-8
    with pytest.raises(m.LocalProtocolError):
        pair.requestor.release()
    core = m.Association(m.ACCEPTOR, 16384)
    core.receive_data(struct.pack(">BBL", 4, 0, 1 << 30))  # a 1 GiB P-DATA announced: refused from its header
    with pytest.raises(ProtocolError, match="more than"):
        core.next_event()


def test_a_connection_closed_mid_pdu_says_so():
    pair = Pair()
    pair.establish()
    pair.requestor.receive_data(b"\x04\x00\x00\x00\x10")
    pair.requestor.receive_data(b"")
    assert pair.requestor.next_event() == m.ConnectionClosed(expected=False, mid_pdu=True)


# -- fuzzing ----------------------------------------------------------------------------------------------------

def _valid_stream() -> list[bytes]:
    pair = Pair()
    stream = [P.encode(full_request())]
    pair.to_acceptor(stream[0])
    pair.acceptor.accept(negotiation.answer(full_request(), {CT: (IMPLICIT,)}, 16384))
    stream += [bytes(b) for b in fragments(3, commands.c_find_rq(1, "1.2.840.10008.5.1.4.1.2.2.1"), b"\0" * 40, 64)]
    stream.append(P.encode(P.ReleaseRQ()))
    return stream


@pytest.mark.parametrize("seed", range(40))
def test_fuzzed_streams_give_events_or_protocol_errors_only(seed):
    """Mutated and random input to an acceptor core: an event, NEED_DATA or ProtocolError, nothing else."""
    rng = random.Random(seed)
    stream = bytearray(b"".join(_valid_stream()))
    for _ in range(rng.randint(1, 12)):
        position = rng.randrange(len(stream))
        choice = rng.random()
        if choice < 0.6:
            stream[position] = rng.randrange(256)
        elif choice < 0.8:
            del stream[position: position + rng.randint(1, 20)]
        else:
            stream[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 20)))
    for data in (bytes(stream), bytes(rng.randrange(256) for _ in range(rng.randint(1, 400)))):
        core = m.Association(m.ACCEPTOR, 16384, max_dataset=1 << 16)
        if rng.random() < 0.5:  # as if established, so that P-DATA gets through to the DIMSE layer
            core.receive_data(P.encode(full_request()))
            core.next_event()
            core.accept(negotiation.answer(full_request(), {CT: (IMPLICIT,)}, 16384))
        core.receive_data(data)
        try:
            for _ in range(100):
                if core.next_event() is m.NEED_DATA:
                    break
        except ProtocolError:
            assert core.abort(2, 0) in (b"", P.encode(P.Abort(2, 0)))


class ListSink:
    """A DataSink keeping what it is given (a file, in serve)."""

    def __init__(self) -> None:
        self.data, self.discarded = bytearray(), False

    def write(self, fragment) -> None:
        self.data += fragment

    def discard(self) -> None:
        self.discarded = True


def test_data_sets_spill_to_a_sink_past_the_threshold():
    command = commands.c_store_rq(7, CT, "1.2.3")
    sinks: list[ListSink] = []

    def open_sink(context_id, command):
        sinks.append(ListSink())
        return sinks[-1]

    def deliver(assembler, dataset):
        pieces = fragments(1, command, dataset, 4096)
        pdus_ = [bytes(pieces[i]) + bytes(pieces[i + 1]) for i in range(0, len(pieces), 2)]
        return [assembler.add(*pdv) for pdu in pdus_ for pdv in P.pdvs(memoryview(pdu[6:]))][-1]

    small = deliver(Reassembler(open_sink=open_sink, spill_over=10_000), b"s" * 9_000)
    assert bytes(small.dataset) == b"s" * 9_000 and small.sink is None and not sinks  # never left memory
    big_data = bytes(range(256)) * 200
    big = deliver(Reassembler(open_sink=open_sink, spill_over=10_000), big_data)
    assert big.dataset is None and big.sink is sinks[-1] and bytes(sinks[-1].data) == big_data  # all, in order
    over = deliver(Reassembler(max_dataset=30_000, open_sink=open_sink, spill_over=10_000), big_data * 2)
    assert over.oversize and over.sink is None and sinks[-1].discarded  # past --max-size: nothing kept
    declined = deliver(Reassembler(open_sink=lambda *_: None, spill_over=10_000), big_data)
    assert bytes(declined.dataset) == big_data  # no sink to be had: memory, as before
    half = Reassembler(open_sink=open_sink, spill_over=10_000)
    pieces = fragments(1, command, big_data, 4096)
    for i in range(0, 12, 2):
        for pdv in P.pdvs(memoryview((bytes(pieces[i]) + bytes(pieces[i + 1]))[6:])):
            half.add(*pdv)
    half.abandon()  # the connection went: the partial data set goes too
    assert sinks[-1].discarded and not half.in_message


# -- DIMSE-N: Storage Commitment's N-ACTION and N-EVENT-REPORT --------------------------------------------------

PUSH, PUSH_INSTANCE = "1.2.840.10008.1.20.1", "1.2.840.10008.1.20.1.1"


def test_n_action_and_n_event_report_equal_pynetdicom():
    from io import BytesIO

    from pynetdicom.dimse_messages import N_ACTION_RQ, N_ACTION_RSP, N_EVENT_REPORT_RQ, N_EVENT_REPORT_RSP
    from pynetdicom.dimse_primitives import N_ACTION, N_EVENT_REPORT

    action = N_ACTION()
    action.MessageID, action.RequestedSOPClassUID, action.RequestedSOPInstanceUID = 7, PUSH, PUSH_INSTANCE
    action.ActionTypeID, action.ActionInformation = 1, BytesIO(b"\0\0")
    assert commands.n_action_rq(7, PUSH, PUSH_INSTANCE, 1) == pynetdicom_command(action, N_ACTION_RQ)
    answer = N_ACTION()
    answer.MessageIDBeingRespondedTo, answer.AffectedSOPClassUID, answer.AffectedSOPInstanceUID = 7, PUSH, \
        PUSH_INSTANCE
    answer.ActionTypeID, answer.Status = 1, 0x0000
    assert commands.n_action_rsp(7, PUSH, PUSH_INSTANCE, 0, 1) == pynetdicom_command(answer, N_ACTION_RSP)
    event = N_EVENT_REPORT()
    event.MessageID, event.AffectedSOPClassUID, event.AffectedSOPInstanceUID = 9, PUSH, PUSH_INSTANCE
    event.EventTypeID, event.EventInformation = 2, BytesIO(b"\0\0")
    assert commands.n_event_report_rq(9, PUSH, PUSH_INSTANCE, 2) == pynetdicom_command(event, N_EVENT_REPORT_RQ)
    reply = N_EVENT_REPORT()
    reply.MessageIDBeingRespondedTo, reply.AffectedSOPClassUID, reply.AffectedSOPInstanceUID = 9, PUSH, PUSH_INSTANCE
    reply.EventTypeID, reply.Status = 2, 0x0000
    ours = commands.n_event_report_rsp(9, PUSH, PUSH_INSTANCE, 0, 2)
    assert ours == pynetdicom_command(reply, N_EVENT_REPORT_RSP)
    decoded = commands.decode(ours)
    assert (decoded.name, decoded.is_response, decoded.EventTypeID, decoded.has_dataset) == \
        ("N-EVENT-REPORT-RSP", True, 2, False)


def test_storage_commitment_exchange_in_memory():
    """The whole push-model exchange between two cores, no socket: request, answer, result, its answer."""
    from dicomscu.operations import commitment as sc

    pair = Pair()
    request = P.AssociateRQ("SCP", "SCU", (P.ProposedContext(1, PUSH, (EXPLICIT,)),),
                            P.UserInformation(16384, "1.2.3", "X"))
    (asked,) = pair.to_acceptor(pair.requestor.request(request))
    accept = negotiation.answer(asked.request, {PUSH: (EXPLICIT, IMPLICIT)}, 16384)
    pair.to_requestor(pair.acceptor.accept(accept))
    wanted = [sc.Reference(CT, f"1.2.3.{n}") for n in range(3000)]  # several PDUs of action information
    information = sc.action_information("2.25.1", wanted, EXPLICIT)
    (event,) = pair.to_acceptor(pair.requestor.send_message(1, commands.n_action_rq(1, PUSH, PUSH_INSTANCE, 1),
                                                            information))
    message = event.message
    assert message.command.name == "N-ACTION-RQ" and message.command.ActionTypeID == sc.REQUEST_COMMITMENT
    read = sc.read_action(message.dataset, EXPLICIT)
    assert read.transaction == "2.25.1" and list(read.references) == wanted
    failed = [sc.Failure(wanted[0], sc.NO_SUCH_INSTANCE), sc.Failure(wanted[1], sc.PROCESSING_FAILURE)]
    events = pair.to_requestor(pair.acceptor.send_message(1, commands.n_action_rsp(1, PUSH, PUSH_INSTANCE, 0, 1))
                               + pair.acceptor.send_message(1, commands.n_event_report_rq(1, PUSH, PUSH_INSTANCE, 2),
                                                            sc.event_information("2.25.1", wanted[2:], failed,
                                                                                 EXPLICIT)))
    assert [e.message.command.name for e in events] == ["N-ACTION-RSP", "N-EVENT-REPORT-RQ"]
    result = sc.read_event(events[1].message.dataset, EXPLICIT)
    assert result.committed == tuple(wanted[2:]) and result.failed == tuple(failed)
    assert result.failed[0].reason_text == "no such object instance (0x0112)"
    (event,) = pair.to_acceptor(pair.requestor.send_message(1, commands.n_event_report_rsp(1, PUSH, PUSH_INSTANCE,
                                                                                           0, 2)))
    assert event.message.command.MessageIDBeingRespondedTo == 1 and event.message.command.Status == 0


def test_commitment_data_sets_missing_what_ps3_4_requires_are_refused():
    from pydicom.dataset import Dataset

    from dicomscu.files.codec import encode
    from dicomscu.operations import commitment as sc

    no_transaction = Dataset()
    no_transaction.ReferencedSOPSequence = []
    with pytest.raises(sc.BadCommitment) as raised:
        sc.read_action(encode(no_transaction, EXPLICIT), EXPLICIT)
    assert raised.value.missing and "Transaction UID" in str(raised.value)
    no_references = Dataset()
    no_references.TransactionUID = "2.25.5"
    with pytest.raises(sc.BadCommitment, match="Referenced SOP Sequence"):
        sc.read_action(encode(no_references, EXPLICIT), EXPLICIT)
    with pytest.raises(sc.BadCommitment) as raised:
        sc.read_event(b"\x08\x00\x95\x11UI\xff\x00", EXPLICIT)  # cut inside the Transaction UID
    assert not raised.value.missing


# -- the state table, every cell --------------------------------------------------------------------------------

def _sample_pdus() -> dict[int, bytes]:
    echo = b"".join(bytes(piece) for piece in fragments(1, commands.c_echo_rq(1), None, 0))
    return {P.ASSOCIATE_RQ: P.encode(full_request()), P.ASSOCIATE_AC: P.encode(negotiation.answer(full_request(), {}, 0)),
            P.ASSOCIATE_RJ: P.encode(P.AssociateRJ(1, 1, 3)), P.P_DATA_TF: echo,
            P.RELEASE_RQ: P.encode(P.ReleaseRQ()), P.RELEASE_RP: P.encode(P.ReleaseRP()),
            P.ABORT: P.encode(P.Abort(2, 1))}


STATES = [f"Sta{n}" for n in range(2, 14)]
CELLS = [(state, pdu_type) for state in STATES for pdu_type in _sample_pdus()]


@pytest.mark.parametrize("role", [m.REQUESTOR, m.ACCEPTOR])
@pytest.mark.parametrize("state, pdu_type", CELLS)
def test_every_cell_of_the_state_table(state, pdu_type, role):
    """Each (state, PDU received) either follows the table (PS3.8 Table 9-10) or is a protocol error, after
    which the machine sends nothing but one A-ABORT and reports the same error again."""
    core = m.Association(role, 16384)
    core.state = state
    core.receive_data(_sample_pdus()[pdu_type])
    if pdu_type == P.ABORT:
        event = core.next_event()
        assert isinstance(event, m.Aborted) if state != "Sta13" else event is m.NEED_DATA
        assert core.state == "Sta1"
        return
    if state == "Sta13":  # AA-6: ignored while the connection closes
        assert core.next_event() is m.NEED_DATA and core.state == "Sta13"
        return
    cell = m.RECEIVED.get((state, pdu_type))
    if cell is not None:
        event = core.next_event()
        expected = {"AE-6": m.AssociationRequested, "AE-3": m.AssociationAccepted, "AE-4": m.AssociationRejected,
                    "DT-2": m.MessageReceived, "AR-6": m.MessageReceived, "AR-2": m.ReleaseRequested,
                    "AR-8": m.ReleaseRequested, "AR-3": m.ReleaseConfirmed, "AR-10": m.ReleaseConfirmed}[cell[0]]
        assert isinstance(event, expected)
        following = cell[1] if cell[1] != "collision" else ("Sta9" if role == m.REQUESTOR else "Sta10")
        assert core.state == following and core.failure is None
        return
    with pytest.raises(ProtocolError, match=f"in state {state}"):
        core.next_event()
    assert core.state == "Sta13" and core.failure is not None
    for act in (lambda: core.send_message(1, commands.c_echo_rq(2)), core.release, core.release_response):
        with pytest.raises(m.LocalProtocolError, match="protocol error"):
            act()
    assert core.abort(2, 2) == P.encode(P.Abort(2, 2))  # AA-8, once
    assert core.abort(2, 2) == b""
    with pytest.raises(ProtocolError):  # the error stays: a caller cannot read past it
        core.next_event()


def test_local_actions_follow_their_table():
    for action, allowed in m.LOCAL.items():
        for state in STATES:
            core = m.Association(m.ACCEPTOR)
            core.state = state
            call = {"request an association": lambda: core.request(full_request()),
                    "accept": lambda: core.accept(negotiation.answer(full_request(), {}, 0)),
                    "reject": lambda: core.reject(P.AssociateRJ(1, 1, 3)),
                    "send a message": lambda: core.send_message(1, commands.c_echo_rq(1)),
                    "release": core.release, "answer a release": core.release_response}[action]
            if state in allowed:
                assert call() and core.state == allowed[state], (action, state)
            else:
                with pytest.raises(m.LocalProtocolError):
                    call()
                assert core.state == state, (action, state)


def test_any_stream_of_pdus_and_bytes_gives_events_or_the_error_state():
    """Property (hypothesis): whatever arrives, well-formed PDUs in any order or raw bytes, the core gives only
    events until a ProtocolError; after one it is in its error state, sends nothing but one A-ABORT, and
    raises again."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    pieces = st.one_of(st.sampled_from(list(_sample_pdus().values())), st.binary(max_size=24))
    events = (m.AssociationRequested, m.AssociationAccepted, m.AssociationRejected, m.MessageReceived,
              m.ReleaseRequested, m.ReleaseConfirmed, m.Aborted, m.ConnectionClosed)

    @settings(max_examples=400, deadline=None, database=None, derandomize=True)
    @given(st.lists(pieces, max_size=12), st.sampled_from([m.REQUESTOR, m.ACCEPTOR]))
    def check(stream, role):
        core = m.Association(role, 16384)
        if role == m.REQUESTOR:
            core.request(full_request())
        before = core.state
        try:
            for piece in stream:
                core.receive_data(piece)
                while True:
                    before = core.state  # (the state the failing read, if any, starts from)
                    event = core.next_event()
                    if event is m.NEED_DATA:
                        break
                    assert isinstance(event, events)
                    if isinstance(event, m.ConnectionClosed):  # (an empty read: the peer closed)
                        return
        except ProtocolError:
            assert core.state == "Sta13" and core.failure is not None
            with pytest.raises(m.LocalProtocolError):
                core.send_message(1, commands.c_echo_rq(1))
            owed = P.encode(P.Abort(2, 0)) if before not in ("Sta1", "Sta13") else b""  # (over already: none)
            assert core.abort(2, 0) == owed and core.abort(2, 0) == b""
            with pytest.raises(ProtocolError):
                core.next_event()

    check()
