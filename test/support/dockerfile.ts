/**
 * Reads a Dockerfile the way the builder does, as far as the deployment test
 * needs: comment lines dropped, backslash continuations joined, instructions
 * grouped into stages (FROM base [AS name]), and the argument forms of ENV,
 * COPY, CMD and HEALTHCHECK taken apart. Not a general parser: no parser
 * directives, heredocs or build arguments (the project's Dockerfile has none,
 * and parseDockerfile refuses them rather than misread them).
 */

export interface Instruction {
  /** Upper-cased, e.g. "COPY". */
  keyword: string;
  /** Everything after the keyword, continuations joined with a space. */
  args: string;
  /** 1-based line where it starts. */
  line: number;
}

export interface Stage {
  base: string;
  name?: string;
  instructions: Instruction[];
}

/** The stages of `text`, in order. */
export function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  let pending: { text: string; line: number } | undefined;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    if (/^\s*#/.test(raw) || (pending === undefined && raw.trim() === "")) continue;
    const continued = /\\\s*$/.test(raw);
    const piece = raw.replace(/\\\s*$/, "").trim();
    pending = pending ? { text: `${pending.text} ${piece}`, line: pending.line } : { text: piece, line: i + 1 };
    if (continued) continue;
    const match = /^(\w+)\s*(.*)$/.exec(pending.text);
    if (!match) throw new Error(`Dockerfile line ${pending.line}: cannot read "${pending.text}"`);
    const instruction = { keyword: match[1]!.toUpperCase(), args: match[2]!.trim(), line: pending.line };
    pending = undefined;
    if (instruction.keyword === "ARG" || instruction.args.includes("<<")) {
      throw new Error(`Dockerfile line ${instruction.line}: build arguments and heredocs are not understood by this reader`);
    }
    if (instruction.keyword === "FROM") {
      const from = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(instruction.args);
      if (!from) throw new Error(`Dockerfile line ${instruction.line}: cannot read FROM ${instruction.args}`);
      stages.push({ base: from[1]!, name: from[2], instructions: [] });
      continue;
    }
    const stage = stages.at(-1);
    if (!stage) throw new Error(`Dockerfile line ${instruction.line}: ${instruction.keyword} before FROM`);
    stage.instructions.push(instruction);
  }
  return stages;
}

/** The instructions of `stage` with `keyword`. */
export function instructions(stage: Stage, keyword: string): Instruction[] {
  return stage.instructions.filter((i) => i.keyword === keyword);
}

/** Splits on whitespace, keeping double-quoted words together (quotes removed). */
function words(text: string): string[] {
  return [...text.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)].map((m) => (m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : m[2]!));
}

/** ENV NAME=value ... (the one-pair "ENV NAME value" form is refused: it is deprecated). */
export function envPairs(args: string): [string, string][] {
  return words(args).map((word) => {
    const at = word.indexOf("=");
    if (at <= 0) throw new Error(`ENV ${args}: expected NAME=value pairs`);
    return [word.slice(0, at), word.slice(at + 1)];
  });
}

/** An exec form (["a", "b"]) as its words, or undefined for a shell form. */
export function execForm(args: string): string[] | undefined {
  if (!args.startsWith("[")) return undefined;
  const parsed: unknown = JSON.parse(args);
  if (!Array.isArray(parsed) || !parsed.every((w) => typeof w === "string")) throw new Error(`not an exec form: ${args}`);
  return parsed as string[];
}

export interface Copy {
  from?: string;
  sources: string[];
  dest: string;
}

/** COPY [--from=stage] src... dest */
export function copyArgs(args: string): Copy {
  const parts = words(args);
  const flags = parts.filter((p) => p.startsWith("--"));
  const paths = parts.filter((p) => !p.startsWith("--"));
  const unknown = flags.filter((f) => !f.startsWith("--from="));
  if (unknown.length > 0 || paths.length < 2) throw new Error(`COPY ${args}: not understood by this reader`);
  return { from: flags[0]?.slice("--from=".length), sources: paths.slice(0, -1), dest: paths.at(-1)! };
}

export interface Healthcheck {
  /** --interval=10s etc., by name without the dashes. */
  options: Record<string, string>;
  /** The command: words of an exec form, or a string for /bin/sh -c. */
  command: string[] | string;
}

/** HEALTHCHECK [--option=value...] CMD command */
export function healthcheckArgs(args: string): Healthcheck {
  const match = /^((?:--[\w-]+=\S+\s+)*)CMD\s+(.+)$/.exec(args);
  if (!match) throw new Error(`HEALTHCHECK ${args}: expected options, then CMD`);
  const options = Object.fromEntries(words(match[1]!).map((o) => o.slice(2).split("=", 2) as [string, string]));
  return { options, command: execForm(match[2]!) ?? match[2]! };
}

/** A Docker duration ("10s", "1m30s") in seconds. */
export function durationSeconds(text: string): number {
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join("") !== text) throw new Error(`not a duration: ${text}`);
  const unit = { ms: 0.001, s: 1, m: 60, h: 3600 } as const;
  return parts.reduce((sum, p) => sum + Number(p[1]) * unit[p[2] as keyof typeof unit], 0);
}
