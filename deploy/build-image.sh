#!/usr/bin/env bash
# Builds Bazaar's image, localhost/bazaar:TAG, from deploy/Containerfile with podman, on a
# machine that may reach no image registry.
#
#   deploy/build-image.sh [TAG]     TAG defaults to the version in pyproject.toml
#
# When python:3.11-slim-bookworm is not in podman's storage, a stand-in base is made once from
# Debian's packages (debootstrap from the mirror apt already uses), kept as
# localhost/bazaar-base:bookworm, and swapped in for the Containerfile's FROM (`--from`). pip in
# the build reaches PyPI; the machine's CA bundle goes in as a build secret, for networks that
# intercept TLS. Podman reads deploy/containers.conf; the machine's settings are left alone.
# Progress goes to standard error; the image's name, alone, to standard output.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CONTAINERS_CONF="$root/deploy/containers.conf"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/pyproject.toml" | head -n 1)
tag=${1:-${version:-dev}}
image=localhost/bazaar:$tag
official=docker.io/library/python:3.11-slim-bookworm
base=${BAZAAR_BASE_IMAGE:-localhost/bazaar-base:bookworm}
ca_bundle=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
work=$(mktemp -d "${TMPDIR:-/var/tmp}/bazaar-image.XXXXXX")

say() { printf '%s build-image: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

cleanup() {
  # debootstrap mounts /proc and /sys in its target and may leave them on a failure
  findmnt -rn -o TARGET | grep -F "$work/" | sort -r | xargs -r umount -l || true
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

# Runs a command with its output in a log, shown only when the command fails.
quietly() {
  local log="$work/$1.log"
  shift
  if ! "$@" >"$log" 2>&1; then
    say "failed: $*"
    tail -n 60 "$log" >&2
    return 1
  fi
}

install_missing_tools() {
  local missing=() pair
  for pair in podman:podman buildah:buildah runc:runc catatonit:catatonit \
    debootstrap:debootstrap; do
    command -v "${pair%%:*}" >/dev/null || [ -x "/usr/sbin/${pair%%:*}" ] \
      || [ -x "/usr/bin/${pair%%:*}" ] || missing+=("${pair#*:}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    quietly apt-get-update apt-get update -qq
    DEBIAN_FRONTEND=noninteractive quietly apt-get-install \
      apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

# The Debian archive apt uses for bookworm (not the security archive), from either sources
# format; Debian's own mirror when none is found.
debian_mirror() {
  local files=()
  [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
  shopt -s nullglob
  files+=(/etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
  shopt -u nullglob
  local found=""
  if [ ${#files[@]} -gt 0 ]; then
    found=$(awk '
      function stanza_end() {
        if (uris != "" && suites ~ / (bookworm|stable) /) { print uris; done = 1; exit }
        uris = ""; suites = ""
      }
      FNR == 1 && NR > 1 { stanza_end() }
      $1 == "deb" {
        i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($(i + 1) ~ /^(bookworm|stable)$/) { print $i; done = 1; exit }
      }
      $1 == "URIs:" { uris = $2 }
      $1 == "Suites:" { suites = $0 " " }
      /^[[:space:]]*$/ { stanza_end() }
      END { if (!done) stanza_end() }
    ' "${files[@]}" 2>/dev/null || true)
  fi
  echo "${found:-http://deb.debian.org/debian}"
}

# A root file system like the official python slim image's, as far as the Containerfile
# relies on it: Debian's Python 3.11 with venv and pip, `python`, `pip`, CA certificates.
make_base() {
  local mirror rootfs="$work/rootfs" started=$SECONDS
  mirror=$(debian_mirror)
  say "making the base image $base with debootstrap from $mirror (once; about a minute)"
  quietly debootstrap debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
    bookworm "$rootfs" "$mirror"
  # slim as Debian's slim images are: no documentation, manual pages, locales or apt caches
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias \
    -exec rm -rf {} +
  rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/*
  find "$rootfs/usr/lib/python3" "$rootfs/usr/lib/python3.11" -name __pycache__ -prune \
    -exec rm -rf {} +
  tar --numeric-owner -C "$rootfs" --exclude='./dev/*' --exclude='./proc/*' \
    --exclude='./sys/*' -c . \
    | quietly import podman import --change 'ENV LANG=C.UTF-8' \
      --change 'CMD ["python3"]' --message "debootstrap bookworm from $mirror" - "$base"
  say "base image made in $((SECONDS - started)) s"
}

main() {
  local started=$SECONDS args old new size
  install_missing_tools
  args=(--layers --format oci --build-arg "VERSION=$tag" -f "$root/deploy/Containerfile"
    -t "$image")
  if podman image exists "$official"; then
    say "base: $official"
  else
    podman image exists "$base" || make_base
    say "base: $base (in place of $official)"
    args+=(--from "$base")
  fi
  [ -s "$ca_bundle" ] && args+=(--secret "id=pip-ca,src=$ca_bundle")
  old=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
  say "building $image"
  quietly build podman build "${args[@]}" "$root"
  new=$(podman image inspect --format '{{.Id}}' "$image")
  if [ -n "$old" ] && [ "$old" != "$new" ]; then
    podman rmi "$old" >/dev/null 2>&1 || true # the image this build replaced, unless in use
  fi
  # podman keeps each build's wheel stage, untagged, as its cache: keep only the newest
  podman images --noheading --filter dangling=true \
    --filter label=org.opencontainers.image.title=bazaar-build --sort created --format '{{.ID}}' \
    | tail -n +2 | xargs -r podman rmi >/dev/null 2>&1 || true
  size=$(podman image inspect --format '{{.Size}}' "$image")
  say "built $image in $((SECONDS - started)) s: $((size / 1000000)) MB"
  echo "$image"
}

main
