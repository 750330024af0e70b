/**
 * One license everywhere: the repository's LICENSE is the Apache License 2.0,
 * every package manifest says "Apache-2.0", and each package folder that is
 * packed on its own (npm pack of client/, a wheel of clients/python) ships the
 * same LICENSE text.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { repoRoot } from "../../kit/repo-root.js";

const root = repoRoot();
const read = (file: string) => fs.readFileSync(path.join(root, file), "utf8");

test("LICENSE is the Apache License 2.0 text", () => {
  const text = read("LICENSE");
  expect(text).toContain("Apache License\n                           Version 2.0, January 2004");
  expect(text).toContain("TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION");
  expect(text).toContain("END OF TERMS AND CONDITIONS");
  // The nine sections of the terms, in order.
  const sections = [...text.matchAll(/^\s+(\d)\. [A-Z]/gm)].map((m) => Number(m[1]));
  expect(sections).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
});

test("every manifest names Apache-2.0 and every packed package ships the same LICENSE", () => {
  expect((JSON.parse(read("package.json")) as { license: string }).license).toBe("Apache-2.0");
  expect((JSON.parse(read("client/package.json")) as { license: string }).license).toBe("Apache-2.0");
  expect(read("clients/python/pyproject.toml")).toMatch(/^license = "Apache-2\.0"$/m);
  for (const copy of ["client/LICENSE", "clients/python/LICENSE"]) expect(read(copy)).toBe(read("LICENSE"));
});
