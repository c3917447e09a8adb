#!/usr/bin/env node
// Writes docs/openapi.json from the admin API's schemas (via dist/). Run after `npm run build`.
const fs = require('node:fs');
const path = require('node:path');
const { buildOpenApi } = require('../dist/admin/openapi.js');
const { version } = require('../package.json');
fs.writeFileSync(path.join(__dirname, '..', 'docs', 'openapi.json'), `${JSON.stringify(buildOpenApi(version), null, 2)}\n`);
