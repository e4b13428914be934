"""Gossip datagrams hand-encoded for tests (proto/gossip.proto, and the
NodeMeta payload of proto/ipc.proto): what an attacker on the LAN can send
without any of our code."""

import random
import struct
import uuid

def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field, wire):
    return _varint(field << 3 | wire)


def pb_varint(field, v):
    return _key(field, 0) + _varint(v)


def pb_bytes(field, b):
    return _key(field, 2) + _varint(len(b)) + b


def pb_fixed32(field, v):
    return _key(field, 5) + struct.pack("<I", v & 0xFFFFFFFF)


def pb_member(mid, status=0, meta=b"", port=7946, extra=b"", inc=1, ip=0x7F000001):
    """One Member record (field 15 of a Packet)."""
    m = pb_bytes(1, mid) + pb_fixed32(2, ip) + pb_varint(3, port) + pb_varint(4, inc)
    if status:
        m += pb_varint(5, status)
    if meta:
        m += pb_bytes(6, meta)
    return pb_bytes(15, m + extra)


def datagram(cluster=b"default-cluster", version=1, mtype=1, sender=None,
             sender_port=9, fields=b"", length=None, length_delta=0, sender_inc=1):
    """A gossip Packet; `length` (field 14) is right unless given or
    moved by length_delta."""
    sender = uuid.uuid4().bytes if sender is None else sender
    body = (pb_varint(1, version) + pb_bytes(2, cluster) + pb_varint(3, mtype)
            + pb_varint(4, random.getrandbits(32)) + pb_bytes(5, sender)
            + pb_fixed32(6, 0x7F000001) + pb_varint(7, sender_port)
            + pb_varint(8, sender_inc) + fields)
    total = len(body) + 5
    return body + pb_fixed32(14, total + length_delta if length is None else length)




GOSSIP = 5  # MsgType MSG_GOSSIP: dissemination only, nothing to answer
ALIVE, SUSPECT, DEAD, LEFT = 0, 1, 2, 3
INC_MAX = (1 << 64) - 1


def node_meta(role, url, cluster_id="default-cluster", registry_version=None):
    """A member's payload: ps.NodeMeta (proto/ipc.proto, proto2)."""
    m = pb_bytes(1, role.encode()) + pb_bytes(2, url.encode()) + pb_varint(3, 1)
    if registry_version is not None:
        m += pb_varint(10, registry_version)
    return m + pb_bytes(11, cluster_id.encode())
