// `ruvllm serve` driven by the official `openai` JS client (issue 6): the real binary on a free port,
// the tiny LFM2 model under two names, an API key; stopped with SIGTERM.
//   node tests/server/openai_client_test.mjs [RUVLLM_BINARY] [TMP_DIR]
// Exit 77 (CTest SKIP_RETURN_CODE) without the word vectors or the openai package from scripts/setup.sh.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const binary = process.argv[2] ?? path.join(root, 'build/release/src/ruvllm');
const tmp = process.argv[3] ?? path.join(root, 'build/release/test-tmp');
const deps = process.env.RUVLLM_DEPS_DIR ?? path.join(root, 'build/deps');
const skip = (why) => { console.log(`SKIP: ${why}`); process.exit(77); };

const version = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).dependencies.openai;
const openaiDir = path.join(deps, 'npm', `openai-${version}`);
if (!fs.existsSync(path.join(openaiDir, 'index.mjs'))) skip(`no openai@${version} at ${openaiDir} (run scripts/setup.sh)`);
const words = process.env.RUVLLM_WORD_VECTORS || path.join(deps, 'glove-6B-100d.words');
if (!fs.existsSync(words)) skip(`no word-vector table at ${words} (run scripts/setup.sh)`);
const { default: OpenAI } = await import(pathToFileURL(path.join(openaiDir, 'index.mjs')).href);
const EMBEDDER = 'glove-6B-100d+sif', DIMENSION = 100, KEY = 'sk-ruvllm-test';

// The tests' tiny LFM2 (tests/fixtures.cpp: synth tiny, f16, seed 7), made here if no test has yet.
fs.mkdirSync(tmp, { recursive: true });
const model = path.join(tmp, 'tiny-lfm2-f16.gguf');
if (!fs.existsSync(model)) {
  execFileSync(binary, ['model', 'synth', '--size', 'tiny', '--type', 'f16', '--seed', '7', '-o', `${model}.${process.pid}`], { stdio: 'ignore' });
  fs.renameSync(`${model}.${process.pid}`, model);
}

const dir = path.join(tmp, 'openai-client');
fs.rmSync(dir, { recursive: true, force: true });
fs.mkdirSync(dir, { recursive: true });
const config = path.join(dir, 'ruvllm.toml'), portFile = path.join(dir, 'port'), log = path.join(dir, 'serve.log');
fs.writeFileSync(config, `[models]\ndefault = "large"\nthreads = 2\ncontext = 2048\n\n` +
  `[[model]]\nname = "small"\npath = ${JSON.stringify(model)}\n\n[[model]]\nname = "large"\npath = ${JSON.stringify(model)}\n\n` +
  `[memory]\ndata_dir = "data"\nword_vectors = ${JSON.stringify(words)}\n\n` +
  `[generation]\nmax_tokens = 8\ntemperature = 0\nseed = 1\n\n[server]\napi_keys = ["${KEY}"]\n`);

const out = fs.openSync(log, 'w');
const child = spawn(binary, ['serve', '-c', config, '--port', '0', '--port-file', portFile, '--grace', '5'], { stdio: ['ignore', out, out] });
const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
process.on('exit', () => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'));
const fail = (why) => { throw new Error(why); };

try {
  let port = 0;
  for (const until = Date.now() + 60_000; !port; await sleep(20)) {
    if (child.exitCode !== null) fail(`ruvllm serve exited early (${child.exitCode})`);
    if (Date.now() > until) fail('no port file after 60 s');
    if (fs.existsSync(portFile)) port = Number.parseInt(fs.readFileSync(portFile, 'utf8'), 10) || 0;
  }
  const base = `http://127.0.0.1:${port}`;
  for (const until = Date.now() + 60_000; (await fetch(`${base}/ready`)).status !== 200; await sleep(50))
    if (Date.now() > until) fail('not ready after 60 s');
  const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: KEY, maxRetries: 0, timeout: 120_000 });

  // GET /v1/models, through the client's pager: "auto" and the configured models.
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.deepEqual(ids, ['auto', 'small', 'large']);

  // Non-streaming chat: "auto" (routing off: models.default answers) and a named model.
  const ask = { messages: [{ role: 'user', content: 'What is a compiler?' }], max_tokens: 12, temperature: 0, seed: 3, cache: false };
  const answers = {};
  for (const [name, answering] of [['auto', 'large'], ['small', 'small']]) {
    const r = await client.chat.completions.create({ ...ask, model: name });
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.model, answering);
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.equal(typeof r.choices[0].message.content, 'string');
    assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason), r.choices[0].finish_reason);
    const u = r.usage;
    assert.ok(u.prompt_tokens > 0 && u.completion_tokens > 0 && u.completion_tokens <= 12, JSON.stringify(u));
    assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
    answers[name] = r;
  }

  // Streamed, same seed and temperature 0: the deltas concatenate to the same text.
  const plain = answers.small;
  let text = '', last, chunks = 0;
  for await (const chunk of await client.chat.completions.create({ ...ask, model: 'small', stream: true })) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    assert.equal(chunk.model, 'small');
    text += chunk.choices[0]?.delta?.content ?? '';
    last = chunk;
    chunks++;
  }
  assert.ok(chunks >= 2, `${chunks} chunks`);
  assert.equal(text, plain.choices[0].message.content);
  assert.equal(last.choices[0].finish_reason, plain.choices[0].finish_reason);
  assert.equal(last.usage.completion_tokens, plain.usage.completion_tokens);
  // The client's own accumulator (chat.completions.stream) rebuilds the same completion.
  const final = await client.chat.completions.stream({ ...ask, model: 'small' }).finalChatCompletion();
  assert.equal(final.choices[0].message.content, text);

  // Embeddings: as floats, and the client's default (it asks for base64 and decodes float32).
  const input = ['a compiler translates source code', 'the cat sat on the mat'];
  const floats = await client.embeddings.create({ model: EMBEDDER, input, encoding_format: 'float' });
  assert.equal(floats.model, EMBEDDER);
  assert.deepEqual(floats.data.map((d) => [d.index, d.embedding.length]), [[0, DIMENSION], [1, DIMENSION]]);
  assert.ok(floats.data.every((d) => d.embedding.every(Number.isFinite)));
  assert.ok(floats.usage.prompt_tokens > 0);
  const byDefault = await client.embeddings.create({ model: EMBEDDER, input });
  for (const [i, d] of byDefault.data.entries()) {
    assert.equal(d.embedding.length, DIMENSION, `default (base64) embedding ${i} has ${d.embedding.length} numbers`);
    d.embedding.forEach((x, j) => assert.ok(Math.abs(x - floats.data[i].embedding[j]) < 1e-6, `embedding ${i}[${j}]: ${x}`));
  }

  // Errors arrive as the client's typed APIErrors with the server's status and param.
  const rejects = (promise, Type, status, param) => assert.rejects(promise, (e) => {
    assert.ok(e instanceof Type, `${e?.constructor?.name}: ${e?.message}`);
    assert.equal(e.status, status);
    if (param) assert.equal(e.param, param);
    return true;
  });
  await rejects(client.chat.completions.create({ ...ask, model: 'no-such-model' }), OpenAI.NotFoundError, 404, 'model');
  await rejects(client.chat.completions.create({ ...ask, model: 'no-such-model', stream: true }), OpenAI.NotFoundError, 404, 'model');
  await rejects(client.embeddings.create({ model: 'text-embedding-3-small', input }), OpenAI.NotFoundError, 404, 'model');
  await rejects(client.chat.completions.create({ ...ask, model: 'small', max_tokens: 1_000_000 }), OpenAI.BadRequestError, 400, 'max_tokens');
  await rejects(client.chat.completions.create({ ...ask, model: 'small', max_tokens: -1 }), OpenAI.BadRequestError, 400, 'max_tokens');
  const stranger = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'sk-wrong', maxRetries: 0 });
  await rejects(stranger.models.list(), OpenAI.AuthenticationError, 401);
  await rejects(stranger.chat.completions.create({ ...ask, model: 'small' }), OpenAI.AuthenticationError, 401);

  // SIGTERM: a clean stop, exit status 0.
  child.kill('SIGTERM');
  const stop = await Promise.race([exited, sleep(60_000, 'timeout', { ref: false })]);
  if (stop === 'timeout') fail('still running 60 s after SIGTERM');
  if (stop.code !== 0) fail(`exit ${JSON.stringify(stop)} after SIGTERM`);
  console.log(`PASS: openai@${version} against ruvllm serve on port ${port}`);
} catch (e) {
  console.error(e, `\n--- ${log} ---\n${fs.readFileSync(log, 'utf8')}`);
  process.exit(1);
}
