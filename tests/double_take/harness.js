// Runs Double Take v1.13.1's own code for streamrec's compatibility tests (the optional
// cross-check of tests/double_take_port.py).
//
// DOUBLE_TAKE_SRC names a Double Take tree at v1.13.1 (jakowenko/double-take @ 8e2728d, MIT),
// outside this repository; NODE_PATH the node_modules of package.json here (the versions of
// Double Take's package-lock). Reads one JSON command
// on stdin, writes one JSON answer on stdout. The modules Double Take needs a database, native
// image libraries or JWT secrets for are replaced by stand-ins that throw if they are ever called:
// none of the code paths run here uses them.
'use strict';

const Module = require('module');
const fs = require('fs');
const os = require('os');
const path = require('path');
const yaml = require('js-yaml');

const SRC = path.join(process.env.DOUBLE_TAKE_SRC, 'api', 'src');

const refuse = (name) => () => {
  throw new Error(`the harness does not provide ${name}`);
};
const recorded = [];
const clients = [];
const timers = [];

// Double Take's module (relative to api/src) -> what the harness loads instead
const STANDINS = {
  'util/auth.util': {
    jwt: { sign: refuse('auth.util.jwt') },
    parse: { url: () => false },
    digest: Object.assign(refuse('auth.util.digest'), { exists: () => false }),
  },
  'util/fs.util': { writer: refuse('fs.util.writer'), delete: refuse('fs.util.delete') },
  'util/db.util': { create: { match: refuse('db.util') } },
  'util/mask-image.util': { buffer: refuse('mask-image.util') },
  'util/opencv': { shouldLoad: () => false, faceCount: refuse('opencv') },
  // only the CompreFace detector: the others need the AWS SDK
  'util/detectors': { compreface: null },
  // the real MQTT client, its publish calls recorded
  mqtt: null,
};

function standIn(request, parent) {
  if (request === 'mqtt' && parent && parent.filename.startsWith(SRC)) return 'mqtt';
  if (!request.startsWith('.') || !parent || !parent.filename.startsWith(SRC)) return null;
  const target = path.relative(SRC, path.resolve(path.dirname(parent.filename), request));
  const key = target.replace(/(\/index)?\.js$/, '');
  return Object.prototype.hasOwnProperty.call(STANDINS, key) ? key : null;
}

const load = Module._load;
Module._load = function loadWithStandIns(request, parent, isMain) {
  const key = standIn(request, parent);
  if (key === 'mqtt') {
    const mqtt = load.call(this, 'mqtt', parent, isMain);
    return {
      connect(...args) {
        const client = mqtt.connect(...args);
        clients.push(client);
        const publish = client.publish.bind(client);
        client.flushed = () =>
          new Promise((resolve, reject) => {
            publish('harness/flushed', '', { qos: 1 }, (error) => (error ? reject(error) : resolve()));
          });
        client.publish = (topic, message, options, callback) => {
          const retain = Boolean(options && options.retain);
          recorded.push({ topic, message: message === undefined ? null : String(message), retain });
          return publish(topic, message === undefined ? '' : message, options, callback);
        };
        return client;
      },
    };
  }
  if (key === 'util/detectors') {
    return { compreface: load.call(this, path.join(SRC, 'util/detectors/compreface.js'), parent) };
  }
  if (key !== null) return STANDINS[key];
  return load.call(this, request, parent, isMain);
};

function configure(config) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'double-take-'));
  fs.writeFileSync(path.join(dir, 'config.yml'), yaml.dump(config || {}));
  process.env.CONFIG_PATH = dir;
  process.env.SECRETS_PATH = dir;
  process.env.STORAGE_PATH = dir;
  process.env.MEDIA_PATH = dir;
  return dir;
}

const dt = (file) => require(path.join(SRC, file));

// Double Take's logger adds console.verbose; its messages go to stderr, stdout is the answer
console.verbose = () => {};
console.log = (...args) => process.stderr.write(`${args.map(String).join(' ')}\n`);
console.info = console.log;

// The lines of recognize.controller.start that build its output (api/src/controllers/
// recognize.controller.js, the controller itself needs express and the database).
function output(event, groups, seconds) {
  const recognize = dt('util/recognize.util.js');
  const time = dt('util/time.util.js');
  const { best, misses, unknowns, attempts, counts } = recognize.normalize(groups);
  return {
    id: event.id,
    duration: seconds,
    timestamp: time.current(),
    attempts,
    camera: event.camera,
    zones: event.zones || [],
    counts,
    matches: best,
    misses,
    unknowns,
  };
}

async function publish(out) {
  const mqtt = dt('util/mqtt.util.js');
  const { MQTT } = dt('constants/index.js')();
  if (!MQTT || !MQTT.HOST) throw new Error('the command needs config.mqtt.host');
  mqtt.connect();
  const started = Date.now();
  while (!mqtt.status().connected) {
    if (Date.now() - started > 20000) throw new Error('no connection to the MQTT broker');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const before = recorded.length;
  // recognize() is synchronous: the timers it sets are its person-count reset, kept to fire now
  const realSetTimeout = global.setTimeout;
  global.setTimeout = (fn, ms) => {
    timers.push({ fn, ms });
    return { harness: true };
  };
  try {
    mqtt.recognize(out);
  } finally {
    global.setTimeout = realSetTimeout;
  }
  const recognized = recorded.slice(before);
  const resetStart = recorded.length;
  const resets = timers.splice(0);
  resets.forEach(({ fn }) => fn());
  const reset = recorded.slice(resetStart);
  // the broker acknowledged a QoS 1 marker (harness/flushed, not recorded) sent after them:
  // it has every message; then a clean disconnect
  await Promise.all(clients.map((client) => client.flushed()));
  await Promise.all(clients.map((client) => new Promise((resolve) => client.end(false, {}, resolve))));
  return { connect: recorded.slice(0, before), recognized, reset, reset_after_ms: resets.map((t) => t.ms) };
}

const COMMANDS = {
  // compreface.recognize: the request Double Take sends (to config.detectors.compreface.url)
  async recognize(cmd) {
    const compreface = dt('util/detectors/compreface.js');
    const { status, data } = await compreface.recognize({ key: cmd.image, test: cmd.test });
    return { status, data };
  },
  // compreface.normalize of a CompreFace answer
  async normalize(cmd) {
    const compreface = dt('util/detectors/compreface.js');
    try {
      return { results: compreface.normalize({ camera: cmd.camera, data: cmd.data }) };
    } catch (error) {
      return { error: error.message };
    }
  },
  // one Frigate-style event: every image through process.util.start (the real detector request
  // and normalisation), recognize.util.normalize, the controller's output, optionally published
  async event(cmd) {
    const processUtil = dt('util/process.util.js');
    const results = [];
    const errors = {};
    for (let i = 0; i < cmd.images.length; i += 1) {
      results.push(
        ...(await processUtil.start({
          camera: cmd.camera,
          filename: `${cmd.id}-${i}.jpg`,
          tmp: cmd.images[i],
          attempts: i + 1,
          errors,
        }))
      );
    }
    const group = { duration: 0, type: cmd.type || 'snapshot', attempts: cmd.images.length, results };
    const out = output(cmd, [group], 0);
    return { output: out, published: cmd.publish ? await publish(out) : null };
  },
  // mqtt.util.recognize of a given output, on a real broker
  async publish(cmd) {
    return publish(cmd.output);
  },
  async stringify(cmd) {
    return { texts: cmd.values.map((v) => JSON.stringify(v)) };
  },
  async time(cmd) {
    const { Settings } = require('luxon');
    Settings.now = () => cmd.now;
    return { timestamp: dt('util/time.util.js').current() };
  },
};

async function main() {
  const cmd = JSON.parse(fs.readFileSync(0, 'utf8'));
  const dir = configure(cmd.config);
  let answer;
  try {
    answer = await COMMANDS[cmd.op](cmd);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  // a pipe is written asynchronously: exit (timers of mqtt.js may linger) once it is flushed
  process.stdout.write(JSON.stringify(answer), () => process.exit(0));
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`, () => process.exit(1));
});
