#!/usr/bin/env node
// Puts the markdown tables of several runs of one benchmark side by side: for every table and row
// of the first run's report, each run's value of every column, as "a · b · c · d".
//   node scripts/compare-reports.js FILE.md DIR1 DIR2 ...   (reads DIRn/FILE.md)
const fs = require("fs");
const path = require("path");

function tables(text) {  // [{title, header, rows: Map(first cell → cells)}]
  const out = [];
  let title = "", current = null;
  for (const line of text.split("\n")) {
    if (!line.startsWith("|")) {
      if (line.trim()) title = line.trim();
      current = null;
      continue;
    }
    const cells = line.split("|").slice(1, -1).map((c) => c.trim());
    if (cells.every((c) => /^-+$/.test(c))) continue;
    if (current === null) {
      current = { title, header: cells, rows: new Map() };
      out.push(current);
    } else {
      current.rows.set(cells[0], cells);
    }
  }
  return out;
}

const [file, ...dirs] = process.argv.slice(2);
if (!file || dirs.length < 2) {
  console.error("usage: compare-reports.js FILE.md DIR1 DIR2 ...");
  process.exit(2);
}
const runs = dirs.map((d) => tables(fs.readFileSync(path.join(d, file), "utf8")));
console.log(`Runs, in each cell in this order: ${dirs.map((d) => path.basename(d)).join(" · ")}\n`);
runs[0].forEach((t, i) => {
  console.log(`${t.title}\n`);
  console.log(`| ${t.header.join(" | ")} |`);
  console.log(`|${t.header.map(() => "---").join("|")}|`);
  for (const [key] of t.rows) {
    const cells = t.header.map((_, c) =>
      c === 0 ? key : runs.map((r) => (r[i] && r[i].rows.get(key) ? r[i].rows.get(key)[c] : "–")).join(" · "));
    console.log(`| ${cells.join(" | ")} |`);
  }
  console.log("");
});
