import { PassThrough, Writable } from 'node:stream';
import { keyId, loadConfig } from '../src/config';
import { putSettings } from '../src/db/settings';
import { REDACT_PATHS, SECRET_KEYS } from '../src/logger';
import { runCli } from '../src/cli';
import { createTestDatabase, type TestDatabase } from './helpers/db';
import { binaryEvent, post, taskData } from './helpers/events';
import { captureLogs } from './helpers/logCapture';
import { CANARY_DB_KEY, startTestWorker } from './helpers/worker';
import { UsageError } from '../src/errors';

const CANARY_API = 'SG.CANARY-APIKEY-secrets-4b5c6d7e8f9a0b1c';
const KEY = { id: keyId(CANARY_DB_KEY), secret: CANARY_DB_KEY };

function sink(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  return { stream: new Writable({ write(c, _e, cb) { chunks.push(String(c)); cb(); } }), text: () => chunks.join('') };
}

describe('secrets never leave the process', () => {
  it('redacts every listed path with a canary', () => {
    const { logger, text } = captureLogs();
    for (const p of REDACT_PATHS) {
      const obj: Record<string, unknown> = {};
      let cur = obj;
      const parts = p.split('.');
      parts.forEach((part, i) => {
        if (i === parts.length - 1) cur[part] = `CANARY-REDACT-${p}`;
        else cur = (cur[part] = {}) as Record<string, unknown>;
      });
      logger.info(obj, 'redaction probe');
    }
    expect(text()).toContain('[redacted]');
    expect(text()).not.toContain('CANARY-REDACT');
  });

  it('censors every secret key in the first three levels of a line and of a child logger\'s bindings: objects, arrays, errors', () => {
    const { logger, lines, text } = captureLogs();
    for (const key of SECRET_KEYS) {
      const canary = `CANARY-KEY-${key}`;
      const err = Object.assign(new Error(`the message of ${key}`), { [key]: canary });
      const line = { [key]: canary, one: { [key]: canary }, two: { deeper: { [key]: canary } }, list: [{ [key]: canary }], err, keep: 'kept' };
      const before = JSON.stringify(line);
      logger.info(line, 'secret key probe');
      logger.child({ [key]: canary, bound: { [key]: canary } }).info('child probe');
      logger.child({ event_id: 'e' }).child({ [key]: canary }).info('grandchild probe');
      expect(JSON.stringify(line)).toBe(before); // the caller's object is not changed
      expect(err[key as keyof typeof err]).toBe(canary);
    }
    expect(text()).not.toContain('CANARY-KEY');
    const probe = JSON.parse(lines.find((l) => l.includes('secret key probe'))!) as Record<string, any>;
    expect(probe).toMatchObject({ one: { api_key: '[redacted]' }, two: { deeper: { api_key: '[redacted]' } }, list: [{ api_key: '[redacted]' }], keep: 'kept' });
    // An error with a secret on it is still logged as an error: its message and stack.
    expect(probe.err).toMatchObject({ type: 'Error', message: 'the message of api_key', api_key: '[redacted]' });
    expect(probe.err.stack).toMatch(/^Error: the message of api_key\n/);
  });

  it('does not echo a too-short DB_ENCRYPTION_KEY in the config error', () => {
    let err: unknown;
    try {
      loadConfig({ DB_ENCRYPTION_KEY: 'CANARY-SHORT' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    expect(String((err as Error).message)).toMatch(/DB_ENCRYPTION_KEY: must be at least 32 bytes/);
    expect(String((err as Error).message)).not.toContain('CANARY-SHORT');
  });

  describe('with a worker, a provider that cannot be reached, and the CLI', () => {
    let db: TestDatabase;
    beforeAll(async () => {
      db = await createTestDatabase();
      const sql = db.worker(1);
      // Port 1 on loopback: connection refused. The SDK's error object carries the Authorization header.
      await putSettings(sql, { current: KEY }, 'leaky', {
        provider: 'sendgrid', api_key: CANARY_API, from_email: 'a@leaky.example', provider_settings: { base_url: 'http://127.0.0.1:1' },
        enabled: true, daily_limit: 10,
      });
    });
    afterAll(() => db.drop());

    it('keeps the API key and the encryption key out of answers and logs when the provider fails', async () => {
      const logs = captureLogs('trace');
      const w = await startTestWorker(db, logs.logger);
      try {
        const answers: string[] = [];
        for (let i = 0; i < 3; i++) {
          const r = await post(w.url, binaryEvent({ tenant: 'leaky', data: taskData() }));
          expect(r.status).toBe(503);
          answers.push(JSON.stringify([...r.headers]), r.text);
        }
        const all = answers.join('\n') + logs.text();
        expect(all).toContain('provider_network');
        expect(all).not.toContain('CANARY-APIKEY');
        expect(all).not.toContain('CANARY-DBKEY');
      } finally {
        await w.shutdown();
      }
    });

    it('masks the key in `settings get` and `settings put` output', async () => {
      const env = { DATABASE_URL: db.workerUrl, DB_ENCRYPTION_KEY: CANARY_DB_KEY, ALLOW_PROVIDER_ENDPOINT_OVERRIDE: 'true', ALLOW_PRIVATE_SMTP_HOSTS: 'true' };
      const out = sink();
      const err = sink();
      const stdin = new PassThrough();
      stdin.end(JSON.stringify({ provider: 'sendgrid', api_key: 'SG.CANARY-APIKEY-cli-0123456789abcd', from_email: 'x@cli.example' }));
      expect(await runCli(['settings', 'put', '--tenant', 'cli-t'], { stdin, stdout: out.stream, stderr: err.stream, env })).toBe(0);
      expect(await runCli(['settings', 'get', '--tenant', 'cli-t'], { stdin: new PassThrough(), stdout: out.stream, stderr: err.stream, env })).toBe(0);
      const all = out.text() + err.text();
      expect(all).toContain('"api_key_masked": "SG.…abcd"');
      expect(all).not.toContain('CANARY-APIKEY');
      expect(all).not.toContain('CANARY-DBKEY');
    });
  });
});
