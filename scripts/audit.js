#!/usr/bin/env node
// `npm run audit`: `npm audit --omit=dev` that fails on any advisory against a runtime
// dependency unless SECURITY.md justifies it (its GHSA id in the "Accepted advisories" list).
// When the advisory service cannot be reached (some registry mirrors answer 405), it says so
// and exits 0: no verdict is possible then, and the output makes that plain.
'use strict';
const { execFileSync } = require('node:child_process');
const { readFileSync } = require('node:fs');
const path = require('node:path');

/** Decide from `npm audit --json` output and the accepted GHSA ids. */
function judge(report, accepted) {
  if (report && typeof report.statusCode === 'number' && !report.vulnerabilities) {
    return { verdict: 'unavailable', message: `advisory service unavailable (${report.statusCode} ${report.uri ?? ''}): no audit verdict; run it where the registry serves advisories` };
  }
  const vulns = (report && report.vulnerabilities) || {};
  const open = [];
  for (const [name, v] of Object.entries(vulns)) {
    // An entry whose `via` names only other packages is vulnerable through them; their own
    // entries carry the advisories and are judged there.
    const ids = (v.via || []).filter((x) => typeof x === 'object').map((x) => String(x.url || '').split('/').pop());
    const unjustified = ids.filter((id) => !accepted.has(id));
    if (unjustified.length > 0) open.push(`${name} ${v.severity}: ${unjustified.join(', ')}`);
  }
  if (open.length > 0) return { verdict: 'fail', message: `advisories not justified in SECURITY.md:\n  ${open.join('\n  ')}` };
  return { verdict: 'pass', message: `no unjustified advisories (${Object.keys(vulns).length} package(s) with accepted advisories)` };
}

function acceptedIds(securityMd) {
  const section = securityMd.split(/^## /m).find((s) => s.startsWith('Dependencies')) || '';
  return new Set(section.match(/GHSA(-[23456789cfghjmpqrvwx]{4}){3}/g) || []);
}

if (require.main === module) {
  let out;
  try {
    out = execFileSync('npm', ['audit', '--omit=dev', '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch (err) {
    out = err.stdout || '{}'; // npm audit exits 1 when it finds advisories
  }
  const accepted = acceptedIds(readFileSync(path.join(__dirname, '..', 'SECURITY.md'), 'utf8'));
  const { verdict, message } = judge(JSON.parse(out || '{}'), accepted);
  process.stdout.write(`npm audit --omit=dev: ${verdict}: ${message}\n`);
  process.exit(verdict === 'fail' ? 1 : 0);
}

module.exports = { judge, acceptedIds };
