import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../core/packageRoot';
import { quoteIdent, type Sql } from './connect';
import { ADMIN_API_FUNCTIONS } from './roleCheck';

/** Where the numbered migrations live, both from src/ (tests) and dist/ (built). */
export const SQL_DIR = path.join(packageRoot(), 'sql');

// An arbitrary constant: every migrator of this project takes the same transaction-level lock.
const MIGRATION_LOCK = 7_304_112_977;

export interface Migration {
  id: number;
  name: string;
  sql: string;
}

export interface MigrateResult {
  applied: string[];
  /** SQL a superuser must run because the migrating role could not (empty when all was done). */
  superuserSql: string[];
}

export function loadMigrations(dir = SQL_DIR): Migration[] {
  return readdirSync(dir)
    .filter((f) => /^\d{3}_[a-z0-9_]+\.sql$/.test(f))
    .sort()
    .map((f) => ({ id: Number(f.slice(0, 3)), name: f, sql: readFileSync(path.join(dir, f), 'utf8') }));
}

/** grants.sql (the worker's) or grants_admin.sql (the admin API's) for a role. */
function grantsSql(file: 'grants.sql' | 'grants_admin.sql', role: string, dir = SQL_DIR): string {
  return readFileSync(path.join(dir, file), 'utf8').replace(/\{\{(worker|admin)_role\}\}/g, quoteIdent(role));
}

/**
 * Apply pending migrations in one transaction under an advisory lock, then (re)apply the worker
 * role's grants, and the admin API role's (ADMIN_DB_ROLE, the worker role when unset). A second
 * migrator waits for the lock and then finds nothing to do. Forward only.
 */
export async function migrate(sql: Sql, opts: { workerRole: string; adminRole?: string | undefined }): Promise<MigrateResult> {
  const migrations = loadMigrations();
  const applied: string[] = [];
  const adminRole = opts.adminRole ?? opts.workerRole;
  const roles = adminRole === opts.workerRole ? [opts.workerRole] : [opts.workerRole, adminRole];

  await sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`;
    for (const r of roles) await assertOrdinaryRole(tx as unknown as Sql, r, r === opts.workerRole ? 'worker' : 'admin API');
    const [{ fresh, me }] = (await tx`SELECT to_regclass('email_worker_migrations') IS NULL AS fresh, current_user AS me`) as unknown as [{ fresh: boolean; me: string }];
    // Under the lock, a database without the table has nothing applied.
    const done = new Set(fresh ? [] : (await tx`SELECT id FROM email_worker_migrations`).map((r) => Number(r.id)));
    const pending = migrations.filter((m) => !done.has(m.id));
    // Before the first statement that needs a grant (creating the table included).
    if (pending.length > 0) await assertCanMigrate(tx as unknown as Sql);
    if (fresh) {
      await tx`CREATE TABLE email_worker_migrations (
        id integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`;
    }
    for (const m of pending) {
      // Insert first: a concurrent migrator without the lock would fail on the primary key.
      await tx`INSERT INTO email_worker_migrations (id, name) VALUES (${m.id}, ${m.name})`;
      try {
        await tx.unsafe(m.sql);
      } catch (err) {
        throw explainMigrationError(err, m.name, me);
      }
      applied.push(m.name);
    }
    // The current body of every function (sql/functions.sql), then the grants on them.
    await tx.unsafe(readFileSync(path.join(SQL_DIR, 'functions.sql'), 'utf8'));
    for (const r of roles) await tx.unsafe(grantsSql('grants.sql', r));
    await tx.unsafe(grantsSql('grants_admin.sql', adminRole));
    // An admin API with a role of its own: the worker role (which may have had them when the two
    // were one) keeps none of its functions.
    if (adminRole !== opts.workerRole) {
      for (const f of ADMIN_API_FUNCTIONS) await tx.unsafe(`REVOKE EXECUTE ON FUNCTION ${f} FROM ${quoteIdent(opts.workerRole)}`);
    }
  });

  const superuserSql: string[] = [];
  for (const r of roles) superuserSql.push(...(await protectRoleLogs(sql, r)));
  return { applied, superuserSql };
}

/** The role the worker (or the admin API) connects as exists and is bound by row-level security. */
async function assertOrdinaryRole(sql: Sql, name: string, who: 'worker' | 'admin API'): Promise<void> {
  const setting = who === 'worker' ? 'WORKER_DB_ROLE' : 'ADMIN_DB_ROLE';
  const [role] = await sql`SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = ${name}`;
  if (!role) {
    throw new Error(
      `the ${who} role "${name}" does not exist. Create it first (as a superuser or a role with CREATEROLE):\n` +
        `  CREATE ROLE ${name} LOGIN PASSWORD '...' NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;\n` +
        `or set ${setting} to the role the ${who} connects as.`,
    );
  }
  if (role.rolsuper || role.rolbypassrls) {
    throw new Error(`the ${who} role "${name}" is a superuser or has BYPASSRLS; row-level security would not apply to it. Use an ordinary role.`);
  }
}

/**
 * What the migrating role needs, checked before the first migration so that a missing grant is
 * named with the SQL that gives it, instead of a bare `permission denied for schema public`.
 * The schema owner has all of it; PostgreSQL 15 and later no longer let every role create in
 * `public`, and pgcrypto is created once per database by a role with CREATE on the database.
 */
async function assertCanMigrate(sql: Sql): Promise<void> {
  const [p] = await sql`
    SELECT current_user AS role, current_database() AS db,
           has_schema_privilege('public', 'CREATE') AS schema_create,
           EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pgcrypto') AS has_pgcrypto,
           has_database_privilege(current_database(), 'CREATE') AS db_create`;
  const missing: string[] = [];
  if (!p!.schema_create) {
    missing.push(`the role may not create objects in schema public. As the database owner or a superuser, run:\n  GRANT USAGE, CREATE ON SCHEMA public TO ${quoteIdent(p!.role)};`);
  }
  if (!p!.has_pgcrypto && !p!.db_create) {
    missing.push(`the pgcrypto extension is not installed and the role may not create it. As a superuser (or the database owner), run:\n  CREATE EXTENSION IF NOT EXISTS pgcrypto;\nor give the role the right to: GRANT CREATE ON DATABASE ${quoteIdent(p!.db)} TO ${quoteIdent(p!.role)};`);
  }
  if (missing.length > 0) {
    throw new Error(`cannot migrate as role "${p!.role}" on database "${p!.db}": ${missing.join('\n')}\n(README "Production" lists the grants.)`);
  }
}

/** A migration's failure with its file name, and for a privilege error, what the role lacks. */
function explainMigrationError(err: unknown, file: string, role: string): Error {
  const e = err as { code?: string; message?: string };
  if (e.code !== '42501') return err as Error;
  const tenants = /\btable tenants\b/.test(e.message ?? '')
    ? ` The platform's tenants table is referenced by a foreign key: as its owner, run GRANT REFERENCES (id) ON tenants TO ${quoteIdent(role)};`
    : '';
  return Object.assign(
    new Error(
      `${file}: ${e.message} (42501).${tenants} Migrations must run as the role that owns the schema's objects ` +
        '(MIGRATION_DATABASE_URL): the role that ran the first migration, or one they were handed to with ' +
        '`ALTER TABLE … OWNER TO`. README "Production" lists the grants.',
    ),
    { code: e.code },
  );
}

/**
 * The worker's statements carry DB_ENCRYPTION_KEY as a bind parameter. These role settings keep
 * bind parameters out of the server log, including in the "ERROR ... PARAMETERS:" lines. Setting
 * them needs superuser (or GRANT SET ON PARAMETER); when we cannot, we hand back the SQL.
 */
async function protectRoleLogs(sql: Sql, role: string): Promise<string[]> {
  const wanted = ['log_parameter_max_length=0', 'log_parameter_max_length_on_error=0'];
  const rows = await sql`
    SELECT unnest(s.setconfig) AS setting
    FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
    WHERE r.rolname = ${role} AND s.setdatabase = 0`;
  const present = new Set(rows.map((r) => String(r.setting)));
  const missing: string[] = [];
  for (const w of wanted) {
    if (present.has(w)) continue;
    const [name, value] = w.split('=') as [string, string];
    const statement = `ALTER ROLE "${role}" SET ${name} = ${value};`;
    try {
      await sql.unsafe(statement);
    } catch (err) {
      if ((err as { code?: string }).code === '42501') missing.push(statement);
      else throw err;
    }
  }
  return missing;
}
