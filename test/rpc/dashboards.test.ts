/**
 * The Grafana dashboard and the Prometheus alert rules in deploy/ refer only
 * to metrics (and labels) a real daemon exports: every expression is taken
 * apart (test/support/promql-names.ts) and each name looked up in /metrics,
 * scraped over HTTP from a daemon with GCS (fake-gcs-server) and the local
 * fallback after traffic that makes every series appear: reads, a miss,
 * writes during a GCS outage and their replication. `up` is Prometheus's
 * own. Also: the local-disk gauges report the storage folder's file system.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { FileStorageClient } from "../../client/src/index.js";
import { startFakeGcs, type FakeGcs } from "../kit/fake-gcs.js";
import { freePort } from "../kit/free-port.js";
import { repoRoot } from "../kit/repo-root.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { labelValuesRefs, promqlRefs, type PromqlRefs } from "../support/promql-names.js";

const root = repoRoot();
const read = (file: string) => fs.readFileSync(path.join(root, file), "utf8");

interface Panel {
  title: string;
  type: string;
  targets?: { expr: string }[];
  panels?: Panel[];
}
interface Dashboard {
  title: string;
  uid: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: { name: string; type: string; query?: string | { query: string } }[] };
}
interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

const dashboard = JSON.parse(read("deploy/grafana/filestorage-dashboard.json")) as Dashboard;
const rules = (parseYaml(read("deploy/prometheus/alerts.yaml")) as { groups: { name: string; rules: Rule[] }[] }).groups.flatMap((g) => g.rules);
const panels = (list: Panel[]): Panel[] => list.flatMap((p) => [p, ...panels(p.panels ?? [])]);

/** Every expression with where it is, and what it refers to. */
const expressions: { where: string; refs: PromqlRefs }[] = [
  ...panels(dashboard.panels).flatMap((p) => (p.targets ?? []).map((t) => ({ where: `panel "${p.title}"`, refs: promqlRefs(t.expr) }))),
  ...dashboard.templating.list
    .filter((v) => v.type === "query")
    .map((v) => ({ where: `variable $${v.name}`, refs: labelValuesRefs(typeof v.query === "string" ? v.query : v.query!.query) })),
  ...rules.map((r) => ({ where: `rule ${r.alert ?? r.record}`, refs: promqlRefs(r.expr) })),
];

/** Prometheus adds these to every series it scrapes; `up` is its own series. */
const SCRAPE_LABELS = new Set(["job", "instance"]);
const PROMETHEUS_OWN = new Set(["up"]);

type Exposition = Map<string, Set<string>>;

/** GET /metrics: every sample's name with the label names it carries. */
async function scrape(port: number): Promise<Exposition> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(res.status).toBe(200);
  const found: Exposition = new Map();
  for (const line of (await res.text()).split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+$/.exec(line);
    if (!m) continue;
    const labels = found.get(m[1]!) ?? new Set<string>();
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) labels.add(l[1]!);
    found.set(m[1]!, labels);
  }
  return found;
}

describe("the extractor", () => {
  test("finds metrics and labels, skips functions, keywords, ranges and Grafana variables", () => {
    const refs = promqlRefs(
      'histogram_quantile(0.99, sum by (method, le) (rate(a_seconds_bucket{job=~"$job",code!="OK"}[$__rate_interval]))) ' +
        "/ on(instance) group_left() b_total > 2 * c_bytes or vector(0)",
    );
    expect(refs.metrics.sort()).toEqual(["a_seconds_bucket", "b_total", "c_bytes"]);
    expect(refs.matchers).toEqual([{ metric: "a_seconds_bucket", label: "job" }, { metric: "a_seconds_bucket", label: "code" }]);
    expect(refs.grouping.sort()).toEqual(["instance", "le", "method"]);
    expect(labelValuesRefs('label_values(x_total{job=~"$job"}, instance)')).toMatchObject({ metrics: ["x_total"], grouping: ["instance"] });
  });

  test("refuses what it cannot account for", () => {
    expect(() => promqlRefs("rates(x_total[5m])")).toThrow(/"rates\(" is not a PromQL function/);
    expect(() => promqlRefs("sum(rate(x_total[5m])")).toThrow(/unclosed/);
    expect(() => promqlRefs('{__name__="x"}')).toThrow(/without a metric name/);
  });
});

describe("the files", () => {
  test("the dashboard is a Grafana dashboard with the panels operators need", () => {
    expect(dashboard).toMatchObject({ title: "FileStorage", uid: "filestorage" });
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    const used = (metric: string) => expressions.filter((e) => e.where.startsWith("panel") && e.refs.metrics.includes(metric)).length;
    for (const metric of [
      "fs_requests_total", "fs_request_duration_seconds_bucket", "fs_gcs_available", "fs_replication_backlog",
      "fs_replication_oldest_age_seconds", "fs_cache_hits_total", "fs_local_disk_free_bytes", "fs_tier_call_seconds_bucket",
    ]) {
      expect([metric, used(metric)]).not.toEqual([metric, 0]);
    }
  });

  test("the rules are alerts with a severity and a summary, covering what pages an operator", () => {
    for (const r of rules) {
      expect(r.alert).toMatch(/^FileStorage[A-Z]\w+$/);
      expect(["warning", "critical"]).toContain(r.labels?.severity);
      expect(r.annotations?.summary).toBeTruthy();
      if (r.for !== undefined) expect(r.for).toMatch(/^\d+[smh]$/);
    }
    const uses = (alert: string) => promqlRefs(rules.find((r) => r.alert === alert)!.expr).metrics;
    expect(uses("FileStorageDown")).toEqual(["up"]);
    expect(uses("FileStorageGcsUnavailable")).toContain("fs_gcs_available");
    expect(rules.find((r) => r.alert === "FileStorageGcsUnavailable")!.for).toBe("5m");
    expect(uses("FileStorageReplicationBacklogOld")).toEqual(["fs_replication_oldest_age_seconds"]);
    expect(uses("FileStorageLocalDiskNearlyFull")).toContain("fs_local_disk_free_bytes");
    expect(uses("FileStorageHighErrorRate")).toEqual(["fs_requests_total"]);
  });
});

describe("against a daemon with GCS and the local fallback", () => {
  let gcs: FakeGcs;
  let daemon: TestDaemon;
  let client: FileStorageClient;
  let port: number;
  let exposition: Exposition;
  const reserve = 3 * 1024 * 1024;

  beforeAll(async () => {
    gcs = await startFakeGcs({ backend: "filesystem" });
    port = await freePort();
    daemon = await startDaemon({
      METRICS_PORT: String(port),
      GCS_BUCKET_NAME: "dashboards",
      GCS_PROJECT_ID: "test",
      GCS_API_ENDPOINT: gcs.url,
      MAX_RETRIES: "0",
      TIMEOUT_SECONDS: "2",
      REPLICATION_INTERVAL_MS: "100",
      LOCAL_MIN_FREE_BYTES: String(reserve),
    });
    client = new FileStorageClient(daemon.address, { retries: 0 });

    // Traffic that makes every series appear: requests of several outcomes, cache hits and
    // misses, tier calls, writes kept locally during an outage, and their replication.
    await client.store("d/a", "hello");
    await client.retrieve("d/a");
    await client.retrieve("d/a");
    expect(await client.retrieve("d/missing")).toBeNull();
    await gcs.kill();
    for (let i = 0; i < 3; i++) await client.store(`d/down-${i}`, `kept locally ${i}`);
    await gcs.start();
    const deadline = Date.now() + 30_000;
    while (daemon.server.stack.status().pending.count > 0 || daemon.server.stack.status().breaker !== "closed") {
      if (Date.now() > deadline) throw new Error("the backlog did not drain in 30 s");
      await client.store("d/after", "GCS is back").catch(() => undefined);
      await new Promise((r) => setTimeout(r, 200));
    }
    exposition = await scrape(port);
  }, 60_000);
  afterAll(async () => {
    client?.close();
    await daemon?.stop();
    await gcs?.stop();
  });

  test("every metric an expression names is exported, with every label it matches or groups by", () => {
    const problems: string[] = [];
    for (const { where, refs } of expressions) {
      const own = refs.metrics.filter((m) => !PROMETHEUS_OWN.has(m));
      for (const metric of own) {
        if (!exposition.has(metric)) problems.push(`${where}: no metric ${metric}`);
        // A histogram's series belong to one: its _bucket carries le, its _sum and _count do not.
        const base = metric.replace(/_(bucket|sum|count)$/, "");
        if (base !== metric && !exposition.has(`${base}_bucket`)) problems.push(`${where}: ${metric} is not part of a histogram`);
      }
      for (const { metric, label } of refs.matchers) {
        if (SCRAPE_LABELS.has(label) || PROMETHEUS_OWN.has(metric)) continue;
        if (!exposition.get(metric)?.has(label)) problems.push(`${where}: ${metric} has no label ${label}`);
      }
      for (const label of refs.grouping) {
        if (SCRAPE_LABELS.has(label)) continue;
        if (!own.some((m) => exposition.get(m)?.has(label))) problems.push(`${where}: no metric of it has the label ${label}`);
      }
    }
    expect(problems).toEqual([]);
    // The check is not empty: most of the daemon's own series are in the files.
    const named = new Set(expressions.flatMap((e) => e.refs.metrics));
    expect([...named].filter((m) => m.startsWith("fs_")).length).toBeGreaterThanOrEqual(15);
  });

  test("the local-disk gauges are the storage folder's file system and LOCAL_MIN_FREE_BYTES", async () => {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1]);
    const disk = fs.statfsSync(daemon.storagePath);
    expect(value("fs_local_disk_size_bytes")).toBe(disk.blocks * disk.bsize);
    expect(value("fs_local_disk_reserve_bytes")).toBe(reserve);
    // Other processes write to the same disk: near, not equal.
    expect(Math.abs(value("fs_local_disk_free_bytes") - disk.bavail * disk.bsize)).toBeLessThan(256 * 1024 * 1024);
  });
});
