#!/usr/bin/env python3
"""The README's examples, checked as a platform would see them.

Starts a Tansu broker and a redis-server on free loopback ports and the real
`ingest` binary; produces the README's example events with the confluent-kafka
client (a real Kafka client, not ours); then checks that the canonical topic,
the dead-letter topic and Redis hold exactly what the README says.

Usage: check_readme.py INGEST_BINARY
"""

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
TIMEOUT = 60.0

passed = 0
failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
        print(f"  ok    {what}")
    else:
        failed += 1
        print(f"  FAIL  {what}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what):
    deadline = time.time() + 20
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on {port}")


def readme_blocks():
    """The README's marked examples: valid events, DLQ rows, Redis answers."""
    text = README.read_text()

    def after(marker):
        i = text.index(f"<!-- readme-check: {marker} -->")
        return text[i:]

    valid_block = re.search(r"```json\n(.*?)```", after("valid"), re.S).group(1)
    valid = [line for line in valid_block.splitlines() if line.strip()]
    dlq = []
    for line in after("dlq").splitlines()[3:]:
        if not line.startswith("| `"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        dlq.append((cells[0].strip("`"), cells[1].strip("`"), cells[2].replace("`", "`")))
    redis_block = re.search(r"```json\n(.*?)```", after("redis"), re.S).group(1)
    return valid, dlq, json.loads(redis_block)


def consume_all(brokers, topic, n, timeout=TIMEOUT):
    c = Consumer({
        "bootstrap.servers": brokers,
        "group.id": f"readme-{topic}-{time.time()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    c.subscribe([topic])
    got = []
    deadline = time.time() + timeout
    while len(got) < n and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        got.append(m)
    c.close()
    return got


def decode_event(payload):
    out = subprocess.run(
        ["protoc", "--decode=funnel.events.v1.Event", "-I", str(ROOT / "proto"),
         str(ROOT / "proto/funnel/events/v1/events.proto")],
        input=payload, capture_output=True, check=True)
    return out.stdout.decode()


def main():
    ingest_bin = sys.argv[1]
    tansu = os.environ.get("TANSU_BIN", str(ROOT / ".tools/bin/tansu"))
    kafka_port, redis_port = free_port(), free_port()
    brokers = f"127.0.0.1:{kafka_port}"
    work = tempfile.mkdtemp()
    procs = []
    try:
        url = f"tcp://{brokers}"
        broker = subprocess.Popen(
            [tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(broker)
        redis = subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(redis)
        wait_port(kafka_port, broker, "tansu")
        wait_port(redis_port, redis, "redis-server")

        topics = {"raw": "funnel.events.raw", "events": "funnel.events.v1",
                  "catalog": "funnel.catalog.v1", "dlq": "funnel.events.dlq"}
        admin = AdminClient({"bootstrap.servers": brokers})
        futures = admin.create_topics([
            NewTopic(topics["raw"], 3, 1), NewTopic(topics["events"], 3, 1),
            NewTopic(topics["catalog"], 1, 1, config={"cleanup.policy": "compact"}),
            NewTopic(topics["dlq"], 1, 1)])
        for f in futures.values():
            f.result(30)

        env = {k: v for k, v in os.environ.items() if not k.startswith("FUNNEL_")}
        env.update({
            "FUNNEL_KAFKA__BROKERS": brokers,
            "FUNNEL_REDIS__URL": f"redis://127.0.0.1:{redis_port}",
            "FUNNEL_GRPC__LISTEN": f"127.0.0.1:{free_port()}",
            "FUNNEL_ADMIN__LISTEN": f"127.0.0.1:{free_port()}",
            "FUNNEL_TELEMETRY__LOG_FILTER": "warn",
        })
        log = open(Path(work) / "ingest.log", "w")
        ingest = subprocess.Popen([ingest_bin], env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(ingest)

        valid, dlq_rows, redis_expected = readme_blocks()
        print(f"README: {len(valid)} valid events, {len(dlq_rows)} DLQ rows, "
              f"{len(redis_expected)} Redis answers")
        producer = Producer({"bootstrap.servers": brokers})

        def send(line, key):
            producer.produce(topics["raw"], key=key.encode(), value=line.encode())

        # The catalog first, as a platform loads it before traffic.
        catalog = [l for l in valid if json.loads(l)["type"] == "item"]
        rest = [l for l in valid if json.loads(l)["type"] != "item"]
        for line in catalog:
            send(line, json.loads(line)["item_id"])
        producer.flush(30)
        got_catalog = consume_all(brokers, topics["catalog"], len(catalog))
        check(len(got_catalog) == len(catalog), f"{len(catalog)} catalog records on {topics['catalog']}")
        for line in rest:
            send(line, json.loads(line)["user_id"])
        for raw, _, _ in dlq_rows:
            send(raw, "u-42")
        producer.flush(30)

        canonical = consume_all(brokers, topics["events"], len(valid))
        check(len(canonical) == len(valid), f"{len(valid)} canonical events on {topics['events']}")
        by_id = {}
        for m in canonical:
            text = decode_event(m.value())
            event_id = re.search(r'^event_id: "(.*)"$', text, re.M).group(1)
            by_id[event_id] = (m.key().decode(), text)
        for line in valid:
            e = json.loads(line)
            key, text = by_id.get(e["event_id"], (None, ""))
            expected_key = e.get("user_id") or e["item_id"]
            check(key == expected_key, f"{e['event_id']} ({e['type']}) keyed by {expected_key}")
            check(f"EVENT_TYPE_{e['type'].upper()}" in text, f"{e['event_id']} has type {e['type']}")
        ticket = by_id.get("ev-1010", ("", ""))[1]
        check('key: "app_version"' in ticket and 'value: "5.2.1"' in ticket,
              "ev-1010 keeps the unknown field app_version in attributes")
        check("ts_ms: 1795197900000" in ticket, "ev-1010 ts_ms is 1795197900000")
        sessions = {i: re.search(r'^session_id: "(.*)"$', t, re.M).group(1)
                    for i, (_, t) in by_id.items() if i.startswith("ev-")}
        check(len({sessions.get(f"ev-100{i}") for i in range(1, 9)}) == 1
              and sessions.get("ev-1009") == sessions.get("ev-1010")
              and sessions.get("ev-1001") != sessions.get("ev-1009"),
              "the morning events share one assigned session, the evening two another")
        search = by_id.get("ev-1001", ("", ""))[1]
        check('query: "wireless headphones"' in search and 'raw_query: "Wireless  Headphones"' in search,
              "the query is normalised and the raw query kept")

        dead = consume_all(brokers, topics["dlq"], len(dlq_rows))
        check(len(dead) == len(dlq_rows), f"{len(dlq_rows)} messages on {topics['dlq']}")
        # Catalog events are applied first within a batch: match by payload, not order.
        by_payload = {m.value(): m for m in dead}
        for raw, code, reason in dlq_rows:
            m = by_payload.get(raw.encode())
            check(m is not None, f"DLQ keeps the original bytes of {raw[:40]}…")
            if m is None:
                continue
            headers = {k: v.decode() for k, v in (m.headers() or [])}
            check(headers.get("funnel-error-code") == code,
                  f"{raw[:40]}… → funnel-error-code {code} (got {headers.get('funnel-error-code')})")
            check(headers.get("funnel-error-reason", "").startswith(reason),
                  f"reason starts with {reason!r} (got {headers.get('funnel-error-reason')!r})")
            check(headers.get("funnel-source-topic") == topics["raw"], "DLQ names the source topic")

        for command, expected in redis_expected:
            out = subprocess.run(["redis-cli", "-p", str(redis_port), "--no-raw", *command],
                                 capture_output=True, text=True).stdout
            answer = parse_redis_cli(out)
            if isinstance(expected, dict):
                got = dict(zip(answer[::2], answer[1::2])) if isinstance(answer, list) else answer
            else:
                got = answer
            check(got == expected, f"redis-cli {' '.join(command)} == {json.dumps(expected)} (got {json.dumps(got)})")
        # Close our clients before the broker goes away, so they do not log the disconnect.
        del producer, admin
        ingest.terminate()
        try:
            code = ingest.wait(30)
        except subprocess.TimeoutExpired:
            code = None
        check(code == 0, f"ingest drains and exits 0 on SIGTERM (exit {code})")
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
    print(f"readme-check: {passed} passed, {failed} failed")
    return 1 if failed else 0


def parse_redis_cli(out):
    """redis-cli --no-raw output: (nil), "string", or a numbered list of them."""
    lines = [l for l in out.splitlines() if l.strip()]
    if not lines or lines[0] == "(empty array)":
        return []
    if lines == ["(nil)"]:
        return None
    items = []
    for l in lines:
        m = re.match(r'^\s*(?:\d+\) )?(?:"(.*)"|\(nil\)|\(integer\) (-?\d+))$', l)
        if not m:
            return out
        if m.group(1) is not None:
            items.append(m.group(1).encode().decode("unicode_escape"))
        elif m.group(2) is not None:
            items.append(m.group(2))
        else:
            items.append(None)
    if len(items) == 1 and not re.match(r"^\s*\d+\) ", lines[0]):
        return items[0]
    return items


if __name__ == "__main__":
    sys.exit(main())
