/**
 * Runs once before the suites: installs the real test peers (fake-gcs-server,
 * redis-server) when missing. Each suite starts its own instances on free
 * loopback ports (see test/kit/).
 */
import { execFileSync } from "node:child_process";
import * as path from "node:path";

export default function globalSetup(): void {
  const root = path.resolve(__dirname, "../..");
  execFileSync("bash", [path.join(root, "test/setup/install-tools.sh")], { stdio: "inherit" });
}
