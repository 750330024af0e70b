/**
 * The settings table as Markdown, exactly as the README's configuration
 * section shows it (a test keeps the two equal): `filestorage settings`.
 */
import { settings } from "./settings.js";

const code = (s: string | undefined) => (s === undefined ? "—" : `\`${s}\``);

/** One row per setting: env, file key, flag, default, what is allowed, what it does. */
export function settingsMarkdown(): string {
  const rows = settings.map((s) => `| ${code(s.env)} | ${code(s.fileKey)} | ${code(s.flag)} | ${code(s.default)} | ${s.allowed} | ${s.description} |`);
  return ["| env | file key | flag | default | allowed | what |", "|---|---|---|---|---|---|", ...rows].join("\n") + "\n";
}
