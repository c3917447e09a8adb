#!/usr/bin/env bash
# Every build step of the Dockerfile's first stage, as a script the test suite runs on a clean
# copy of the repository (test/deploy/image.test.ts): install from the lockfile, compile, drop
# development dependencies, and assemble the runtime tree the second stage copies.
#   usage: scripts/image/build.sh SRC_DIR OUT_DIR
set -euo pipefail
src=$(cd "$1" && pwd)
out=$2
cd "$src"
# Exactly what the lockfile pins (it records every platform's optional binaries: test/lockfile.test.ts).
npm ci --no-audit --no-fund --loglevel=error
npm run build --silent
npm prune --omit=dev --no-audit --no-fund --loglevel=error
rm -rf "$out"
mkdir -p "$out"
cp -R dist sql node_modules package.json package-lock.json "$out"/
find "$out/dist" -name "*.map" -delete
find "$out/node_modules" -type d -empty -delete
