/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: "node",
  roots: ["<rootDir>/test"],
  // Tests by kind: unit/<area> (one module or layer, no gRPC server), rpc (the
  // in-process gRPC server), process (spawned daemons and tools), conformance
  // (the backend suite against every combination). test/kit and test/support
  // hold helpers only.
  testMatch: ["<rootDir>/test/{unit,rpc,process,conformance}/**/*.test.ts"],
  transform: {
    "^.+\\.ts$": ["ts-jest", { isolatedModules: true, tsconfig: "tsconfig.json" }],
    // stream-json and stream-chain ship ES modules only. Node loads them with
    // require(esm); jest on Node 20 cannot, so it gets them as CommonJS.
    "/node_modules/(stream-json|stream-chain)/.+\\.js$": [
      "ts-jest",
      { isolatedModules: true, tsconfig: { allowJs: true, module: "commonjs", target: "ES2022", esModuleInterop: true } },
    ],
  },
  transformIgnorePatterns: ["/node_modules/(?!(stream-json|stream-chain)/)"],
  // Sources import with ".js" extensions (NodeNext); jest resolves the .ts file.
  // The client package's exports resolve to its sources (as tsc's "source" condition does).
  moduleNameMapper: {
    "^(\\.{1,2}/.*)\\.js$": "$1",
    "^@filestorage/client$": "<rootDir>/client/src/index.ts",
    "^@filestorage/client/grpc-binding$": "<rootDir>/client/src/grpc-binding.ts",
  },
  globalSetup: "<rootDir>/test/setup/global-setup.ts",
  globalTeardown: "<rootDir>/test/setup/global-teardown.ts",
  testTimeout: 60000,
  maxWorkers: 2,
};
