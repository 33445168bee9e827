#!/bin/sh
# Writes the four secrets Porthole needs into .porthole/local.env (mode 0600), keeping any already there.
# docker-compose.yml reads that file, and so does `npm start` (which also creates it by itself).
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
add PORTHOLE_ADMIN_TOKEN "adm_$(openssl rand -base64 24 | tr '+/' '-_' | tr -d '=')"
if [ -n "$added" ]; then echo "added$added to $file"; else echo "$file already has all four secrets"; fi
echo "the admin token is PORTHOLE_ADMIN_TOKEN in $file (send it as: Authorization: Bearer <token>)"
