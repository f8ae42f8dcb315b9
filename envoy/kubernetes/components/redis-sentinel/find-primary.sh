# Sourced by start-redis.sh and start-sentinel.sh: sets `service`, `self` (this pod's stable
# DNS name) and `primary`, the primary another pod's sentinel names, else pod 0 (a fresh
# install, or no other sentinel answering yet).
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
