import { readFileSync } from 'node:fs';
import path from 'node:path';
import { envSchema } from '../src/config/env';
import { ERRORS, knativeRetries } from '../src/errors';

const readme = readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');

describe('README', () => {
  it('starts with the two commands', () => {
    const head = readme.split('\n').slice(0, 10).join('\n');
    expect(head).toContain('npm install && npm start');
    expect(head).toContain('npm test');
  });

  it('lists every error code with its status and what Knative does with it', () => {
    for (const [code, spec] of Object.entries(ERRORS)) {
      const row = `| \`${code}\` | ${spec.status} | ${knativeRetries(spec.status) ? 'retried' : 'dead-lettered'} |`;
      expect({ code, listed: readme.includes(row) }).toEqual({ code, listed: true });
    }
  });

  it('documents every environment variable the configuration reads', () => {
    const vars = Object.keys(envSchema.shape);
    expect(vars.length).toBeGreaterThan(15);
    for (const v of vars) expect({ v, documented: readme.includes(`\`${v}\``) }).toEqual({ v, documented: true });
  });
});
