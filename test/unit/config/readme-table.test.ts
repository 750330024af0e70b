/**
 * The README's configuration table is the settings table, printed by
 * `filestorage settings`: a setting added, renamed or re-described without
 * the README following fails here.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { settingsMarkdown } from "../../../server/config/settings-table.js";

test("README.md's configuration table is exactly `filestorage settings`", () => {
  const readme = fs.readFileSync(path.resolve(__dirname, "../../../README.md"), "utf8");
  const table = settingsMarkdown().trimEnd();
  expect(readme).toContain(table);
  // Every setting is a row (a sanity check on the printer itself).
  expect(table.split("\n").length).toBeGreaterThan(40);
});
