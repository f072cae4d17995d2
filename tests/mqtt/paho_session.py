"""One device session as the Eclipse Paho Python client (paho-mqtt 2.1.0)
makes it, over TCP or WebSocket, with a Will, ended in a chosen way.

Driven by tests/mqtt_ws.rs and tests/mqtt_will.rs. argv[1] is a JSON plan:
  {"port": 1883, "version": 5 | 3, "transport": "tcp" | "websockets",
   "path": "/mqtt", "client_id": "...", "password": "..." | null,
   "will": {"topic", "payload", "qos", "retain"} | null,
   "publish": [{"topic", "payload", "qos"}],
   "end": "disconnect" | "disconnect_with_will" | "abort"}
"abort" ends the process without a DISCONNECT, as a device that loses
power does (the kernel closes the socket).
Prints one JSON object per line, flushed at once:
  {"connack": <reason code value>}
  {"sent": <index into publish>, "mid": <its message id>}
  {"mid": <message id>, "rc": <PUBACK reason code value>}
  {"end": <how the session ended>}
"""

import json
import os
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

# Whatever happens, a test is never left waiting on this client.
watchdog = threading.Timer(60, lambda: os._exit(3))
watchdog.daemon = True
watchdog.start()

plan = json.loads(sys.argv[1])
lock = threading.Lock()


def say(obj):
    with lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


v5 = plan["version"] == 5
client = mqtt.Client(
    callback_api_version=CallbackAPIVersion.VERSION2,
    client_id=plan["client_id"],
    protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
    transport=plan.get("transport", "tcp"),
)
if plan.get("transport") == "websockets":
    client.ws_set_options(path=plan.get("path", "/mqtt"))
if plan.get("password") is not None:
    client.username_pw_set("device", plan["password"])
will = plan.get("will")
if will:
    client.will_set(will["topic"], will["payload"], qos=will["qos"], retain=will["retain"])

connected = threading.Event()
acked = set()
all_acked = threading.Event()
to_ack = sum(1 for p in plan.get("publish", []) if p["qos"] > 0)


def on_connect(client, userdata, flags, reason_code, properties):
    say({"connack": reason_code.value})
    connected.set()


def on_publish(client, userdata, mid, reason_code, properties):
    say({"mid": mid, "rc": reason_code.value})
    acked.add(mid)
    if len(acked) == to_ack:
        all_acked.set()


def on_disconnect(client, userdata, flags, reason_code, properties):
    all_acked.set()


client.on_connect = on_connect
client.on_publish = on_publish
client.on_disconnect = on_disconnect
client.connect("127.0.0.1", plan["port"], keepalive=30)
client.loop_start()
if not connected.wait(10):
    say({"connack": None})
    os._exit(1)
for index, publish in enumerate(plan.get("publish", [])):
    info = client.publish(publish["topic"], publish["payload"], qos=publish["qos"])
    say({"sent": index, "mid": info.mid})
if to_ack:
    all_acked.wait(20)
end = plan.get("end", "disconnect")
say({"end": end})
if end == "abort":
    os._exit(0)
if end == "disconnect_with_will":
    client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=4))
else:
    client.disconnect()
client.loop_stop()
