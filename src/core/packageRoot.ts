import { existsSync } from 'node:fs';
import path from 'node:path';

let root: string | undefined;

/**
 * The directory of this package's package.json, found by walking up from the compiled file:
 * dist/ in the image, dist-tools/src/ for `npm start` and the bench, src/ under the tests. The
 * SQL files and the version are read relative to it.
 */
export function packageRoot(): string {
  if (root) return root;
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'sql'))) return (root = dir);
    if (path.dirname(dir) === dir) throw new Error(`no package root (package.json beside sql/) above ${__dirname}`);
  }
}
