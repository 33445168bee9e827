#!/bin/sh
# The image's entry point: `porthole api|receiver|agents|console-gateway` runs that service from its bundle
# (services/services.json's `main`, built by scripts/bundle-services.mjs), as PID 1 under compose's
# `init: true`, so SIGTERM reaches it and it exits cleanly; anything else is run as given.
set -eu
case "${1:-}" in
  api|receiver|agents|console-gateway)
    svc=$1; shift
    exec node --enable-source-maps "/app/services/$svc/dist/bundle/main.js" "$@" ;;
  "")
    echo "usage: porthole api|receiver|agents|console-gateway" >&2; exit 2 ;;
  *)
    exec "$@" ;;
esac
