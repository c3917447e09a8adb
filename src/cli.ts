#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { loadConfig } from './config';
import { migrate } from './db/migrate';
import { createLogger } from './logger';
import { startWorker } from './server';
import { registerEvents } from './commands/events';
import { registerPlatform } from './commands/platform';
import { registerFeedback } from './commands/feedback';
import { registerDeadLetters } from './commands/deadLetters';
import { registerProviders } from './commands/providers';
import { registerSettings } from './commands/settings';
import { registerTemplates } from './commands/templates';
import { print, withSql, type CliIO } from './commands/shared';
import { UsageError } from './errors';

export type { CliIO };

export function buildCli(io: CliIO): Command {
  const config = () => loadConfig(io.env);
  const program = new Command('tenant-email')
    .description("Send each tenant's task-completion emails through that tenant's own provider account.")
    .configureOutput({ writeOut: (s) => print(io.stdout, s), writeErr: (s) => print(io.stderr, s) })
    .exitOverride()
    .showHelpAfterError();

  program
    .command('migrate')
    .description('apply pending schema migrations (as the owner role: MIGRATION_DATABASE_URL, else DATABASE_URL) and the grants of the worker role (WORKER_DB_ROLE) and the admin API role (ADMIN_DB_ROLE)')
    .action(async () => {
      const cfg = config();
      const result = await withSql(cfg, 'migration', (sql) => migrate(sql, { workerRole: cfg.workerDbRole, adminRole: cfg.adminDbRole }));
      print(io.stdout, result.applied.length ? `applied: ${result.applied.join(', ')}` : 'schema is up to date');
      if (result.superuserSql.length > 0) {
        print(
          io.stderr,
          `warning: the migrating role may not set log parameters for "${[...new Set([cfg.workerDbRole, cfg.adminDbRole])].join('", "')}"; bind parameters (the encryption key)\n` +
            'could reach the server log on errors. Ask a superuser to run:\n' +
            result.superuserSql.map((s) => `  ${s}`).join('\n'),
        );
      }
    });

  program
    .command('serve')
    .description('run the worker: POST / takes CloudEvents from the Knative broker')
    .option('--port <port>', 'listen port (default: PORT, else 8080)', (v) => Number(v))
    .action(async (opts: { port?: number }) => {
      const cfg = config();
      const logger = createLogger({ level: cfg.logLevel });
      const worker = await startWorker(cfg, logger, { port: opts.port });
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          logger.info({ signal }, 'shutting down');
          void worker.shutdown().then(resolve);
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
    });

  const ctx = { io, config };
  registerSettings(program, ctx);
  registerTemplates(program, ctx);
  registerEvents(program, ctx);
  registerPlatform(program, ctx);
  registerFeedback(program, ctx);
  registerDeadLetters(program, ctx);
  registerProviders(program, ctx);
  return program;
}

/** Run the CLI; resolves to the process exit code. Errors are printed without stack or secrets. */
export async function runCli(argv: string[], io: CliIO): Promise<number> {
  const program = buildCli(io);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof UsageError) {
      print(io.stderr, `error: ${err.message}`);
      return 1;
    }
    // A WorkerError (its registry code), or a database or connection error: none carries bound values.
    const e = err as { code?: string; message?: string };
    print(io.stderr, `error: ${e.message ?? String(err)}${e.code ? ` (${e.code})` : ''}`);
    return 1;
  }
}

if (require.main === module) {
  runCli(process.argv.slice(2), { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env }).then(
    (code) => {
      process.exitCode = code;
    },
  );
}
