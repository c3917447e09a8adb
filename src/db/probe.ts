import { connect } from 'node:net';
import type { Sql } from './connect';
import { bounded } from './deadline';
import { UsageError } from '../errors';

/**
 * The first thing every entry point does with a database URL: one `SELECT 1` within a deadline.
 * postgres.js retries a connection for as long as a query waits, so without this a URL that
 * points at something other than PostgreSQL (an HTTP server, a port that accepts and says
 * nothing) leaves `serve`, `migrate` and every CLI command waiting forever, printing nothing.
 *
 * On failure the error names the setting (`DATABASE_URL`, …) and what was found at its host and
 * port, never the URL itself (it carries the password).
 */

/** Where a URL points, for messages: host:port, or the socket directory. Never user or password. */
export function describeTarget(url: string): { where: string; tcp?: { host: string; port: number } } {
  try {
    const u = new URL(url);
    const socketDir = u.searchParams.get('host');
    if (socketDir?.startsWith('/')) return { where: `the socket in ${socketDir}` };
    const host = decodeURIComponent(u.hostname).replace(/^\[|\]$/g, '') || 'localhost';
    const port = Number(u.port || 5432);
    return { where: `${host.includes(':') ? `[${host}]` : host}:${port}`, tcp: { host, port } };
  } catch {
    return { where: 'a URL that does not parse' };
  }
}

/**
 * What answers at host:port: PostgreSQL answers the 8-byte SSLRequest with one byte, `S` or `N`.
 * Anything else is described by its first printable characters.
 */
export function sniffListener(host: string, port: number, ms: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    let done = false;
    const finish = (what: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(what);
    };
    let connected = false;
    const timer = setTimeout(
      () => finish(connected ? `accepts connections but says nothing (waited ${ms} ms)` : `did not accept a connection within ${ms} ms (a firewall, or the wrong host?)`),
      ms,
    );
    socket.once('connect', () => {
      connected = true;
      socket.write(Buffer.from([0, 0, 0, 8, 4, 210, 22, 47]));
    });
    socket.once('data', (d: Buffer) => {
      if (d.length === 1 && (d[0] === 0x53 || d[0] === 0x4e)) return finish('answers as PostgreSQL, but no connection completed in time (overloaded, or a pooler without a server?)');
      const text = d.toString('latin1', 0, Math.min(d.length, 60)).replace(/[^\x20-\x7e]+/g, ' ').trim();
      finish(`is not PostgreSQL: it answered ${JSON.stringify(text)}${/^HTTP\//.test(text) ? ' (an HTTP server)' : ''}`);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => finish(`could not be reached (${err.code ?? err.message})`));
    socket.once('close', () => finish('closed the connection without answering'));
  });
}

/**
 * Check that `sql` reaches PostgreSQL within `ms`. `setting` names the variable the URL came
 * from. Throws UsageError with a fix-it message; errors PostgreSQL itself reports (a
 * wrong password, a missing database) keep their code and say which setting to fix.
 */
export async function assertReachable(sql: Sql, url: string, setting: string, ms: number): Promise<void> {
  try {
    await bounded(sql`SELECT 1`, ms);
    return;
  } catch (err) {
    const e = err as { code?: string; message?: string; hostname?: string };
    const target = describeTarget(url);
    const at = `${setting} points at ${target.where}, which`;
    switch (e.code) {
      case 'ENOTFOUND':
      case 'EAI_AGAIN':
        throw new UsageError(`${setting}: the host of ${target.where} could not be resolved (${e.code}); check the host name and DNS`);
      case 'ECONNREFUSED':
        throw new UsageError(`${at} refused the connection (ECONNREFUSED): is PostgreSQL running and listening there?`);
      case 'EHOSTUNREACH':
      case 'ENETUNREACH':
      case 'ETIMEDOUT':
        throw new UsageError(`${at} could not be reached (${e.code}); check the host, port and network policy`);
      case 'CONNECT_TIMEOUT':
      case 'DEADLINE': {
        const found = target.tcp ? await sniffListener(target.tcp.host, target.tcp.port, 2000) : 'did not answer';
        throw new UsageError(`${at} ${found}; no database connection within ${ms} ms. Check ${setting}`);
      }
      default:
        // A PostgreSQL error (28P01 wrong password, 3D000 no such database, …): its message is the server's.
        if (e.code && /^[0-9A-Z]{5}$/.test(e.code)) {
          throw new UsageError(`${setting} (${target.where}): ${e.message ?? 'connection failed'} (${e.code})`);
        }
        throw new UsageError(`${at} could not be used: ${e.message ?? String(err)}${e.code ? ` (${e.code})` : ''}`);
    }
  }
}
