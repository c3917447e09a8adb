import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { makeApp, type AppState } from './app';
import { type Config } from './config';
import { createSql, type Sql } from './db/connect';
import { bounded } from './db/deadline';
import { createDeliveryStore } from './db/deliveries';
import { storeDeadLetter } from './db/deadLetters';
import { assertReachable } from './db/probe';
import { listen } from './net/listen';
import { assertKeysOpenSettings } from './db/keyCheck';
import { assertAdminFunctions, assertSafeWorkerRole } from './db/roleCheck';
import { templateReader } from './db/templates';
import type { Logger } from './logger';
import { ProviderClients, providerOptions } from './providers/clients';
import { WorkerMetrics } from './telemetry/metrics';
import { startTracing } from './telemetry/tracing';
import { packageVersion } from './version';
import { LateWrites } from './worker/lateWrites';
import { createEventProcessor } from './worker/processEvent';
import { UnsubscribeTokens } from './feedback/unsubscribe';
import { ProviderSwitch } from './worker/providerSwitch';
import { listDisabledProviders } from './db/providerSwitch';
import type { AdminDeps } from './admin/deps';
import { databaseUrlSetting, requireDatabaseUrl, requireKeyRing, startupProbeMs } from './config/require';

export interface RunningWorker {
  port: number;
  state: AppState;
  sql: Sql;
  providers: ProviderClients;
  metrics: WorkerMetrics | undefined;
  /** Stop accepting, let in-flight events finish (up to the grace period), close the pool. */
  shutdown(): Promise<void>;
}

/** Connect, check the role, listen. Nothing happens on import; index/cli call this. */
export async function startWorker(
  config: Config,
  logger: Logger,
  opts: { port?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<RunningWorker> {
  const url = requireDatabaseUrl(config);
  const keys = requireKeyRing(config);
  const tracing = await startTracing(opts.env ?? process.env, logger, packageVersion());
  const sql = createSql(url, {
    max: config.dbPoolMax,
    connectTimeoutSeconds: config.dbConnectTimeoutSeconds,
    statementTimeoutMs: config.dbStatementTimeoutMs,
    applicationName: 'tenant-email-worker',
    pooler: config.dbPooler,
    prepare: config.dbPreparedStatements,
  });
  try {
    await assertReachable(sql, url, databaseUrlSetting(config), startupProbeMs(config));
    await assertSafeWorkerRole(sql);
    if (config.admin) await assertAdminFunctions(sql);
    await assertKeysOpenSettings(sql, keys, startupProbeMs(config));
  } catch (err) {
    await sql.end({ timeout: 1 });
    throw err;
  }

  const providers = new ProviderClients(providerOptions(config));
  const deliveries = createDeliveryStore(sql, {
    keys,
    leaseSeconds: config.claimLeaseSeconds,
    globalDailyLimit: config.global ? config.global.dailyLimit : null,
    claimWaitMs: config.dbPoolWaitMs,
  });
  const state: AppState = { draining: false, inFlight: 0 };
  const lateWrites = new LateWrites((what) => metrics?.lateWriteDropped(what));
  // The outage switch: PROVIDERS_DISABLED, and the database's list refreshed off the event path.
  const providerSwitch = new ProviderSwitch(
    new Set(config.providersDisabled),
    async () => (await listDisabledProviders(sql)).map((d) => d.provider),
    (disabled, failed) => {
      if (failed) logger.warn({ providers_disabled: disabled }, 'could not read the provider outage switch; keeping the last state');
      else logger.warn({ providers_disabled: disabled }, disabled.length > 0 ? 'provider outage switch: these providers are out of service' : 'provider outage switch: every provider is in service');
    },
  );
  const metrics = config.metricsEnabled
    ? new WorkerMetrics({ eventTypes: config.eventTypes, tenantLabels: config.metricsTenantLabels }, () => state.inFlight, () => lateWrites.size, () => providerSwitch.list())
    : undefined;
  const processEvent = createEventProcessor({
    config,
    deliveries,
    providers,
    metrics,
    lateWrites,
    loadTemplate: templateReader(sql),
    unsubscribeTokens: config.feedback.publicBaseUrl ? new UnsubscribeTokens(keys) : undefined,
    providerSwitch,
  });
  providerSwitch.start(config.providerSwitchRefreshMs);
  if (config.providersDisabled.length > 0) logger.warn({ providers_disabled: config.providersDisabled }, 'PROVIDERS_DISABLED: these providers are out of service');
  if (!config.admin) {
    logger.info('admin API off (ADMIN_API_ENABLED=false)');
  }
  // Delivery-feedback events go out from the server that applies the webhooks (the admin API's).
  const outbox =
    config.admin && config.feedback.sink
      ? // eslint-disable-next-line @typescript-eslint/no-require-imports
        new (require('./admin/outboxPublisher') as typeof import('./admin/outboxPublisher')).OutboxPublisher({
          sql, sink: config.feedback.sink, source: config.replyEventSource, extensions: { ...config.feedback.sinkExtensions }, logger, metrics,
        })
      : undefined;
  const adminDeps: AdminDeps | undefined = config.admin ? { config: config as AdminDeps['config'], sql, keys, providers, logger, processEvent, metrics, outbox } : undefined;
  const app = makeApp({
    config,
    logger,
    state,
    processEvent,
    metrics,
    storeDeadLetter: config.deadLetterStore ? (d) => storeDeadLetter(sql, d) : undefined,
    // The admin API (jose, its schemas, the OpenAPI document) is loaded only when it is on.
    ...(adminDeps
      ? {
          // eslint-disable-next-line @typescript-eslint/no-require-imports
          adminRouter: (require('./admin/router') as typeof import('./admin/router')).makeAdminRouter(adminDeps),
          feedbackRouters: {
            // eslint-disable-next-line @typescript-eslint/no-require-imports
            webhooks: (require('./admin/webhookRouter') as typeof import('./admin/webhookRouter')).makeWebhookRouter(adminDeps),
            // eslint-disable-next-line @typescript-eslint/no-require-imports
            unsubscribe: (require('./admin/unsubscribeRouter') as typeof import('./admin/unsubscribeRouter')).makeUnsubscribeRouter(adminDeps),
          },
        }
      : {}),
    checkReady: async () => {
      await bounded(sql`SELECT 1`, config.dbConnectTimeoutSeconds * 1000);
      return true;
    },
  });

  const wanted = opts.port ?? config.port;
  let server: Server;
  try {
    server = await listen((done) => app.listen(wanted, done), wanted, 'the worker', 'PORT (serve --port)');
  } catch (err) {
    await providers.closeAll();
    await sql.end({ timeout: 1 });
    await tracing?.shutdown();
    throw err;
  }
  // Longer than any load balancer's idle timeout, so it is never the one to drop a kept-alive socket.
  server.keepAliveTimeout = 65_000;
  const port = (server.address() as AddressInfo).port;
  logger.info({ port, global_fallback: Boolean(config.global), event_types: config.eventTypes }, 'worker listening');
  if (outbox) {
    outbox.start();
    logger.info('delivery-feedback events are published to K_SINK');
  }

  let closing: Promise<void> | undefined;
  const shutdown = () =>
    (closing ??= (async () => {
      state.draining = true;
      logger.info({ in_flight: state.inFlight }, 'draining');
      // The listener stays open while events finish: probes see /readyz 503 and a new event gets
      // 503 shutting_down (the broker retries it on another instance) instead of a refused connection.
      server.closeIdleConnections();
      const deadline = Date.now() + config.shutdownGraceMs;
      while (state.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      if (state.inFlight > 0) logger.warn({ in_flight: state.inFlight }, 'grace period over with events still in flight');
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      // Answers already written get a moment to flush before any socket still open is cut.
      await Promise.race([closed, new Promise((r) => setTimeout(r, 500).unref())]);
      server.closeAllConnections();
      await closed;
      await providers.closeAll();
      providerSwitch.stop();
      await outbox?.stop();
      // Ledger writes still waiting for the database get one last try while the pool is open.
      if (lateWrites.size > 0) {
        logger.info({ pending: lateWrites.size }, 'writing the ledger entries the database missed');
        await lateWrites.flush();
      }
      await sql.end({ timeout: 5 });
      await tracing?.shutdown();
      logger.info('stopped');
    })());

  return { port, state, sql, providers, metrics, shutdown };
}
