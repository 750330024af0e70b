/**
 * The settings table: every setting of the daemon, its environment name,
 * config-file key, flag, default, what is allowed and what it does. One source
 * of truth for the loader (load-config.ts), `serve --help`, `filestorage
 * settings` and the README's configuration table. The rows live in three
 * files by concern; their order here is the README table's.
 */
import type { z } from "zod";
import type { SettingDef, SettingInfo } from "./setting-def.js";
import { operationSettings } from "./settings-operation.js";
import { serviceSettings } from "./settings-service.js";
import { storageSettings } from "./settings-storage.js";

export type { SettingDef, SettingInfo } from "./setting-def.js";

export const defs = { ...storageSettings, ...serviceSettings, ...operationSettings } satisfies Record<string, SettingDef>;

export type Defs = typeof defs;
export type SettingName = keyof Defs;

/** Parsed values: settings with a default always have one. */
export type Values = {
  [K in SettingName]: Defs[K] extends { schema: infer S extends z.ZodType; default: {} }
    ? z.output<S>
    : Defs[K] extends { schema: infer S extends z.ZodType }
      ? z.output<S> | undefined
      : never;
};

export const defList = Object.entries(defs) as [SettingName, SettingDef][];

export const flagOf = (d: SettingDef) => (d.secret ? undefined : (d.flag ?? `--${d.env.toLowerCase().replaceAll("_", "-")}`));
/** commander's camelCase of a flag: --max-retries -> maxRetries. */
export const flagKey = (flag: string) => flag.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
export const fileKeyOf = (d: SettingDef) => (d.notInFile ? undefined : d.env.toLowerCase());

/** Every setting, in the order of the README table. One source of truth with the parsing below. */
export const settings: readonly SettingInfo[] = defList.map(([name, d]) => ({
  name,
  env: d.env,
  fileKey: fileKeyOf(d),
  flag: flagOf(d),
  default: d.defaultText ?? (d.default === undefined ? undefined : String(d.default)),
  allowed: d.allowed,
  description: d.description,
}));
