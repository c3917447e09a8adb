import type { Sql } from './connect';
import { UsageError } from '../errors';

export const TENANT_TABLES = [
  'tenant_email_settings',
  'tenant_email_usage',
  'email_deliveries',
  'tenant_email_templates',
  'tenant_email_domains',
  'email_suppressions',
  'email_soft_bounces',
  'tenant_email_webhooks',
  'email_webhook_receipts',
  'email_feedback_daily',
  'tenant_email_reputation',
  'email_suppression_log',
  'email_dead_letters',
] as const;

/** The functions only the admin API calls (sql/grants_admin.sql grants them to its role). */
export const ADMIN_API_FUNCTIONS = [
  'admin_api_key_lookup(text)',
  'admin_api_key_touch(uuid)',
  'email_apply_feedback(text, text, jsonb, integer, numeric, numeric, integer, integer, boolean)',
  'email_outbox_add(text, jsonb)',
  'email_outbox_take(integer)',
  'email_outbox_done(bigint[])',
  'email_outbox_backlog()',
] as const;

/**
 * Refuse to run as a role for which row-level security would not hold: a superuser, a role with
 * BYPASSRLS, the tables' owner (or a member of it), or tables where RLS is not forced.
 */
export async function assertSafeWorkerRole(sql: Sql): Promise<void> {
  const [role] = await sql`
    SELECT current_user AS name, rolsuper, rolbypassrls
    FROM pg_roles WHERE rolname = current_user`;
  if (!role) throw new UsageError('could not read the current role from pg_roles');
  const problems: string[] = [];
  if (role.rolsuper) problems.push(`role "${role.name}" is a superuser`);
  if (role.rolbypassrls) problems.push(`role "${role.name}" has BYPASSRLS`);

  const tables = await sql`
    SELECT t.name, c.oid IS NOT NULL AS present, c.relrowsecurity, c.relforcerowsecurity,
           COALESCE(pg_has_role(current_user, c.relowner, 'MEMBER'), false) AS owns
    FROM unnest(string_to_array(${TENANT_TABLES.join(',')}, ',')) AS t(name)
    LEFT JOIN pg_class c ON c.oid = to_regclass(t.name)`;
  const missing = tables.filter((t) => !t.present).map((t) => t.name);
  if (missing.length > 0) {
    throw new UsageError(`tables ${missing.join(', ')} do not exist: run \`tenant-email migrate\` (as the owner role) first`);
  }
  for (const t of tables) {
    if (t.owns) problems.push(`role "${role.name}" owns (or is a member of the owner of) ${t.name}`);
    if (!t.relrowsecurity || !t.relforcerowsecurity) problems.push(`row-level security is not enabled and forced on ${t.name}`);
  }
  if (problems.length > 0) {
    throw new UsageError(
      `refusing to start: ${problems.join('; ')}. Connect DATABASE_URL as the unprivileged worker role ` +
        '(WORKER_DB_ROLE, default email_worker); run migrations with MIGRATION_DATABASE_URL as the owner.',
    );
  }
}

/**
 * The admin API looks API keys up through functions only its role may execute when it has one
 * of its own (ADMIN_DB_ROLE). Started with the admin API on as a role without them, every
 * API-key request would fail: refuse to start instead, naming the fix.
 */
export async function assertAdminFunctions(sql: Sql): Promise<void> {
  const [r] = await sql`
    SELECT current_user AS name, bool_and(has_function_privilege(f, 'EXECUTE')) AS allowed
    FROM unnest(string_to_array(${ADMIN_API_FUNCTIONS.join(';')}, ';')) AS f`;
  if (r?.allowed) return;
  throw new UsageError(
    `refusing to start the admin API: role "${r?.name}" may not execute the admin API's functions (${ADMIN_API_FUNCTIONS.map((f) => f.split('(')[0]).join(', ')}). ` +
      'Connect the admin API as the role `tenant-email migrate` was given as ADMIN_DB_ROLE (chart: admin.databaseRole and secrets.keys.adminDatabaseUrl), ' +
      'or run migrate without ADMIN_DB_ROLE to let the worker role serve the admin API.',
  );
}
