import type { Config } from '../config';
import type { Sql } from '../db/connect';
import type { KeyRing } from '../config/require';
import type { Logger } from '../logger';
import type { ProviderClients } from '../providers/clients';
import type { WorkerMetrics } from '../telemetry/metrics';
import type { EventOutcome } from '../worker/processEvent';
import type { IntakeEvent } from '../core/event';

/** What the admin API's routes (router.ts, contentRoutes.ts) are given by server.ts. */
export interface AdminDeps {
  config: Config & { admin: NonNullable<Config['admin']> };
  sql: Sql;
  keys: KeyRing;
  providers: ProviderClients;
  logger: Logger;
  processEvent: (event: IntakeEvent, log: Logger) => Promise<EventOutcome>;
  metrics?: WorkerMetrics | undefined;
  /** Set when K_SINK is: status changes go to the outbox, and a commit nudges the publisher. */
  outbox?: { nudge(): void } | undefined;
}
