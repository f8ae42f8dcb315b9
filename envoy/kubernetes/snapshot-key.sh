#!/bin/sh
# snapshot-key.sh: adds a token verification key to the published snapshot, or removes one —
# the two publishing steps of a signing-key rotation (README.md, "Kubernetes": rotating the
# signing key).
#
#   snapshot-key.sh add    SIDECAR_URL ADMIN_SECRET_FILE NEW_KEY.pem [KID]
#   snapshot-key.sh remove SIDECAR_URL ADMIN_SECRET_FILE KID
#
# `add` publishes the public half of NEW_KEY.pem (a P-256 or Ed25519 private key, as
# `registry-gate-sidecar keygen` writes them: ES256 by default, EdDSA with
# `--algorithm EdDSA`) under KID (default: its RFC 7638 thumbprint, the kid the sidecar gives
# it) next to the keys already published; `remove` drops KID. Both read the
# current snapshot (GET /v1/snapshot) and publish it changed with If-Match (PUT /v1/snapshot),
# so a concurrent publish is never overwritten: on 412, run it again. Changing the keys needs
# the sidecar's admin secret (--admin-secret-file): the sync secret is refused with 403. A sidecar still running
# with a removed key publishes it again (it adds its own key to every snapshot).
#
# Needs curl, jq and openssl. The secret goes to curl in a header file, never on a command line.
set -eu

usage() {
  echo "usage: snapshot-key.sh add SIDECAR_URL ADMIN_SECRET_FILE NEW_KEY.pem [KID]" >&2
  echo "       snapshot-key.sh remove SIDECAR_URL ADMIN_SECRET_FILE KID" >&2
  exit 2
}

[ "$#" -ge 4 ] || usage
action=$1 url=${2%/} secret_file=$3
case $action in
  add) [ "$#" -le 5 ] || usage ;;
  remove) [ "$#" -eq 4 ] || usage ;;
  *) usage ;;
esac

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
umask 077
# The secret file may end with a newline; the header must not.
printf 'Authorization: Bearer %s\n' "$(tr -d '\n' < "$secret_file")" > "$work/auth"

status="$(curl -sS -o "$work/snapshot" -D "$work/headers" -w '%{http_code}' \
  -H @"$work/auth" "$url/v1/snapshot")"
if [ "$status" != 200 ]; then
  echo "snapshot-key: GET $url/v1/snapshot answered $status: $(cat "$work/snapshot")" >&2
  exit 1
fi
etag="$(sed -n 's/^[Ee][Tt][Aa][Gg]: *//p' "$work/headers" | tr -d '\r')"
[ -n "$etag" ] || { echo "snapshot-key: the snapshot came without an ETag" >&2; exit 1; }

case $action in
  add)
    key=$4
    spki="$work/spki"
    openssl pkey -in "$key" -pubout -outform DER > "$spki" \
      || { echo "snapshot-key: cannot read the private key $key" >&2; exit 1; }
    b64url() { base64 | tr '+/' '-_' | tr -d '=\n'; }
    # The DER SubjectPublicKeyInfo: its algorithm (the fixed prefix), then the raw public key.
    prefix() { head -c "$1" "$spki" | od -An -v -tx1 | tr -d ' \n'; }
    size=$(($(wc -c < "$spki")))
    if [ "$size" -eq 44 ] && [ "$(prefix 12)" = 302a300506032b6570032100 ]; then
      # Ed25519: the 32-byte key.
      x="$(tail -c 32 "$spki" | b64url)"
      jwk="$(jq -cn --arg x "$x" '{alg: "EdDSA", kty: "OKP", crv: "Ed25519", x: $x}')"
      canonical="$(printf '{"crv":"Ed25519","kty":"OKP","x":"%s"}' "$x")"
    elif [ "$size" -eq 91 ] \
      && [ "$(prefix 27)" = 3059301306072a8648ce3d020106082a8648ce3d03010703420004 ]; then
      # P-256 (id-ecPublicKey, prime256v1), uncompressed: 0x04, x, y.
      x="$(tail -c 64 "$spki" | head -c 32 | b64url)"
      y="$(tail -c 32 "$spki" | b64url)"
      jwk="$(jq -cn --arg x "$x" --arg y "$y" \
        '{alg: "ES256", kty: "EC", crv: "P-256", x: $x, y: $y}')"
      canonical="$(printf '{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}' "$x" "$y")"
    else
      echo "snapshot-key: $key is neither a P-256 (ES256) nor an Ed25519 (EdDSA) key" >&2
      exit 1
    fi
    if [ "$#" -eq 5 ]; then
      kid=$5
    else
      kid="$(printf '%s' "$canonical" | openssl dgst -sha256 -binary | b64url)"
    fi
    jq --arg kid "$kid" --argjson jwk "$jwk" '
      .content
      | if any(.keys[]?; .kid == $kid) then error("kid \($kid) is already published") else . end
      | .keys += [{kid: $kid} + $jwk]' \
      "$work/snapshot" > "$work/content"
    ;;
  remove)
    kid=$4
    jq --arg kid "$kid" '
      .content
      | if any(.keys[]?; .kid == $kid) then . else error("kid \($kid) is not published") end
      | .keys |= map(select(.kid != $kid))' \
      "$work/snapshot" > "$work/content"
    ;;
esac

status="$(curl -sS -o "$work/answer" -w '%{http_code}' -X PUT -H @"$work/auth" \
  -H 'Content-Type: application/json' -H "If-Match: $etag" \
  --data-binary @"$work/content" "$url/v1/snapshot")"
if [ "$status" != 200 ]; then
  echo "snapshot-key: PUT $url/v1/snapshot answered $status: $(cat "$work/answer")" >&2
  exit 1
fi
echo "snapshot-key: $action kid $kid: $(cat "$work/answer")"
