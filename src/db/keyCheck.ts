import type { Sql } from './connect';
import { bounded } from './deadline';
import type { KeyRing } from '../config/require';
import { UsageError } from '../errors';

/**
 * Before the worker reports ready: does its key ring open every stored tenant setting? The
 * database counts settings rows per key id (sql/006, email_encryption_key_census); a key id is a
 * fingerprint of the key, so comparing ids proves the key without decrypting anything. A wrong
 * DB_ENCRYPTION_KEY would otherwise answer every event `503 settings_undecryptable` while
 * /readyz said 200.
 */
export async function assertKeysOpenSettings(sql: Sql, keys: KeyRing, ms: number | undefined): Promise<void> {
  type Use = { key_id: string; settings_rows: string };
  const rows: Use[] = await bounded(sql<Use[]>`SELECT key_id, settings_rows FROM email_encryption_key_census()`, ms);
  const held = new Map([[keys.current.id, 'DB_ENCRYPTION_KEY']]);
  if (keys.previous) held.set(keys.previous.id, 'DB_ENCRYPTION_KEY_PREVIOUS');
  const unopened = rows.filter((r) => !held.has(r.key_id));
  if (unopened.length === 0) return;

  const count = (rs: Use[]) => rs.reduce((n, r) => n + Number(r.settings_rows), 0);
  const ids = unopened.map((r) => `${r.key_id} (${r.settings_rows} rows)`).join(', ');
  const holds = [...held].map(([id, name]) => `${name} has key id ${id}`).join(', ');
  if (unopened.length === rows.length) {
    throw new UsageError(
      `refusing to start: DB_ENCRYPTION_KEY does not open the stored tenant settings. They are encrypted with key id ${ids}; ${holds}. ` +
        'Set DB_ENCRYPTION_KEY to the key they were saved with (a settings row shows its key_id: `tenant-email settings get`).',
    );
  }
  throw new UsageError(
    `refusing to start: ${count(unopened)} of ${count(rows)} tenant settings are encrypted with key id ${ids}, which this process does not hold; ${holds}. ` +
      'During a rotation, set DB_ENCRYPTION_KEY_PREVIOUS to the old key until `tenant-email keys rotate` has finished. ' +
      'If that key is lost, those tenants must save their settings (and keys) again.',
  );
}
