#!/bin/sh
# Starts redis-server as a replica of the primary the other pods' sentinels name, or as the
# primary when that is this pod (pod 0 on a fresh install, or a primary that restarted before
# a failover: it keeps its data on its volume).
set -eu
. /scripts/find-primary.sh
set -- --port 6379 --dir /data --appendonly yes --protected-mode no \
  --replica-announce-ip "$self"
if [ "$primary" != "$self" ]; then
  set -- "$@" --replicaof "$primary" 6379
fi
exec redis-server "$@"
