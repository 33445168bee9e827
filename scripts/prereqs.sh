#!/usr/bin/env bash
# What Porthole needs from its machine besides Node, RabbitMQ and Redis, checked (and, as root, provided) in
# three steps:
#   1. the Debian packages of scripts/debian-packages.txt (plus any named on the command line): as root the
#      missing ones are installed; otherwise it stops at once with the one `sudo apt-get install` line to run;
#   2. libvirtd answering at qemu:///system: as root virtlogd and libvirtd are started when it does not
#      (and /dev/kvm is opened to group kvm, which containers without udev leave to root);
#   3. the native libvirt binding in node_modules: `npm ci` leaves it out when libvirt-dev was missing (it is
#      an optional dependency), so once the headers are there it is built now.
# `npm start` runs it before building, `npm test` with --check, CI (.ci/run) with --system-only before `npm ci`.
#   bash scripts/prereqs.sh [--check] [--system-only] [--packages FILE] [PACKAGE...]
#   --check        only report: change nothing; exit 1 when something is missing
#   --system-only  steps 1 and 2 (before `npm ci`)
#   --packages     read another list than scripts/debian-packages.txt
set -euo pipefail

usage () { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
check=0 system_only=0 list='' extra=()
while (($# > 0)); do
  case $1 in
    --check) check=1 ;;
    --system-only) system_only=1 ;;
    --packages) list=$(realpath -- "${2:?--packages needs a file}"); shift ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; exit 2 ;;
    *) extra+=("$1") ;;
  esac
  shift
done
cd "$(dirname "${BASH_SOURCE[0]}")/.."
list=${list:-scripts/debian-packages.txt}

say () { printf 'prereqs: %s\n' "$*"; }
problems=0
# A missing piece: in --check mode it is counted and the report goes on; otherwise it stops here.
# A second argument is the command that fixes it, on a line of its own.
missing () {
  if ((check)); then printf 'prereqs: MISSING: %s\n' "$1" >&2; else printf 'prereqs: %s\n' "$1" >&2; fi
  if (($# > 1)); then printf '  %s\n' "$2" >&2; fi
  if ((check)); then problems=$((problems + 1)); return 0; fi
  exit 1
}
root () { [[ $EUID -eq 0 ]]; }
LIBVIRT_URI=qemu:///system
libvirt_answers () { command -v virsh >/dev/null 2>&1 && timeout 10 virsh -c "$LIBVIRT_URI" uri >/dev/null 2>&1; }

# --- 1. Debian packages ----------------------------------------------------------------------------------
mapfile -t PKGS < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$list")
PKGS+=("${extra[@]}")
if ! command -v dpkg-query >/dev/null 2>&1; then
  say "no dpkg-query (not Debian or Ubuntu): install the equivalents of ${PKGS[*]} yourself"
else
  absent=()
  while read -r pkg status; do
    [[ "$status" == installed ]] || absent+=("$pkg")
  done < <(for p in "${PKGS[@]}"; do printf '%s %s\n' "$p" "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || echo absent)"; done)
  if ((${#absent[@]} == 0)); then
    say "Debian packages present: ${PKGS[*]}"
  elif ((check == 0)) && root; then
    say "installing Debian packages: ${absent[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${absent[@]}" </dev/null
  else
    missing "Debian packages not installed: ${absent[*]}. Install them (then run this again):" \
      "sudo apt-get install -y --no-install-recommends ${absent[*]}"
  fi
fi

# --- 2. libvirtd -----------------------------------------------------------------------------------------
# No udev in containers: /dev/kvm stays root:root 0600, and qemu (user libvirt-qemu, group kvm) falls back to
# software emulation. Fixed before libvirtd starts, since it probes the device once.
if ((check == 0)) && root && [[ -e /dev/kvm && "$(stat -c '%G %a' /dev/kvm)" != "kvm 660" ]]; then
  getent group kvm >/dev/null || groupadd -r kvm
  say "making /dev/kvm usable by group kvm"
  chgrp kvm /dev/kvm && chmod 660 /dev/kvm
fi
if libvirt_answers; then
  say "libvirtd answers at $LIBVIRT_URI"
elif ((check)); then
  missing "libvirtd does not answer at $LIBVIRT_URI"
elif root; then
  if [[ -d /run/systemd/system ]]; then
    say "starting virtlogd and libvirtd (systemctl)"
    systemctl start virtlogd libvirtd
  else
    pgrep -x virtlogd >/dev/null || { say "starting virtlogd"; virtlogd -d; }
    pgrep -x libvirtd >/dev/null || { say "starting libvirtd"; libvirtd -d; }
  fi
  for _ in $(seq 60); do libvirt_answers && break; sleep 0.5; done
  libvirt_answers || { printf 'prereqs: libvirtd did not answer at %s within 30 s\n' "$LIBVIRT_URI" >&2; exit 1; }
  say "libvirtd answers at $LIBVIRT_URI"
else
  # Not fatal: ipmi and ovirt servers work without it; kvm jobs fail with a connection error until it runs.
  say "WARNING: libvirtd does not answer at $LIBVIRT_URI for $(id -un): start it (sudo systemctl start libvirtd) and join its group (sudo usermod -aG libvirt $(id -un), then log in again); kvm jobs fail until then"
fi

# --- 3. the native libvirt binding -----------------------------------------------------------------------
BINDING=node_modules/@unraid/libvirt/build/Release/libvirt.node
if ((system_only)); then
  :
elif [[ -f "$BINDING" ]]; then
  say "native libvirt binding built ($BINDING)"
elif [[ ! -d node_modules ]]; then
  missing "no node_modules: install the workspace first:" "npm ci"
elif ((check)); then
  missing "the native libvirt binding is not built ($BINDING)"
elif ! pkg-config --exists libvirt 2>/dev/null && [[ ! -f /usr/include/libvirt/libvirt.h ]]; then
  missing "the native libvirt binding is not built and libvirt's headers are missing: install libvirt-dev (Debian/Ubuntu) or libvirt (Homebrew), then run npm ci"
else
  # npm drops an optional package whose build failed; a package that is there only needs its build.
  if [[ -d node_modules/@unraid/libvirt ]]; then
    say "building the native libvirt binding: npm rebuild @unraid/libvirt"
    npm rebuild --no-audit --no-fund @unraid/libvirt
  else
    say "installing the libvirt binding npm left out (libvirt-dev was missing): npm install --no-save"
    npm install --no-save --no-audit --no-fund
  fi
  [[ -f "$BINDING" ]] || missing "the native libvirt binding still did not build ($BINDING): see the npm output above"
  say "native libvirt binding built ($BINDING)"
fi

if ((problems > 0)); then exit 1; fi
