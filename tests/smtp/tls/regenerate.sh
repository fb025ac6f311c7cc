#!/usr/bin/env bash
# Regenerates the test-only TLS fixtures for the STARTTLS email test: a CA
# (ca.pem, trusted through `email.ca_file`) and the certificate it signs for
# the test SMTP server on 127.0.0.1 (server.pem, server.key). Valid 100 years;
# private keys here protect nothing.
set -euo pipefail
cd "$(dirname "$0")"
openssl req -x509 -newkey rsa:2048 -nodes -days 36500 -subj "/CN=haltwatch test CA" \
  -keyout ca.key -out ca.pem -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign"
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 36500 \
  -out server.pem -extfile <(printf "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth")
rm -f server.csr ca.key ca.srl
