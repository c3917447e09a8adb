/**
 * One line of printable text: no control character of either set — C0 (NUL, CR, LF, …), DEL and
 * C1 (U+0080–U+009F: NEL is a line break to some mail software, CSI starts terminal escapes) —
 * and no Unicode line or paragraph separator.
 */
const CONTROL = /[\p{Cc}\u2028\u2029]/u;

export function oneLine(v: string): boolean {
  return !CONTROL.test(v);
}
