// Prometheus metrics in notary-server's naming, so existing dashboards keep working.
//
// notary-server exports `notary_server_http_request_duration_microseconds` as a summary
// (quantiles 0.5/0.9/0.99, `_sum`, `_count`) with an `operation` label. prom-client's Summary
// feeds every observation into a t-digest (a few µs each, on every GET), so this summary keeps
// a log-linear bucket histogram per operation instead: an observation is one array increment,
// and the quantiles are read off the buckets when /metrics is scraped (within ~3% of the true
// value: 32 buckets per power of two, interpolated inside a bucket, clamped to the min/max seen).
// Like prom-client's Summary without maxAgeSeconds, the quantiles cover the process lifetime.
import { Registry, collectDefaultMetrics, type Metric } from 'prom-client';

export type Operation = 'UpdateTUF' | 'GetRoleByHash' | 'GetRoleByVersion' | 'GetRole' | 'GetKey' | 'RotateKey' | 'DeleteTUF' | 'Changefeed';

const SUB_BITS = 5;
const SUB = 1 << SUB_BITS; // buckets per power of two
/** Bucket 0 holds values below 1 µs; then SUB buckets for each power of two from 2^0 to 2^40 µs. */
const OCTAVES = 41;
const BUCKETS = 1 + OCTAVES * SUB;

/** Lower bound of bucket i (i ≥ 1). */
function bucketLow(i: number): number {
  const e = Math.floor((i - 1) / SUB);
  return 2 ** e * (1 + ((i - 1) % SUB) / SUB);
}

class Durations {
  readonly counts = new Float64Array(BUCKETS);
  count = 0;
  sum = 0;
  min = Infinity;
  max = -Infinity;

  observe(us: number): void {
    this.count++;
    this.sum += us;
    if (us < this.min) this.min = us;
    if (us > this.max) this.max = us;
    let i = 0;
    if (us >= 1) {
      // Exponent and mantissa by arithmetic: values up to 2^40 µs (12 days) get their own bucket.
      const e = us < 4294967296 ? 31 - Math.clz32(us) : Math.min(OCTAVES - 1, Math.floor(Math.log2(us)));
      i = 1 + e * SUB + Math.min(SUB - 1, Math.floor((us / 2 ** e - 1) * SUB));
    }
    this.counts[i]!++;
  }

  quantile(q: number): number {
    if (this.count === 0) return 0;
    const rank = q * this.count;
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      const c = this.counts[i]!;
      if (c === 0) continue;
      if (seen + c >= rank) {
        const lo = i === 0 ? 0 : bucketLow(i);
        const hi = i === 0 ? 1 : bucketLow(i + 1);
        const v = lo + ((hi - lo) * (rank - seen)) / c;
        return Math.min(this.max, Math.max(this.min, v));
      }
      seen += c;
    }
    return this.max;
  }

  reset(): void {
    this.counts.fill(0);
    this.count = 0;
    this.sum = 0;
    this.min = Infinity;
    this.max = -Infinity;
  }
}

interface SampleLine {
  metricName?: string;
  labels: Record<string, string | number>;
  value: number;
}

/**
 * A prom-client metric of type summary, labelled by operation: the registry only calls get()
 * (and reset()) on what it holds, and prints the same lines as for a prom-client Summary.
 */
class OperationSummary {
  readonly name = 'notary_server_http_request_duration_microseconds';
  readonly help = 'The HTTP request latencies in microseconds.';
  readonly type = 'summary';
  readonly aggregator = 'sum';
  readonly labelNames = ['operation'];
  private readonly percentiles = [0.5, 0.9, 0.99];
  private readonly byOp = new Map<Operation, Durations>();

  /** The durations of one operation, made on first use. */
  of(op: Operation): Durations {
    let d = this.byOp.get(op);
    if (!d) this.byOp.set(op, (d = new Durations()));
    return d;
  }

  async get() {
    const values: SampleLine[] = [];
    for (const [operation, d] of this.byOp) {
      for (const quantile of this.percentiles) values.push({ labels: { quantile, operation }, value: d.quantile(quantile) });
      values.push({ metricName: `${this.name}_sum`, labels: { operation }, value: d.sum });
      values.push({ metricName: `${this.name}_count`, labels: { operation }, value: d.count });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  reset(): void {
    for (const d of this.byOp.values()) d.reset();
  }
}

export class Metrics {
  readonly registry = new Registry();
  private duration = new OperationSummary();
  constructor() {
    this.registry.registerMetric(this.duration as unknown as Metric);
    collectDefaultMetrics({ register: this.registry, prefix: 'trustgate_' });
  }
  /** Records a request of `op` that started at `startMs` (a performance.now() reading). */
  observe(op: Operation, startMs: number): void {
    this.duration.of(op).observe((performance.now() - startMs) * 1000);
  }
}
