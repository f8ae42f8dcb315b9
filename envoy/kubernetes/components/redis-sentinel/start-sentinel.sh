#!/bin/sh
# Starts redis-sentinel monitoring `registry-gate`: the primary another sentinel already
# knows, else pod 0. Sentinel rewrites its configuration file, so it lives on an emptyDir.
set -eu
service=registry-gate-redis
self="$(hostname).$service"
primary=""
for i in 0 1 2; do
  [ "$service-$i.$service" = "$self" ] && continue
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
cat > /sentinel/sentinel.conf <<CONF
port 26379
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $self
sentinel monitor registry-gate $primary 6379 2
sentinel down-after-milliseconds registry-gate 5000
sentinel failover-timeout registry-gate 60000
sentinel parallel-syncs registry-gate 1
CONF
exec redis-sentinel /sentinel/sentinel.conf
