// Prints the DMMF of a Prisma schema as JSON on stdout, after Prisma's own validation.
// Usage: node dmmf.js ../../schema.prisma   (exit 1 with Prisma's message if invalid)
const fs = require("fs");
const wasm = require("@prisma/prisma-schema-wasm");
const path = process.argv[2];
const schema = fs.readFileSync(path, "utf8");
const params = JSON.stringify({ prismaSchema: [[path, schema]] });
try {
  wasm.validate(params);
  process.stdout.write(wasm.get_dmmf(params));
} catch (e) {
  process.stderr.write(String(e.message || e) + "\n");
  process.exit(1);
}
