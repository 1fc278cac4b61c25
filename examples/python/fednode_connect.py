"""A client of fednode over Connect: JSON over HTTP with the standard library.

Unary calls are a POST of the request as JSON to /<service>/<Method>;
server-streaming calls (Subscribe, Invite, Join, Backup) use the Connect
streaming protocol: the request and every response message are framed
(1 flag byte, 4-byte big-endian length, JSON), and the last frame (flag
0x02) carries the end of the stream and any error. Field names are the
schema's in lowerCamelCase; bytes are base64; 64-bit integers are strings.
"""

import base64
import http.client
import json
import socket
import struct

SERVICE = "devicemesh.federation.v1.FederationService"


class Error(Exception):
    """An error answered by fednode, with its Connect code."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=None):
        super().__init__("fednode", timeout=timeout)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.timeout is not None:
            self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def b64(data):
    """Encodes bytes for a JSON request."""
    return base64.b64encode(data).decode()


def unb64(text):
    """Decodes bytes of a JSON response."""
    return base64.b64decode(text or "")


class Client:
    """fednode's API over a Unix socket (socket=...) or loopback TCP
    (host_port=..., token=...)."""

    def __init__(self, socket_path=None, host_port=None, token=None, timeout=30):
        self.socket_path, self.host_port, self.token, self.timeout = socket_path, host_port, token, timeout

    def _conn(self, timeout):
        if self.socket_path:
            return _UnixHTTPConnection(self.socket_path, timeout=timeout)
        return http.client.HTTPConnection(self.host_port, timeout=timeout)

    def _headers(self, content_type):
        h = {"Content-Type": content_type, "Connect-Protocol-Version": "1"}
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        return h

    def call(self, method, request=None):
        """Calls a unary method with a dict; returns the response dict."""
        conn = self._conn(self.timeout)
        try:
            body = json.dumps(request or {}).encode()
            conn.request("POST", f"/{SERVICE}/{method}", body, self._headers("application/json"))
            res = conn.getresponse()
            data = res.read()
            if res.status != 200:
                err = json.loads(data or b"{}")
                raise Error(err.get("code", "unknown"), err.get("message", res.reason))
            return json.loads(data or b"{}")
        finally:
            conn.close()

    def stream(self, method, request=None, timeout=None):
        """Calls a server-streaming method; yields response dicts. The call
        has returned (headers received) before the first message is read:
        for Subscribe that means the subscription is live."""
        conn = self._conn(timeout)
        payload = json.dumps(request or {}).encode()
        conn.request("POST", f"/{SERVICE}/{method}", struct.pack(">BI", 0, len(payload)) + payload,
                     self._headers("application/connect+json"))
        res = conn.getresponse()
        if res.status != 200:
            err = json.loads(res.read() or b"{}")
            conn.close()
            raise Error(err.get("code", "unknown"), err.get("message", res.reason))
        return _Stream(conn, res)


class _Stream:
    """Iterates the messages of a server stream; close() ends it early."""

    def __init__(self, conn, res):
        self._conn, self._res = conn, res

    def __iter__(self):
        return self

    def __next__(self):
        head = self._res.read(5)
        if len(head) < 5:
            self.close()
            raise StopIteration
        flags, size = struct.unpack(">BI", head)
        data = self._res.read(size)
        if flags & 0x02:  # end of stream
            self.close()
            end = json.loads(data or b"{}")
            if "error" in end:
                raise Error(end["error"].get("code", "unknown"), end["error"].get("message", ""))
            raise StopIteration
        return json.loads(data)

    def close(self):
        try:
            self._conn.sock and self._conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._conn.close()
