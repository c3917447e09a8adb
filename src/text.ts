/** One line of printable text: no CR, LF, NUL or other control characters, no Unicode line separators. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f\u2028\u2029]/;

export function oneLine(v: string): boolean {
  return !CONTROL.test(v);
}
