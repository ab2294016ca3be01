#!/bin/sh
# The image's one entry point. Migrations are a command of their own (a Kubernetes hook Job runs
# them once per release), never a side effect of starting a replica: many replicas start at once.
#   serve [--workers N]      the API and admin on $HOST:$PORT (the default command; qalby_site/serve.py)
#   migrate                  apply database migrations, then exit
#   manage <args>            any manage.py command, e.g. `manage createsuperuser`
#   healthcheck              exit 0 when this container's server answers /healthz (Docker HEALTHCHECK)
set -eu

# The code lives beside this script (/app in the image; the work tree when run from a checkout).
cd "$(dirname "$0")/.."

usage() {
    echo "usage: $0 serve [--workers N|auto] | migrate | manage <command> [args] | healthcheck" >&2
}

command="${1:-serve}"
[ "$#" -gt 0 ] && shift

case "$command" in
    serve)
        # exec: the server becomes the process that receives SIGTERM, so it stops cleanly and the
        # request log queue is flushed at exit.
        exec python -m qalby_site.serve --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}" "$@"
        ;;
    migrate)
        exec python manage.py migrate --noinput "$@"
        ;;
    manage)
        if [ "$#" -eq 0 ]; then
            usage
            exit 64
        fi
        exec python manage.py "$@"
        ;;
    healthcheck)
        exec python docker/healthcheck.py
        ;;
    -h | --help | help)
        usage
        ;;
    *)
        echo "unknown command: $command" >&2
        usage
        exit 64
        ;;
esac
