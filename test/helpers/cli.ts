import { PassThrough, Writable } from 'node:stream';
import { runCli } from '../../src/cli';
import { noteOutput } from './canary';

/** Run the CLI in-process with real streams; stdin gets `stdinText`. */
export async function cli(args: string[], env: Record<string, string>, stdinText = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const sink = (a: string[]) => new Writable({ write(c, _e, cb) { a.push(String(c)); cb(); } });
  const stdin = new PassThrough();
  stdin.end(stdinText);
  const code = await runCli(args, { stdin, stdout: sink(out), stderr: sink(err), env });
  noteOutput('cli stdout', out.join(''));
  noteOutput('cli stderr', err.join(''));
  return { code, stdout: out.join(''), stderr: err.join('') };
}
