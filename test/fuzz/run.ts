// `npm run fuzz -- [--seconds N] [--iterations N] [--seed N] [--publish-share 0..1] [--out DIR] [--keep-going]`:
// a long fuzz run (default 600 s). Exits 1 on the first failure (with --keep-going: after the run,
// listing them all); each failing input is saved under --out.
import { parseArgs } from 'node:util';
import { defaultOutDir, runFuzz } from './fuzz.js';
import { randomSeed } from './prng.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '600' },
    iterations: { type: 'string' },
    seed: { type: 'string' },
    'publish-share': { type: 'string', default: '0.5' },
    out: { type: 'string' },
    'keep-going': { type: 'boolean', default: false },
  },
});

const num = (v: string | undefined, name: string): number | undefined => {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a non-negative number`);
  return n;
};

const seed = num(values.seed, 'seed') ?? randomSeed();
try {
  const stats = await runFuzz({
    seed,
    seconds: num(values.seconds, 'seconds')!,
    iterations: num(values.iterations, 'iterations') ?? Number.MAX_SAFE_INTEGER,
    publishShare: num(values['publish-share'], 'publish-share')!,
    outDir: values.out ?? defaultOutDir(),
    log: (l) => console.log(l),
    keepGoing: values['keep-going'],
  });
  if (stats.failures.length > 0) throw new Error(`${stats.failures.length} failure(s)`);
} catch (e) {
  console.error((e as Error).message);
  console.error(`reproduce: npm run fuzz -- --seed ${seed}`);
  process.exit(1);
}
