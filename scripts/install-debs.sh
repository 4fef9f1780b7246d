#!/usr/bin/env bash
# Install the Debian packages airgrid runs against, when missing. Idempotent.
# Services are neither started nor enabled: the demo and the tests run their own instances.
set -euo pipefail
pkgs=(mosquitto mosquitto-clients influxdb)
# The InfluxDB v2 write path is tested against VictoriaMetrics (it speaks /api/v2/write).
pkgs+=(victoria-metrics)
# The RabbitMQ cluster tests, bench and province docs (the demo stays on Mosquitto).
pkgs+=(rabbitmq-server)
# The daily report: Noto Sans CJK for Chinese text, poppler's pdftotext/pdftoppm/pdffonts
# for its tests.
pkgs+=(fonts-noto-cjk poppler-utils)
# The grid worker app's browser tests: Debian's Chromium, driven by Playwright (which
# never downloads a browser of its own here).
pkgs+=(chromium)
python3 -c "import ensurepip, venv" 2>/dev/null || pkgs+=(python3-venv)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing Debian packages: ${missing[*]}"
# policy-rc.d answering 101 stops the packages' maintainer scripts from starting services.
own_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod 755 /usr/sbin/policy-rc.d
  own_policy=1
fi
mirror_list=""
cleanup() {
  [ $own_policy -eq 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d
  [ -n "$mirror_list" ] && rm -f "$mirror_list"
  true
}
trap cleanup EXIT
# AIRGRID_APT_MIRROR=https://mirrors.tuna.tsinghua.edu.cn/debian (any Debian mirror):
# this run reads the packages from it, through a sources list of its own; the machine's
# /etc/apt files are left as they are.
apt_opts=()
if [ -n "${AIRGRID_APT_MIRROR:-}" ]; then
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}")
  mirror_list=$(mktemp)
  printf 'deb %s %s main\ndeb %s %s-updates main\n' \
    "$AIRGRID_APT_MIRROR" "$codename" "$AIRGRID_APT_MIRROR" "$codename" > "$mirror_list"
  chmod 644 "$mirror_list"
  apt_opts=(-o "Dir::Etc::SourceList=$mirror_list" -o "Dir::Etc::SourceParts=-")
  echo "apt mirror: $AIRGRID_APT_MIRROR ($codename)"
fi
$SUDO apt-get "${apt_opts[@]}" update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}"
# Packages enable their units on install; on a machine running systemd, undo that.
if [ -d /run/systemd/system ]; then
  for unit in mosquitto influxdb victoria-metrics rabbitmq-server epmd.socket epmd; do $SUDO systemctl disable --now "$unit" 2>/dev/null || true; done
fi
