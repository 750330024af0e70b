/**
 * The deployment files in deploy/ (Dockerfile, compose.yaml, the systemd unit
 * and its environment file), read and run. No container engine or systemd
 * runs here, so each file is read for what it promises (stages, a non-root
 * user, pinned versions, settings that exist, stop timeouts above the
 * daemon's shutdown bound) and the commands it runs are taken out of it and
 * run outside a container: the runtime stage's COPY lines assembled into a
 * folder, its CMD started there with its ENV, its HEALTHCHECK run as written,
 * its STOPSIGNAL sent; compose's emulator and Redis started with their
 * commands and health checks; the unit's ExecStart, ExecReload and
 * KillSignal. The only changes made to what the files say: ports become free
 * ones, the service host names (gcs, redis) and 0.0.0.0 become 127.0.0.1
 * (the machine is shared), and absolute paths move under a temp folder.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { ChildProcess } from "node:child_process";
import { spawn } from "node:child_process";
import { parse as parseYaml } from "yaml";
import { FileStorageClient } from "../../client/src/index.js";
import { settings } from "../../server/config/settings.js";
import { spawnServerProcess, type DaemonProcess } from "../kit/daemon-process.js";
import { FAKE_GCS_BIN } from "../kit/fake-gcs.js";
import { freePort } from "../kit/free-port.js";
import { MALLOC_TUNING } from "../kit/malloc-tuning.js";
import { repoRoot, toolPath } from "../kit/repo-root.js";
import { makeTempDir, type TempDir } from "../kit/temp-dir.js";
import { copyArgs, durationSeconds, envPairs, execForm, healthcheckArgs, instructions, parseDockerfile, type Stage } from "../support/dockerfile.js";
import { describeRun, runTool } from "../support/run-tool.js";
import { environmentFile, environmentOf, exampleNames, parseUnit, unitWords } from "../support/systemd-unit.js";

const root = repoRoot();
const read = (file: string) => fs.readFileSync(path.join(root, file), "utf8");

const stages = parseDockerfile(read("deploy/Dockerfile"));
const compose = parseYaml(read("deploy/compose.yaml")) as Compose;
const unit = parseUnit(read("deploy/filestorage.service"));
const envFileText = read("deploy/filestorage.env");
const installer = read("test/setup/install-tools.sh");
const packageBin = (JSON.parse(read("package.json")) as { bin: Record<string, string> }).bin.filestorage!;

interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile: string };
  command?: string[];
  environment?: Record<string, string>;
  healthcheck?: { test: string[]; interval?: string; retries?: number };
  ports?: string[];
  volumes?: string[];
  depends_on?: Record<string, { condition: string }>;
  stop_signal?: string;
  stop_grace_period?: string;
}
interface Compose {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

/** Variables the files may set that are not settings of the daemon, and why they are there. */
const NOT_SETTINGS: Record<string, string> = {
  NODE_ENV: "Node's production mode",
  MALLOC_MMAP_THRESHOLD_: "glibc malloc tuning, as npm start (test/kit/malloc-tuning.ts)",
  MALLOC_TRIM_THRESHOLD_: "glibc malloc tuning, as npm start (test/kit/malloc-tuning.ts)",
};
const SETTING_NAMES = new Set(settings.map((s) => s.env));
/** README "Shutdown and exit": the process always exits within SHUTDOWN_GRACE_SECONDS + 15 s. */
const CLOSE_SECONDS = 15;
const DEFAULT_GRACE = Number(settings.find((s) => s.env === "SHUTDOWN_GRACE_SECONDS")!.default);

function pinned(name: string): string {
  const m = new RegExp(`^${name}="(.+)"$`, "m").exec(installer);
  if (!m) throw new Error(`test/setup/install-tools.sh pins no ${name}`);
  return m[1]!;
}

function expectKnownNames(names: string[], where: string): void {
  const unknown = names.filter((n) => !SETTING_NAMES.has(n) && !(n in NOT_SETTINGS));
  expect({ where, unknown }).toEqual({ where, unknown: [] });
}

function stage(name: string): Stage {
  const found = stages.find((s) => s.name === name);
  if (!found) throw new Error(`deploy/Dockerfile has no stage "${name}"`);
  return found;
}
const lastArgs = (s: Stage, keyword: string) => instructions(s, keyword).at(-1)?.args;
const runtime = stages.at(-1)!;
const runtimeEnv = Object.fromEntries(instructions(runtime, "ENV").flatMap((i) => envPairs(i.args)));
const cmd = execForm(lastArgs(runtime, "CMD") ?? "")!;
const healthcheck = healthcheckArgs(lastArgs(runtime, "HEALTHCHECK") ?? "");
const stopSignal = (lastArgs(runtime, "STOPSIGNAL") ?? "SIGTERM") as NodeJS.Signals;
const exposed = (lastArgs(runtime, "EXPOSE") ?? "").split(/\s+/);
const portOf = (address: string) => address.slice(address.lastIndexOf(":") + 1);

// --- running what the files run ---------------------------------------------

const started: ChildProcess[] = [];
const temps: TempDir[] = [];
afterAll(async () => {
  for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  for (const t of temps) await t.cleanup();
});

async function tempDir(label: string): Promise<string> {
  const t = await makeTempDir(label);
  temps.push(t);
  return t.path;
}

/**
 * Replaces, in every string of `value`, the service hosts and 0.0.0.0 by
 * 127.0.0.1 and each port of `ports` by its free stand-in.
 */
function relocate<T>(value: T, ports: Map<string, string>): T {
  const text = JSON.stringify(value)
    .replace(/\b0\.0\.0\.0\b/g, "127.0.0.1")
    .replace(/\b(?:gcs|redis)(?=:\d)/g, "127.0.0.1")
    .replace(/\b\d{2,5}\b/g, (n) => ports.get(n) ?? n);
  return JSON.parse(text) as T;
}

/** Free stand-ins for `ports`. */
async function freePorts(ports: string[]): Promise<Map<string, string>> {
  const map = new Map<string, string>();
  for (const p of ports) map.set(p, String(await freePort()));
  return map;
}

/**
 * The runtime stage's files assembled as its COPY lines say, under `fakeRoot`
 * (absolute paths move under it; WORKDIR is its working folder). Files of the
 * build stage come from this checkout (built: `npm run build`); the probe
 * stage's binary is the one install-tools.sh built. node_modules is linked
 * entry by entry rather than copied, keeping its relative links (the
 * workspace's @filestorage/client -> ../../client resolves to the copy).
 */
function assembleRuntime(fakeRoot: string): string {
  const build = stage("build");
  const buildDir = lastArgs(build, "WORKDIR")!;
  const workdir = lastArgs(runtime, "WORKDIR")!;
  const inRoot = (p: string) => path.join(fakeRoot, path.posix.isAbsolute(p) ? p : path.posix.join(workdir, p));
  for (const volume of (lastArgs(runtime, "VOLUME") ?? "").split(/\s+/).filter(Boolean)) fs.mkdirSync(inRoot(volume), { recursive: true, mode: 0o700 });
  for (const copy of instructions(runtime, "COPY").map((i) => copyArgs(i.args))) {
    expect(copy.sources).toHaveLength(1);
    const dest = inRoot(copy.dest);
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    if (copy.from === "probe") {
      fs.symlinkSync(toolPath(path.basename(copy.sources[0]!)), dest);
      continue;
    }
    expect(copy.from).toBe("build");
    const source = path.join(root, path.posix.relative(buildDir, copy.sources[0]!));
    if (path.basename(source) === "node_modules") linkModules(source, dest);
    else fs.cpSync(source, dest, { recursive: true });
  }
  return inRoot(workdir);
}

function linkModules(from: string, to: string): void {
  fs.mkdirSync(to, { recursive: true });
  for (const entry of fs.readdirSync(from, { withFileTypes: true })) {
    const source = path.join(from, entry.name);
    if (entry.isSymbolicLink()) fs.symlinkSync(fs.readlinkSync(source), path.join(to, entry.name));
    else if (entry.name.startsWith("@")) linkModules(source, path.join(to, entry.name));
    else fs.symlinkSync(fs.realpathSync(source), path.join(to, entry.name));
  }
}

/** Runs a health check's command until it passes (at most `retries` times); returns the last run's output. */
async function passHealthcheck(command: string[] | string, env: NodeJS.ProcessEnv, retries = 20): Promise<string> {
  const [file, ...args] = typeof command === "string" ? ["/bin/sh", "-c", command] : command;
  let last = "";
  for (let i = 0; i < retries; i++) {
    const r = await runTool(file!, args, { env, timeoutMs: 10_000 });
    if (r.code === 0) return r.stdout + r.stderr;
    last = describeRun(`health check ${JSON.stringify(command)}`, r);
    await new Promise((res) => setTimeout(res, 250));
  }
  throw new Error(last);
}

/** Sends `signal` and resolves with the exit code and the seconds it took. */
async function stopWith(daemon: DaemonProcess, signal: NodeJS.Signals): Promise<{ code: number | null; seconds: number }> {
  const t0 = Date.now();
  const { code } = await daemon.kill(signal);
  return { code, seconds: (Date.now() - t0) / 1000 };
}

async function storeAndRead(address: string): Promise<string> {
  const client = new FileStorageClient(address);
  try {
    const info = await client.store("deploy/check", "stored by the deployment test");
    expect(await client.retrieve("deploy/check")).toBe("stored by the deployment test");
    return info.backend;
  } finally {
    client.close();
  }
}

/** A PATH where the runtime's tools come first, then this node, then the tools install-tools.sh made. */
const pathWith = (...dirs: string[]) => [...dirs, path.dirname(process.execPath), path.dirname(toolPath("x")), process.env.PATH ?? ""].join(":");

// --- the Dockerfile ----------------------------------------------------------

describe("deploy/Dockerfile", () => {
  test("builds in stages: the pinned probe, npm ci + build + prune, a slim non-root runtime", () => {
    expect(stages.map((s) => s.name)).toEqual(["probe", "build", "runtime"]);
    expect(stage("probe").base).toMatch(/^golang:\d+\.\d+/);
    expect(lastArgs(stage("probe"), "RUN")).toContain(`go install github.com/grpc-ecosystem/grpc-health-probe@${pinned("HEALTH_PROBE_VERSION")}`);
    expect(stage("build").base).toMatch(/^node:20-/);
    expect(lastArgs(stage("build"), "RUN")).toMatch(/npm ci && npm run build && npm prune --omit=dev/);
    expect(runtime.base).toMatch(/^node:20-.*slim$/);
    // The native module built in the build stage needs the same Debian release.
    expect(runtime.base.replace(/-slim$/, "")).toBe(stage("build").base);

    const user = lastArgs(runtime, "USER")!;
    expect(user).not.toMatch(/^(root|0)(:|$)/);
    expect(instructions(runtime, "RUN").map((i) => i.args).join("\n")).toMatch(new RegExp(`useradd [^\\n]*--uid \\d+[^\\n]* ${user}\\b`));
    expect(instructions(runtime, "USER").at(-1)!.line).toBeLessThan(instructions(runtime, "CMD").at(-1)!.line);
  });

  test("serves LOCAL_STORAGE_PATH from the volume, exposes its ports, runs bin/filestorage.js serve", () => {
    expect(lastArgs(runtime, "VOLUME")).toBe(runtimeEnv.LOCAL_STORAGE_PATH);
    expect(exposed).toEqual(expect.arrayContaining([portOf(runtimeEnv.LISTEN_ADDRESS!), runtimeEnv.METRICS_PORT!]));
    expect(cmd).toEqual(["node", packageBin, "serve"]);
    expect(typeof healthcheck.command === "string" ? healthcheck.command : healthcheck.command.join(" ")).toMatch(/^grpc-health-probe /);
    expectKnownNames(Object.keys(runtimeEnv), "Dockerfile ENV");
    for (const [name, value] of Object.entries(MALLOC_TUNING)) expect(runtimeEnv[name]).toBe(value);
  });

  test(".dockerignore keeps installed, built and tool files out, and nothing the build needs", () => {
    const ignored = read(".dockerignore").split("\n").map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#"));
    expect(ignored).toEqual(expect.arrayContaining(["node_modules", "dist", ".test-tools", ".git"]));
    const needed = ["package.json", "package-lock.json", "tsconfig.json", "tsconfig.build.json", "server", "gen", "bin", "client/src", "client/package.json", "client/tsconfig.json", "bench", "test/kit"];
    for (const file of needed) {
      expect(fs.existsSync(path.join(root, file))).toBe(true);
      expect(ignored.filter((pattern) => file === pattern || file.startsWith(`${pattern}/`))).toEqual([]);
    }
  });

  test("the runtime stage's files start with its CMD and ENV, pass its HEALTHCHECK and exit 0 on its STOPSIGNAL", async () => {
    const fakeRoot = await tempDir("fs-deploy-image-");
    const app = assembleRuntime(fakeRoot);
    const ports = await freePorts(exposed);
    const env: Record<string, string> = {
      ...relocate(runtimeEnv, ports),
      LOCAL_STORAGE_PATH: path.join(fakeRoot, runtimeEnv.LOCAL_STORAGE_PATH!),
      PATH: pathWith(path.join(fakeRoot, "usr/local/bin")),
    };
    const daemon = await spawnServerProcess(cmd.slice(1), env, "FileStorage is serving", { cwd: app, label: "image CMD" });
    started.push(daemon.child);
    expect(daemon.address).toBe(env.LISTEN_ADDRESS);
    expect(await passHealthcheck(healthcheck.command, env)).toMatch(/status: SERVING/);
    expect(await storeAndRead(daemon.address)).toBe("local");
    const metrics = await fetch(`http://127.0.0.1:${env.METRICS_PORT}/metrics`);
    expect(metrics.status).toBe(200);
    await metrics.arrayBuffer();
    const stop = await stopWith(daemon, stopSignal);
    expect(stop.code).toBe(0);
    expect(stop.seconds).toBeLessThan(durationSeconds(compose.services.filestorage!.stop_grace_period!));
    // The stored object is in the volume.
    expect(fs.existsSync(path.join(env.LOCAL_STORAGE_PATH, "index.sqlite"))).toBe(true);
  });

  test("as the image is, without TLS and tokens or ALLOW_INSECURE, the 0.0.0.0 address is refused in one line", async () => {
    const fakeRoot = await tempDir("fs-deploy-refuse-");
    const env = { ...runtimeEnv, LOCAL_STORAGE_PATH: fakeRoot, LISTEN_ADDRESS: `0.0.0.0:${await freePort()}`, METRICS_PORT: "0", PATH: pathWith() };
    expect(runtimeEnv.LISTEN_ADDRESS).toMatch(/^0\.0\.0\.0:/);
    const r = await runTool(process.execPath, [path.join(root, cmd[1]!), ...cmd.slice(2)], { env, timeoutMs: 20_000 });
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/LISTEN_ADDRESS=0\.0\.0\.0:\d+ is not a loopback address .*ALLOW_INSECURE=true/);
  });
});

// --- compose.yaml -------------------------------------------------------------

describe("deploy/compose.yaml", () => {
  const services = compose.services;

  test("the daemon, the emulator at the pinned version and Redis, with health checks, a named volume and known settings", () => {
    expect(Object.keys(services).sort()).toEqual(["filestorage", "gcs", "redis"]);
    expect(services.gcs!.image).toBe(`fsouza/fake-gcs-server:${pinned("FAKE_GCS_VERSION").replace(/^v/, "")}`);
    expect(services.redis!.image).toMatch(/^redis:\d+\.\d+/);
    const fsvc = services.filestorage!;
    expect(path.resolve(root, "deploy", fsvc.build!.context)).toBe(root);
    expect(fsvc.build!.dockerfile).toBe("deploy/Dockerfile");
    for (const [dep, { condition }] of Object.entries(fsvc.depends_on ?? {})) {
      expect(condition).toBe("service_healthy");
      expect(services[dep]?.healthcheck?.test[0]).toBe("CMD");
    }
    expect(Object.keys(fsvc.depends_on ?? {}).sort()).toEqual(["gcs", "redis"]);
    const [volume, mountedAt] = fsvc.volumes![0]!.split(":");
    expect(Object.keys(compose.volumes ?? {})).toContain(volume);
    expect(mountedAt).toBe(runtimeEnv.LOCAL_STORAGE_PATH);
    // Published on the host's loopback only, to the ports the image exposes.
    for (const mapping of fsvc.ports!) {
      const [host, , container] = mapping.split(":");
      expect(host).toBe("127.0.0.1");
      expect(exposed).toContain(container);
    }
    expectKnownNames(Object.keys(fsvc.environment ?? {}), "compose environment");
    expect(fsvc.stop_signal ?? "SIGTERM").toBe(stopSignal);
    const grace = Number(fsvc.environment?.SHUTDOWN_GRACE_SECONDS ?? runtimeEnv.SHUTDOWN_GRACE_SECONDS ?? DEFAULT_GRACE);
    expect(durationSeconds(fsvc.stop_grace_period!)).toBeGreaterThan(grace + CLOSE_SECONDS);
  });

  test("its services' commands and health checks run, and the daemon with its environment stores in GCS, caches in Redis and exits 0", async () => {
    const gcsPort = services.gcs!.command![services.gcs!.command!.indexOf("-port") + 1]!;
    const redisPort = services.redis!.command![services.redis!.command!.indexOf("--port") + 1]!;
    const ports = await freePorts([gcsPort, redisPort, ...exposed]);
    const env = { PATH: pathWith() };

    // The emulator image's entrypoint is fake-gcs-server (its "-data /data" seeds objects; none here).
    const gcsArgs = relocate(services.gcs!.command!, ports);
    started.push(spawn(FAKE_GCS_BIN, gcsArgs, { stdio: "ignore" }));
    const redisArgs = relocate(services.redis!.command!, ports);
    expect(redisArgs[0]).toBe("redis-server");
    const redisBin = fs.existsSync(toolPath("redis-server")) ? toolPath("redis-server") : "redis-server";
    started.push(spawn(redisBin, redisArgs.slice(1), { stdio: "ignore" }));
    for (const name of ["gcs", "redis"]) {
      await passHealthcheck(relocate(services[name]!.healthcheck!.test.slice(1), ports), env, 40);
    }

    const fakeRoot = await tempDir("fs-deploy-compose-");
    const app = assembleRuntime(fakeRoot);
    const daemonEnv = {
      ...relocate({ ...runtimeEnv, ...services.filestorage!.environment }, ports),
      LOCAL_STORAGE_PATH: path.join(fakeRoot, runtimeEnv.LOCAL_STORAGE_PATH!),
      PATH: pathWith(path.join(fakeRoot, "usr/local/bin")),
    };
    const daemon = await spawnServerProcess(cmd.slice(1), daemonEnv, "FileStorage is serving", { cwd: app, label: "compose filestorage" });
    started.push(daemon.child);
    expect(await passHealthcheck(healthcheck.command, daemonEnv)).toMatch(/status: SERVING/);
    expect(await storeAndRead(daemon.address)).toBe("gcs");
    const keys = await runTool("redis-cli", ["-p", ports.get(redisPort)!, "--scan", "--pattern", "fs:*"], { env });
    expect(keys.stdout.trim()).not.toBe("");
    const stop = await stopWith(daemon, services.filestorage!.stop_signal as NodeJS.Signals);
    expect(stop.code).toBe(0);
    expect(stop.seconds).toBeLessThan(durationSeconds(services.filestorage!.stop_grace_period!));
  });
});

// --- the systemd unit ---------------------------------------------------------

describe("deploy/filestorage.service", () => {
  const S = "Service";
  const unitEnv = Object.fromEntries(environmentOf(unit.all(S, "Environment")));
  const fileEnv = Object.fromEntries(environmentFile(envFileText));
  const storage = unitEnv.LOCAL_STORAGE_PATH!;

  test("systemd-analyze verifies it without a warning and rates its exposure OK", async () => {
    const verify = await runTool("systemd-analyze", ["verify", path.join(root, "deploy/filestorage.service")]);
    expect({ code: verify.code, output: (verify.stdout + verify.stderr).trim() }).toEqual({ code: 0, output: "" });
    const security = await runTool("systemd-analyze", ["security", "--offline=yes", "--no-pager", path.join(root, "deploy/filestorage.service")]);
    const level = /Overall exposure level for filestorage\.service: ([\d.]+)/.exec(security.stdout);
    if (!level) throw new Error(describeRun("systemd-analyze security", security));
    expect(Number(level[1])).toBeLessThanOrEqual(2);
  });

  test("is hardened, writes only the storage folder, and stops within TimeoutStopSec", () => {
    const dynamic = unit.get(S, "DynamicUser") === "yes";
    expect(dynamic || !["root", "0", undefined].includes(unit.get(S, "User"))).toBe(true);
    if (dynamic) expect(path.posix.join("/var/lib", unit.get(S, "StateDirectory")!)).toBe(storage);
    expect(unit.get(S, "ReadWritePaths")?.split(/\s+/)).toContain(storage);
    const required: Record<string, string> = {
      ProtectSystem: "strict", ProtectHome: "yes", PrivateTmp: "yes", NoNewPrivileges: "yes",
      Restart: "on-failure", KillSignal: "SIGTERM", EnvironmentFile: "/etc/filestorage/env",
    };
    for (const [key, value] of Object.entries(required)) expect([key, unit.get(S, key)]).toEqual([key, value]);
    expect(unit.get(S, "RestrictAddressFamilies")?.split(/\s+/).sort()).toEqual(["AF_INET", "AF_INET6", "AF_UNIX"]);
    expect(Number(unit.get(S, "LimitNOFILE"))).toBeGreaterThanOrEqual(4096);
    const grace = Number(fileEnv.SHUTDOWN_GRACE_SECONDS ?? unitEnv.SHUTDOWN_GRACE_SECONDS ?? DEFAULT_GRACE);
    expect(Number(unit.get(S, "TimeoutStopSec"))).toBeGreaterThan(grace + CLOSE_SECONDS);

    const [node, script, ...args] = unitWords(unit.get(S, "ExecStart")!);
    expect(path.posix.isAbsolute(node!) && path.posix.basename(node!)).toBe("node");
    expect(script).toBe(path.posix.join(unit.get(S, "WorkingDirectory")!, packageBin));
    expect(args).toEqual(["serve"]);
    expectKnownNames(Object.keys(unitEnv), "unit Environment=");
    expectKnownNames([...Object.keys(fileEnv), ...exampleNames(envFileText)], "deploy/filestorage.env");
    for (const [name, value] of Object.entries(MALLOC_TUNING)) expect(unitEnv[name]).toBe(value);
  });

  test("its ExecStart serves with its environment, ExecReload keeps it serving, KillSignal ends it with 0", async () => {
    const installDir = unit.get(S, "WorkingDirectory")!;
    const [, script, ...args] = unitWords(unit.get(S, "ExecStart")!).map((w) => w.replace(installDir, root));
    const ports = await freePorts([portOf(fileEnv.LISTEN_ADDRESS!), fileEnv.METRICS_PORT!]);
    // EnvironmentFile= overrides Environment= (systemd.exec(5)).
    const env: Record<string, string> = { ...relocate({ ...unitEnv, ...fileEnv }, ports), LOCAL_STORAGE_PATH: await tempDir("fs-deploy-unit-"), PATH: pathWith() };
    const daemon = await spawnServerProcess([script!, ...args], env, "FileStorage is serving", { cwd: root, label: "ExecStart" });
    started.push(daemon.child);
    expect(daemon.address).toBe(env.LISTEN_ADDRESS);

    const [reload, ...reloadArgs] = unitWords(unit.get(S, "ExecReload")!).map((w) => w.replace("$MAINPID", String(daemon.pid)));
    const r = await runTool(reload!, reloadArgs);
    expect(r.code).toBe(0);
    await new Promise((res) => setTimeout(res, 300));
    expect(daemon.child.exitCode).toBeNull();
    expect(daemon.stdout()).toMatch(/AUTH_TOKENS_FILE is not set: there is nothing to reload/);
    expect(await passHealthcheck([toolPath("grpc-health-probe"), `-addr=${daemon.address}`], env)).toMatch(/status: SERVING/);
    expect(await storeAndRead(daemon.address)).toBe("local");

    const stop = await stopWith(daemon, unit.get(S, "KillSignal") as NodeJS.Signals);
    expect(stop.code).toBe(0);
    expect(stop.seconds).toBeLessThan(Number(unit.get(S, "TimeoutStopSec")));
  });
});
