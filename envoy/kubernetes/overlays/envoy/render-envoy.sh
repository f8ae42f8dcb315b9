#!/bin/sh
# render-envoy.sh TEMPLATE OUT [COMMAND...]
#
# Writes TEMPLATE (envoy/ingress/envoy.yaml, from the registry-gate-envoy ConfigMap) to OUT
# with every {{NAME}} placeholder replaced by the environment variable NAME, then execs
# COMMAND (Envoy) if one is given. The same rules as the tests' renderer (tests/src/envoy.rs):
# fails, writing nothing, when a placeholder has no variable, when a `{{` is unterminated, or
# when a value holds a single quote or a newline (the template's YAML cannot hold them).
# POSIX sh only (the Envoy image has no other tool this needs).
set -eu
if [ "$#" -lt 2 ]; then
  echo "usage: render-envoy.sh TEMPLATE OUT [COMMAND...]" >&2
  exit 2
fi
template=$1
out=$2
shift 2
# Read the whole file, trailing newlines included.
rest="$(cat "$template"; printf x)"
rest="${rest%x}"
rendered=""
missing=""
newline='
'
while :; do
  case $rest in
    *"{{"*) ;;
    *) break ;;
  esac
  rendered="$rendered${rest%%"{{"*}"
  rest="${rest#*"{{"}"
  case $rest in
    *"}}"*) ;;
    *)
      echo "render-envoy: unterminated {{ in $template" >&2
      exit 1
      ;;
  esac
  name="${rest%%"}}"*}"
  rest="${rest#*"}}"}"
  case $name in
    "" | [0-9]* | *[!A-Za-z0-9_]*)
      echo "render-envoy: {{$name}} is not a variable name" >&2
      exit 1
      ;;
  esac
  if eval "[ -z \"\${$name+set}\" ]"; then
    case " $missing " in
      *" $name "*) ;;
      *) missing="${missing:+$missing }$name" ;;
    esac
    continue
  fi
  eval "value=\$$name"
  case $value in
    *"'"* | *"$newline"*)
      echo "render-envoy: value of $name contains a quote or newline, which the template's YAML cannot hold" >&2
      exit 1
      ;;
  esac
  rendered="$rendered$value"
done
if [ -n "$missing" ]; then
  echo "render-envoy: no value for placeholders: $missing" >&2
  exit 1
fi
printf '%s' "$rendered$rest" > "$out"
if [ "$#" -gt 0 ]; then
  exec "$@"
fi
