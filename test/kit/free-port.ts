/** Free loopback ports for peers that must be told their port before they start. */
import * as net from "node:net";

/**
 * A TCP port on 127.0.0.1 that the OS considers free right now (bound to :0,
 * read, released). Another process may take it before the caller binds it;
 * servers of our own bind :0 instead and report their address.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
