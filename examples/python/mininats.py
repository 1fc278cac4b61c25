"""A minimal, synchronous NATS client (the core protocol with headers).

A backend that already runs NATS uses its own client (nats-py: the same
subjects, headers and protobuf payloads; see README.md). This module stands
in for it where PyPI cannot be reached, as on this project's CI machines,
with just what the example needs: publish with headers and reply subjects,
subscriptions, request/reply, new inboxes.
"""

import json
import queue
import secrets
import socket
import threading
from urllib.parse import urlparse


class Msg:
    """One received message."""

    def __init__(self, subject, reply, headers, data):
        self.subject, self.reply, self.headers, self.data = subject, reply, headers, data


class Subscription:
    def __init__(self, client, sid, subject):
        self._client, self.sid, self.subject = client, sid, subject
        self.queue = queue.Queue()

    def next_msg(self, timeout=None):
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no message on {self.subject} within {timeout}s") from None

    def unsubscribe(self):
        self._client._unsubscribe(self)


def _parse_headers(raw):
    lines = raw.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip()] = v.strip()
    return headers


class Client:
    def __init__(self, url, timeout=10):
        u = urlparse(url)
        self._sock = socket.create_connection((u.hostname, u.port or 4222), timeout=timeout)
        self._sock.settimeout(None)
        self._file = self._sock.makefile("rb")
        self._wlock = threading.Lock()
        self._subs = {}
        self._next_sid = 1
        self._pong = threading.Event()
        info = self._file.readline()
        if not info.startswith(b"INFO"):
            raise ConnectionError(f"not a NATS server: {info!r}")
        opts = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True, "protocol": 1,
                "name": "fednode python example"}
        self._write(b"CONNECT " + json.dumps(opts).encode() + b"\r\nPING\r\n")
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        if not self._pong.wait(timeout):
            raise ConnectionError("NATS server did not answer PING")

    def _write(self, data):
        with self._wlock:
            self._sock.sendall(data)

    def _read_loop(self):
        f = self._file
        while True:
            try:
                line = f.readline()
            except OSError:
                return
            if not line:
                return
            parts = line.split()
            if not parts:
                continue
            op = parts[0].upper()
            if op == b"PING":
                self._write(b"PONG\r\n")
            elif op == b"PONG":
                self._pong.set()
            elif op == b"MSG":
                subject, sid = parts[1].decode(), int(parts[2])
                reply = parts[3].decode() if len(parts) == 5 else None
                size = int(parts[-1])
                data = f.read(size + 2)[:size]
                self._deliver(sid, Msg(subject, reply, {}, data))
            elif op == b"HMSG":
                subject, sid = parts[1].decode(), int(parts[2])
                reply = parts[3].decode() if len(parts) == 6 else None
                hsize, total = int(parts[-2]), int(parts[-1])
                raw = f.read(total + 2)[:total]
                self._deliver(sid, Msg(subject, reply, _parse_headers(raw[:hsize]), raw[hsize:]))
            elif op == b"-ERR":
                raise ConnectionError(line.decode().strip())

    def _deliver(self, sid, msg):
        sub = self._subs.get(sid)
        if sub is not None:
            sub.queue.put(msg)

    def new_inbox(self):
        return "_INBOX." + secrets.token_hex(11)

    def subscribe(self, subject):
        sid = self._next_sid
        self._next_sid += 1
        sub = Subscription(self, sid, subject)
        self._subs[sid] = sub
        self._write(f"SUB {subject} {sid}\r\n".encode())
        return sub

    def _unsubscribe(self, sub):
        self._subs.pop(sub.sid, None)
        self._write(f"UNSUB {sub.sid}\r\n".encode())

    def flush(self, timeout=10):
        self._pong.clear()
        self._write(b"PING\r\n")
        if not self._pong.wait(timeout):
            raise TimeoutError("flush")

    def publish(self, subject, data=b"", reply=None, headers=None):
        r = f" {reply}" if reply else ""
        if headers:
            h = "NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
            hb = h.encode()
            self._write(f"HPUB {subject}{r} {len(hb)} {len(hb) + len(data)}\r\n".encode() + hb + data + b"\r\n")
        else:
            self._write(f"PUB {subject}{r} {len(data)}\r\n".encode() + data + b"\r\n")

    def request(self, subject, data, timeout=10):
        inbox = self.new_inbox()
        sub = self.subscribe(inbox)
        try:
            self.publish(subject, data, reply=inbox)
            return sub.next_msg(timeout)
        finally:
            sub.unsubscribe()

    def close(self):
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
