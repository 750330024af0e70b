/**
 * The rule for a listen address open to the network: a non-loopback
 * LISTEN_ADDRESS needs TLS and authentication (a tokens file, or mutual TLS,
 * which lets in every certificate of the client CA). Loopback means the host
 * is `localhost`, in 127.0.0.0/8, or ::1 (IPv4-mapped forms included). The
 * wildcard addresses 0.0.0.0 and :: listen on every interface and are not
 * loopback; no other host name is resolved, so any other name counts as public.
 */
import { BlockList, isIPv4, isIPv6 } from "node:net";

const loopback = new BlockList();
loopback.addSubnet("127.0.0.0", 8, "ipv4");
loopback.addAddress("::1", "ipv6");

/** `host:port` or `[v6]:port` -> true when the host is loopback. */
export function isLoopbackAddress(hostPort: string): boolean {
  const host = hostPort.slice(0, hostPort.lastIndexOf(":")).replace(/^\[(.*)\]$/, "$1");
  if (host.toLowerCase() === "localhost") return true;
  if (isIPv4(host)) return loopback.check(host, "ipv4");
  if (isIPv6(host)) return loopback.check(host, "ipv6");
  return false;
}

/** What a listen address lacks under the rule: [] when it is loopback or has both; else "TLS" and/or "authentication". */
export function insecureListenGaps(o: { listenAddress: string; tls: boolean; authenticated: boolean }): string[] {
  if (isLoopbackAddress(o.listenAddress)) return [];
  return [...(o.tls ? [] : ["TLS"]), ...(o.authenticated ? [] : ["authentication"])];
}
