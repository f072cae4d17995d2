"""Writes influxdb_client.lp with the official InfluxDB Python client
(`pip install influxdb-client`, 1.50.0 when generated) and expected.json
with what each line must parse to. The unit test in
src/series/line_protocol/tests_client.rs parses the one and compares it
with the other, so our parser is checked against line protocol that no one
here wrote.

Run from this directory: python3 generate.py

Names never end in a backslash nor hold two in a row: the client does not
escape backslashes in names, so `a\\` followed by `,` or a space comes out
as an escape sequence that no parser can tell apart (InfluxDB's own
parsers read it the same way)."""
import json
import random

from influxdb_client import Point, WritePrecision

random.seed(13)
PIECES = ["a", "Z", "7", "_", "-", " ", ",", "=", '"', "é", "🌡", "\\x", "°C", ".", "/"]


def text(min_len=1):
    while True:
        s = "".join(random.choice(PIECES) for _ in range(random.randint(min_len, 6)))
        if s and not s.startswith("#"):
            return s


def point(i):
    names = set()

    def fresh():
        while True:
            n = text()
            if n not in names:
                names.add(n)
                return n

    measurement = text()
    p = Point(measurement)
    tags = []
    for _ in range(random.randint(0, 3)):
        k, v = fresh(), text()
        p.tag(k, v)
        tags.append([k, v])
    fields = []
    for _ in range(random.randint(1, 4)):
        k = fresh()
        kind = random.choice(["float", "integer", "boolean", "string"])
        if kind == "float":
            v = random.choice([random.uniform(-1e6, 1e6), random.uniform(-1, 1) * 10 ** random.randint(-300, 300), 0.0, 21.5])
        elif kind == "integer":
            v = random.randint(-(2**63), 2**63 - 1)
        elif kind == "boolean":
            v = random.random() < 0.5
        else:
            v = text(0) + random.choice(["", "\\", "\\\\", '\\"', "tab\there"])
        p.field(k, v)
        # Floats as text: serde_json without `float_roundtrip` may read a
        # JSON number one ulp off, which would fail the test, not our parser.
        fields.append([k, {"type": kind, "value": repr(v) if kind == "float" else v}])
    time_ms = None
    if i % 7 != 0:
        ns = random.randint(-(10**18), 4 * 10**18)
        p.time(ns, WritePrecision.NS)
        time_ms = ns // 1_000_000
    return p.to_line_protocol(), {"measurement": measurement, "tags": tags, "fields": fields, "time_ms": time_ms}


lines, expected = [], []
for i in range(300):
    line, want = point(i)
    lines.append(line)
    expected.append(want)

with open("influxdb_client.lp", "w", encoding="utf-8", newline="\n") as f:
    f.write("\n".join(lines) + "\n")
with open("expected.json", "w", encoding="utf-8") as f:
    # One point a line, so a diff shows which point changed.
    f.write("[\n" + ",\n".join(json.dumps(e, ensure_ascii=False) for e in expected) + "\n]\n")
