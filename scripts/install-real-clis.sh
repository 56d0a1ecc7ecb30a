#!/usr/bin/env bash
# Install the real agent CLIs (claude, codex, gemini) from the npm registry into one folder
# of this project, for the real-CLI suite (tests/real_cli/) and for trying a town by hand.
#
#   bash scripts/install-real-clis.sh [DIR]     # default: .real-clis/ (ignored by git)
#
# The programs land in DIR/node_modules/.bin/. Nothing is installed globally and nothing
# is logged in: the suite checks how a town handles CLIs that are not set up.
# Exit 0 when all three are installed; 1 when npm is missing or the install failed (no
# registry, no network): callers that only want the suite when possible treat 1 as "skip".
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.real-clis}"
packages=(@anthropic-ai/claude-code @openai/codex @google/gemini-cli)

if ! command -v npm >/dev/null 2>&1; then
    echo "install-real-clis: npm is not installed; the real-CLI suite will be skipped." >&2
    exit 1
fi
mkdir -p "$dir"
# A package.json of our own keeps npm from climbing to a parent folder's project.
[ -f "$dir/package.json" ] || echo '{"name": "tinytown-real-clis", "private": true}' >"$dir/package.json"
# Bounded: a registry that cannot be reached fails in about a minute instead of hanging CI.
if ! timeout "${TT_NPM_TIMEOUT:-600}" npm install --prefix "$dir" --no-audit --no-fund \
        --fetch-retries 1 --fetch-timeout 30000 "${packages[@]}" >&2; then
    echo "install-real-clis: npm install failed (is the registry reachable?)." >&2
    exit 1
fi
for program in claude codex gemini; do
    bin="$dir/node_modules/.bin/$program"
    if [ ! -x "$bin" ]; then
        echo "install-real-clis: $bin is missing after the install." >&2
        exit 1
    fi
    printf '%s: %s\n' "$program" "$("$bin" --version 2>/dev/null | head -n 1)"
done
