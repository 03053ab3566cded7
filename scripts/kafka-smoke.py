#!/usr/bin/env python3
"""Smoke-test a Kafka-protocol broker with confluent-kafka (librdkafka).

Usage: kafka-smoke.py BOOTSTRAP [N]
Checks: admin create-topic, idempotent producer (acks=all), headers,
every compression codec, topic auto-creation, consume by offset and via a
consumer group with commit. Prints one line per check: OK/FAIL.
"""
import logging, sys, time, uuid
from confluent_kafka import Producer, Consumer, TopicPartition, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:19092"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
results = {}

def check(name, ok, detail=""):
    results[name] = ok
    print(f"{'OK  ' if ok else 'FAIL'} {name} {detail}", flush=True)

class PidCatcher(logging.Handler):
    """Collects librdkafka 'eos' debug lines that show InitProducerId succeeded."""
    lines = []
    def emit(self, rec):
        msg = rec.getMessage()
        if "PID" in msg and ("Acquired" in msg or "assigned" in msg.lower()):
            self.lines.append(msg)
pid_logger = logging.getLogger("rdkafka")
pid_logger.setLevel(logging.DEBUG)
pid_logger.addHandler(PidCatcher())
pid_logger.propagate = False

def produce(topic, n, **extra):
    conf = {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
            "linger.ms": 5, "message.timeout.ms": 20000, "debug": "eos"}
    conf.update(extra)
    errors, delivered = [], [0]
    def cb(err, msg):
        if err: errors.append(str(err))
        else: delivered[0] += 1
    p = Producer(conf, logger=pid_logger)
    for i in range(n):
        val = ('{"i":%d,"s":"quote\\" backslash\\\\ utf8 \u00e9\u20ac\U0001F600"}' % i).encode()
        p.produce(topic, key=f"k{i}".encode(), value=val,
                  headers=[("h-index", str(i).encode()), ("h-bin", b"\x00\xff")], on_delivery=cb)
        p.poll(0)
    left = p.flush(30)
    return delivered[0], errors, left

def consume_offsets(topic, n, group=None):
    conf = {"bootstrap.servers": bootstrap, "group.id": group or f"g-{uuid.uuid4()}",
            "auto.offset.reset": "earliest", "enable.auto.commit": False}
    c = Consumer(conf)
    if group:
        c.subscribe([topic])
    else:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.assign([TopicPartition(topic, p, 0) for p in parts])
    got, deadline = [], time.time() + 30
    while len(got) < n and time.time() < deadline:
        m = c.poll(1.0)
        if m is None: continue
        if m.error():
            print("   consumer error:", m.error(), flush=True); continue
        got.append(m)
    if group and got:
        c.commit(asynchronous=False)
        committed = c.committed([TopicPartition(topic, 0)], timeout=10)
    else:
        committed = None
    c.close()
    return got, committed

admin = AdminClient({"bootstrap.servers": bootstrap})
md = admin.list_topics(timeout=10)
check("metadata", True, f"brokers={list(md.brokers.values())}")

t = f"smoke-{uuid.uuid4().hex[:8]}"
try:
    fs = admin.create_topics([NewTopic(t, num_partitions=1, replication_factor=1)])
    fs[t].result(15)
    check("admin.create_topics", True, t)
except Exception as e:
    check("admin.create_topics", False, repr(e))

d, errs, left = produce(t, N)
check("idempotent produce acks=all", d == N and not errs and left == 0, f"delivered={d} errors={errs[:3]} left={left}")
check("InitProducerId (PID acquired)", bool(PidCatcher.lines), (PidCatcher.lines or ["no PID line"])[0][:160])
got, _ = consume_offsets(t, N)
ok = len(got) == N and all(m.headers() and dict(m.headers()).get("h-index") == str(i).encode()
                           and dict(m.headers()).get("h-bin") == b"\x00\xff" for i, m in enumerate(got))
check("fetch by offset + headers", ok, f"got={len(got)} first_headers={got[0].headers() if got else None}")
vals_ok = all(m.value().decode().startswith('{"i":%d,' % i) for i, m in enumerate(got))
check("value bytes intact (utf-8)", vals_ok, got[0].value().decode() if got else "")

for codec in ["gzip", "snappy", "lz4", "zstd"]:
    tc = f"{t}-{codec}"
    try:
        admin.create_topics([NewTopic(tc, 1, 1)])[tc].result(15)
    except Exception as e:
        print("   create", tc, e)
    d, errs, left = produce(tc, 200, **{"compression.type": codec})
    g, _ = consume_offsets(tc, 200)
    check(f"compression {codec}", d == 200 and len(g) == 200 and not errs, f"delivered={d} consumed={len(g)} errors={errs[:2]}")

ta = f"auto-{uuid.uuid4().hex[:8]}"
d, errs, left = produce(ta, 10, **{"message.timeout.ms": 15000})
g, _ = consume_offsets(ta, 10)
check("topic auto-creation on produce", d == 10 and len(g) == 10, f"delivered={d} consumed={len(g)} errors={errs[:2]}")

grp = f"grp-{uuid.uuid4().hex[:8]}"
g, committed = consume_offsets(t, N, group=grp)
check("consumer group subscribe+commit", len(g) == N and committed and committed[0].offset == N,
      f"got={len(g)} committed={committed}")

print(f"{sum(results.values())} passed, {len(results)-sum(results.values())} failed")
sys.exit(0 if all(results.values()) else 1)
