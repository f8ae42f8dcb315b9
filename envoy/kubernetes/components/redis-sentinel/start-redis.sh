#!/bin/sh
# Starts redis-server as a replica of the primary the sentinels name; when no sentinel answers
# yet (a fresh install), pod 0 starts as the primary and the others as its replicas. A pod the
# sentinels still name as primary (it restarted before a failover) starts as the primary.
set -eu
service=registry-gate-redis
self="$(hostname).$service"
primary=""
for i in 0 1 2; do
  answer="$(redis-cli -h "$service-$i.$service" -p 26379 --raw \
    SENTINEL get-master-addr-by-name registry-gate 2>/dev/null | head -n 1)" || answer=""
  if [ -n "$answer" ]; then
    primary="$answer"
    break
  fi
done
if [ -z "$primary" ]; then
  primary="$service-0.$service"
fi
set -- --port 6379 --dir /data --appendonly yes --protected-mode no \
  --replica-announce-ip "$self"
if [ "$primary" != "$self" ]; then
  set -- "$@" --replicaof "$primary" 6379
fi
exec redis-server "$@"
