/**
 * The TypeScript client as a service installs it (issue 11): `npm pack
 * ./client` gives a tarball with its compiled code and types, an empty
 * project installs it (and `npm i <repo>/client` works too, as the README
 * shows), the shared scenario (test/polyglot/scenario.ts) type-checks against
 * the installed package alone (its .d.ts files, not this repository's
 * sources) and passes against a real daemon.
 *
 * npm fetches @grpc/grpc-js and @bufbuild/protobuf for the new project; with
 * --prefer-offline they come from the npm cache `npm ci` filled.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { describeRun, runTool, type ToolRun } from "../support/run-tool.js";
import { makeTempDir, type TempDir } from "../kit/temp-dir.js";

const ROOT = path.resolve(__dirname, "../..");
const TSC = path.join(ROOT, "node_modules/typescript/bin/tsc");
const NPM_FLAGS = ["--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"];

let daemon: TestDaemon;
let tmp: TempDir;

beforeAll(async () => {
  daemon = await startDaemon();
  tmp = await makeTempDir("filestorage-ts-package-");
});

afterAll(async () => {
  await daemon?.stop();
  await tmp?.cleanup();
});

async function run(what: string, file: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): Promise<ToolRun> {
  const r = await runTool(file, args, { cwd, env, timeoutMs: 240_000 });
  if (r.code !== 0) throw new Error(describeRun(what, r));
  return r;
}

/** A new project with the scenario in it, compiled against whatever `install` put in node_modules. */
async function project(name: string, install: string[]): Promise<string> {
  const dir = path.join(tmp.path, name);
  await fs.mkdir(dir);
  await fs.writeFile(path.join(dir, "package.json"), JSON.stringify({ name, version: "1.0.0", private: true }));
  await run(`npm install ${install.join(" ")}`, "npm", ["install", ...NPM_FLAGS, ...install], dir);
  await fs.copyFile(path.join(ROOT, "test/polyglot/scenario.ts"), path.join(dir, "scenario.ts"));
  await fs.writeFile(
    path.join(dir, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        target: "ES2022",
        module: "NodeNext",
        moduleResolution: "NodeNext",
        strict: true,
        // Node's types from this repository; the client's own types only from the installed package.
        typeRoots: [path.join(ROOT, "node_modules/@types")],
        types: ["node"],
        outDir: "out",
      },
      files: ["scenario.ts"],
    }),
  );
  await run("tsc (scenario against the installed client)", process.execPath, [TSC, "-p", dir], dir);
  return dir;
}

async function scenario(dir: string, prefix: string): Promise<ToolRun> {
  return run("node out/scenario.js", process.execPath, ["out/scenario.js"], dir, {
    ...process.env,
    FILESTORAGE_ADDRESS: daemon.address,
    SCENARIO_PREFIX: prefix,
  });
}

test("npm pack ./client gives a package with code and types that installs and passes the scenario", async () => {
  const pack = await run("npm pack ./client", "npm", ["pack", "./client", "--pack-destination", tmp.path, "--json", "--loglevel=error"], ROOT);
  const [{ filename, files }] = JSON.parse(pack.stdout) as [{ filename: string; files: { path: string }[] }];
  const packed = files.map((f) => f.path);
  expect(packed).toEqual(expect.arrayContaining(["package.json", "LICENSE", "dist/client/src/index.js", "dist/client/src/index.d.ts", "dist/gen/filestorage/v1/file_storage_pb.d.ts"]));
  // No sources, tests or maps of the repository ride along.
  expect(packed.filter((p) => !p.startsWith("dist/") && !["package.json", "README.md", "LICENSE"].includes(p))).toEqual([]);

  const dir = await project("from-tarball", [path.join(tmp.path, path.basename(filename))]);
  const installed = await fs.lstat(path.join(dir, "node_modules/@filestorage/client"));
  expect(installed.isDirectory()).toBe(true);
  const r = await scenario(dir, `ts-pack/${process.pid}/`);
  expect(r.stdout).toMatch(/scenario: step 6 \(stream\) held/);
  expect(r.stdout.trim().split("\n").at(-1)).toBe("scenario: every step held");
}, 300_000);

test("npm i <repo>/client installs the built client the README shows", async () => {
  const dir = await project("from-folder", [path.join(ROOT, "client")]);
  const r = await scenario(dir, `ts-folder/${process.pid}/`);
  expect(r.stdout.trim().split("\n").at(-1)).toBe("scenario: every step held");
}, 300_000);
