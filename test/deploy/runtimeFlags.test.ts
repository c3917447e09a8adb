import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { WORKER_NODE_FLAGS } from '../../src/core/runtimeFlags';
import { ROOT, dockerfileExec } from './render';

/** The worker's node flags (src/core/runtimeFlags.ts) are the same in the image (and its compile cache), `npm start` and the bench. */
describe('worker node flags', () => {
  it('the image ENTRYPOINT runs node with exactly WORKER_NODE_FLAGS before the CLI', () => {
    expect(dockerfileExec('ENTRYPOINT')).toEqual(['/nodejs/bin/node', ...WORKER_NODE_FLAGS, '/app/dist/cli.js']);
  });

  it("the image's compile cache is made with the same flags (node keys the cache by them)", () => {
    expect(dockerfileExec('RUN', 'compile-cache')).toEqual(['/nodejs/bin/node', ...WORKER_NODE_FLAGS, '/fill-compile-cache.js', '/app']);
  });

  it('npm start runs node with the same flags', () => {
    const start = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts.start!;
    expect(start).toContain(`node ${WORKER_NODE_FLAGS.join(' ')} dist-tools/dev/start.js`);
  });

  it('node starts with them (a misspelt flag is "bad option", exit 9)', () => {
    const run = spawnSync(process.execPath, [...WORKER_NODE_FLAGS, '-e', '0'], { encoding: 'utf8' });
    expect({ status: run.status, stderr: run.stderr }).toEqual({ status: 0, stderr: '' });
    const typo = spawnSync(process.execPath, ['--heap-growing-percnt=50', '-e', '0'], { encoding: 'utf8' });
    expect(typo.status).not.toBe(0);
  });
});
