#!/usr/bin/python3
"""Hostile input on the control socket (issue 10), sent as raw bytes: invalid
UTF-8 in every field, duplicate keys, ids of every kind (echoed verbatim),
bad names (`.`, `..`, leading `-`), deep nesting, NUL bytes, huge numbers and
trailing garbage. Each gets an error reply (or, for ids, the right answer)
that changes nothing; the server stays up and the data written over NBD
before is still there. Also events: a subscriber that does not read gets
EVENTS_LOST with the number it missed once it reads again; one that keeps
up sees every event, in order."""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import KiB  # noqa: E402

BS = 64 * KiB

# Invalid UTF-8: a lone continuation byte, 0xff, an overlong '/', a UTF-16
# surrogate, a code point above U+10FFFF, a sequence cut short.
BAD_UTF8 = [b"\xff", b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82"]


def read_raw_line(conn):
    """The next line from a lib ControlConnection, as bytes; None at EOF."""
    while b"\n" not in conn.buf:
        chunk = conn.sock.recv(65536)
        if not chunk:
            return None
        conn.buf += chunk
    line, conn.buf = conn.buf.split(b"\n", 1)
    return line


def connect(srv, timeout=5):
    """A control connection; retried while the listen queue is full (a
    non-blocking connect to a Unix socket fails with EAGAIN then)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return srv.control_connection()
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def hostile_lines():
    """(what, raw line) pairs that must all be refused with Invalid."""
    out = []
    for bad in BAD_UTF8:
        for what, line in (
                ("execute", b'{"execute":"query-pool' + bad + b'"}'),
                ("argument key", b'{"execute":"query-volumes","arguments":{"na' + bad + b'me":"v0"}}'),
                ("name", b'{"execute":"volume-create","arguments":{"name":"v' + bad + b'","size":"1M"}}'),
                ("snapshot name", b'{"execute":"snapshot-create","arguments":{"origin":"v0","name":"s'
                 + bad + b'"}}'),
                ("delete name", b'{"execute":"volume-delete","arguments":{"name":"v0' + bad + b'"}}'),
                ("id", b'{"execute":"query-pool","id":"' + bad + b'"}'),
                ("id key", b'{"execute":"query-pool","id":{"' + bad + b'":1}}'),
                ("size string", b'{"execute":"volume-resize","arguments":{"name":"v0","size":"1'
                 + bad + b'M"}}'),
                ("after the brace", b'{"execute":"volume-delete","arguments":{"name":"v0"}}' + bad),
                ("bare", bad)):
            out.append(("invalid UTF-8 %r in %s" % (bad, what), line))
    # Escaped lone surrogates are not Unicode either.
    out.append(("escaped lone surrogate", b'{"execute":"query-pool","id":"\\ud800"}'))
    out.append(("escaped lone low surrogate", b'{"execute":"volume-create","arguments":'
                b'{"name":"\\udc00","size":"1M"}}'))
    # Duplicate keys, at every depth: the last one must not silently win.
    for what, line in (
            ("execute twice", b'{"execute":"query-pool","execute":"volume-delete",'
             b'"arguments":{"name":"v0"}}'),
            ("execute twice, escaped", b'{"execute":"query-pool","\\u0065xecute":"volume-delete",'
             b'"arguments":{"name":"v0"}}'),
            ("arguments twice", b'{"execute":"volume-delete","arguments":{"name":"nope"},'
             b'"arguments":{"name":"v0"}}'),
            ("argument twice", b'{"execute":"volume-delete","arguments":{"name":"nope","name":"v0"}}'),
            ("id twice", b'{"execute":"query-pool","id":1,"id":2}'),
            ("key twice inside the id", b'{"execute":"query-pool","id":{"a":1,"a":2}}'),
            ("key twice deep in the id", b'{"execute":"query-pool","id":[{"a":[{"b":1,"b":1}]}]}'),
            ("key twice in a snapshot pair", b'{"execute":"snapshot-create","arguments":{"snapshots":'
             b'[{"origin":"v0","name":"s1","name":"s2"}]}}')):
        out.append(("duplicate keys: " + what, line))
    # Names SPEC section 3 refuses.
    for name in (b".", b"..", b".hidden", b"-x", b"-", b"...", b".v0"):
        out.append(("name %r" % name, b'{"execute":"volume-create","arguments":{"name":"' + name
                    + b'","size":"1M"}}'))
        out.append(("snapshot name %r" % name, b'{"execute":"snapshot-create","arguments":'
                    b'{"origin":"v0","name":"' + name + b'"}}'))
    # NUL bytes, raw and escaped, inside and outside strings.
    for what, line in (
            ("raw NUL in execute", b'{"execute":"query-pool\x00"}'),
            ("raw NUL before the line", b'\x00{"execute":"volume-delete","arguments":{"name":"v0"}}'),
            ("raw NUL after the line", b'{"execute":"volume-delete","arguments":{"name":"v0"}}\x00'),
            ("raw NUL in a name", b'{"execute":"volume-delete","arguments":{"name":"v0\x00"}}'),
            ("escaped NUL in a new name", b'{"execute":"volume-create","arguments":'
             b'{"name":"a\\u0000b","size":"1M"}}'),
            ("NULs only", b"\x00\x00\x00")):
        out.append((what, line))
    # Trailing garbage after a complete request.
    for what, line in (
            ("text", b'{"execute":"volume-delete","arguments":{"name":"v0"}} x'),
            ("a second object", b'{"execute":"volume-delete","arguments":{"name":"v0"}}{"execute":"query-pool"}'),
            ("a brace", b'{"execute":"volume-delete","arguments":{"name":"v0"}}}'),
            ("a comma", b'{"execute":"volume-delete","arguments":{"name":"v0"}},')):
        out.append(("trailing garbage: " + what, line))
    # Wrong types and huge numbers.
    for what, line in (
            ("execute a number", b'{"execute":1e400}'),
            ("execute an array", b'{"execute":["volume-delete"],"arguments":{"name":"v0"}}'),
            ("name an array", b'{"execute":"volume-delete","arguments":{"name":["v0"]}}'),
            ("name an object", b'{"execute":"volume-delete","arguments":{"name":{"v0":1}}}'),
            ("size 1e400", b'{"execute":"volume-resize","arguments":{"name":"v0","size":1e400}}'),
            ("size 2^64", b'{"execute":"volume-resize","arguments":{"name":"v0","size":18446744073709551616}}'),
            ("size -2^63-1", b'{"execute":"volume-resize","arguments":{"name":"v0","size":-9223372036854775809}}'),
            ("size with 400 digits", b'{"execute":"volume-resize","arguments":{"name":"v0","size":'
             + b"9" * 400 + b'}}'),
            ("size 1.0", b'{"execute":"volume-resize","arguments":{"name":"v0","size":1048576.0}}'),
            ("read-only a string", b'{"execute":"snapshot-create","arguments":{"origin":"v0","name":"s",'
             b'"read-only":"true"}}'),
            ("arguments null", b'{"execute":"volume-delete","arguments":null}')):
        out.append(("wrong type: " + what, line))
    # Deep nesting, in the arguments, in the id and bare.
    deep = 100000
    out.append(("deep arrays bare", b"[" * deep))
    out.append(("deep objects bare", b'{"a":' * deep))
    out.append(("deep arguments", b'{"execute":"volume-delete","arguments":{"name":"v0","x":'
                + b"[" * deep + b"]" * deep + b"}}"))
    out.append(("deep id", b'{"execute":"query-pool","id":' + b"[" * deep + b"]" * deep + b"}"))
    out.append(("deep unclosed id", b'{"execute":"query-pool","id":' + b"[" * deep))
    # Plain bad JSON.
    for line in (b"{", b"}", b'{"execute"}', b'{"execute":"query-pool",}', b"{'execute':'query-pool'}",
                 b'{"execute":"query-pool"', b'{"execute":query-pool}', b"\xef\xbb\xbf{}", b"nul",
                 b'{"execute":"query-pool","id":01}', b'{"execute":"query-pool","id":NaN}',
                 b'{"execute":"query-pool","id":[1,}', b'{"execute":"query-pool","id":"\\x41"}'):
        out.append(("bad JSON %r" % line[:40], line))
    return out


class Hostile(lib.TestCase):

    def setUp(self):
        self.srv = self.start_server("size=8M", "volume=v0:2M", "volume=other:1M")
        self.data = lib.pattern(3 * BS, 10)
        h = self.srv.connect("v0")
        h.pwrite(self.data, BS)
        h.flush()
        self.srv.disconnect(h)

    def state(self):
        return self.srv.query_volumes(), self.srv.query_pool()

    def check_intact(self, before, what):
        self.assertTrue(self.srv.alive(), "nbdkit died after %s:\n%s" % (what, self.srv.log()))
        self.assertEqual(self.state(), before, "%s changed the pool" % what)

    def check_data(self):
        h = self.srv.connect("v0")
        got = h.pread(len(self.data), BS)
        self.srv.disconnect(h)
        self.assertBytesEqual(got, self.data, "v0 after the hostile input")

    def test_every_hostile_line_is_refused(self):
        before = self.state()
        with self.srv.control_connection() as c:
            for what, line in hostile_lines():
                c.send_raw(line + b"\n")
                raw = read_raw_line(c)
                self.assertIsNotNone(raw, "%s: the server closed the connection\n%s" % (
                    what, self.srv.log()))
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    self.fail("%s: the reply is not UTF-8: %r" % (what, raw[:200]))
                reply = lib.json.loads(raw)
                self.assertControlError(reply, "Invalid", what)
                self.assertEqual(reply["error"].get("errno"), "EINVAL", what)
                self.check_intact(before, what)
                # The same connection still answers.
                again = c.request("query-pool", id="alive")
                self.assertEqual(again.get("id"), "alive", "%s: then %s" % (what, again))
                self.assertIn("return", again, what)
        self.check_data()
        self.assertEqual([v["name"] for v in self.srv.query_volumes()], ["v0", "other"])

    def test_hostile_lines_each_on_a_fresh_connection(self):
        # A connection that ends right after its hostile line must not take
        # its server thread (or the server) with it.
        before = self.state()
        for what, line in hostile_lines()[::3]:
            with connect(self.srv) as c:
                c.send_raw(line + b"\n")
        for what, line in hostile_lines()[1::7]:
            with connect(self.srv) as c:
                c.send_raw(line)  # no newline: cut off mid-line
        self.check_intact(before, "hostile lines on fresh connections")
        self.check_data()

    def test_many_hostile_lines_pipelined(self):
        # All in one write, as one burst: replies come back one per line, in
        # order, each an error.
        lines = hostile_lines()
        before = self.state()
        with self.srv.control_connection() as c:
            burst = b"".join(line + b"\n" for _, line in lines
                             if len(line) < 4096)  # the deep ones are tested above
            n = burst.count(b"\n")
            burst += b'{"execute":"query-pool","id":"last"}\n'
            sender = threading.Thread(target=c.send_raw, args=(burst,), daemon=True)
            sender.start()
            for i in range(n):
                reply = lib.json.loads(read_raw_line(c))
                self.assertIn("error", reply, "reply %d: %s" % (i, reply))
            last = lib.json.loads(read_raw_line(c))
            self.assertEqual(last.get("id"), "last", last)
            sender.join(10)
        self.check_intact(before, "the pipelined burst")

    def test_ids_come_back_verbatim(self):
        ids = [b"1180591620717411303424", b"-1180591620717411303424", b"1e400", b"-0", b"0",
               b"1.0", b"1.5E+3", b"123456789012345678901234567890.123456789e-5",
               b"18446744073709551616", b"-9223372036854775809", b"9" * 400,
               b'"x"', b'""', b'"\\u00e9\\n\\"\\\\"', b'"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"',
               b'"a\\u0000b"', b"null", b"true", b"false", b"[]", b"{}",
               b'[1,"two",{"three":[3.0,null]}]', b'{"a":{"b":[1e400,-0.0]},"c":"d"}',
               b'{ "spaced" : [ 1 , 2 ] }']
        with self.srv.control_connection() as c:
            for raw_id in ids:
                for execute in (b"query-pool", b"no-such-command"):
                    line = b'{"execute":"' + execute + b'","id":' + raw_id + b"}"
                    c.send_raw(line + b"\n")
                    raw = read_raw_line(c)
                    self.assertIsNotNone(raw, "id %r: connection closed" % raw_id)
                    self.assertTrue(raw.endswith(b',"id":' + raw_id + b"}"),
                                    "id %r came back as %r" % (raw_id, raw[-200:]))
                    reply = lib.json.loads(raw)
                    self.assertIn("return" if execute == b"query-pool" else "error", reply, raw_id)
            # The id may come first, and with whitespace around it.
            c.send_raw(b'{ "id" : 1180591620717411303424 , "execute" : "query-pool" }\n')
            raw = read_raw_line(c)
            self.assertTrue(raw.endswith(b',"id":1180591620717411303424}'), raw[-100:])
        self.assertTrue(self.srv.alive())

    def test_invalid_ids_get_an_error(self):
        before = self.state()
        with self.srv.control_connection() as c:
            for raw_id in (b'"\xff"', b"[1,", b"{", b'{"a":1,"a":2}', b"01", b"+1", b".5", b"1.",
                           b"-", b"0x10", b"nul", b"Infinity", b'"\\ud800"', b"[" * 100000):
                c.send_raw(b'{"execute":"volume-delete","arguments":{"name":"v0"},"id":'
                           + raw_id + b"}\n")
                raw = read_raw_line(c)
                self.assertIsNotNone(raw, "id %r: connection closed" % raw_id[:20])
                self.assertControlError(lib.json.loads(raw), "Invalid", "id %r" % raw_id[:20])
        self.check_intact(before, "invalid ids")
        self.check_data()

    def test_bad_names_everywhere(self):
        for name in (".", "..", ".x", "-x"):
            for strategy in ("", ":none"):
                server = lib.Server("size=8M", "volume=%s:1M%s" % (name, strategy))
                try:
                    status, log = server.start_refused()
                finally:
                    server.stop()
                self.assertNotEqual(status, 0, "volume=%s started" % name)
                self.assertIn("volume", log)
            proc = self.srv.cli_run("create", name, "1M")
            self.assertNotEqual(proc.returncode, 0, "thinsim create %s succeeded" % name)
            proc = self.srv.cli_run("snapshot", "v0", name)
            self.assertNotEqual(proc.returncode, 0, "thinsim snapshot v0 %s succeeded" % name)
        self.assertEqual([v["name"] for v in self.srv.query_volumes()], ["v0", "other"])
        for name in ("a.", "a..b", "a-", "_x", "9", "x" * 64):
            self.assertIn("return", self.srv.control("volume-create", {"name": name, "size": "1M"}),
                          "name %r is allowed" % name)


class Events(lib.TestCase):
    """LOW_WATER events from NBD writes and trims: each write of a block
    takes free space below the threshold (all of the pool: low-water=100),
    each trim of it brings it back and re-arms, so every pair raises exactly
    one event."""

    PAIRS = 3000

    def setUp(self):
        self.srv = self.start_server("size=640K", "low-water=100", "volume=v0:1M")

    def churn(self, pairs):
        h = self.srv.connect("v0")
        block = lib.pattern(BS, 3)
        for _ in range(pairs):
            h.pwrite(block, 0)
            h.trim(BS, 0)
        h.flush()
        self.srv.disconnect(h)

    def read_events(self, c, total, timeout=60):
        """Events from `c` until they account for `total` pool events (those
        received plus the counts of EVENTS_LOST): (events, lost counts with
        their position in the list)."""
        events, lost = [], []
        deadline = time.monotonic() + timeout
        c.sock.settimeout(timeout)
        while len(events) + sum(n for _, n in lost) < total:
            self.assertLess(time.monotonic(), deadline, "only %d events and %r lost of %d" % (
                len(events), lost, total))
            msg = c.read_line()
            self.assertIsNotNone(msg, "the server closed a subscriber")
            self.assertIn("event", msg, msg)
            if msg["event"] == "EVENTS_LOST":
                self.assertEqual(set(msg["data"]), {"count"}, msg)
                self.assertGreater(msg["data"]["count"], 0, msg)
                self.assertIn("timestamp", msg)
                lost.append((len(events), msg["data"]["count"]))
            else:
                self.assertEqual(msg["event"], "LOW_WATER", msg)
                events.append(msg)
        return events, lost

    def subscribe(self):
        c = self.srv.control_connection()
        self.addCleanup(c.close)
        reply = c.request("events-subscribe", id="sub")
        self.assertEqual(reply, {"return": {}, "id": "sub"})
        return c

    def test_slow_subscriber_gets_events_lost_fast_one_gets_all(self):
        fast, slow = self.subscribe(), self.subscribe()
        got = {}

        def reader():
            got["fast"] = self.read_events(fast, self.PAIRS)

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        self.churn(self.PAIRS)
        t.join(60)
        self.assertFalse(t.is_alive(), "the fast subscriber is still waiting for events")
        fast_events, fast_lost = got["fast"]
        self.assertEqual(fast_lost, [], "the subscriber that kept up lost events")
        self.assertEqual(len(fast_events), self.PAIRS)
        stamps = [(e["timestamp"]["seconds"], e["timestamp"]["microseconds"]) for e in fast_events]
        self.assertEqual(stamps, sorted(stamps), "events out of order")
        # The slow one has not read a byte so far; now it catches up.
        slow_events, slow_lost = self.read_events(slow, self.PAIRS)
        self.assertTrue(slow_lost, "a subscriber that read nothing for %d events lost none"
                        % self.PAIRS)
        self.assertEqual(len(slow_events) + sum(n for _, n in slow_lost), self.PAIRS)
        # What it got is what the fast one got, minus the lost runs, in order,
        # and each EVENTS_LOST sits exactly where its events are missing.
        fast_by_stamp = {s: i for i, s in enumerate(stamps)}
        expect = 0
        lost_at = dict(slow_lost)
        for i, e in enumerate(slow_events + [None]):
            expect += lost_at.get(i, 0)
            if e is None:
                break
            stamp = (e["timestamp"]["seconds"], e["timestamp"]["microseconds"])
            self.assertEqual(fast_by_stamp.get(stamp), expect,
                             "slow subscriber's event %d is not the fast one's %d" % (i, expect))
            self.assertEqual(e["data"], fast_events[expect]["data"])
            expect += 1
        self.assertEqual(expect, self.PAIRS)
        # Both still answer requests, and events keep coming after the loss.
        for c in (fast, slow):
            self.assertIn("return", c.request("query-pool"))
        self.churn(1)
        for c in (fast, slow):
            self.assertEqual(self.read_events(c, 1)[1], [], "an event after catching up was lost")

    def test_replies_and_events_never_interleave(self):
        c = self.subscribe()
        t = threading.Thread(target=self.churn, args=(500,), daemon=True)
        t.start()
        ids = []
        events = 0
        # Sent from a thread: the server blocks on replies nobody reads yet.
        burst = b"".join(b'{"execute":"query-volumes","id":%d}\n' % i for i in range(300))
        sender = threading.Thread(target=c.send_raw, args=(burst,), daemon=True)
        sender.start()
        while len(ids) < 300:
            msg = c.read_line()  # raises on a line that is not JSON
            self.assertIsNotNone(msg)
            if "event" in msg:
                events += 1
            else:
                self.assertIn("return", msg, msg)
                ids.append(msg["id"])
        t.join(60)
        sender.join(10)
        self.assertEqual(ids, list(range(300)), "replies out of order")
        got, lost = self.read_events(c, 500 - events)
        self.assertEqual(lost, [])


if __name__ == "__main__":
    lib.main()
