/**
 * The kinds of value a setting can take, each a zod schema that parses a raw
 * value (an env string, a JSON value from the config file, a commander value)
 * together with the words that say what is allowed, so an error message and
 * the help text never drift apart.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { z } from "zod";

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
export const TiB = 1024 * GiB;

// Value kinds. Each returns the schema that parses a raw value (an env string,
// a JSON value from the file, or a commander value) and the words that
// describe what is allowed, so the error message and the help never drift.

export interface Kind<S extends z.ZodType = z.ZodType> {
  schema: S;
  allowed: string;
}

export const UNITS: Record<string, number> = { b: 1, kib: KiB, mib: MiB, gib: GiB, tib: TiB };

/** Strings become numbers when they are plain decimals; anything else is left for the schema to reject. */
export function toNumber(value: unknown): unknown {
  if (typeof value !== "string") return value;
  const text = value.trim();
  return /^[+-]?(\d+(\.\d*)?|\.\d+)$/.test(text) ? Number(text) : value;
}

/** Like toNumber, plus binary suffixes: "4MiB", "16 KiB", "512B". */
export function toBytes(value: unknown): unknown {
  if (typeof value !== "string") return value;
  const match = /^(\d+)\s*(b|kib|mib|gib|tib)?$/i.exec(value.trim());
  return match ? Number(match[1]) * UNITS[(match[2] ?? "b").toLowerCase()] : value;
}

/** "16 KiB" for exact binary multiples, else the plain number. */
export function formatBytes(n: number): string {
  for (const [unit, size] of [["TiB", TiB], ["GiB", GiB], ["MiB", MiB], ["KiB", KiB]] as const) {
    if (n >= size && n % size === 0) return `${n / size} ${unit}`;
  }
  return String(n);
}

export const integer = (min: number, max: number) => ({
  schema: z.preprocess(toNumber, z.number().int().min(min).max(max)),
  allowed: `an integer from ${min} to ${max}`,
});

export const bytes = (min: number, max: number) => ({
  schema: z.preprocess(toBytes, z.number().int().min(min).max(max)),
  allowed: `a size in bytes from ${formatBytes(min)} to ${formatBytes(max)} (e.g. 1048576 or 1MiB)`,
});

export const seconds = (max: number, orZero: boolean) => ({
  schema: z.preprocess(toNumber, orZero ? z.number().min(0).max(max) : z.number().gt(0).max(max)),
  allowed: orZero ? `a number of seconds from 0 to ${max}` : `a number of seconds above 0 and at most ${max}`,
});

export const TRUE_WORDS = ["true", "1", "yes"];
export const FALSE_WORDS = ["false", "0", "no"];
export const boolean = {
  schema: z.preprocess((value) => {
    const word = typeof value === "string" || typeof value === "number" ? String(value).trim().toLowerCase() : value;
    if (TRUE_WORDS.includes(word as string)) return true;
    if (FALSE_WORDS.includes(word as string)) return false;
    return value;
  }, z.boolean()),
  allowed: "true, false, 1, 0, yes or no",
};

export const text = { schema: z.string().trim().min(1), allowed: "a non-empty string" };

export const folder = {
  schema: z.string().trim().min(1).transform((p) => path.resolve(p)),
  allowed: "a folder path (relative paths resolve from the working folder)",
};

export function isReadableFile(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.R_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

export const existingFile = {
  schema: z.string().trim().min(1).refine(isReadableFile).transform((p) => path.resolve(p)),
  allowed: "the path of an existing readable file",
};

export const url = (protocols: string[]) => ({
  schema: z.url({ protocol: new RegExp(`^(${protocols.join("|")})$`) }),
  allowed: `a URL starting with ${protocols.map((p) => `${p}://`).join(" or ")}`,
});

export const HOST = String.raw`[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?`;
export const host = {
  schema: z.string().trim().regex(new RegExp(`^(?:${HOST}|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$`)),
  allowed: "a host name or IP address",
};

export const hostPort = {
  schema: z
    .string()
    .trim()
    .regex(new RegExp(String.raw`^(?:${HOST}|\[[0-9A-Fa-f:.]+\]):\d{1,5}$`))
    .refine((s) => Number(s.slice(s.lastIndexOf(":") + 1)) <= 65535),
  allowed: 'host:port, e.g. "127.0.0.1:50051" or "[::1]:50051" (port 0..65535)',
};

/** A 32-byte key from its base64 text (standard or URL-safe alphabet), or undefined. */
export function decodeKey(text: string): Buffer | undefined {
  const trimmed = text.trim();
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed)) return undefined;
  const key = Buffer.from(trimmed, "base64");
  return key.length === 32 ? key : undefined;
}

export const keySchema = z.string().transform(decodeKey).pipe(z.instanceof(Buffer));
export const KEY_WORDS = "base64 of exactly 32 bytes (e.g. from `openssl rand -base64 32`)";

export function readText(p: string): string | undefined {
  try {
    return fs.readFileSync(p, "utf8");
  } catch {
    return undefined;
  }
}

export function parseJson(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Env values are JSON text; the config file holds the JSON value itself. */
export const jsonText = (value: unknown) => (typeof value === "string" ? parseJson(value) : value);

export const byteLimit = bytes(0, 5 * TiB).schema;
