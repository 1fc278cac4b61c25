"""A client of fednode over NATS, with the schema's protobuf messages.

Requests go to "<prefix>.<Method>" as binary protobuf; the reply is the
response message, or an empty message whose headers Fed-Code and Fed-Error
carry the error. A server stream publishes each message to the request's
reply subject and ends with a message carrying the header Fed-End;
publishing the reply subject to "<prefix>.Cancel" ends it early. Events
are also published on "<prefix>.events.<collection>".

To share the example's scenario with the Connect client, call() and
stream() take and return dicts in the schema's JSON form (json_format); the
bytes on the bus are protobuf.
"""

from google.protobuf import json_format

from federation.v1 import federation_pb2 as pb
import mininats

_SERVICE = pb.DESCRIPTOR.services_by_name["FederationService"]


class Error(Exception):
    """An error answered by fednode, with its Connect code."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _types(method):
    m = _SERVICE.methods_by_name[method]
    return getattr(pb, m.input_type.name), getattr(pb, m.output_type.name)


def _to_dict(msg):
    return json_format.MessageToDict(msg)


class Client:
    def __init__(self, nc, prefix, timeout=30):
        self.nc, self.prefix, self.timeout = nc, prefix, timeout

    def call(self, method, request=None):
        req_type, res_type = _types(method)
        req = json_format.ParseDict(request or {}, req_type())
        msg = self.nc.request(f"{self.prefix}.{method}", req.SerializeToString(), timeout=self.timeout)
        if "Fed-Code" in msg.headers:
            raise Error(msg.headers["Fed-Code"], msg.headers.get("Fed-Error", ""))
        res = res_type()
        res.ParseFromString(msg.data)
        return _to_dict(res)

    def stream(self, method, request=None, timeout=None):
        req_type, res_type = _types(method)
        req = json_format.ParseDict(request or {}, req_type())
        inbox = self.nc.new_inbox()
        sub = self.nc.subscribe(inbox)
        self.nc.publish(f"{self.prefix}.{method}", req.SerializeToString(), reply=inbox)
        st = _Stream(self, sub, res_type, timeout)
        if method == "Subscribe":
            st.wait_ready()
        return st

    def subscribe_events(self, collection):
        """Subscribes to the events of one collection as the bus publishes
        them; returns a mininats subscription of Event messages."""
        return self.nc.subscribe(f"{self.prefix}.events.{collection}")


class _Stream:
    def __init__(self, client, sub, res_type, timeout):
        self._c, self._sub, self._type, self._timeout = client, sub, res_type, timeout
        self._done = False

    def __iter__(self):
        return self

    def wait_ready(self):
        """Waits for Subscribe's Fed-Ready message: the subscription is live."""
        msg = self._sub.next_msg(self._timeout or 30)
        if "Fed-Ready" not in msg.headers:
            self._pending = msg

    _pending = None

    def __next__(self):
        if self._done:
            raise StopIteration
        msg, self._pending = self._pending, None
        while msg is None or "Fed-Ready" in msg.headers:
            msg = self._sub.next_msg(self._timeout)
        if "Fed-End" in msg.headers:
            self._finish()
            if "Fed-Code" in msg.headers:
                raise Error(msg.headers["Fed-Code"], msg.headers.get("Fed-Error", ""))
            raise StopIteration
        res = self._type()
        res.ParseFromString(msg.data)
        return _to_dict(res)

    def _finish(self):
        if not self._done:
            self._done = True
            self._sub.unsubscribe()

    def close(self):
        if not self._done:
            self._c.nc.publish(f"{self._c.prefix}.Cancel", self._sub.subject.encode())
            self._finish()
