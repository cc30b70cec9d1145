// Bundles the link card (ui/link-card/) into the one self-contained HTML file the server compiles
// in (src/ui/link-card.html): card.js with the QR encoder it imports, minified, and card.css,
// minified, inlined into index.html in place of the tags that name them. Run it through
// scripts/build-ui; `--check` builds in memory and fails if the checked-in file differs.
//
// The output is deterministic for one esbuild version (pinned in package.json), so the check
// compares bytes.

import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import * as esbuild from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const source = join(root, "ui/link-card");
const output = join(root, "src/ui/link-card.html");
const require = createRequire(import.meta.url);

// What hosts may render: the spec's size budget for this card (issue 19).
const MAX_BYTES = 80 * 1024;

function fail(message) {
  console.error("build-ui: " + message);
  process.exit(1);
}

// The QR encoder's copyright and permission notice, kept in the output as its MIT license asks.
// It is the comment that opens the package's file, less its web address (the card must carry
// no URL at all).
function qrNotice() {
  const file = require.resolve("nayuki-qr-code-generator");
  const text = readFileSync(file, "utf8");
  const match = text.match(/^\/\*([\s\S]*?)\*\//);
  if (!match) fail("the QR encoder's license comment was not found in " + file);
  const lines = match[1]
    .split("\n")
    .map((line) => line.replace(/^ ?\* ?/, "").trimEnd())
    .filter((line) => !/https?:\/\//.test(line));
  const version = require("nayuki-qr-code-generator/package.json").version;
  return ["nayuki-qr-code-generator " + version + ":", ...lines].join("\n").trim();
}

async function bundle() {
  const js = await esbuild.build({
    entryPoints: [join(source, "card.js")],
    bundle: true,
    minify: true,
    format: "iife",
    target: ["es2020", "chrome100", "safari15", "firefox100"],
    legalComments: "none",
    charset: "utf8",
    write: false,
    logLevel: "silent",
  });
  const css = await esbuild.build({
    entryPoints: [join(source, "card.css")],
    bundle: true,
    minify: true,
    target: ["chrome100", "safari15", "firefox100"],
    charset: "utf8",
    write: false,
    logLevel: "silent",
  });
  const script = js.outputFiles[0].text.trim();
  const style = css.outputFiles[0].text.trim();
  if (/<\/script/i.test(script)) fail("the bundled script contains </script");
  if (/<\/style/i.test(style)) fail("the stylesheet contains </style");

  let html = readFileSync(join(source, "index.html"), "utf8");
  const replace = (tag, by) => {
    if (!html.includes(tag)) fail("ui/link-card/index.html no longer contains " + tag);
    html = html.replace(tag, () => by);
  };
  replace('<link rel="stylesheet" href="./card.css">', "<style>" + style + "</style>");
  replace(
    '<script type="module" src="./card.js"></script>',
    "<!--\n" + qrNotice().replaceAll("--", "- -") + "\n-->\n<script>" + script + "</script>",
  );
  return html;
}

const html = await bundle();
const bytes = Buffer.byteLength(html, "utf8");
if (bytes > MAX_BYTES) fail(`the card is ${bytes} bytes, over the ${MAX_BYTES}-byte budget`);

if (process.argv.includes("--check")) {
  let current = "";
  try {
    current = readFileSync(output, "utf8");
  } catch {
    fail(output + " is missing: run scripts/build-ui");
  }
  if (current !== html) {
    fail("src/ui/link-card.html differs from what ui/link-card/ builds: run scripts/build-ui and commit the result");
  }
  console.log(`build-ui: src/ui/link-card.html is up to date (${bytes} bytes)`);
} else {
  writeFileSync(output, html);
  console.log(`build-ui: wrote src/ui/link-card.html (${bytes} bytes)`);
}
