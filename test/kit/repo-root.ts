/**
 * Where the repository and its test tools are, found the same way from the
 * TypeScript sources (jest) and from the build (dist/test/kit, for the
 * benchmarks): the nearest folder up from here holding bin/filestorage.js
 * (dist/ holds a copy of package.json, so the manifest alone does not tell).
 */
import * as fs from "node:fs";
import * as path from "node:path";

let found: string | undefined;

/** The repository root; throws when this file is not inside a checkout. */
export function repoRoot(): string {
  if (found !== undefined) return found;
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, "bin", "filestorage.js"))) return (found = dir);
    if (path.dirname(dir) === dir) throw new Error(`cannot find the filestorage repository above ${__dirname}`);
  }
}

/** A pinned tool that test/setup/install-tools.sh installs into .test-tools/bin (the path, whether it exists or not). */
export function toolPath(name: string): string {
  return path.join(repoRoot(), ".test-tools", "bin", name);
}
