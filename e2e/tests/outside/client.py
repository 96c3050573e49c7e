"""An outside team's client of sessionfold, built from the .avsc files alone.

`produce-registry` writes activity events with confluent-kafka's own
AvroSerializer through a Schema Registry. `export-kinds` reads an export file into a pandas frame and counts its
`kind` column. `produce` writes activity events (current and version 1 schema) and import
events with fastavro's single-object encoding and confluent-kafka, with the
compression codec asked for, the way any Avro producer would. `presence`
reads the presence changelog and decodes every state with fastavro, printing
one JSON line per user. Nothing of sessionfold's own code is used.
"""
import argparse
import io
import json
import os
import sys
import time

import fastavro
from confluent_kafka import Consumer, Producer, TopicPartition
from fastavro.schema import fingerprint, to_parsing_canonical_form

SCHEMAS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "schemas")


def load(name):
    with open(os.path.join(SCHEMAS, name)) as f:
        return fastavro.parse_schema(json.load(f))


def header(schema):
    # fastavro gives the CRC-64-AVRO fingerprint as the hex of its
    # little-endian bytes, which is the order single-object encoding uses.
    return b"\xc3\x01" + bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


def encode(schema, record):
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    return header(schema) + buf.getvalue()


def activity(schema, event_id, user, at, body, with_received):
    r = {"event_id": event_id, "occurred_at": at, "user_id": user, "session_id": user + "-s", "event": body}
    if with_received:
        r["received_at"] = None
    return encode(schema, r)


def produce(args):
    current, v1, imports = load("activity.avsc"), load("history/activity.v1.avsc"), load("import.avsc")
    producer = Producer({
        "bootstrap.servers": args.brokers,
        "partitioner": "murmur2_random",
        "compression.type": args.codec,
        "linger.ms": 50,
        "enable.idempotence": True,
    })
    now = int(time.time() * 1000)
    records = []
    for i in range(args.users):
        user = "%s-%s-%d" % (args.tag, args.codec, i)
        # Even users write the current schema, odd ones version 1.
        schema, with_received = (current, True) if i % 2 == 0 else (v1, False)
        ns = "io.sessionfold.activity."
        start = {"-type": ns + "SessionStarted", "email": user + "@example.com", "full_name": None,
                 "membership": None, "roles": ["member"], "device_type": None, "browser": None,
                 "os": None, "ip_address": None, "user_agent": None, "page": "/"}
        records.append((args.prefix + ".activity", user, activity(schema, user + "-0", user, now, start, with_received)))
        for b in range(args.beats):
            beat = {"-type": ns + "Heartbeat", "page": "/quiz", "activity": "click"}
            records.append((args.prefix + ".activity", user,
                            activity(schema, "%s-b%d" % (user, b), user, now + 1 + b, beat, with_received)))
        view = {"-type": ns + "PageViewed", "page": "/results", "title": None}
        records.append((args.prefix + ".activity", user,
                        activity(schema, user + "-v", user, now + 100, view, with_received)))
    ins = "io.sessionfold.imports."
    imp = "%s-%s-import" % (args.tag, args.codec)
    owner = "%s-%s-0" % (args.tag, args.codec)

    def import_event(event_id, at, body):
        return encode(imports, {"event_id": event_id, "occurred_at": at, "import_id": imp,
                                "actor_id": owner, "event": body, "received_at": None})

    records.append((args.prefix + ".imports", imp, import_event(imp + "-s", now, {
        "-type": ins + "ImportStarted", "owner_id": owner, "json_hash": "h-" + args.codec,
        "file_name": "quiz.json", "questions_total": 40})))
    records.append((args.prefix + ".imports", imp, import_event(imp + "-p", now + 1, {
        "-type": ins + "ImportProgressed", "step": "parse", "progress": 40,
        "questions_imported": 16, "questions_total": 40})))
    failed = []
    for topic, key, value in records:
        producer.produce(topic, key=key.encode(), value=value,
                         on_delivery=lambda err, _msg: err and failed.append(str(err)))
    producer.flush(30)
    if failed:
        sys.exit("delivery failed: %s" % failed[0])
    print(json.dumps({"records": len(records)}))


def presence(args):
    schema = load("presence.avsc")
    want = header(schema)
    consumer = Consumer({"bootstrap.servers": args.brokers, "group.id": "outside-reader-%d" % os.getpid(),
                         "enable.auto.commit": False})
    topic = args.prefix + ".presence"
    meta = consumer.list_topics(topic, timeout=10)
    parts = list(meta.topics[topic].partitions)
    ends = {}
    for p in parts:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        if high > low:
            ends[p] = high
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    latest = {}
    deadline = time.time() + 30
    while ends and time.time() < deadline:
        m = consumer.poll(0.5)
        if m is None or m.error():
            continue
        key = m.key().decode()
        value = m.value()
        if value is None:
            latest.pop(key, None)
        else:
            if value[:10] != want:
                sys.exit("presence record %s@%d: header %s, expected %s" % (key, m.offset(), value[:10].hex(), want.hex()))
            state = fastavro.schemaless_reader(io.BytesIO(value[10:]), schema)
            latest[key] = state
        if m.offset() + 1 >= ends.get(m.partition(), 0):
            ends.pop(m.partition(), None)
    consumer.close()
    if ends:
        sys.exit("presence changelog not read to its end: %s" % ends)
    for user, state in sorted(latest.items()):
        s = state["sessions"][0]
        print(json.dumps({"user_id": state["user_id"], "heartbeats": s["heartbeats"],
                          "page_views": s["page_views"], "current_page": s["current_page"]}))


def produce_registry(args):
    # Confluent's own serializer: it registers the .avsc under <topic>-value
    # (auto.register.schemas) and writes 00, the schema id, the body.
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    with open(os.path.join(SCHEMAS, "activity.avsc")) as f:
        schema_str = f.read()
    serializer = AvroSerializer(SchemaRegistryClient({"url": args.registry}), schema_str)
    producer = Producer({"bootstrap.servers": args.brokers, "partitioner": "murmur2_random"})
    topic = args.prefix + ".activity"
    ns = "io.sessionfold.activity."
    now = int(time.time() * 1000)
    failed = []
    count = 0
    for i in range(args.users):
        user = "%s-%d" % (args.tag, i)
        events = [("0", {"-type": ns + "SessionStarted", "email": user + "@example.com", "full_name": None,
                         "membership": None, "roles": [], "device_type": None, "browser": None, "os": None,
                         "ip_address": None, "user_agent": None, "page": "/"})]
        events += [("b%d" % b, {"-type": ns + "Heartbeat", "page": "/q", "activity": "keyboard"})
                   for b in range(args.beats)]
        for n, (suffix, body) in enumerate(events):
            record = {"event_id": "%s-%s" % (user, suffix), "occurred_at": now + n, "user_id": user,
                      "session_id": user + "-s", "event": body, "received_at": None}
            value = serializer(record, SerializationContext(topic, MessageField.VALUE))
            producer.produce(topic, key=user.encode(), value=value,
                             on_delivery=lambda err, _m: err and failed.append(str(err)))
            count += 1
    producer.flush(30)
    if failed:
        sys.exit("delivery failed: %s" % failed[0])
    print(json.dumps({"records": count}))


def export_kinds(args):
    # What an analyst does with the export: a pandas frame, one column per field.
    import pandas

    with open(args.file, "rb") as f:
        frame = pandas.DataFrame.from_records(list(fastavro.reader(f)))
    counts = frame["kind"].value_counts(dropna=False)
    print(json.dumps({"columns": list(frame.columns),
                      "kinds": {str(k): int(v) for k, v in counts.items()}}))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("command", choices=["produce", "produce-registry", "presence", "export-kinds"])
    ap.add_argument("--file")
    ap.add_argument("--registry")
    ap.add_argument("--brokers")
    ap.add_argument("--prefix")
    ap.add_argument("--codec", default="none", choices=["none", "gzip", "snappy", "lz4", "zstd"])
    ap.add_argument("--tag", default="out")
    ap.add_argument("--users", type=int, default=3)
    ap.add_argument("--beats", type=int, default=4)
    args = ap.parse_args()
    {"produce": produce, "produce-registry": produce_registry, "presence": presence,
     "export-kinds": export_kinds}[args.command](args)


if __name__ == "__main__":
    main()
