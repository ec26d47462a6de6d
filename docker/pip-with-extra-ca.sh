#!/bin/sh
# `pip "$@"` during an image build, trusting one more CA certificate when the build was
# given one as the secret `extra_ca` (docker build --secret id=extra_ca,src=ca.pem): the
# system bundle plus that certificate, in a file that is deleted when pip ends. For builds
# behind a TLS-intercepting proxy; without the secret, pip runs as usual.
# (The two paths are variables only so that tests/test_docker_files.py can run this.)
set -eu
extra=${EXTRA_CA_PATH:-/run/secrets/extra_ca}
system=${SYSTEM_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
if [ ! -s "$extra" ]; then
    exec pip "$@"
fi
bundle=$(mktemp)
trap 'rm -f "$bundle"' EXIT
cat "$system" "$extra" > "$bundle"
PIP_CERT="$bundle" pip "$@"
