// Reads ctest's JUnit file and prints the closing line "N passed, N failed, N skipped" and, for
// each skipped test, its name and the reason it gave (GTEST_SKIP's message, or the SKIP line of a
// script test), so that a run without ../shared/data says what it did not check.
// Usage: node scripts/test-summary.js build/test/ctest-results.xml
"use strict";
const fs = require("fs");

const xml = fs.readFileSync(process.argv[2], "utf8");
const unescape = (s) =>
  s
    .replace(/&#(\d+);/g, (_, n) => String.fromCodePoint(Number(n)))
    .replace(/&#x([0-9a-f]+);/gi, (_, n) => String.fromCodePoint(parseInt(n, 16)))
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, "&");

let passed = 0, failed = 0;
const skipped = [];
for (const m of xml.matchAll(/<testcase\b([^>]*?)(\/>|>([\s\S]*?)<\/testcase>)/g)) {
  const attrs = m[1], body = m[3] || "";
  const name = unescape((attrs.match(/\bname="([^"]*)"/) || [])[1] || "?");
  const status = (attrs.match(/\bstatus="([^"]*)"/) || [])[1] || "";
  // ctest marks a test that did not run "notrun" with its completion status as the message: a real
  // skip (SKIP_REGULAR_EXPRESSION, SKIP_RETURN_CODE) or a failure to start (no executable, a
  // required file or fixture missing), which counts as failed.
  const message = unescape((body.match(/<skipped\b[^>]*\bmessage="([^"]*)"/) || [])[1] || "");
  const skip = status === "disabled" || /^(SKIP_REGULAR_EXPRESSION_MATCHED|SKIP_RETURN_CODE=\d+)$/.test(message);
  if (skip) {
    const out = unescape((body.match(/<system-out>([\s\S]*?)<\/system-out>/) || [])[1] || "");
    const lines = out.split("\n").map((l) => l.trim());
    // gtest: "file:line: Skipped" then the message; a script: "SKIP: why".
    let why = "";
    const at = lines.findIndex((l) => /: Skipped$/.test(l));
    if (at >= 0) why = lines.slice(at + 1).find((l) => l && !l.startsWith("[")) || "";
    if (!why) why = (lines.find((l) => /^SKIP\b/.test(l)) || "").replace(/^SKIP:?\s*/, "");
    skipped.push([name, why || message || "(no reason printed)"]);
  } else if (/<failure\b/.test(body) || status === "fail" || status === "notrun") {
    ++failed;
  } else {
    ++passed;
  }
}
if (skipped.length) {
  console.log(`[test] ${skipped.length} skipped, and why:`);
  for (const [name, why] of skipped) console.log(`  ${name}: ${why}`);
}
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped.length} skipped`);
