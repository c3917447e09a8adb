import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { runCli } from '../src/cli';
import { DEV_ENV_FILE } from './devEnv';

/**
 * `npm run cli -- ARGS`: the tenant-email CLI against the stack `npm start` runs, with the
 * database URLs and key it wrote to .data/dev-env.json. A variable set in the environment wins
 * over the file. `events send` gets the dev worker's URL unless --url is given.
 */
async function main(): Promise<number> {
  const file = path.join(path.resolve(process.env.DEV_DATA_DIR ?? '.data'), DEV_ENV_FILE);
  if (!existsSync(file)) {
    process.stderr.write(`error: ${file} does not exist: run \`npm start\` first (it writes the dev stack's URLs and key there), or run the CLI itself with DATABASE_URL and DB_ENCRYPTION_KEY set\n`);
    return 1;
  }
  const { TEW_DEV_WORKER_URL: workerUrl, ...devEnv } = JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>;
  const env: NodeJS.ProcessEnv = { ...devEnv };
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && v !== '') env[k] = v;
  const args = process.argv.slice(2);
  if (args[0] === 'events' && args[1] === 'send' && workerUrl && !args.some((a) => a === '--url' || a.startsWith('--url='))) args.push('--url', workerUrl);
  return runCli(args, { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env });
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
