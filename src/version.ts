import { readFileSync } from 'node:fs';
import path from 'node:path';
import { packageRoot } from './core/packageRoot';

let version: string | undefined;

/** The package version, for the OpenAPI document and the trace resource. */
export function packageVersion(): string {
  return (version ??= (JSON.parse(readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version);
}
