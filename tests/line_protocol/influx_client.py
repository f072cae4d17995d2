"""Writes to pulsebase's /api/v2/write with the real InfluxDB Python client.

Run by tests/line_protocol.rs as

    python3 influx_client.py URL TOKEN BUCKET EXPECTED_JSON

It writes points the way an InfluxDB user would, checks the answers the
client surfaces (errors included), and leaves in EXPECTED_JSON every
reading that must now be stored, with its time in the precision it was
sent at: the Rust test converts to milliseconds itself, so a conversion
shared by both sides cannot hide a wrong one.
"""

import json
import sys

from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

URL, TOKEN, BUCKET, EXPECTED = sys.argv[1:5]
ORG = "any"
# Around 2023-11-14, with distinct offsets per group so no two groups share
# a time and a reading can be traced to the write that made it.
BASE_S = 1_700_000_000

PRECISIONS = [
    (WritePrecision.NS, "ns", 1_000_000_000),
    (WritePrecision.US, "us", 1_000_000),
    (WritePrecision.MS, "ms", 1_000),
    (WritePrecision.S, "s", 1),
]

expected = []


def point(measurement, device, temp, humidity, time, precision, unit):
    """A Point, and the reading it must become."""
    p = (
        Point(measurement)
        .tag("device", device)
        .field("temp", temp)
        .field("humidity", humidity)
        .time(time, precision)
    )
    reading = {
        "measurement": measurement,
        "device": device,
        "temp": temp,
        "humidity": humidity,
        "time": time,
        "precision": unit,
    }
    return p, reading


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def error_body(e):
    check(e.body, f"the {e.status} answer has no body")
    return json.loads(e.body)


def expect_refused(write, status, what):
    try:
        write()
    except ApiException as e:
        check(e.status == status, f"{what}: expected {status}, got {e.status}: {e.body}")
        return e
    raise AssertionError(f"{what}: the client raised nothing (expected {status})")


with InfluxDBClient(url=URL, token=TOKEN, org=ORG) as client:
    write_api = client.write_api(write_options=SYNCHRONOUS)

    # (a) One Point per request, then 5,000 in one request, at each
    # precision. The times carry sub-millisecond parts (and one is before
    # 1970) so truncation instead of floor shows.
    for group, (precision, unit, per_second) in enumerate(PRECISIONS):
        start = (BASE_S + group * 100_000) * per_second
        singles = [
            # Sub-unit remainders: 1 ns, 999 us, and so on.
            point("climate", "kitchen", 21.5, 40.25, start + 1, precision, unit),
            point("climate", "hall way,1", -3.125, 55, start + per_second // 2 + 7, precision, unit),
            point("climate room", "cellar=2", 0.1, 99.9, start + 3 * per_second - 1, precision, unit),
            # 1969-12-31T23:59:59.999...: before the epoch, floor rounds down.
            point("climate", f"old-{unit}", 1e-300, 1.5e300, -(per_second // 1000 or 1) - 1, precision, unit),
        ]
        for p, reading in singles:
            write_api.write(bucket=BUCKET, org=ORG, record=p, write_precision=precision)
            expected.append(reading)

        batch = []
        step = max(per_second // 1000, 1) + 3  # never a whole millisecond
        for i in range(5000):
            humidity = 30 + i % 50 if i % 7 == 0 else 30.5 + (i % 50) / 8
            p, reading = point(
                "climate",
                f"sensor-{i % 13}",
                round(15 + (i % 200) * 0.05, 2),
                humidity,
                start + 10 * per_second + i * step,
                precision,
                unit,
            )
            batch.append(p)
            expected.append(reading)
        write_api.write(bucket=BUCKET, org=ORG, record=batch, write_precision=precision)

    # (b) Line protocol the client produced, sent as strings in batches.
    start = (BASE_S + 500_000) * 1000
    for b in range(3):
        lines = []
        for i in range(1000):
            p, reading = point(
                "climate",
                f"line-{b}",
                i / 4,
                100 - i / 16,
                start + b * 10_000 + i * 3,
                WritePrecision.MS,
                "ms",
            )
            lines.append(p.to_line_protocol())
            expected.append(reading)
        write_api.write(bucket=BUCKET, org=ORG, record=lines, write_precision=WritePrecision.MS)

    # (c) One bad line in the middle of a batch: the whole batch is refused
    # and the error names its line. None of these readings may be stored
    # (the Rust test looks for the device "rejected").
    start = (BASE_S + 600_000) * 1000

    def rejected_batch(bad_line, bad):
        lines = []
        for i in range(1, 1001):
            if i == bad_line:
                lines.append(bad)
            else:
                p, _ = point("climate", "rejected", 1.0, 2.0, start + i, WritePrecision.MS, "ms")
                lines.append(p.to_line_protocol())
        return lines

    syntax = rejected_batch(500, f"climate,device=rejected temp= {start}")
    e = expect_refused(
        lambda: write_api.write(bucket=BUCKET, org=ORG, record=syntax, write_precision=WritePrecision.MS),
        400,
        "a syntax error on line 500",
    )
    body = error_body(e)
    check(body["error"]["code"] == "bad_request", f"syntax error: {body}")
    check(body["error"]["details"]["line"] == 500, f"syntax error names line 500: {body}")

    invalid = rejected_batch(
        321, f'climate,device=rejected temp="hot",humidity=2 {start + 321}'
    )
    e = expect_refused(
        lambda: write_api.write(bucket=BUCKET, org=ORG, record=invalid, write_precision=WritePrecision.MS),
        400,
        "a string temp on line 321",
    )
    body = error_body(e)
    check(body["error"]["code"] == "validation_failed", f"invalid point: {body}")
    lines = body["error"]["details"]["lines"]
    check(list(lines) == ["321"], f"invalid point names line 321 only: {body}")
    check("temp" in lines["321"], f"invalid point names the field: {body}")

    # (e) A gzipped batch (the client's enable_gzip, Telegraf's default):
    # stored like any other.
    start = (BASE_S + 700_000) * 1000
    with InfluxDBClient(url=URL, token=TOKEN, org=ORG, enable_gzip=True) as gzipped:
        batch = []
        for i in range(1000):
            p, reading = point(
                "climate", "gzipped", i / 8, 50 - i / 32, start + i, WritePrecision.MS, "ms"
            )
            batch.append(p)
            expected.append(reading)
        gzipped.write_api(write_options=SYNCHRONOUS).write(
            bucket=BUCKET, org=ORG, record=batch, write_precision=WritePrecision.MS
        )

# (d) A wrong token.
with InfluxDBClient(url=URL, token=TOKEN + "x", org=ORG) as wrong:
    p, _ = point("climate", "rejected", 1.0, 2.0, BASE_S, WritePrecision.S, "s")
    e = expect_refused(
        lambda: wrong.write_api(write_options=SYNCHRONOUS).write(
            bucket=BUCKET, org=ORG, record=p, write_precision=WritePrecision.S
        ),
        401,
        "a wrong token",
    )
    check(error_body(e)["error"]["code"] == "unauthorized", f"wrong token: {e.body}")

with open(EXPECTED, "w") as out:
    json.dump(expected, out)
print(f"influx_client: {len(expected)} readings written, every refusal as expected")
