"""A device as the Eclipse Paho Python client (paho-mqtt 2.1.0) makes one.

Driven by tests/mqtt.rs. argv[1] is a JSON plan:
  {"port": 1883, "version": 5 | 3, "client_id": "...", "password": "..." | null,
   "subscribe_errors": false, "publish": [{"topic", "payload", "qos", "retain": false}],
   "errors_expected": 0, "inflight": 20,
   "subscribe": [{"topic", "qos"}], "user_properties": {"filter": "..."},
   "messages_expected": 0, "clean": true, "session_expiry": null,
   "manual_ack": false (true: never PUBACK what arrives), "wait": 20}
Prints one JSON object per line, flushed at once (a test may kill the
server as soon as it reads an ack):
  {"connack": <reason code value>}
  {"sent": <index into publish>, "mid": <its message id>}
  {"mid": <message id>, "rc": <PUBACK reason code value>}
  {"error": <the JSON published on _errors/<client id>>}
  {"suback": [<reason code values>]}
  {"message": {"topic", "qos", "retain", "payload": <JSON>}} for anything else received
  {"disconnect": <reason code value>}
  {"done": true}
"""

import json
import os
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

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


protocol = mqtt.MQTTv5 if plan["version"] == 5 else mqtt.MQTTv311
client = mqtt.Client(
    callback_api_version=CallbackAPIVersion.VERSION2,
    client_id=plan["client_id"],
    protocol=protocol,
    **({} if plan["version"] == 5 else {"clean_session": plan.get("clean", True)}),
)
# Paho's default is 20 publishes awaiting PUBACK; the server offers 64.
client.max_inflight_messages_set(plan.get("inflight", 20))
# A client that never acknowledges what it receives (a stuck consumer).
client.manual_ack_set(plan.get("manual_ack", False))
if plan.get("password") is not None:
    client.username_pw_set("device", plan["password"])
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

connected = threading.Event()
subscribed = threading.Event()
acked = set()
all_acked = threading.Event()
errors = []
errors_done = threading.Event()
messages = []
messages_done = threading.Event()
to_ack = sum(1 for p in plan.get("publish", []) if p["qos"] > 0)


def on_connect(client, userdata, flags, reason_code, properties):
    say({"connack": reason_code.value, "session_present": flags.session_present})
    connected.set()


def on_subscribe(client, userdata, mid, reason_codes, properties):
    say({"suback": [rc.value for rc in reason_codes]})
    subscribed.set()


def on_publish(client, userdata, mid, reason_code, properties):
    # Paho calls this holding its own lock, possibly before publish()
    # has returned the mid: the test pairs mids with "sent" lines itself.
    say({"mid": mid, "rc": reason_code.value})
    acked.add(mid)
    if len(acked) == to_ack:
        all_acked.set()


def on_disconnect(client, userdata, flags, reason_code, properties):
    say({"disconnect": reason_code.value})
    # A lost connection acknowledges nothing more: stop waiting.
    all_acked.set()
    errors_done.set()
    messages_done.set()


def on_message(client, userdata, message):
    if not message.topic.startswith("_errors/"):
        payload = json.loads(message.payload)
        messages.append(payload)
        say({"message": {"topic": message.topic, "qos": message.qos,
                         "retain": bool(message.retain), "payload": payload}})
        if len(messages) >= plan.get("messages_expected", 0):
            messages_done.set()
        return
    errors.append(json.loads(message.payload))
    say({"error": json.loads(message.payload)})
    if len(errors) >= plan.get("errors_expected", 0):
        errors_done.set()


client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_publish = on_publish
client.on_message = on_message
client.on_disconnect = on_disconnect
connect_properties = None
if plan["version"] == 5 and plan.get("session_expiry") is not None:
    connect_properties = Properties(PacketTypes.CONNECT)
    connect_properties.SessionExpiryInterval = plan["session_expiry"]
if plan["version"] == 5:
    client.connect("127.0.0.1", plan["port"], keepalive=30,
                   clean_start=plan.get("clean", True), properties=connect_properties)
else:
    client.connect("127.0.0.1", plan["port"], keepalive=30)
client.loop_start()
if not connected.wait(10):
    say({"connack": None})
    sys.exit(1)
if plan.get("subscribe_errors"):
    client.subscribe("_errors/" + plan["client_id"], qos=0)
    subscribed.wait(10)
if plan.get("subscribe"):
    subscribed.clear()
    sub_properties = None
    if plan["version"] == 5 and plan.get("user_properties"):
        sub_properties = Properties(PacketTypes.SUBSCRIBE)
        sub_properties.UserProperty = list(plan["user_properties"].items())
    client.subscribe([(s["topic"], s["qos"]) for s in plan["subscribe"]],
                     properties=sub_properties)
    subscribed.wait(10)
for index, publish in enumerate(plan.get("publish", [])):
    info = client.publish(publish["topic"], publish["payload"], qos=publish["qos"],
                          retain=publish.get("retain", False))
    say({"sent": index, "mid": info.mid})
if to_ack:
    all_acked.wait(20)
if plan.get("errors_expected", 0):
    errors_done.wait(10)
if plan.get("messages_expected", 0):
    messages_done.wait(plan.get("wait", 20))
client.disconnect()
client.loop_stop()
say({"done": True})
