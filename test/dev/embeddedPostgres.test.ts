import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { assertReachableByPostgresUser } from '../../dev/embeddedPostgres';

/** As root, embedded PostgreSQL runs as `postgres`: a 0700 directory on the way is named up front. */
describe('embedded PostgreSQL as root', () => {
  let base: string;
  beforeAll(() => {
    base = mkdtempSync(path.join(tmpdir(), 'tew-perm-'));
    chmodSync(base, 0o755);
  });
  afterAll(() => rmSync(base, { recursive: true, force: true }));

  it('names the directory the postgres user cannot enter, and what to do', () => {
    const home = path.join(base, 'home');
    mkdirSync(path.join(home, 'checkout', 'node_modules'), { recursive: true });
    chmodSync(home, 0o700);
    const bin = path.join(home, 'checkout', 'node_modules', 'initdb');
    writeFileSync(bin, '');
    expect(() => assertReachableByPostgresUser([bin], 0)).toThrow(
      new RegExp(`cannot enter ${home.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} \\(mode 0700\\) to reach .*chmod o\\+x .*TEST_DATABASE_URL`),
    );
    // Not root: PostgreSQL runs as the caller, who can reach its own files.
    expect(() => assertReachableByPostgresUser([bin], 1000)).not.toThrow();
    chmodSync(home, 0o711);
    expect(() => assertReachableByPostgresUser([bin], 0)).not.toThrow();
  });

  it('accepts a data directory that does not exist yet, judged by its nearest existing parent', () => {
    expect(() => assertReachableByPostgresUser([path.join(base, 'not', 'yet', 'pg')], 0)).not.toThrow();
  });
});
