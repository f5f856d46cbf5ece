// Proves that enroll's .proto files (crates/zitadel-proto/proto) are
// wire-identical to ZITADEL's own definitions, as embedded in @zitadel/proto.
//
// Usage: node zitadel-descriptors.mjs <FileDescriptorSet.bin>
//
// The input is a binary google.protobuf.FileDescriptorSet compiled from our
// protos, e.g.
//   protox -I crates/zitadel-proto/proto --include-imports -o /tmp/fds.bin \
//     zitadel/user/v2/user_service.proto zitadel/message.proto google/rpc/status.proto
//
// Every message, enum and service in the set is looked up by full name in the
// descriptors that @zitadel/proto embeds, and compared:
//   messages: file, every field (name, number, type, type name, label,
//             proto3 optional, oneof, json name, kind, packed), oneof names;
//             a field missing on either side is a difference
//   enums:    file, value names and numbers (both directions)
//   services: file, each of our methods (input, output, streaming flags);
//             ZITADEL may have more methods than we serve
// A message, enum or service of ours that ZITADEL does not have is a
// difference, except google.* types (google.rpc.Status is checked against
// its standard definition, google.protobuf.* against @zitadel/proto's or
// @bufbuild/protobuf's copies).
// Prints every difference and exits 1; otherwise prints one summary line.

import { readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { nestedTypes } from "@bufbuild/protobuf/reflect";
import * as wkt from "@bufbuild/protobuf/wkt";

const [input] = process.argv.slice(2);
if (!input) {
  console.error("usage: node zitadel-descriptors.mjs <FileDescriptorSet.bin>");
  process.exit(2);
}

// --- ZITADEL's descriptors: every generated *_pb.js in @zitadel/proto (ESM) ---

// (package.json is not in the package's "exports"; locate it from a module)
const esDir = join(dirname(fileURLToPath(import.meta.resolve("@zitadel/proto/zitadel/message_pb.js"))), "..");
const zitadelVersion = JSON.parse(readFileSync(join(esDir, "..", "package.json"), "utf8")).version;

function* pbFiles(dir) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) yield* pbFiles(p);
    else if (e.name.endsWith("_pb.js")) yield p;
  }
}

const theirFiles = new Map(); // file name -> DescFile
function addTheirFile(f) {
  if (theirFiles.has(f.proto.name)) return;
  theirFiles.set(f.proto.name, f);
  for (const dep of f.dependencies) addTheirFile(dep);
}
for (const p of pbFiles(esDir)) {
  const mod = await import(pathToFileURL(p).href);
  for (const [k, v] of Object.entries(mod)) {
    if (k.startsWith("file_") && v?.kind === "file") addTheirFile(v);
  }
}
// google.protobuf.* types that no ZITADEL file imports (e.g. Any): compare
// with @bufbuild/protobuf's copies of the well-known types.
const wktFiles = Object.values(wkt).filter((v) => v?.kind === "file");
for (const f of wktFiles) addTheirFile(f);
const theirs = new Map(); // full name -> DescMessage | DescEnum | DescService
for (const f of theirFiles.values()) {
  for (const t of nestedTypes(f)) if (t.kind !== "extension") theirs.set(t.typeName, t);
}
if (!theirs.has("zitadel.user.v2.UserService")) {
  console.error("could not load zitadel.user.v2.UserService from @zitadel/proto");
  process.exit(2);
}

// --- our descriptors ---

const set = fromBinary(wkt.FileDescriptorSetSchema, readFileSync(input));
const ourFileNames = new Set(set.file.map((f) => f.name));
// Without --include-imports the set lacks the well-known types; add them.
for (const f of set.file) {
  for (const dep of f.dependency) {
    if (set.file.some((g) => g.name === dep)) continue;
    const w = wktFiles.find((x) => x.proto.name === dep);
    if (w) set.file.push(w.proto);
  }
}
let ourRegistry;
try {
  ourRegistry = createFileRegistry(set);
} catch (e) {
  console.error(`${input}: ${e.message} (compile with --include-imports)`);
  process.exit(2);
}

// --- comparison ---

const diffs = [];
const diff = (where, msg) => diffs.push(`${where}: ${msg}`);
const counts = { files: 0, messages: 0, fields: 0, enums: 0, values: 0, services: 0, methods: 0, google: 0, skipped: 0 };

const typeName = (f) => f.proto.typeName.replace(/^\./, "");
const label = (f) => ({ 1: "optional", 2: "required", 3: "repeated" })[f.proto.label];
const fieldType = (f) => wkt.FieldDescriptorProto_Type[f.proto.type];
const oneofName = (f) => f.oneof?.name ?? "(none)"; // synthetic proto3-optional oneofs excluded

function compareProps(where, pairs, other = "ZITADEL has") {
  for (const [what, ours, zit] of pairs) {
    if (ours !== zit) diff(where, `${what} is ${JSON.stringify(ours)}, ${other} ${JSON.stringify(zit)}`);
  }
}

function compareFile(where, ours, zit) {
  compareProps(where, [
    ["file", ours.file.proto.name, zit.file.proto.name],
    ["package", ours.file.proto.package, zit.file.proto.package],
  ]);
}

function compareMessage(ours, zit) {
  const where = ours.typeName;
  compareFile(where, ours, zit);
  const zitFields = new Map(zit.fields.map((f) => [f.name, f]));
  for (const f of ours.fields) {
    const z = zitFields.get(f.name);
    const fw = `${where}.${f.name}`;
    if (!z) {
      diff(fw, `field (number ${f.number}) does not exist in ZITADEL's message`);
      continue;
    }
    zitFields.delete(f.name);
    counts.fields++;
    compareProps(fw, [
      ["number", f.number, z.number],
      ["type", fieldType(f), fieldType(z)],
      ["type name", typeName(f), typeName(z)],
      ["label", label(f), label(z)],
      ["proto3 optional", f.proto.proto3Optional, z.proto.proto3Optional],
      ["oneof", oneofName(f), oneofName(z)],
      ["json name", f.jsonName, z.jsonName],
      ["field kind", f.fieldKind, z.fieldKind],
      ["packed", f.packed ?? false, z.packed ?? false],
      ["presence", wkt.FeatureSet_FieldPresence[f.presence], wkt.FeatureSet_FieldPresence[z.presence]],
    ]);
  }
  for (const z of zitFields.values()) diff(`${where}.${z.name}`, `field (number ${z.number}) is missing in ours`);
  compareProps(where, [
    ["oneofs", ours.oneofs.map((o) => o.name).join(","), zit.oneofs.map((o) => o.name).join(",")],
  ]);
}

function compareEnum(ours, zit) {
  const where = ours.typeName;
  compareFile(where, ours, zit);
  const zv = new Map(zit.values.map((v) => [v.name, v.number]));
  for (const v of ours.values) {
    if (!zv.has(v.name)) diff(`${where}.${v.name}`, `enum value (${v.number}) does not exist in ZITADEL's enum`);
    else {
      counts.values++;
      compareProps(`${where}.${v.name}`, [["number", v.number, zv.get(v.name)]]);
      zv.delete(v.name);
    }
  }
  for (const [n, num] of zv) diff(`${where}.${n}`, `enum value (${num}) is missing in ours`);
}

function compareService(ours, zit) {
  const where = ours.typeName;
  compareFile(where, ours, zit);
  for (const m of ours.methods) {
    const z = zit.methods.find((x) => x.name === m.name);
    if (!z) {
      diff(`${where}/${m.name}`, "method does not exist in ZITADEL's service");
      continue;
    }
    counts.methods++;
    compareProps(`${where}/${m.name}`, [
      ["input", m.input.typeName, z.input.typeName],
      ["output", m.output.typeName, z.output.typeName],
      ["client streaming", m.proto.clientStreaming, z.proto.clientStreaming],
      ["server streaming", m.proto.serverStreaming, z.proto.serverStreaming],
      ["method kind", m.methodKind, z.methodKind],
    ]);
  }
}

// google.rpc.Status is not in @zitadel/proto; check the standard definition.
function checkGoogleRpcStatus(ours) {
  const want = [
    ["code", 1, "TYPE_INT32", "", "optional"],
    ["message", 2, "TYPE_STRING", "", "optional"],
    ["details", 3, "TYPE_MESSAGE", "google.protobuf.Any", "repeated"],
  ];
  compareProps(ours.typeName, [["field count", ours.fields.length, want.length]], "standard has");
  for (const [name, number, type, tn, lab] of want) {
    const f = ours.fields.find((x) => x.name === name);
    if (!f) {
      diff(ours.typeName, `field ${name} missing`);
      continue;
    }
    counts.fields++;
    compareProps(`${ours.typeName}.${name}`, [
      ["number", f.number, number],
      ["type", "TYPE_" + fieldType(f), type],
      ["type name", typeName(f), tn],
      ["label", label(f), lab],
      ["proto3 optional", f.proto.proto3Optional, false],
      ["oneof", oneofName(f), "(none)"],
    ], "standard has");
  }
}

let ourServices = 0;
for (const file of ourRegistry.files) {
  if (!ourFileNames.has(file.proto.name)) continue; // well-known types we added
  counts.files++;
  for (const t of nestedTypes(file)) {
    if (t.kind === "service") ourServices++;
    if (t.kind === "extension") {
      diff(t.typeName, "extensions are not expected in our protos");
      continue;
    }
    const zit = theirs.get(t.typeName);
    if (!zit) {
      if (t.typeName === "google.rpc.Status") {
        counts.google++;
        checkGoogleRpcStatus(t);
      } else if (t.typeName.startsWith("google.")) {
        counts.skipped++;
      } else {
        diff(t.typeName, `${t.kind} does not exist in @zitadel/proto ${zitadelVersion}`);
      }
      continue;
    }
    if (zit.kind !== t.kind) {
      diff(t.typeName, `is a ${t.kind}, ZITADEL has a ${zit.kind}`);
      continue;
    }
    if (t.typeName.startsWith("google.")) counts.google++;
    else if (t.kind === "message") counts.messages++;
    if (t.kind === "message") {
      compareMessage(t, zit);
    } else if (t.kind === "enum") {
      if (!t.typeName.startsWith("google.")) counts.enums++;
      compareEnum(t, zit);
    } else if (t.kind === "service") {
      counts.services++;
      compareService(t, zit);
    }
  }
}
if (ourServices === 0) diff(input, "no service in the descriptor set");

if (diffs.length) {
  for (const d of diffs) console.log(d);
  console.log(`${diffs.length} difference(s) from @zitadel/proto ${zitadelVersion}`);
  process.exit(1);
}
console.log(
  `OK: ${counts.files} files identical to @zitadel/proto ${zitadelVersion}: ` +
    `${counts.messages} zitadel messages, ${counts.enums} enums (${counts.values} values), ` +
    `${counts.services} service (${counts.methods} methods); ` +
    `${counts.google} google types checked (google.rpc.Status against the standard, ` +
    `google.protobuf.* against @bufbuild/protobuf), ` +
    `${counts.skipped} skipped; ${counts.fields} fields in all`,
);
