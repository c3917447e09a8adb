#!/usr/bin/env node
// Rewrites the error-code table in README.md from the registry in src/errors.ts (via dist/).
// Run after `npm run build`: `npm run docs:errors`. test/readme.test.ts fails when they differ.
const fs = require('node:fs');
const path = require('node:path');
const { ERRORS, knativeRetries } = require('../dist/errors.js');

const file = path.join(__dirname, '..', 'README.md');
const rows = Object.entries(ERRORS).map(
  ([code, spec]) => `| \`${code}\` | ${spec.status} | ${knativeRetries(spec.status) ? 'retried' : 'dead-lettered'} | ${spec.description} |`,
);
const table = ['| code | status | Knative | meaning |', '|---|---|---|---|', ...rows].join('\n');
const readme = fs.readFileSync(file, 'utf8');
const next = readme.replace(/<!-- errors:start -->[\s\S]*<!-- errors:end -->/, `<!-- errors:start -->\n${table}\n<!-- errors:end -->`);
if (next === readme && !readme.includes('<!-- errors:start -->')) throw new Error('README.md has no <!-- errors:start --> marker');
fs.writeFileSync(file, next);
