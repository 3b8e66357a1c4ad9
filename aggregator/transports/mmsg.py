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
import os
import socket


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
    """``vlen`` buffers of ``size`` bytes, filled by one ``recvmmsg`` call each time."""

    def __init__(self, vlen: int, size: int) -> None:
        self.vlen = vlen
        self.size = size
        self._data = ctypes.create_string_buffer(vlen * size)
        self.view = memoryview(self._data).cast("B")
        base = ctypes.addressof(self._data)
        self._iov = (_IoVec * vlen)()
        self._msgs = (_MMsgHdr * vlen)()
        for i in range(vlen):
            self._iov[i].iov_base = base + i * size
            self._iov[i].iov_len = size
            self._msgs[i].msg_hdr.msg_iov = ctypes.pointer(self._iov[i])
            self._msgs[i].msg_hdr.msg_iovlen = 1
        # msg_len of entry i, read through a memoryview: no ctypes object built per datagram.
        self._lengths = memoryview(self._msgs).cast("B").cast("I")
        self._stride = ctypes.sizeof(_MMsgHdr) // 4
        self._offset = _MMsgHdr.msg_len.offset // 4

    def receive(self, fd: int) -> list[int]:
        """Non-blocking: the real lengths of the datagrams received (buffer ``i`` holds the first
        ``min(length, size)`` bytes of datagram ``i``). Raises BlockingIOError when none wait."""
        n = _recvmmsg(fd, self._msgs, self.vlen, socket.MSG_DONTWAIT | socket.MSG_TRUNC, None)
        if n < 0:
            err = ctypes.get_errno()
            if err in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise BlockingIOError(err, os.strerror(err))
            raise OSError(err, os.strerror(err))
        lengths, stride, offset = self._lengths, self._stride, self._offset
        return [lengths[i * stride + offset] for i in range(n)]
