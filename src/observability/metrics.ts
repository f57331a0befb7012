// Prometheus metrics in notary-server's naming, so existing dashboards keep working.
//
// notary-server exports `notary_server_http_request_duration_microseconds` as a summary
// (quantiles 0.5/0.9/0.99, `_sum`, `_count`) with an `operation` label. prom-client's Summary
// feeds every observation into a t-digest (a few µs each, on every GET), so this summary keeps
// a log-linear bucket histogram per operation instead: an observation is one array increment,
// and the quantiles are read off the buckets when /metrics is scraped (within ~3% of the true
// value: 32 buckets per power of two, interpolated inside a bucket, clamped to the min/max seen).
// Like prom-client's Summary without maxAgeSeconds, the quantiles cover the process lifetime.
//
// In cluster mode (src/cluster) every worker keeps its own metrics; /metrics shows their merge.
// The buckets are the whole state of the summary, so merging adds them (and sums, counts) exactly,
// and the merged quantiles are as close as one process's. Other metrics (process, proxy counters)
// merge with prom-client's per-metric aggregators (counters add; see AggregatorRegistry).
import {
  AggregatorRegistry,
  Registry,
  collectDefaultMetrics,
  type Metric,
  type MetricObjectWithValues,
  type MetricValue,
} from 'prom-client';

export type Operation =
  'UpdateTUF' | 'GetRoleByHash' | 'GetRoleByVersion' | 'GetRole' | 'GetKey' | 'RotateKey' | 'DeleteTUF' | 'Changefeed';

const SUB_BITS = 5;
const SUB = 1 << SUB_BITS; // buckets per power of two
/** Bucket 0 holds values below 1 µs; then SUB buckets for each power of two from 2^0 to 2^40 µs. */
const OCTAVES = 41;
const BUCKETS = 1 + OCTAVES * SUB;

/** 2^-e for each octave: observe() runs on every request, and `2 ** e` is a pow() call there. */
const INV_POW2 = Float64Array.from({ length: OCTAVES }, (_, e) => 2 ** -e);

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
      i = 1 + e * SUB + Math.min(SUB - 1, Math.floor((us * INV_POW2[e]! - 1) * SUB));
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

  snapshot(operation: Operation): DurationsSnapshot {
    const buckets: number[] = [];
    for (let i = 0; i < BUCKETS; i++) if (this.counts[i] !== 0) buckets.push(i, this.counts[i]!);
    // JSON has no Infinity: an empty summary's bounds travel as null.
    return { operation, buckets, count: this.count, sum: this.sum, min: this.count ? this.min : null, max: this.count ? this.max : null };
  }

  /** Adds a snapshot's observations to these. */
  add(s: DurationsSnapshot): void {
    for (let j = 0; j + 1 < s.buckets.length; j += 2) {
      const i = s.buckets[j]!;
      if (i >= 0 && i < BUCKETS) this.counts[i]! += s.buckets[j + 1]!;
    }
    this.count += s.count;
    this.sum += s.sum;
    if (s.min !== null && s.min < this.min) this.min = s.min;
    if (s.max !== null && s.max > this.max) this.max = s.max;
  }
}

/** One operation's request durations, JSON-able: its non-empty buckets as [index, count, …] pairs. */
export interface DurationsSnapshot {
  operation: Operation;
  buckets: number[];
  count: number;
  sum: number;
  min: number | null;
  max: number | null;
}

/** prom-client's JSON form of one metric (Registry.getMetricsAsJSON). */
type MetricJson = MetricObjectWithValues<MetricValue<string>>;

/** The raw state of one process's metrics (or of several, merged), JSON-able for cluster IPC. */
export interface MetricsSnapshot {
  durations: DurationsSnapshot[];
  /** Everything else in the registry, as prom-client gives it. */
  others: MetricJson[];
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

  snapshot(): DurationsSnapshot[] {
    return [...this.byOp].map(([op, d]) => d.snapshot(op));
  }
}

/** The values that only grow, of metrics whose merge is a sum: what a stopped worker still counts for. */
const cumulative = (m: MetricJson) => {
  const type = m.type as unknown as string; // typed as an enum, a string at run time
  return m.aggregator === 'sum' && (type === 'counter' || type === 'histogram');
};

export class Metrics {
  readonly registry = new Registry();
  private duration = new OperationSummary();
  private collector: (() => Promise<string>) | undefined;
  constructor() {
    this.registry.registerMetric(this.duration as unknown as Metric);
    collectDefaultMetrics({ register: this.registry, prefix: 'trustgate_' });
  }
  /** Records a request of `op` that started at `startMs` (a performance.now() reading). */
  observe(op: Operation, startMs: number): void {
    this.duration.of(op).observe((performance.now() - startMs) * 1000);
  }

  /** The text /metrics answers: this registry's, unless a collector (cluster mode) replaces it. */
  text(): Promise<string> {
    return this.collector ? this.collector() : this.registry.metrics();
  }

  /** Makes /metrics answer with `collect()` (a cluster worker: the merge of all workers). */
  collectWith(collect: () => Promise<string>): void {
    this.collector = collect;
  }

  /** This process's raw state, for merging with other processes'. */
  async snapshot(): Promise<MetricsSnapshot> {
    const others = (await this.registry.getMetricsAsJSON()).filter((m) => m.name !== this.duration.name) as MetricJson[];
    return { durations: this.duration.snapshot(), others };
  }

  /**
   * Merges snapshots: the duration summary exactly (buckets, sums and counts add; min and max of
   * the bounds), other metrics by their prom-client aggregator (counters and histograms add,
   * gauges as the metric declares: sum, first, min, max, average, or left out).
   */
  static merge(snapshots: readonly MetricsSnapshot[]): MetricsSnapshot {
    const summary = new OperationSummary();
    for (const s of snapshots) for (const d of s.durations) summary.of(d.operation).add(d);
    const aggregated = AggregatorRegistry.aggregate(snapshots.map((s) => s.others));
    // aggregate() registers each merged metric as its JSON plus a get(): keep the JSON.
    const others = aggregated.getMetricsAsArray().map((m) => {
      const j = m as unknown as MetricJson;
      return { name: j.name, help: j.help, type: j.type, aggregator: j.aggregator, values: j.values } as MetricJson;
    });
    return { durations: summary.snapshot(), others };
  }

  /** The part of a snapshot that only grows (kept for a stopped worker so merged counters never go back). */
  static cumulative(s: MetricsSnapshot): MetricsSnapshot {
    return { durations: s.durations, others: s.others.filter(cumulative) };
  }

  /** The Prometheus text of a (merged) snapshot, in the same form a single process's /metrics has. */
  static render(s: MetricsSnapshot): Promise<string> {
    const registry = new Registry();
    const summary = new OperationSummary();
    for (const d of s.durations) summary.of(d.operation).add(d);
    registry.registerMetric(summary as unknown as Metric);
    for (const m of s.others) registry.registerMetric({ ...m, get: () => m } as unknown as Metric);
    return registry.metrics();
  }
}
