#!/usr/bin/env python3
"""What a companion backend does with two fednode daemons, from Python.

    python3 example.py connect --a /path/a.sock --b /path/b.sock
    python3 example.py nats --url nats://127.0.0.1:4222 --a fed.a --b fed.b

Both daemons run with the collection "plans" set to manual conflict
resolution (fednode -collection plans=manual), and are not yet paired. The
scenario, the same over Connect (JSON over HTTP, standard library only) and
over NATS (protobuf on the bus):

  1. write a profile field and append a conversation message on device A;
  2. write the same plan differently on A and B (a conflict to come);
  3. subscribe to B's changes;
  4. pair B with A: both show the same short authentication string, and
     the user approves on both;
  5. watch A's profile, message and the conflict arrive on B;
  6. resolve the conflict by hand on B;
  7. check that both devices converged (same values, same Merkle roots).

It prints "converged" and exits 0, or raises.
"""

import argparse
import json
import queue
import sys
import threading
import time

import fednode_connect
from fednode_connect import b64, unb64

DEADLINE = 60  # seconds for each wait


def wait_for(what, pred, timeout=DEADLINE):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


def pump(stream, out):
    """Reads a stream in a thread into a queue (None marks its end)."""
    def run():
        try:
            for msg in stream:
                out.put(msg)
        except Exception as e:  # noqa: BLE001 - reported to the reader
            out.put(e)
        out.put(None)
    threading.Thread(target=run, daemon=True).start()


def take(q, what, pred=lambda m: True, timeout=DEADLINE):
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"timed out waiting for {what}")
        try:
            m = q.get(timeout=left)
        except queue.Empty:
            raise TimeoutError(f"timed out waiting for {what}") from None
        if m is None:
            raise RuntimeError(f"stream ended before {what}")
        if isinstance(m, Exception):
            raise m
        if pred(m):
            return m


def scenario(a, b, log=print):
    ha, hb = a.call("Health"), b.call("Health")
    log(f"A is {ha['device'][:7]} at {ha['addr']}, B is {hb['device'][:7]} at {hb['addr']}")

    # 1. The backend writes on A: a profile field and a message.
    a.call("SetProfileField", {"field": "city", "valueJson": json.dumps("Lisbon")})
    a.call("AppendMessage", {"conversation": "chat-1", "id": "m1", "body": b64(b"Hello from the backend")})
    # 2. The same plan, differently on each device, before they know each other.
    a.call("Put", {"collection": "plans", "key": "holiday", "value": b64(b"mountains")})
    b.call("Put", {"collection": "plans", "key": "holiday", "value": b64(b"seaside")})

    # 3. Subscribe to B's events (the call returns once the subscription is live).
    events = queue.Queue()
    sub = b.stream("Subscribe", {})
    pump(sub, events)
    # On NATS, events are also published per collection: a backend listens
    # to the subjects it cares about with its own client.
    bus = b.subscribe_events("profile") if hasattr(b, "subscribe_events") else None

    # 4. Pair: A invites, B joins; both sides show a code and ask the user.
    inv_q, join_q = queue.Queue(), queue.Queue()
    pump(a.stream("Invite", {"ttlSeconds": 120}), inv_q)
    invitation = take(inv_q, "the invitation", lambda u: "invitation" in u)["invitation"]
    log(f"A shows pairing code {invitation['code']}")
    pump(b.stream("Join", {"invitation": invitation["qr"], "confirm": True}), join_q)
    on_b = take(join_q, "B's code", lambda u: "request" in u)["request"]
    on_a = take(inv_q, "A's request", lambda u: "request" in u)["request"]
    log(f"A shows {on_a['sas']} for {on_a['peer'].get('name', '?')}, B shows {on_b['sas']}")
    if on_a["sas"] != on_b["sas"]:
        raise RuntimeError("the codes differ: do not approve")
    b.call("Approve", {"requestId": on_b["requestId"], "accept": True})
    a.call("Approve", {"requestId": on_a["requestId"], "accept": True})
    paired = take(inv_q, "paired", lambda u: "paired" in u)["paired"]
    take(join_q, "joined", lambda u: "joined" in u)
    log(f"paired: A trusts {paired['id'][:7]} ({paired['trust']})")

    # 5. B sees A's profile, message and the conflict arrive.
    want = {("EVENT_KIND_CHANGE", "profile"), ("EVENT_KIND_CHANGE", "conversations"), ("EVENT_KIND_CONFLICT", "plans")}
    while want:
        e = take(events, f"events {sorted(want)}")
        key = (e.get("kind"), e.get("collection", ""))
        if key in want:
            origin = f" from {e['origin'][:7]}" if e.get("origin") else ""
            log(f"B got {e['kindName']} on {key[1]}/{e.get('key', '')}{origin}")
            want.discard(key)
    sub.close()
    if bus is not None:
        import fednode_nats
        ev = fednode_nats.pb.Event()
        ev.ParseFromString(bus.next_msg(DEADLINE).data)
        log(f"the bus published {fednode_nats.pb.EventKind.Name(ev.kind)} on {bus.subject} for key {ev.key!r}")
        assert ev.collection == "profile"
    city = b.call("GetProfile", {})["fields"]["city"]
    msgs = b.call("ListMessages", {"conversation": "chat-1"}).get("messages", [])
    log(f"B has city={json.loads(city)} and {len(msgs)} message(s): {unb64(msgs[0]['body']).decode()}")
    assert json.loads(city) == "Lisbon" and unb64(msgs[0]["body"]) == b"Hello from the backend"

    # 6. Resolve the conflict on B by hand.
    conflicts = b.call("Conflicts", {}).get("conflicts", [])
    assert len(conflicts) == 1, conflicts
    c = conflicts[0]
    sides = sorted([unb64(c["ours"].get("value")).decode(), unb64(c["theirs"].get("value")).decode()])
    log(f"conflict on {c['collection']}/{c['key']}: {sides}")
    merged = " and ".join(sides).encode()
    b.call("Resolve", {"id": c["id"], "value": b64(merged)})

    # 7. Both devices converge.
    def same():
        for d in (a, b):
            if d.call("Conflicts", {}).get("conflicts"):
                return False
            try:
                rec = d.call("Get", {"collection": "plans", "key": "holiday"})["record"]
            except (fednode_connect.Error, Exception) as e:  # noqa: BLE001 - not there yet
                if getattr(e, "code", "") == "not_found":
                    return False
                raise
            if unb64(rec.get("value")) != merged:
                return False
        ra, rb = a.call("Stats", {})["roots"], b.call("Stats", {})["roots"]
        return all(ra.get(k) and ra.get(k) == rb.get(k) for k in ("plans", "profile", "conversations"))
    wait_for("convergence", same)
    log(f"converged: plans/holiday = {merged.decode()!r} on both devices")


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("transport", choices=["connect", "nats"])
    p.add_argument("--a", required=True, help="A's Unix socket (connect) or subject prefix (nats)")
    p.add_argument("--b", required=True, help="B's Unix socket (connect) or subject prefix (nats)")
    p.add_argument("--url", help="NATS URL (nats)")
    args = p.parse_args(argv)
    if args.transport == "connect":
        a, b = fednode_connect.Client(socket_path=args.a), fednode_connect.Client(socket_path=args.b)
        scenario(a, b)
        return 0
    import fednode_nats
    import mininats
    nc = mininats.Client(args.url)
    try:
        scenario(fednode_nats.Client(nc, args.a), fednode_nats.Client(nc, args.b))
    finally:
        nc.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
