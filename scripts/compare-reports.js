#!/usr/bin/env node
// Puts the markdown tables of several runs of one benchmark side by side: for every table and row
// of the first run's report, each run's value of every column, as "a · b · c · d".
//   node scripts/compare-reports.js FILE.md DIR1 DIR2 ...   (reads DIRn/FILE.md)
const fs = require("fs");
const path = require("path");

// [{title, header, rows: Map(key → cells)}]; a row's key is its first cell, with "#2", "#3" … added
// when the first cell repeats within a table, so that no row hides another.
function tables(text) {
  const out = [];
  let title = "", current = null;
  for (const line of text.split("\n")) {
    if (!line.startsWith("|")) {
      if (line.trim()) title = line.trim();
      current = null;
      continue;
    }
    const cells = line.split("|").slice(1, -1).map((c) => c.trim());
    if (cells.every((c) => /^:?-+:?$/.test(c))) continue;
    if (current === null) {
      current = { title, header: cells, rows: new Map() };
      out.push(current);
    } else {
      let key = cells[0];
      for (let n = 2; current.rows.has(key); ++n) key = `${cells[0]} #${n}`;
      current.rows.set(key, cells);
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
// Tables are matched by title (the n-th table of that title), so that a table one run lacks does
// not shift the others.
function find(run, title, nth) {
  return run.filter((t) => t.title === title)[nth];
}
runs[0].forEach((t, i) => {
  const nth = runs[0].slice(0, i).filter((u) => u.title === t.title).length;
  const same = runs.map((r) => find(r, t.title, nth));
  console.log(`${t.title}\n`);
  console.log(`| ${t.header.join(" | ")} |`);
  console.log(`|${t.header.map(() => "---").join("|")}|`);
  for (const [key] of t.rows) {
    const cells = t.header.map((_, c) =>
      c === 0 ? key : same.map((u) => (u && u.rows.get(key) ? u.rows.get(key)[c] : "–")).join(" · "));
    console.log(`| ${cells.join(" | ")} |`);
  }
  console.log("");
});
