#!/usr/bin/env bash
# interop/tls/make-certs.sh DIR [CLIENT_CN]: a throw-away PKI for TLS tests and benchmarks, made
# with openssl in DIR:
#   ca.pem, ca.key            a self-signed CA (RSA 2048, 1 day)
#   server.pem, server.key    the broker's certificate, signed by the CA, for localhost:
#                             SAN DNS:localhost, IP:127.0.0.1, IP:::1; extendedKeyUsage serverAuth
#   client.pem, client.key    a client certificate whose subject is CN=CLIENT_CN, O=Pigeon interop
#                             (default CN: interop-cert-user); extendedKeyUsage clientAuth
#   other-ca.pem              a second, unrelated CA (for "this certificate is not trusted" cases)
#   untrusted.pem/.key        a client certificate signed by other-ca
# Keys are unencrypted PKCS#8 PEM, readable by the current user only (and by group, for a broker
# running as another user: chgrp/chmod them as needed).
set -euo pipefail

dir=${1:?usage: make-certs.sh DIR [CLIENT_CN]}
cn=${2:-interop-cert-user}
mkdir -p "$dir"
cd "$dir"

quiet() { "$@" >/dev/null 2>&1 || { echo "make-certs: failed: $*" >&2; "$@"; exit 1; }; }

cat >server.ext <<'X'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
authorityKeyIdentifier = keyid
X
cat >client.ext <<'X'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
X

ca() { # name subject
    quiet openssl req -x509 -newkey rsa:2048 -nodes -days 1 -keyout "$1.key" -out "$1.pem" \
        -subj "$2" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign"
}
leaf() { # name subject ext ca
    quiet openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2"
    quiet openssl x509 -req -in "$1.csr" -CA "$4.pem" -CAkey "$4.key" -CAcreateserial \
        -days 1 -sha256 -extfile "$3" -out "$1.pem"
    rm -f "$1.csr"
}

ca ca "/CN=Pigeon interop CA/O=Pigeon interop"
leaf server "/CN=localhost/O=Pigeon interop" server.ext ca
leaf client "/CN=$cn/O=Pigeon interop" client.ext ca
ca other-ca "/CN=Some other CA/O=Elsewhere"
leaf untrusted "/CN=$cn/O=Elsewhere" client.ext other-ca
rm -f ./*.ext ./*.srl
chmod 600 ./*.key
