#!/bin/sh
# As the official image's entrypoint: arguments that start with a dash are nats-server's.
case "$1" in -*) set -- nats-server "$@" ;; esac
exec "$@"
