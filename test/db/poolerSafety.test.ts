import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

/**
 * Behind PgBouncer in transaction mode, consecutive transactions of one client run on different
 * server sessions, and one client's session state stays on a server connection for the next
 * client (PgBouncer resets nothing between transactions there). So nothing the worker, the admin
 * API or the CLI runs may depend on, or leave, session state: settings only transaction-local
 * (set_config(…, true)), advisory locks only transaction-scoped, no LISTEN, no SQL-level
 * PREPARE, no WITH HOLD cursors, no temporary tables. Migrations run through their own direct
 * URL (MIGRATION_DATABASE_URL) but keep to the same rules, so they are checked too.
 */
const ROOT = path.join(__dirname, '..', '..');

const SESSION_STATE: Array<[string, RegExp]> = [
  ['a session-wide set_config (use set_config(…, true))', /set_config\s*\([^;]*?,\s*false\s*\)/i],
  ['a session advisory lock (use pg_advisory_xact_lock)', /pg_(try_)?advisory_lock(_shared)?\s*\(/i],
  // SQL keywords are written upper case throughout src/ and sql/, so prose does not match.
  ['LISTEN (needs a session of its own)', /\bLISTEN\s+[a-z_"]|\bsql\.listen\s*\(/],
  ['SET SESSION / SET without LOCAL as a statement', /(^|[`'";]\s*)SET\s+(SESSION\s+)?(?!LOCAL\b)[a-z_.]+\s*(=|TO\b)/m],
  ['a SQL-level PREPARE', /(^|[`'";]\s*)PREPARE\s+[a-z_]+\s*(\(|AS\b)/m],
  ['a WITH HOLD cursor', /\bWITH\s+HOLD\b/i],
  ['a temporary table', /\bCREATE\s+(GLOBAL\s+|LOCAL\s+)?TEMP(ORARY)?\s+TABLE\b/i],
];

function files(dir: string, ext: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    return statSync(p).isDirectory() ? files(p, ext) : p.endsWith(ext) ? [p] : [];
  });
}

/** Comments out: they may explain what is not done. */
function code(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*(\/\/|--).*$/gm, '');
}

describe('nothing session-scoped runs through a transaction-mode pooler', () => {
  it('finds each pattern in an example of it, and none in a transaction-local equivalent (so the check below can fail)', () => {
    const bad = [
      "await sql`SELECT set_config('app.current_tenant_id', ${t}, false)`",
      'SELECT pg_advisory_lock(42)',
      "await sql.listen('outbox', onNotify)",
      "await sql`SET statement_timeout = '5s'`",
      'PREPARE claim (text) AS SELECT 1',
      'DECLARE c CURSOR WITH HOLD FOR SELECT 1',
      'CREATE TEMP TABLE x (a int)',
    ];
    bad.forEach((b, i) => expect({ b, hit: SESSION_STATE[i]![1].test(b) }).toEqual({ b, hit: true }));
    const fine = [
      "await tx`SELECT set_config('app.current_tenant_id', ${t}, true)`",
      'SELECT pg_advisory_xact_lock(42)',
      "await tx`SET LOCAL statement_timeout = '5s'`",
      'UPDATE t SET a = 1',
      'Set DB_ENCRYPTION_KEY to the key they were saved with',
      "cannot listen on port 8080",
      'LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public',
    ];
    for (const f of fine) expect({ f, hits: SESSION_STATE.filter(([, re]) => re.test(f)).map(([n]) => n) }).toEqual({ f, hits: [] });
  });

  it('src/ and sql/ use none of it', () => {
    const found: string[] = [];
    for (const file of [...files(path.join(ROOT, 'src'), '.ts'), ...files(path.join(ROOT, 'sql'), '.sql')]) {
      const text = code(readFileSync(file, 'utf8'));
      for (const [what, re] of SESSION_STATE) if (re.test(text)) found.push(`${path.relative(ROOT, file)}: ${what}`);
    }
    expect(found).toEqual([]);
  });
});
