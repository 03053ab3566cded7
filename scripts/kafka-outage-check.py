#!/usr/bin/env python3
"""Show what ONE idempotent librdkafka producer sees across a broker outage.

Usage: kafka-outage-check.py stop-kafka start-kafka    # broker restarted: memory state lost
       kafka-outage-check.py pause-kafka resume-kafka  # broker frozen: state kept
Produces 20 msg/s for 16 s, runs the first subcommand of scripts/test-services
after 60 messages and the second after 120, then reports delivered / timed-out
counts and how many messages the broker holds.
"""
import os, subprocess, sys, time
from confluent_kafka import Consumer, Producer, TopicPartition

script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "test-services")
boot = os.environ.get("TAPFWD_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
topic = f"outage-{int(time.time())}"
errs, ok, fatal = [], [0], []

def on_err(e):
    errs.append(str(e))
    if e.fatal():
        fatal.append(str(e))

def on_dr(err, msg):
    if err:
        errs.append("delivery: " + str(err))
    else:
        ok[0] += 1

p = Producer({"bootstrap.servers": boot, "enable.idempotence": True, "acks": "all",
              "message.timeout.ms": 20000, "reconnect.backoff.max.ms": 1000,
              "error_cb": on_err, "log_level": 0})
t0, i = time.time(), 0
while time.time() - t0 < 16:
    p.produce(topic, value=b"m%d" % i, on_delivery=on_dr)
    i += 1
    p.poll(0.05)
    if i == 60:
        subprocess.run([script, sys.argv[1]], check=True)
    if i == 120:
        subprocess.run([script, sys.argv[2]], check=True)
left = p.flush(30)
print(f"produced {i}, delivered {ok[0]}, undelivered {i - ok[0]}, still queued {left}, fatal {fatal}")
print("distinct errors:", sorted({e[:140] for e in errs}))
c = Consumer({"bootstrap.servers": boot, "group.id": "outage-check", "auto.offset.reset": "earliest"})
parts = c.list_topics(topic, timeout=10).topics[topic].partitions
c.assign([TopicPartition(topic, q, 0) for q in parts])
n, end = 0, time.time() + 8
while time.time() < end:
    m = c.poll(0.5)
    if m is not None and not m.error():
        n += 1
c.close()
print(f"broker now holds {n} messages of topic {topic}")
