#!/usr/bin/env bash
# Makes a private CA and the certificates a TLS NATS server for jetcc needs (nats/tls.conf):
#
#   nats/make-certs.sh [--host NAME]... [--client NAME]... DIR
#
#   DIR/ca.pem                 the CA: give it to every client and worker ([dist] tls_ca)
#   DIR/ca-key.pem             the CA's key: keep it offline once the certificates are made
#   DIR/server.pem, server-key.pem
#                              the server's, for localhost, 127.0.0.1 and each --host
#   DIR/client-NAME.pem, client-NAME-key.pem
#                              a client certificate per --client, for a server that verifies
#                              clients (nats/tls-verify.conf; [dist] tls_cert, tls_key)
#
# An existing CA in DIR is reused, so running it again with another --client adds one.
# Keys are EC P-256; certificates last JETCC_CERT_DAYS days (default 825). Needs openssl.
set -euo pipefail

hosts=(localhost 127.0.0.1)
clients=()
dir=
while [ $# -gt 0 ]; do
  case "$1" in
    --host) hosts+=("$2"); shift 2 ;;
    --client) clients+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) echo "make-certs.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) [ -z "$dir" ] || { echo "make-certs.sh: one DIR only" >&2; exit 2; }; dir=$1; shift ;;
  esac
done
[ -n "$dir" ] || { echo "usage: make-certs.sh [--host NAME]... [--client NAME]... DIR" >&2; exit 2; }
command -v openssl >/dev/null || { echo "make-certs.sh: openssl is not installed" >&2; exit 1; }
days=${JETCC_CERT_DAYS:-825}
mkdir -p "$dir"
cd "$dir"
umask 077

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

if [ ! -f ca.pem ] || [ ! -f ca-key.pem ]; then
  key ca-key.pem
  openssl req -x509 -new -key ca-key.pem -days "$days" -subj "/CN=jetcc NATS CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.pem
  echo "made the CA: $dir/ca.pem"
fi

# sign NAME SUBJECT EXTENSIONS: NAME.pem and NAME-key.pem, signed by the CA.
sign() {
  local name=$1 subject=$2 ext=$3
  key "$name-key.pem"
  openssl req -new -key "$name-key.pem" -subj "$subject" -out "$name.csr"
  printf '%s\n' "$ext" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
    -days "$days" -extfile "$name.ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

san=
for h in "${hosts[@]}"; do
  if [[ $h =~ ^[0-9.]+$ || $h == *:* ]]; then san+="IP:$h,"; else san+="DNS:$h,"; fi
done
sign server "/CN=${hosts[-1]}" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=${san%,}"
echo "made the server's certificate for ${hosts[*]}: $dir/server.pem"

for c in "${clients[@]}"; do
  sign "client-$c" "/CN=$c" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
  echo "made a client certificate for $c: $dir/client-$c.pem"
done
# Certificates are public; the keys stay 0600 (chown server-key.pem to the user the
# server runs as).
chmod 644 ca.pem server.pem; chmod 644 client-*.pem 2>/dev/null || true
