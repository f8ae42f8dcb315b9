#!/bin/sh
# snapshot-key.sh: adds a token verification key to the published snapshot, or removes one —
# the two publishing steps of a signing-key rotation (README.md, "Kubernetes": rotating the
# signing key).
#
#   snapshot-key.sh add    SIDECAR_URL SYNC_SECRET_FILE NEW_KEY.pem [KID]
#   snapshot-key.sh remove SIDECAR_URL SYNC_SECRET_FILE KID
#
# `add` publishes the public half of NEW_KEY.pem (an Ed25519 PKCS#8 PEM from
# `registry-gate-sidecar keygen`) under KID (default: its RFC 7638 thumbprint, the kid the
# sidecar gives it) next to the keys already published; `remove` drops KID. Both read the
# current snapshot (GET /v1/snapshot) and publish it changed with If-Match (PUT /v1/snapshot),
# so a concurrent publish is never overwritten: on 412, run it again. A sidecar still running
# with a removed key publishes it again (it adds its own key to every snapshot).
#
# Needs curl, jq and openssl. The secret goes to curl in a header file, never on a command line.
set -eu

usage() {
  echo "usage: snapshot-key.sh add SIDECAR_URL SYNC_SECRET_FILE NEW_KEY.pem [KID]" >&2
  echo "       snapshot-key.sh remove SIDECAR_URL SYNC_SECRET_FILE KID" >&2
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
    # The raw Ed25519 public key is the last 32 bytes of its DER SubjectPublicKeyInfo.
    x="$(openssl pkey -in "$key" -pubout -outform DER | tail -c 32 | base64 | tr '+/' '-_' | tr -d '=\n')"
    [ "${#x}" -eq 43 ] || { echo "snapshot-key: $key is not an Ed25519 key" >&2; exit 1; }
    if [ "$#" -eq 5 ]; then
      kid=$5
    else
      kid="$(printf '{"crv":"Ed25519","kty":"OKP","x":"%s"}' "$x" \
        | openssl dgst -sha256 -binary | base64 | tr '+/' '-_' | tr -d '=\n')"
    fi
    jq --arg kid "$kid" --arg x "$x" '
      .content
      | if any(.keys[]?; .kid == $kid) then error("kid \($kid) is already published") else . end
      | .keys += [{kid: $kid, alg: "EdDSA", kty: "OKP", crv: "Ed25519", x: $x}]' \
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
