#!/usr/bin/env bash
# Creates Funnel's Kafka topics with the tools of the Apache Kafka image. Idempotent: a topic
# that exists is left as it is (--if-not-exists does not change its partitions or configs).
#
# Used by the compose service kafka-init and by the Kubernetes Job in
# deploy/k8s/kafka-topics-job.yaml. Its ConfigMap, deploy/k8s/kafka-topics-configmap.yaml, is a
# copy of this file: regenerate it with `scripts/validate-deploy.sh --sync` after an edit.
#
# Environment:
#   BOOTSTRAP_SERVERS   broker list                                  (default kafka:9092)
#   REPLICATION_FACTOR  replicas per partition                       (default 1)
#   PARTITIONS          partitions of the event, prediction, action and recommendation
#                       topics (default 12)
#   TOPIC_PREFIX        namespace of every topic name                (default funnel)
#   KAFKA_BIN           folder of kafka-topics.sh                    (default /opt/kafka/bin)
#   COMMAND_CONFIG      client properties file (SASL/TLS), optional
set -euo pipefail

bootstrap="${BOOTSTRAP_SERVERS:-kafka:9092}"
replication="${REPLICATION_FACTOR:-1}"
partitions="${PARTITIONS:-12}"
prefix="${TOPIC_PREFIX:-funnel}"
kafka_bin="${KAFKA_BIN:-/opt/kafka/bin}"

# With more than one replica, keep acks=all writes durable through the loss of one broker.
min_isr=1
if [ "$replication" -gt 1 ]; then min_isr=$((replication - 1)); fi

client_args=(--bootstrap-server "$bootstrap")
if [ -n "${COMMAND_CONFIG:-}" ]; then client_args+=(--command-config "$COMMAND_CONFIG"); fi

# name  partitions  configs (comma-separated key=value, or -). The same names and partition
# counts as `funnel topics create`; the DLQ also keeps its rejects for 14 days. Topics with
# `-` keep the broker's retention (7 days by default).
#   events.raw, events.v1           ingest in and out
#   catalog.v1, events.dlq          ingest (the recommender reads the catalog whole)
#   predictions.behavior.v1         behavior-predictor out, keyed by user_id like events.v1
#   actions.conversion.v1           behavior-predictor out (conversion actions)
#   predictions.behavior.shadow.v1  behavior-predictor out, only with a shadow model set
#   recommendations.v1              recommender out (every answer), keyed by user_id
topics="
${prefix}.events.raw                      ${partitions}  -
${prefix}.events.v1                       ${partitions}  -
${prefix}.catalog.v1                      6              cleanup.policy=compact
${prefix}.events.dlq                      1              retention.ms=1209600000
${prefix}.predictions.behavior.v1         ${partitions}  -
${prefix}.actions.conversion.v1           ${partitions}  -
${prefix}.predictions.behavior.shadow.v1  ${partitions}  -
${prefix}.recommendations.v1              ${partitions}  -
"

# The broker may still be electing its controller: wait up to two minutes.
for attempt in $(seq 1 60); do
  if "$kafka_bin/kafka-broker-api-versions.sh" "${client_args[@]}" >/dev/null 2>&1; then
    break
  fi
  if [ "$attempt" -eq 60 ]; then
    echo "create-topics: broker $bootstrap not reachable after 120 s" >&2
    exit 1
  fi
  sleep 2
done

while read -r name count configs; do
  [ -z "$name" ] && continue
  config_args=(--config "min.insync.replicas=$min_isr")
  if [ "$configs" != "-" ]; then
    IFS=',' read -r -a pairs <<<"$configs"
    for pair in "${pairs[@]}"; do config_args+=(--config "$pair"); done
  fi
  "$kafka_bin/kafka-topics.sh" "${client_args[@]}" --create --if-not-exists \
    --topic "$name" --partitions "$count" --replication-factor "$replication" \
    "${config_args[@]}"
  echo "create-topics: $name ready (partitions=$count replication=$replication configs=$configs)"
done <<<"$topics"

"$kafka_bin/kafka-topics.sh" "${client_args[@]}" --describe --topic "${prefix}\..*" | grep -v 'Partition: ' || true
