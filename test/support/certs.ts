/**
 * A throwaway PKI for the TLS tests, made with the `openssl` command line
 * (test/setup/install-tools.sh makes sure it is there): a CA, a server
 * certificate for localhost / 127.0.0.1 / ::1 (subjectAltName), client
 * certificates with chosen common names, and a second, unrelated CA whose
 * client certificates the daemon must refuse. EC P-256 keys keep it fast.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

export interface CertFiles {
  certFile: string;
  keyFile: string;
  cert: Buffer;
  key: Buffer;
}

export interface TestPki {
  /** The CA that signs the server and the trusted client certificates. */
  ca: CertFiles;
  /** Server certificate for localhost, 127.0.0.1 and ::1. */
  server: CertFiles;
  /** A client certificate signed by `ca` with common name `cn` (made once per name). */
  client(cn: string): CertFiles;
  /** A client certificate with common name `cn` signed by another CA. */
  foreignClient(cn: string): CertFiles;
}

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? "";
    throw new Error(`openssl ${args[0]} failed (is openssl installed? see test/setup/install-tools.sh): ${stderr || (err as Error).message}`);
  }
}

const EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

function files(dir: string, name: string): CertFiles {
  const certFile = path.join(dir, `${name}.pem`);
  const keyFile = path.join(dir, `${name}.key`);
  return { certFile, keyFile, cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile) };
}

function makeCa(dir: string, name: string): CertFiles {
  openssl(
    [
      "req", "-x509", ...EC_KEY, "-keyout", `${name}.key`, "-out", `${name}.pem`, "-days", "2", "-subj", `/CN=${name}`,
      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    ],
    dir,
  );
  return files(dir, name);
}

function sign(dir: string, ca: CertFiles, name: string, cn: string, extensions: string): CertFiles {
  const ext = path.join(dir, `${name}.ext`);
  fs.writeFileSync(ext, extensions);
  openssl(["req", "-new", ...EC_KEY, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${cn}`], dir);
  openssl(
    [
      "x509", "-req", "-in", `${name}.csr`, "-CA", ca.certFile, "-CAkey", ca.keyFile, "-out", `${name}.pem`, "-days", "2",
      "-set_serial", `0x${randomBytes(8).toString("hex")}`, "-extfile", ext,
    ],
    dir,
  );
  return files(dir, name);
}

const CLIENT_EXT = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n";

/** Creates the PKI in `dir` (which must exist; the caller removes it). */
export function makePki(dir: string): TestPki {
  const ca = makeCa(dir, "test-ca");
  const other = makeCa(dir, "other-ca");
  const server = sign(
    dir,
    ca,
    "server",
    "localhost",
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n" +
      "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n",
  );
  const made = new Map<string, CertFiles>();
  const client = (issuer: CertFiles, prefix: string) => (cn: string) => {
    const name = `${prefix}-${Buffer.from(cn).toString("hex")}`;
    let found = made.get(name);
    if (!found) {
      found = sign(dir, issuer, name, cn, CLIENT_EXT);
      made.set(name, found);
    }
    return found;
  };
  return { ca, server, client: client(ca, "client"), foreignClient: client(other, "foreign") };
}
