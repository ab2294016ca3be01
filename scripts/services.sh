#!/usr/bin/env bash
# Start the local services the tests use if they are down (the machine image normally has them up).
set -u
for svc in "$@"; do
  case "$svc" in
    postgres)
      pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && continue
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
      for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
      pg_isready -q -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
      ;;
    redis)
      redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && continue
      mkdir -p /var/lib/redis /var/log/redis
      redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
      for _ in $(seq 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.2; done
      redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || { echo "Redis is not reachable on 127.0.0.1:6379" >&2; exit 1; }
      ;;
    chromium)
      # The admin overview is checked in a real browser (tests/logs/test_overview_browser.py).
      command -v chromium >/dev/null 2>&1 && continue
      export DEBIAN_FRONTEND=noninteractive
      { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; } >/dev/null \
        || { echo "could not install Debian's chromium (needs root and the Debian mirror)" >&2; exit 1; }
      ;;
  esac
done
