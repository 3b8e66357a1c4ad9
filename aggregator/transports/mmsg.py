"""``recvmmsg(2)`` for Python: many datagrams per system call.

Python's socket module reads one datagram per call. Under load that is one syscall per message
on the datagram transports, while the kernel offers ``recvmmsg``, which fills up to ``vlen``
buffers in one call. This wraps libc's ``recvmmsg`` with ctypes over preallocated buffers.

With ``MSG_TRUNC`` in the flags, each entry's ``msg_len`` is the datagram's real length even when
it was longer than its buffer (Linux: UDP since 2.6.8, AF_UNIX datagrams since 3.4), so
truncation is detected exactly as with ``recv(MSG_TRUNC)``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
import socket
import threading


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_IoVec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


def _load_recvmmsg():
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    fn = libc.recvmmsg  # glibc >= 2.12, musl: every libc loglab runs on (it is Linux-only)
    fn.argtypes = [ctypes.c_int, ctypes.POINTER(_MMsgHdr), ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    fn.restype = ctypes.c_int
    return fn


_recvmmsg = _load_recvmmsg()


class MultiReceiver:
    """``vlen`` buffers of ``size`` bytes, filled by one ``recvmmsg`` call each time.

    ``control_size`` > 0 gives each buffer room for that many bytes of ancillary data, and
    ``receive_messages`` then tells a message from end of file on a connected message socket
    (SOCK_SEQPACKET), where both read as length 0 (see there).
    """

    def __init__(self, vlen: int, size: int, control_size: int = 0) -> None:
        self.vlen = vlen
        self.size = size
        # Anonymous memory, not a zero-filled buffer: a page becomes resident only when the kernel
        # writes a datagram into it, so an idle receiver holds none of the vlen * size (64 x 64 KiB
        # by default) and a busy one about a page per slot for log-sized datagrams. Private:
        # Python's default is MAP_SHARED, and --workers fork after the receiver is made: their
        # recvmmsg calls would write into one buffer (datagrams read twice, others lost).
        self._arena = mmap.mmap(-1, vlen * size, flags=mmap.MAP_PRIVATE)
        self._data = (ctypes.c_char * (vlen * size)).from_buffer(self._arena)
        self.view = memoryview(self._arena).cast("B")
        base = ctypes.addressof(self._data)
        self._iov = (_IoVec * vlen)()
        self._msgs = (_MMsgHdr * vlen)()
        if control_size:
            self._control = ctypes.create_string_buffer(vlen * control_size)
            control_base = ctypes.addressof(self._control)
        for i in range(vlen):
            self._iov[i].iov_base = base + i * size
            self._iov[i].iov_len = size
            self._msgs[i].msg_hdr.msg_iov = ctypes.pointer(self._iov[i])
            self._msgs[i].msg_hdr.msg_iovlen = 1
            if control_size:
                self._msgs[i].msg_hdr.msg_control = control_base + i * control_size
                self._msgs[i].msg_hdr.msg_controllen = control_size
        # The kernel writes msg_controllen (and msg_flags, msg_len) back into each entry it
        # fills: a copy of the headers as set up restores them before the next call.
        self._pristine = bytes(memoryview(self._msgs).cast("B")) if control_size else None
        # msg_len of entry i, read through a memoryview: no ctypes object built per datagram.
        self._lengths = memoryview(self._msgs).cast("B").cast("I")
        self._stride = ctypes.sizeof(_MMsgHdr) // 4
        self._offset = _MMsgHdr.msg_len.offset // 4
        self._controllens = memoryview(self._msgs).cast("B").cast("Q")  # size_t on 64-bit Linux
        self._c_stride = ctypes.sizeof(_MMsgHdr) // 8
        self._c_offset = (_MMsgHdr.msg_hdr.offset + _MsgHdr.msg_controllen.offset) // 8

    def _call(self, fd: int) -> int:
        n = _recvmmsg(fd, self._msgs, self.vlen, socket.MSG_DONTWAIT | socket.MSG_TRUNC, None)
        if n < 0:
            err = ctypes.get_errno()
            if err in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise BlockingIOError(err, os.strerror(err))
            raise OSError(err, os.strerror(err))
        return n

    def receive(self, fd: int) -> list[int]:
        """Non-blocking: the real lengths of the datagrams received (buffer ``i`` holds the first
        ``min(length, size)`` bytes of datagram ``i``). Raises BlockingIOError when none wait."""
        n = self._call(fd)
        lengths, stride, offset = self._lengths, self._stride, self._offset
        return [lengths[i * stride + offset] for i in range(n)]

    def receive_messages(self, fd: int) -> tuple[list[int], bool]:
        """Like ``receive`` on a connected message socket with ``SO_PASSCRED`` set (needs
        ``control_size`` >= ``CREDENTIALS_SPACE``): ``(lengths, at_end)``.

        On SOCK_SEQPACKET an empty message and end of file both read as 0 bytes, and recvmmsg
        fills every remaining entry with end-of-file zeros once the peer is gone. With
        SO_PASSCRED every real message, empty or not, carries an SCM_CREDENTIALS header and end
        of file carries none: so the lengths stop at the first entry without one, exactly.
        """
        n = self._call(fd)
        lengths, stride, offset = self._lengths, self._stride, self._offset
        controllens, c_stride, c_offset = self._controllens, self._c_stride, self._c_offset
        out = []
        at_end = False
        for i in range(n):
            if not controllens[i * c_stride + c_offset]:
                at_end = True
                break
            out.append(lengths[i * stride + offset])
        ctypes.memmove(self._msgs, self._pristine, len(self._pristine))
        return out, at_end


# One SCM_CREDENTIALS header (struct ucred: pid, uid, gid), aligned: receive_messages' control_size.
CREDENTIALS_SPACE = socket.CMSG_SPACE(12)


_per_loop = threading.local()


def shared_receiver(vlen: int, size: int, control_size: int = 0) -> MultiReceiver:
    """One receiver of each shape per event loop (per thread: ``--threads`` runs a loop in each),
    for endpoints that the loop reads in turn (a connection per producer): its buffers are reused,
    never held per connection (``vlen * size`` bytes each would be megabytes per connection).
    Callers copy out what they keep before the next read, as ``frame_messages`` does, and take
    the receiver in the thread that reads (a connection is adopted by the accepting thread)."""
    receivers = _per_loop.__dict__.setdefault("receivers", {})
    key = (vlen, size, control_size)
    receiver = receivers.get(key)
    if receiver is None:
        receiver = receivers[key] = MultiReceiver(vlen, size, control_size)
    return receiver
