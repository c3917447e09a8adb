#!/usr/bin/env node
// Fills Node's module compile cache for the app tree at image build time, so that a pod's
// start compiles nothing it can read from the cache instead (a scale-from-zero request waits for
// that start). The Dockerfile runs it in a stage FROM the runtime image, with the ENTRYPOINT's own
// node and flags: V8 rejects a cache made by another node binary or other flags, and a rejected
// cache costs a little, never correctness (node compiles as if there were none).
//
// It loads every module the app tree can require: each dist/**/*.js file, and every module those
// files name in a require() call (the static imports tsc compiled, and the ones the app loads
// lazily on its first event or first admin request: the provider SDKs, CloudEvents, Handlebars,
// markdown-it). Nothing is run: cli.js only acts when it is the main module.
//
//   usage: NODE_COMPILE_CACHE=DIR node [the ENTRYPOINT's flags] fill-compile-cache.js APP_DIR
'use strict';
const fs = require('node:fs');
const nodeModule = require('node:module');
const path = require('node:path');

function fail(message) {
  process.stderr.write(`fill-compile-cache: ${message}\n`);
  process.exit(1);
}

const appDir = process.argv[2];
if (!appDir || !fs.existsSync(path.join(appDir, 'dist', 'cli.js'))) fail('usage: NODE_COMPILE_CACHE=DIR node fill-compile-cache.js APP_DIR (APP_DIR/dist/cli.js must exist)');
if (!process.env.NODE_COMPILE_CACHE) fail('NODE_COMPILE_CACHE is not set: it names the directory to fill, the one the image sets for the worker');
const cacheDir = typeof nodeModule.getCompileCacheDir === 'function' ? nodeModule.getCompileCacheDir() : undefined;
if (!cacheDir) fail(`node ${process.version} did not enable the compile cache at ${process.env.NODE_COMPILE_CACHE} (it needs Node.js 22.1 or later, and a writable directory)`);

const files = [];
(function walk(dir) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p);
    else if (e.name.endsWith('.js')) files.push(p);
  }
})(path.join(path.resolve(appDir), 'dist'));

const REQUIRE = /\brequire\(\s*(["'])([^"'\s]+)\1\s*\)/g;
const loaded = new Set();
for (const file of files.sort()) {
  const targets = [file];
  for (const m of fs.readFileSync(file, 'utf8').matchAll(REQUIRE)) {
    if (m[2].startsWith('node:')) continue;
    try {
      targets.push(require.resolve(m[2], { paths: [path.dirname(file)] }));
    } catch {
      fail(`${path.relative(appDir, file)} requires "${m[2]}", which does not resolve in the app tree`);
    }
  }
  for (const t of targets) {
    if (loaded.has(t) || !path.isAbsolute(t)) continue;
    loaded.add(t);
    require(t);
  }
}
// Written at exit anyway; flushing first makes the count below true (Node.js 22.10 and later).
if (typeof nodeModule.flushCompileCache === 'function') nodeModule.flushCompileCache();
process.stdout.write(`fill-compile-cache: loaded ${loaded.size} entry modules (${files.length} app files) with node ${process.version} into ${cacheDir}\n`);
