import type { ChildProcessByStdio } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { noteOutput } from './canary';

export interface ServeOutput {
  port: number;
  /** Every stdout line so far (JSON log lines), kept as the process runs. */
  lines: string[];
  /** Everything written to stderr so far. */
  stderr: () => string;
}

/**
 * Wait for a spawned `tenant-email serve` to log "worker listening" and return its port, while
 * keeping its stdout lines and stderr for the test's own checks (e.g. no canary in the output).
 * Rejects with the stderr if the process exits first.
 */
export function serveOutput(child: ChildProcessByStdio<null, Readable, Readable>): Promise<ServeOutput> {
  const lines: string[] = [];
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += String(d);
    noteOutput('process stderr', String(d));
  });
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (l) => {
      lines.push(l);
      noteOutput('process stdout', l);
      const j = JSON.parse(l) as { msg?: string; port?: number };
      if (j.msg === 'worker listening') resolve({ port: j.port!, lines, stderr: () => stderr });
    });
    child.once('exit', (code) => reject(new Error(`exited ${code}: ${stderr}`)));
  });
}
