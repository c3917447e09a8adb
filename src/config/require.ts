import { type Config, type EncryptionKey } from './index';
import { UsageError } from '../errors';
import type { SenderSettings } from '../types';

/*
 * What a command needs from a loaded configuration, asked for where it is needed: a database URL
 * for its use, the encryption keys. A command that needs neither runs without them.
 */

/** Narrow a config for a command that needs a database and/or the encryption key. */
export type DatabaseUse = 'worker' | 'migration' | 'maintenance';

const MISSING_URL: Record<DatabaseUse, string> = {
  worker: 'DATABASE_URL is not set: point it at the database as the worker role, e.g. postgres://email_worker:PASSWORD@db:5432/app (or run `npm start` for a local demo)',
  migration: 'MIGRATION_DATABASE_URL (or DATABASE_URL) is not set: point it at the database as the role that owns the schema, e.g. postgres://owner:PASSWORD@db:5432/app',
  maintenance: 'MAINTENANCE_DATABASE_URL is not set: key rotation and backfill must see every tenant, so they need a role that bypasses RLS (a superuser, or the owner with BYPASSRLS)',
};

/** The variable a database URL was read from, for messages that tell the user what to fix. */
export function databaseUrlSetting(config: Config, which: DatabaseUse = 'worker'): string {
  if (which === 'worker') return 'DATABASE_URL';
  if (which === 'maintenance') return 'MAINTENANCE_DATABASE_URL';
  return config.migrationDatabaseUrl === config.databaseUrl ? 'DATABASE_URL' : 'MIGRATION_DATABASE_URL';
}

/** How long start-up waits for the first answer from the database: one connect attempt, then a little. */
export function startupProbeMs(config: Config): number {
  return config.dbConnectTimeoutSeconds * 1000 + 2000;
}

export function requireDatabaseUrl(config: Config, which: DatabaseUse = 'worker'): string {
  const url = { worker: config.databaseUrl, migration: config.migrationDatabaseUrl, maintenance: config.maintenanceDatabaseUrl }[which];
  if (!url) throw new UsageError(MISSING_URL[which]);
  return url;
}

/** The keys a process decrypts with: the current one, and the previous one during rotation. */
export interface KeyRing {
  current: EncryptionKey;
  previous?: EncryptionKey | undefined;
}

export function requireKeyRing(config: Config): KeyRing {
  return { current: requireEncryptionKey(config), previous: config.previousEncryptionKey };
}

export function requireEncryptionKey(config: Config): EncryptionKey {
  if (!config.encryptionKey) {
    throw new UsageError('DB_ENCRYPTION_KEY is not set: it must be at least 32 random bytes; generate one with `tenant-email keys generate`.');
  }
  return config.encryptionKey;
}

/** The platform's global SendGrid account (SENDGRID_*) as sender settings, for events with no tenant settings; null when none is configured. */
export function globalSenderSettings(config: Config): SenderSettings | null {
  return config.global
    ? {
        source: 'global',
        primary: {
          provider: 'sendgrid',
          apiKey: config.global.apiKey,
          settings: config.global.baseUrl ? { base_url: config.global.baseUrl } : {},
          platformManaged: true,
          platformPaid: true,
        },
        fallback: null,
        fromEmail: config.global.fromEmail,
        fromName: config.global.fromName,
        replyToDomain: config.global.replyToDomain,
        listUnsubscribe: null,
        extraHeaders: {},
        fromDomain: null,
        version: 0,
      }
    : null;
}
