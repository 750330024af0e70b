#!/usr/bin/env node
// The `filestorage` command. Runs the compiled daemon and CLI from dist/
// (`npm run build`, which `npm start` and `npm test` do first).
"use strict";
const path = require("node:path");
let main;
try {
  main = require(path.join(__dirname, "..", "dist", "server", "cli", "main.js"));
} catch (err) {
  if (err && err.code === "MODULE_NOT_FOUND" && String(err.message).includes("main.js")) {
    process.stderr.write("filestorage: not built yet: run `npm run build` first\n");
    process.exit(1);
  }
  throw err;
}
main.run(process.argv);
