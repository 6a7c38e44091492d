#!/usr/bin/env bash
# Installs spatialbot-edge from an unpacked release tarball on the board (run as root):
#   sudo ./install.sh [--board NAME] [--enable]
# --board: the profile the service runs (default: guessed from /proc/device-tree/model).
# --enable: also enable and start the service now. Without it the arm never moves by itself.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=/opt/spatialbot-edge
board=""
enable=0
while [ $# -gt 0 ]; do
  case "$1" in
    --board) board=${2:?--board needs a profile name}; shift 2 ;;
    --enable) enable=1; shift ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" != 0 ]; then echo "install.sh: run as root (sudo ./install.sh)" >&2; exit 2; fi

if [ -z "$board" ]; then
  model=$(tr -d '\0' < /proc/device-tree/model 2>/dev/null || true)
  mem_gb=$(awk '/MemTotal/ {printf "%d", $2/1048576 + 0.5}' /proc/meminfo)
  case "$model" in
    *AGX\ Orin*) board=jetson-agx-orin-64gb ;;
    *Orin\ NX*) board=jetson-orin-nx-16gb ;;
    *Orin\ Nano*) board=jetson-orin-nano-8gb ;;
    *) board=dev-x86_64 ;;
  esac
  echo "install.sh: board '${model:-unknown}' (${mem_gb} GB) -> profile $board (override with --board)"
fi
if [ ! -f "$here/boards/$board.toml" ]; then
  echo "install.sh: no profile boards/$board.toml in this package; choose one of: $(ls "$here/boards" | sed 's/\.toml$//' | tr '\n' ' ')" >&2
  exit 2
fi

arch=$(uname -m)
bin_arch=$(cat "$here/ARCH" 2>/dev/null || echo unknown)
if [ "$bin_arch" != "$arch" ]; then
  echo "install.sh: this package is for $bin_arch, this machine is $arch" >&2
  exit 2
fi

id spatialbot >/dev/null 2>&1 || useradd --system --home-dir /var/lib/spatialbot-edge --shell /usr/sbin/nologin spatialbot
for g in dialout video plugdev; do
  getent group "$g" >/dev/null || groupadd --system "$g"
  usermod -aG "$g" spatialbot
done

install -d "$prefix" "$prefix/bin"
install -m 0755 "$here/bin/spatialbot-edge" "$prefix/bin/spatialbot-edge"
for d in boards calibration models recordings docs; do
  if [ -d "$here/$d" ]; then rm -rf "${prefix:?}/$d"; cp -r "$here/$d" "$prefix/$d"; fi
done
install -m 0644 "$here/README.md" "$prefix/README.md" 2>/dev/null || true
ln -sf "$prefix/bin/spatialbot-edge" /usr/local/bin/spatialbot-edge

install -m 0644 "$here/packaging/99-spatialbot-edge.rules" /etc/udev/rules.d/99-spatialbot-edge.rules
udevadm control --reload-rules && udevadm trigger || echo "install.sh: udev reload failed; re-plug the camera and the serial adapter"

install -m 0644 "$here/packaging/spatialbot-edge.service" /etc/systemd/system/spatialbot-edge.service
if [ ! -f /etc/default/spatialbot-edge ]; then
  printf '# Board profile the service runs: the name of a file in %s/boards, without .toml.\nSPATIALBOT_EDGE_BOARD=%s\n' "$prefix" "$board" > /etc/default/spatialbot-edge
fi
install -d -o spatialbot -g spatialbot /var/cache/spatialbot-edge /var/cache/spatialbot-edge/engines
systemctl daemon-reload

echo "install.sh: installed to $prefix; checking the board:"
SPATIALBOT_EDGE_HOME=$prefix "$prefix/bin/spatialbot-edge" doctor --board "$board" || echo "install.sh: doctor found failures above; fix them before starting the service"

if [ "$enable" = 1 ]; then
  systemctl enable --now spatialbot-edge.service
  echo "install.sh: service started; follow it with: journalctl -fu spatialbot-edge"
else
  echo "install.sh: start it with: sudo systemctl enable --now spatialbot-edge"
fi
