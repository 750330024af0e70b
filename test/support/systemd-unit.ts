/**
 * Reads a systemd unit file (systemd.syntax(7)) as far as the deployment test
 * needs: [Section] headers, Key=Value lines (a key may repeat; an empty value
 * resets the list, as systemd does), comments, and the quoting of
 * Environment= and command lines. `systemd-analyze verify` checks the rest.
 */

export interface Unit {
  /** Every value of `key` in `section`, in order (after resets). */
  all(section: string, key: string): string[];
  /** The last value of `key` in `section`, or undefined. */
  get(section: string, key: string): string | undefined;
}

export function parseUnit(text: string): Unit {
  const values = new Map<string, string[]>();
  let section: string | undefined;
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = header[1];
      continue;
    }
    const pair = /^([A-Za-z0-9]+)\s*=\s*(.*)$/.exec(line);
    if (!pair || section === undefined || line.endsWith("\\")) throw new Error(`unit line ${i + 1}: cannot read "${raw}"`);
    const id = `${section}/${pair[1]}`;
    values.set(id, pair[2] === "" ? [] : [...(values.get(id) ?? []), pair[2]!]);
  }
  return {
    all: (s, k) => values.get(`${s}/${k}`) ?? [],
    get: (s, k) => values.get(`${s}/${k}`)?.at(-1),
  };
}

/** Splits a value into words the way systemd does for Environment= and Exec*= (double or single quotes group). */
export function unitWords(value: string): string[] {
  return [...value.matchAll(/"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g)].map((m) => m[1]?.replace(/\\(.)/g, "$1") ?? m[2] ?? m[3]!);
}

/** The NAME=value assignments of Environment= values. */
export function environmentOf(values: string[]): [string, string][] {
  return values.flatMap(unitWords).map((word) => {
    const at = word.indexOf("=");
    if (at <= 0) throw new Error(`Environment=${word}: expected NAME=value`);
    return [word.slice(0, at), word.slice(at + 1)] as [string, string];
  });
}

/** The NAME=value lines of an EnvironmentFile (comments and blank lines skipped). */
export function environmentFile(text: string): [string, string][] {
  return text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => {
      const at = l.indexOf("=");
      if (at <= 0) throw new Error(`environment file line "${l}": expected NAME=value`);
      return [l.slice(0, at), l.slice(at + 1)] as [string, string];
    });
}

/** The names an environment file shows as commented examples ("# NAME=value"). */
export function exampleNames(text: string): string[] {
  return [...text.matchAll(/^#\s*([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]!);
}
