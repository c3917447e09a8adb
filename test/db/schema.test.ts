import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { dumpSchema } from '../helpers/schemaDump';

const SNAPSHOT = path.join(__dirname, '..', '..', 'sql', 'current', 'schema.sql');

/**
 * sql/current/schema.sql is the schema a fresh `migrate` leaves: the one place to read the
 * current tables and function bodies (the numbered migrations keep every earlier version too).
 * `npm run docs:schema` rewrites it.
 */
describe('the current schema (sql/current/schema.sql)', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(() => db.drop());

  it('is what a freshly migrated database holds', async () => {
    const now = await dumpSchema(db.owner());
    if (process.env.UPDATE_SCHEMA_SNAPSHOT === '1') writeFileSync(SNAPSHOT, now);
    expect(now).toEqual(readFileSync(SNAPSHOT, 'utf8'));
  });

  it('holds one definition of each function, the one a migrated database runs', async () => {
    const text = readFileSync(SNAPSHOT, 'utf8');
    const names = [...text.matchAll(/^CREATE OR REPLACE FUNCTION public\.(\w+)\(/gm)].map((m) => m[1]);
    expect(names).toEqual(expect.arrayContaining(['email_claim_event', 'email_record_outcome', 'email_quota_take', 'admin_api_key_lookup']));
    expect(new Set(names).size).toBe(names.length);
  });
});
