#!/usr/bin/env node
// Converts Debian's dict-foldoc (the Free On-line Dictionary of Computing, GFDL, in dictd's format)
// into a JSON Lines corpus for `ruvllm ingest`: one {"id", "title", "text"} object per definition.
// Run by scripts/setup.sh with --limit 2000 for the demo corpus.
//
//   node scripts/convert-foldoc.js OUT.jsonl [--limit N] [--index foldoc.index] [--dict foldoc.dict.dz]
//
// Input: dictd's index (lines "headword\toffset\tlength", offset and length in dictd's base64,
// most significant digit first; headwords lowercased) and the dictzip data file (gzip-compatible).
// Several index lines may point at one definition (its aliases); each definition is written once.
// A definition starts with its headword and alias lines, then a blank line, then the indented body.
//
// Cleaning: the headword line is dropped (it is the title) and aliases that the body does not mention
// are kept as "Also: ..."; "{cross reference}" keeps its inner text without the braces (ingest links
// documents whose text mentions another document's title, so cross references become graph edges);
// "<field>" markers lose their angle brackets (only at the start of a sense and only for subject
// words seen in that position, so that HTML and BNF examples keep theirs); the "(1998-03-23)" date
// stamps that close each sense are dropped; whitespace is collapsed.
//
// --limit N keeps the N definitions with the most incoming cross references (distinct referring
// definitions, self references excluded; "{hosts}" resolves to "host" when "hosts" is no headword,
// and a reference to a pure redirect such as "A-Life" => "{artificial life}" counts for its target),
// ties by headword, and writes them sorted by headword. Ids are "foldoc-<n>", n the definition's
// ordinal in the dictionary, so they are the same with and without --limit.
// The output is written to a temporary name and renamed, so an interrupted run leaves no file.
"use strict";
const fs = require("fs");
const zlib = require("zlib");

function usage(message) {
  if (message) console.error("convert-foldoc.js: " + message);
  console.error("usage: convert-foldoc.js OUT.jsonl [--limit N] [--index foldoc.index] [--dict foldoc.dict.dz]");
  process.exit(2);
}

const options = { index: "/usr/share/dictd/foldoc.index", dict: "/usr/share/dictd/foldoc.dict.dz", limit: null };
let output;
for (let args = process.argv.slice(2); args.length; ) {
  const a = args.shift();
  if (a === "--limit" || a === "--index" || a === "--dict") {
    if (!args.length) usage(a + " needs a value");
    options[a.slice(2)] = args.shift();
  } else if (a.startsWith("--")) {
    usage("unknown option " + a);
  } else if (output === undefined) {
    output = a;
  } else {
    usage("more than one output path");
  }
}
if (!output) usage();
const limit = options.limit === null ? 0 : Number(options.limit);
if (options.limit !== null && !(/^\d+$/.test(options.limit) && limit > 0)) usage("--limit must be a positive integer");

// dictd's base64: digits in this alphabet, most significant first.
const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
function b64(s, line) {
  let n = 0;
  for (const c of s) {
    const d = B64.indexOf(c);
    if (d < 0) throw new Error(`${options.index}:${line}: bad base64 digit '${c}' in '${s}'`);
    n = n * 64 + d;
  }
  return n;
}

// The dictionary declares UTF-8 (00-database-utf8) in current releases; older ones were latin-1.
// Each piece is decoded as strict UTF-8 and, failing that, as latin-1, so the output is valid UTF-8.
const utf8 = new TextDecoder("utf-8", { fatal: true });
let latin1Fallbacks = 0;
function decode(buf) {
  try {
    return utf8.decode(buf);
  } catch {
    ++latin1Fallbacks;
    return buf.toString("latin1");
  }
}

const collapse = (s) => s.replace(/\s+/g, " ").trim();
const key = (s) => collapse(s).toLowerCase();

const data = zlib.gunzipSync(fs.readFileSync(options.dict));
const indexLines = decode(fs.readFileSync(options.index)).split("\n");

// Definitions in dictionary order, each with the headwords that point at it.
const byPlace = new Map(); // "offset,length" -> definition
const byHeadword = new Map(); // lowercased headword -> [definition]
let indexEntries = 0;
let metaEntries = 0;
indexLines.forEach((line, i) => {
  if (line === "") return;
  const cols = line.split("\t");
  if (cols.length !== 3) throw new Error(`${options.index}:${i + 1}: expected 3 tab-separated fields`);
  const [headword, off, len] = cols;
  if (headword.startsWith("00-database-") || headword.startsWith("00database")) {
    ++metaEntries;
    return;
  }
  ++indexEntries;
  const offset = b64(off, i + 1);
  const length = b64(len, i + 1);
  if (offset + length > data.length) throw new Error(`${options.index}:${i + 1}: entry past the end of the data`);
  const place = offset + "," + length;
  let def = byPlace.get(place);
  if (!def) byPlace.set(place, (def = { offset, length, headwords: [] }));
  const k = key(headword);
  def.headwords.push(k);
  if (!byHeadword.has(k)) byHeadword.set(k, []);
  if (!byHeadword.get(k).includes(def)) byHeadword.get(k).push(def);
});
const defs = [...byPlace.values()].sort((a, b) => a.offset - b.offset);

// Split each definition into title, aliases and body lines.
const DATE_LINE = /^\(\d{4}-\d{2}-\d{2}\)$/;
defs.forEach((def, i) => {
  def.n = i + 1;
  const lines = decode(data.subarray(def.offset, def.offset + def.length)).split("\n");
  let blank = lines.findIndex((l) => l.trim() === "");
  if (blank < 0) blank = lines.length;
  const header = lines.slice(0, blank).filter((l) => l.trim() !== "");
  // The headword may wrap over several header lines; take the shortest prefix that is a headword.
  let take = 1;
  for (let k = 1; k <= header.length; ++k) {
    if (def.headwords.includes(key(header.slice(0, k).join(" ")))) {
      take = k;
      break;
    }
  }
  def.title = collapse(header.slice(0, take).join(" ")) || def.headwords[0];
  def.aliases = header.slice(take).map(collapse).filter(Boolean);
  def.body = lines.slice(blank).filter((l) => !DATE_LINE.test(l.trim()));
  def.raw = collapse(def.body.join("\n"));
});

// --- Cross references -----------------------------------------------------------------------------
function resolve(ref) {
  const k = key(ref);
  if (byHeadword.has(k)) return byHeadword.get(k);
  // FOLDOC's own site resolves plurals: {operating systems}, {classes}, {libraries}.
  const tries = [];
  if (k.endsWith("s")) tries.push(k.slice(0, -1));
  if (k.endsWith("es")) tries.push(k.slice(0, -2));
  if (k.endsWith("ies")) tries.push(k.slice(0, -3) + "y");
  for (const t of tries) if (byHeadword.has(t)) return byHeadword.get(t);
  return [];
}
const REF = /\{(?!\s)([^{}]+)\}/g;
for (const def of defs) {
  // A pure redirect: the whole body is one cross reference.
  const m = /^\{([^{}]+)\}\.?$/.exec(def.raw);
  def.redirect = m ? resolve(m[1]) : null;
}
function target(def) {
  const seen = new Set();
  while (def.redirect && def.redirect.length === 1 && !seen.has(def)) {
    seen.add(def);
    def = def.redirect[0];
  }
  return def;
}
let references = 0;
let resolved = 0;
for (const def of defs) def.incoming = 0;
for (const def of defs) {
  const to = new Set();
  for (const m of def.raw.matchAll(REF)) {
    ++references;
    const hits = resolve(m[1]);
    if (hits.length) ++resolved;
    for (const h of hits) to.add(target(h));
  }
  to.delete(def);
  for (const t of to) ++t.incoming;
}

// --- Cleaning -------------------------------------------------------------------------------------
// Field markers open a sense: at the start of the body or after a sense number ("2. "). Their
// subject words, gathered there, are the vocabulary for markers found after a pronunciation, a date
// stamp, another marker or the end of a sentence; anything else in angle brackets is content.
const MARKER = /<([^<>{}@"=]{1,60})>/g;
const SENSE_START = /(?:^|\s)(?:\(?\d{1,2}[.)]|\(?[a-z]\))\s*$/;
const AFTER = /(?:(?:^|\s)(?:\/[^\/\s][^\/]*\/|\(\d{4}-\d{2}-\d{2}\))|[.;:)\]}>])\s*$/;
const fields = new Set();
for (const def of defs) {
  for (const m of def.raw.matchAll(MARKER)) {
    if (m.index === 0 || SENSE_START.test(def.raw.slice(Math.max(0, m.index - 40), m.index))) {
      for (const f of m[1].split(",")) fields.add(f.trim().toLowerCase());
    }
  }
}
fields.delete("");
function isMarker(inner, before) {
  if (!inner.split(",").every((p) => fields.has(p.trim().toLowerCase()))) return false;
  before = before.slice(-80);
  return before.trim() === "" || SENSE_START.test(before) || AFTER.test(before);
}

function clean(def) {
  let text = def.raw;
  // Angle brackets of field markers.
  text = text.replace(MARKER, (whole, inner, at, all) => (isMarker(inner, all.slice(0, at)) ? inner : whole));
  // Cross references: keep the words, drop the braces. A brace pair whose inside starts with a
  // space ("if (cond) { <body> }") or is empty ("{{}}") is code or set notation and stays.
  text = text.replace(/\{(?![\s"])([^{}"]*)\{(?!\s)([^{}]+)\}/g, "{$1$2"); // "{inherits {inheritance}}"
  text = text.replace(REF, "$1");
  // Unmatched braces are broken references ("{Microsoft> {Visual C}", "{Macintosh)") and go; a quoted
  // brace ('"}"' in the entry for the character itself) is content and stays.
  const open = [];
  const drop = new Set();
  for (let i = 0; i < text.length; ++i) {
    const c = text[i];
    if ((c !== "{" && c !== "}") || (text[i - 1] === '"' && text[i + 1] === '"')) continue;
    if (c === "{") open.push(i);
    else if (open.length) open.pop();
    else drop.add(i);
  }
  for (const i of open) drop.add(i);
  if (drop.size) text = text.split("").filter((c, i) => !drop.has(i)).join("");
  // A closing date stamp that shares its line with text ("...Dec 1995]. (1996-01-05)").
  text = text.replace(/\s*\(\d{4}-\d{2}-\d{2}\)\s*$/, "");
  text = collapse(text);
  const lower = text.toLowerCase();
  const missing = def.aliases.filter((a) => !lower.includes(a.toLowerCase()) && a.toLowerCase() !== def.title.toLowerCase());
  if (missing.length) text = `Also: ${missing.join(", ")}. ${text}`;
  return text;
}

// --- Selection and output -------------------------------------------------------------------------
const byTitle = (a, b) => {
  const x = a.title.toLowerCase();
  const y = b.title.toLowerCase();
  if (x !== y) return x < y ? -1 : 1;
  if (a.title !== b.title) return a.title < b.title ? -1 : 1;
  return a.n - b.n;
};
// Debian's addendum repeats an upstream definition or two word for word ("A4C"): written once.
let redirects = 0;
let dangling = 0;
let repeated = 0;
let empty = 0;
const written = new Set();
const unique = [];
for (const def of defs) {
  if (def.redirect) {
    ++redirects;
    if (!def.redirect.length) ++dangling;
  }
  def.text = clean(def);
  if (!def.text) {
    ++empty;
    def.text = def.title;
  }
  const k = def.title + "\u0000" + def.text;
  if (written.has(k)) {
    ++repeated;
    continue;
  }
  written.add(k);
  unique.push(def);
}
let chosen = unique;
if (limit) {
  // Pure redirects ("Sun" => "{Sun Microsystems}") carry no text of their own: they come last.
  chosen = [...unique]
    .sort((a, b) => !!a.redirect - !!b.redirect || b.incoming - a.incoming || byTitle(a, b))
    .slice(0, limit);
  chosen.sort(byTitle);
}

const tmp = output + ".partial." + process.pid;
const fd = fs.openSync(tmp, "w");
let bytes = 0;
let pending = [];
const flush = () => {
  const buf = Buffer.from(pending.join(""), "utf8");
  fs.writeSync(fd, buf);
  bytes += buf.length;
  pending = [];
};
let leftBraces = 0;
for (const def of chosen) {
  if (/[{}]/.test(def.text)) ++leftBraces;
  pending.push(JSON.stringify({ id: "foldoc-" + def.n, title: def.title, text: def.text }) + "\n");
  if (pending.length >= 1000) flush();
}
flush();
fs.fsyncSync(fd);
fs.closeSync(fd);
fs.renameSync(tmp, output);

const notes = [`${redirects} pure redirects (${dangling} to a missing headword)`];
if (latin1Fallbacks) notes.push(`${latin1Fallbacks} pieces decoded as latin-1`);
if (repeated) notes.push(`${repeated} repeated word for word left out`);
if (empty) notes.push(`${empty} without text`);
if (leftBraces) notes.push(`${leftBraces} keep braces of code or quoted characters`);
console.error(
  `foldoc: ${indexEntries} index entries (${metaEntries} meta skipped) -> ${defs.length} definitions read, ` +
    `${chosen.length} written, ${bytes} bytes -> ${output}; ` +
    `${resolved}/${references} cross references resolved` + (notes.length ? "; " + notes.join(", ") : ""),
);
