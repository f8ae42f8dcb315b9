#!/bin/sh
# Starts redis-sentinel monitoring `registry-gate` at the primary find-primary.sh names.
# Sentinel rewrites its configuration file, so it lives on an emptyDir.
set -eu
. /scripts/find-primary.sh
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
