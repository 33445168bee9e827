#!/bin/sh
# Writes the secrets Porthole needs into .porthole/local.env (mode 0600), keeping any already there: the
# sealing keys, the serial-over-LAN bridge secret, the bootstrap admin token, and the RabbitMQ and Redis
# passwords docker-compose.yml gives its broker and Redis (and the services' URLs). docker-compose.yml reads
# that file and refuses to start without it; `npm start` reads it too (and creates the keys by itself), but
# uses this machine's own RabbitMQ and Redis, so it ignores the two passwords.
# Needs openssl. Usage: sh deploy/gen-secrets.sh [file]
set -eu
cd "$(dirname "$0")/.."
file=${1:-.porthole/local.env}
umask 077
mkdir -p "$(dirname "$file")"
touch "$file"
chmod 600 "$file"
added=""
has () { grep -Eq "^$1=.+" "$file"; }
add () {
  if ! has "$1"; then printf '%s=%s\n' "$1" "$2" >> "$file"; added="$added $1"; fi
}
add PORTHOLE_SECRET_KEY "$(openssl rand -base64 32)"
add CONSOLE_TRANSIT_KEY "$(openssl rand -base64 32)"
add CONSOLE_KEY "$(openssl rand -base64 32)"
add SOL_BRIDGE_SECRET "$(openssl rand -base64 32)"
# Hex: safe as is inside the services' RABBITMQ_URL and REDIS_URL.
add RABBITMQ_PASSWORD "$(openssl rand -hex 24)"
add REDIS_PASSWORD "$(openssl rand -hex 24)"
add PORTHOLE_ADMIN_TOKEN "adm_$(openssl rand -base64 24 | tr '+/' '-_' | tr -d '=')"
if [ -n "$added" ]; then echo "added$added to $file"; else echo "$file already has all the secrets"; fi
echo "the admin token is PORTHOLE_ADMIN_TOKEN in $file (send it as: Authorization: Bearer <token>)"
