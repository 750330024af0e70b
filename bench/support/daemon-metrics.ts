/**
 * The daemon's own view of its memory, from its Prometheus endpoint: V8 heap
 * in use plus external memory (Buffers), i.e. what JavaScript still holds.
 * Unlike RSS it drops once garbage is collected, whatever glibc keeps, so it
 * tells a leak from memory that was freed but not returned to the system.
 */
import * as http from "node:http";

/** nodejs_heap_size_used_bytes + nodejs_external_memory_bytes from http://127.0.0.1:<port>/metrics. */
export async function jsMemoryOf(port: number): Promise<number> {
  const text = await new Promise<string>((resolve, reject) => {
    http
      .get({ host: "127.0.0.1", port, path: "/metrics" }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => (body += d));
        res.on("end", () => resolve(body));
        res.on("error", reject);
      })
      .on("error", reject);
  });
  const value = (name: string) => {
    const m = new RegExp(`^${name} (\\S+)`, "m").exec(text);
    if (!m) throw new Error(`the daemon's metrics have no ${name}`);
    return Number(m[1]);
  };
  return value("nodejs_heap_size_used_bytes") + value("nodejs_external_memory_bytes");
}
