#!/usr/bin/env bash
# The CLI as bundled JavaScript, so a command starts without transpiling TypeScript: esbuild
# bundles blanket-manager/cli/main.ts into dist/cli/ (ESM, node, npm packages left external,
# commands and drivers that the CLI imports lazily kept as lazy chunks).
#
#   bash scripts/cli-bundle.sh [ROOT]   builds it if it is missing or older than a source (setup.sh)
#   source scripts/cli-bundle.sh        defines cli_bundle_stale and cli_bundle_build (bin/supercloud)
#
# dist/cli is a symlink to the current build, dist/cli-XXXXXX/. A build goes into a new directory
# and the link is replaced by a rename, so a CLI started during a build runs the old build or the
# new one, never half of one; builds are serialized by a lock, so concurrent first runs build once.
# dist/cli/stamp is touched when the build starts: a source edited during a build is newer.

# Where the CLI's sources are (what the bundle is built from), relative to the root.
SC_CLI_SOURCE_DIRS=(blanket-manager core drivers virtualwire overdriver images)
# Files that change the bundle without being one of its sources.
SC_CLI_BUILD_FILES=(scripts/cli-bundle.sh tsconfig.json package.json)

# cli_bundle_stale ROOT: true (0) when ROOT/dist/cli is missing or a source is newer than it.
cli_bundle_stale () {
  local root=$1 stamp="$1/dist/cli/stamp" f
  [[ -f $stamp ]] || return 0
  for f in "${SC_CLI_BUILD_FILES[@]}"; do [[ $root/$f -nt $stamp ]] && return 0; done
  [[ -n $(cd "$root" && find "${SC_CLI_SOURCE_DIRS[@]}" -name '*.ts' -newer "$stamp" -print -quit 2>/dev/null) ]]
}

# cli_bundle_build ROOT: builds ROOT/dist/cli unless another run built it while this one waited
# for the lock. esbuild's messages go to ROOT/dist/cli-build.log. Non-zero when the build failed.
cli_bundle_build () (
  local root=$1 dist="$1/dist" dir old
  { mkdir -p "$dist" && exec 9>"$dist/.cli-build.lock" && flock 9; } 2>/dev/null || return 1
  cli_bundle_stale "$root" || return 0
  dir=$(mktemp -d "$dist/cli-XXXXXX") || return 1
  chmod 755 "$dir" && touch "$dir/stamp"
  # From the checkout's root, whoever runs the launcher from where: esbuild writes the
  # metafile's paths relative to its working directory (test/unit/agent/import-graph.spec.ts
  # reads them; built from another directory they were ../../<root>/dist/...).
  cd "$root" || return 1
  if ! "$root/node_modules/.bin/esbuild" "$root/blanket-manager/cli/main.ts" --bundle --splitting \
      --format=esm --platform=node --target=node20 --packages=external \
      --define:SUPERCLOUD_CLI_BUNDLE=true --outdir="$dir" --metafile="$dir/meta.json" --log-level=warning >"$dist/cli-build.log" 2>&1; then
    rm -rf "$dir"
    return 1
  fi
  [[ -L $dist/cli || ! -e $dist/cli ]] || rm -rf "$dist/cli"
  ln -s "${dir##*/}" "$dir.link" && mv -T "$dir.link" "$dist/cli" || { rm -rf "$dir" "$dir.link"; return 1; }
  # Old builds go once no process runs from them (bin/supercloud starts node on the build's
  # real path) and they are over a minute old (a launcher may be about to start one).
  for old in "$dist"/cli-*/; do
    old=${old%/}
    [[ $old == "$dir" ]] && continue
    [[ -n $(find "$old" -maxdepth 0 -mmin +1 2>/dev/null) ]] || continue
    grep -qsaF "$old/" /proc/[0-9]*/cmdline || rm -rf "$old"
  done
  return 0
)

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -uo pipefail
  root=$(cd "${1:-$(dirname "$0")/..}" && pwd)
  if cli_bundle_stale "$root"; then
    cli_bundle_build "$root" || { echo "cli-bundle: building dist/cli failed (see dist/cli-build.log)" >&2; exit 1; }
  fi
fi
