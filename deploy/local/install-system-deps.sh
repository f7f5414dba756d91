#!/usr/bin/env bash
# Installs the system packages the local stack needs, when they are missing.
# Java 17 and Maven run Kafka; redis-server and prometheus come from Debian's apt.
set -euo pipefail

missing=()
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v prometheus >/dev/null || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "Gavel needs: ${missing[*]}. Install them (e.g. sudo apt-get install -y ${missing[*]}) and rerun." >&2
  exit 1
fi

echo "installing ${missing[*]} from apt…"
# Keep apt from starting Debian's own services on the ports the local stack uses.
policy=/usr/sbin/policy-rc.d
created=0
if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created=1; fi
trap '[ "$created" = 1 ] && rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed ${missing[*]}"
