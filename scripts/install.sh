#!/usr/bin/env bash
# Install, upgrade or roll back a2a-mcp from an unpacked release bundle (`make dist`,
# scripts/dist.sh), on a systemd host with no network. Run as root from the bundle:
#
#   ./install.sh [--admin-key-file FILE] [--no-start] [--ready-timeout SECONDS]
#   ./install.sh --rollback [--ready-timeout SECONDS]
#   ./install.sh --check        verify the bundle (SHA256SUMS) and exit
#   ./install.sh --status       what is installed, and what --rollback would go back to
#
# First install: checks the bundle, creates the a2a-mcp user (sysusers.d), the state,
# backup and snapshot directories (0700, the service user's), /etc/a2a-mcp/a2a-mcp.env (0640
# root:a2a-mcp) and the catalog if absent, installs the binary as a release under
# /usr/local/lib/a2a-mcp/releases/, the unit and the docs, enables the unit, optionally
# creates the first admin key (printed once into FILE, 0600), starts and waits for /readyz.
# Running it again with the same bundle changes nothing and checks the service is ready.
#
# Upgrade (another release installed): config, catalog and state are kept. Stops the service,
# takes a snapshot of the store with the installed binary (`a2a-mcp backup create`), switches
# to the new release, runs `a2a-mcp migrate`, starts and waits for /readyz. When migrate
# fails or the service is not ready within --ready-timeout (60 s), it rolls back by itself: the
# previous binary and unit, the snapshot restored (`backup restore --force`), started again;
# the exit status is then 3. `--rollback` does the same on request, one upgrade back each time.
# Anything written after the snapshot is not in the restored store; the replaced store stays
# beside it as `*.pre-restore-<ms>` (docs/BACKUP_AND_RESTORE.md).
#
# Exit: 0 done; 1 failed, nothing changed (or the bundle is damaged); 2 usage; 3 the upgrade
# failed and was rolled back; 4 a rollback did not bring the service back (see journalctl).
# Documented in docs/DEPLOYMENT.md, "Offline install and upgrade".
set -euo pipefail
umask 022

BUNDLE="$(cd "$(dirname "$0")" && pwd)"
PREFIX=/usr/local
LIBDIR="$PREFIX/lib/a2a-mcp"
BINLINK="$PREFIX/bin/a2a-mcp"
DOCDIR="$PREFIX/share/doc/a2a-mcp"
UNIT=/etc/systemd/system/a2a-mcp.service
SYSUSERS=/usr/lib/sysusers.d/a2a-mcp.conf
CONFDIR=/etc/a2a-mcp
ENVFILE="$CONFDIR/a2a-mcp.env"
STATEDIR=/var/lib/a2a-mcp
SNAPDIR="$STATEDIR/upgrade-snapshots"
USER_NAME=a2a-mcp
SERVICE=a2a-mcp.service
# Lines "<release> <snapshot dir>": what each upgrade replaced, newest last.
STACK="$LIBDIR/rollback-stack"
KEEP_UPGRADES=3

mode=install
admin_key_file=
start=yes
ready_timeout=60
while [ $# -gt 0 ]; do
  case "$1" in
    --rollback) mode=rollback; shift ;;
    --check) mode=check; shift ;;
    --status) mode=status; shift ;;
    --admin-key-file) admin_key_file="$2"; shift 2 ;;
    --no-start) start=no; shift ;;
    --ready-timeout) ready_timeout="$2"; shift 2 ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "install: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$ready_timeout" in ''|*[!0-9]*) echo "install: --ready-timeout $ready_timeout: whole seconds" >&2; exit 2 ;; esac

say() { echo "install: $*" >&2; }
die() { say "$*"; exit 1; }

check_bundle() {
  [ -f "$BUNDLE/SHA256SUMS" ] || die "$BUNDLE/SHA256SUMS is missing: not a release bundle"
  local bad
  if ! bad="$(cd "$BUNDLE" && sha256sum --strict --quiet -c SHA256SUMS 2>&1)"; then
    die "the bundle is damaged, nothing was installed: $bad"
  fi
  # Every file is covered: nothing was added beside the checked ones.
  local extra
  extra="$(cd "$BUNDLE" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort |
    comm -23 - <(sed 's/^[0-9a-f]*  //' SHA256SUMS | LC_ALL=C sort))"
  [ -z "$extra" ] || die "the bundle has files SHA256SUMS does not list, nothing was installed: $extra"
}

if [ "$mode" = check ]; then
  check_bundle
  say "bundle $(cat "$BUNDLE/VERSION") is intact ($(wc -l < "$BUNDLE/SHA256SUMS") files)"
  exit 0
fi

[ "$(id -u)" = 0 ] || die "run as root (it installs a system service)"
for tool in systemctl sha256sum runuser flock; do
  command -v "$tool" >/dev/null || die "$tool is missing on this host"
done
mkdir -p "$LIBDIR/releases"
exec 9>"$LIBDIR/.lock"
flock -n 9 || die "another install.sh is running ($LIBDIR/.lock)"

current_release() { [ -L "$LIBDIR/current" ] && basename "$(readlink "$LIBDIR/current")" || true; }

if [ "$mode" = status ]; then
  echo "installed: $(current_release)"
  if [ -s "$STACK" ]; then
    echo "rollback to: $(tail -n 1 "$STACK" | cut -d' ' -f1) (snapshot $(tail -n 1 "$STACK" | cut -d' ' -f2))"
  else
    echo "rollback to: (nothing)"
  fi
  systemctl is-active "$SERVICE" || true
  exit 0
fi

# --- The service's own view: its user, and the environment its unit gives it -------------------

# Runs an a2a-mcp command as the service user with the unit's Environment= lines and the
# environment file, so it opens the same store as the service.
as_service() {
  local envs=()
  if [ -f "$UNIT" ]; then
    mapfile -t envs < <(sed -n 's/^Environment=//p' "$UNIT")
  fi
  runuser -u "$USER_NAME" -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$STATEDIR" \
    "${envs[@]}" sh -c 'set -a; if [ -r "$0" ]; then . "$0"; fi; set +a; cd "$1"; shift; exec "$@"' \
    "$ENVFILE" "$STATEDIR" "$@"
}

# The operations listener's address from the environment file (defaults: 127.0.0.1:3000).
ops_address() {
  (
    set +u
    METRICS_HOST=127.0.0.1 METRICS_PORT=3000 A2A_TLS_CERT=
    # shellcheck disable=SC1090
    if [ -r "$ENVFILE" ]; then set -a; . "$ENVFILE"; set +a; fi
    case "$METRICS_HOST" in 0.0.0.0|'') METRICS_HOST=127.0.0.1 ;; ::|'[::]') METRICS_HOST=::1 ;; esac
    if [ -n "$A2A_TLS_CERT" ]; then echo "https $METRICS_HOST $METRICS_PORT"; else echo "http $METRICS_HOST $METRICS_PORT"; fi
  )
}

# The HTTP status of GET /readyz on the operations listener, or nothing.
readyz_status() {
  local scheme host port
  read -r scheme host port < <(ops_address)
  if command -v curl >/dev/null; then
    local h="$host"
    case "$h" in *:*) h="[$h]" ;; esac
    curl -sk -o /dev/null -w '%{http_code}' --max-time 5 "$scheme://$h:$port/readyz" 2>/dev/null || true
    return
  fi
  [ "$scheme" = http ] || { say "TLS on the operations port: install curl to check /readyz"; return; }
  timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1" || exit 1
    printf "GET /readyz HTTP/1.0\r\nHost: %s\r\n\r\n" "$0" >&3
    read -r _ code _ <&3 && echo "$code"' "$host" "$port" 2>/dev/null || true
}

# Waits until /readyz answers 200, the unit fails for good, or the timeout passes.
wait_ready() {
  local deadline=$((SECONDS + ready_timeout))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if [ "$(readyz_status)" = 200 ]; then return 0; fi
    if systemctl is-failed --quiet "$SERVICE"; then
      say "$SERVICE failed: $(systemctl show -p Result --value "$SERVICE")"
      return 1
    fi
    sleep 0.5
  done
  say "$SERVICE not ready within ${ready_timeout}s"
  return 1
}

start_service() {
  # Earlier starts count against the unit's StartLimitBurst; a deliberate start is a new run.
  systemctl reset-failed "$SERVICE" 2>/dev/null || true
  systemctl start "$SERVICE" || return 1
  wait_ready
}

# --- Files ------------------------------------------------------------------------------------

# The release name: the bundle's version and the first 12 hex digits of the binary's sha256.
release_name() {
  local sum
  sum="$(sha256sum "$BUNDLE/bin/a2a-mcp" | cut -c1-12)"
  echo "$(cat "$BUNDLE/VERSION")-$sum"
}

stage_release() {
  local rel="$1" dir="$LIBDIR/releases/$1"
  [ -d "$dir" ] && [ -f "$dir/.complete" ] && return 0
  rm -rf "$dir"
  install -d -m 0755 "$dir"
  install -m 0755 "$BUNDLE/bin/a2a-mcp" "$dir/a2a-mcp"
  install -m 0644 "$BUNDLE/BUILD.json" "$BUNDLE/sbom.cdx.json" "$dir/"
  sed "s|^ExecStart=/usr/local/bin/a2a-mcp|ExecStart=$BINLINK|" "$BUNDLE/systemd/a2a-mcp.service" > "$dir/a2a-mcp.service"
  install -m 0644 "$BUNDLE/systemd/a2a-mcp.sysusers" "$dir/a2a-mcp.sysusers"
  install -d -m 0755 "$dir/doc"
  install -m 0644 "$BUNDLE"/doc/*.md "$dir/doc/"
  touch "$dir/.complete"
  say "staged release $rel"
}

# Points the binary, unit and docs at a staged release.
switch_to() {
  local dir="$LIBDIR/releases/$1"
  ln -sfn "releases/$1" "$LIBDIR/current.new" && mv -T "$LIBDIR/current.new" "$LIBDIR/current"
  install -d -m 0755 "$PREFIX/bin"
  ln -sfn "$LIBDIR/current/a2a-mcp" "$BINLINK.new" && mv -T "$BINLINK.new" "$BINLINK"
  install -m 0644 "$dir/a2a-mcp.service" "$UNIT"
  install -D -m 0644 "$dir/a2a-mcp.sysusers" "$SYSUSERS"
  rm -rf "$DOCDIR" && install -d -m 0755 "$DOCDIR" && install -m 0644 "$dir"/doc/*.md "$DOCDIR/"
  systemctl daemon-reload
}

# User, directories, config and catalog: created when missing, never overwritten.
ensure_layout() {
  install -D -m 0644 "$BUNDLE/systemd/a2a-mcp.sysusers" "$SYSUSERS"
  if command -v systemd-sysusers >/dev/null; then
    systemd-sysusers "$SYSUSERS"
  elif ! id "$USER_NAME" >/dev/null 2>&1; then
    useradd --system --home-dir "$STATEDIR" --shell /usr/sbin/nologin --user-group "$USER_NAME"
  fi
  # The unit's StateDirectoryMode (0750) for the top; 0700 for everything that holds data.
  install -d -m 0750 -o "$USER_NAME" -g "$USER_NAME" "$STATEDIR"
  install -d -m 0700 -o "$USER_NAME" -g "$USER_NAME" "$STATEDIR/state" "$STATEDIR/backups" "$SNAPDIR"
  install -d -m 0755 "$CONFDIR" "$CONFDIR/catalog"
  if [ ! -e "$ENVFILE" ]; then
    install -m 0640 -o root -g "$USER_NAME" "$BUNDLE/systemd/a2a-mcp.env" "$ENVFILE"
    say "created $ENVFILE (0640 root:$USER_NAME)"
  fi
  local f
  for f in "$BUNDLE"/catalog/*.toml; do
    [ -e "$CONFDIR/catalog/$(basename "$f")" ] || install -m 0644 "$f" "$CONFDIR/catalog/"
  done
}

# Keeps the last KEEP_UPGRADES rollback steps; deletes releases and snapshots nothing refers to.
prune() {
  if [ -s "$STACK" ] && [ "$(wc -l < "$STACK")" -gt "$KEEP_UPGRADES" ]; then
    tail -n "$KEEP_UPGRADES" "$STACK" > "$STACK.new" && mv "$STACK.new" "$STACK"
  fi
  local keep cur d
  cur="$(current_release)"
  keep="$(printf '%s\n' "$cur"; [ -f "$STACK" ] && cat "$STACK" || true)"
  for d in "$LIBDIR"/releases/*/; do
    [ -d "$d" ] || continue
    grep -qF -- "$(basename "$d")" <<<"$keep" || rm -rf "$d"
  done
  for d in "$SNAPDIR"/*/; do
    [ -d "$d" ] || continue
    grep -qF -- "${d%/}" <<<"$keep" || rm -rf "$d"
  done
}

# --- Rollback ---------------------------------------------------------------------------------

# Back one upgrade: its release, its unit, and the store as it was before that upgrade.
rollback() {
  [ -s "$STACK" ] || die "nothing to roll back to (no upgrade recorded in $STACK)"
  local line rel snap from
  line="$(tail -n 1 "$STACK")"
  rel="${line%% *}"
  snap="${line#* }"
  from="$(current_release)"
  [ -f "$LIBDIR/releases/$rel/.complete" ] || die "release $rel is gone from $LIBDIR/releases"
  say "rolling back from $from to $rel with the snapshot in $snap"
  systemctl stop "$SERVICE" || true
  switch_to "$rel"
  if ! as_service "$BINLINK" backup restore --latest --dir "$snap" --force; then
    say "restoring the snapshot in $snap failed: the store is as the failed release left it"
    return 4
  fi
  sed -i '$d' "$STACK"
  if ! start_service; then
    say "release $rel is back but $SERVICE is not ready: journalctl -u $SERVICE"
    return 4
  fi
  say "rolled back to $rel; $SERVICE is ready"
}

if [ "$mode" = rollback ]; then
  rollback || exit $?
  exit 0
fi

# --- Install or upgrade -----------------------------------------------------------------------

check_bundle
new="$(release_name)"
# The binary must at least run here (architecture, libc) before anything is touched.
"$BUNDLE/bin/a2a-mcp" version --json >/dev/null ||
  die "the bundle's binary does not run on this host; nothing was changed"
cur="$(current_release)"

if [ -z "$cur" ] && [ -e "$BINLINK" ] && [ ! -L "$BINLINK" ]; then
  # A binary installed by `make install`: adopt it as a release, so it can be rolled back to.
  legacy="legacy-$(sha256sum "$BINLINK" | cut -c1-12)"
  say "adopting the binary installed at $BINLINK as release $legacy"
  install -d -m 0755 "$LIBDIR/releases/$legacy/doc"
  install -m 0755 "$BINLINK" "$LIBDIR/releases/$legacy/a2a-mcp"
  "$BINLINK" version --json > "$LIBDIR/releases/$legacy/BUILD.json" 2>/dev/null || echo '{}' > "$LIBDIR/releases/$legacy/BUILD.json"
  install -m 0644 "${UNIT}" "$LIBDIR/releases/$legacy/a2a-mcp.service" 2>/dev/null ||
    install -m 0644 "$BUNDLE/systemd/a2a-mcp.service" "$LIBDIR/releases/$legacy/a2a-mcp.service"
  install -m 0644 "$BUNDLE/systemd/a2a-mcp.sysusers" "$LIBDIR/releases/$legacy/a2a-mcp.sysusers"
  cp -a "$DOCDIR"/*.md "$LIBDIR/releases/$legacy/doc/" 2>/dev/null || true
  touch "$LIBDIR/releases/$legacy/.complete"
  ln -sfn "releases/$legacy" "$LIBDIR/current"
  cur="$legacy"
fi

ensure_layout

if [ -z "$cur" ]; then
  say "first install of $new"
  stage_release "$new"
  switch_to "$new"
  systemctl enable "$SERVICE" >/dev/null 2>&1 || systemctl enable "$SERVICE"
  if [ -n "$admin_key_file" ]; then
    if key="$(as_service "$BINLINK" keys create --role admin --label install)" && [ -n "$key" ]; then
      (umask 077 && printf '%s\n' "$key" > "$admin_key_file")
      say "the first admin key is in $admin_key_file (shown once; keep it, then delete the file)"
    else
      die "could not create the first admin key"
    fi
  fi
  if [ "$start" = yes ]; then
    start_service || die "installed, but $SERVICE is not ready: journalctl -u $SERVICE"
    say "installed $new; $SERVICE is enabled and ready"
  else
    say "installed $new; $SERVICE is enabled (start it with: systemctl start $SERVICE)"
  fi
  exit 0
fi

if [ "$cur" = "$new" ]; then
  say "release $new is already installed"
  switch_to "$new"
  systemctl enable "$SERVICE" >/dev/null 2>&1 || true
  if [ "$start" = yes ]; then
    if [ "$(readyz_status)" != 200 ]; then
      start_service || die "$SERVICE is not ready: journalctl -u $SERVICE"
    fi
    say "$SERVICE is ready"
  fi
  exit 0
fi

say "upgrading from $cur to $new"
stage_release "$new"
systemctl stop "$SERVICE" || true
snap="$SNAPDIR/$(date -u +%Y%m%dT%H%M%SZ)-$cur"
install -d -m 0700 -o "$USER_NAME" -g "$USER_NAME" "$snap"
if ! as_service "$BINLINK" backup create --dir "$snap" >/dev/null; then
  rm -rf "$snap"
  [ "$start" = no ] || start_service || true
  die "could not take the snapshot before the upgrade; still on $cur, nothing was changed"
fi
echo "$cur $snap" >> "$STACK"
switch_to "$new"
if ! as_service "$BINLINK" migrate; then
  say "a2a-mcp migrate failed with release $new"
  rollback || exit 4
  exit 3
fi
if [ "$start" = yes ] && ! start_service; then
  say "release $new did not become ready: $(journalctl -u "$SERVICE" -n 5 -o cat --no-pager 2>/dev/null | tr '\n' ' ')"
  rollback || exit 4
  exit 3
fi
prune
say "upgraded to $new (snapshot before the upgrade: $snap; undo with --rollback)"
