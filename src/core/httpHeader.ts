/** Request headers as node gives them: a repeated header is an array. */
export type HeaderMap = Record<string, string | string[] | undefined>;

/** A header's (first) value; names are lower-case in node's map. */
export function firstHeader(headers: HeaderMap, name: string): string | undefined {
  const v = headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}
