#!/bin/sh
# EXAMPLE ONLY. Makes the self-signed certificate and key that
# conf/examples/tls.conf names, so that `pyngx -t -c conf/examples/tls.conf`
# passes on a fresh clone. The key is in a public repository: it protects
# nothing. Never serve real traffic with it; use your own certificate (for
# example from Let's Encrypt) and point ssl_certificate / ssl_certificate_key
# at it.
#
# Run it again to make a new pair (valid for 10 years).
set -eu
cd "$(dirname "$0")"
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 \
    -subj "/CN=example.test/O=pyngx example only - do not use" \
    -addext "subjectAltName=DNS:example.test,DNS:www.example.test,DNS:localhost" \
    -keyout example-only.key -out example-only.crt
chmod 644 example-only.key example-only.crt
