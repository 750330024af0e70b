/**
 * The shape of one setting: its definition in the table (SettingDef: a value
 * kind plus names, default and description) and its row as printed
 * (SettingInfo). Raw defaults are written as a user would write them and go
 * through the same schema as any other value.
 */
import type { Kind } from "./value-kinds.js";

/** One row of the settings table, as printed by `--help` and the README. */
export interface SettingInfo {
  /** camelCase name of the raw setting. */
  name: string;
  env: string;
  /** Key in the JSON config file; absent when the file cannot set it. */
  fileKey?: string;
  /** CLI flag (commander passes it camelCased, e.g. --max-retries -> maxRetries); absent for secrets. */
  flag?: string;
  /** Default as written in env form; absent when unset by default. */
  default?: string;
  /** What a valid value looks like. */
  allowed: string;
  description: string;
}

export interface SettingDef extends Kind {
  env: string;
  description: string;
  default?: unknown;
  /** Shown instead of String(default). */
  defaultText?: string;
  /** Never echo the value in a message, and offer no CLI flag (flags show in `ps`). */
  secret?: boolean;
  /** The config file cannot set it. */
  notInFile?: boolean;
  /** Overrides the flag derived from the env name. */
  flag?: string;
}
