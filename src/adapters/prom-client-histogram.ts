// Adapter over a private API of prom-client: Registry.metrics() reads a metric through getForPromString() when it
// has one (Histogram does), else get(). test/adapters/prom-client-histogram.test.ts fails when an update changes
// what the registry calls or the shape it expects.
import { Histogram, type HistogramConfiguration, type LabelValues, type MetricObjectWithValues, type MetricValueWithName } from 'prom-client'

/** One label set's observations: per-bucket counts (not cumulative, in the order of the sorted bounds). */
export interface HistogramSeries<T extends string> {
  labels: LabelValues<T>
  counts: ArrayLike<number>
  sum: number
  count: number
}

/**
 * A prom-client Histogram whose values are counted by the subclass in its own way and exposed in the shape
 * prom-client's own Histogram answers with.
 */
export abstract class CountedHistogram<T extends string> extends Histogram<T> {
  protected readonly bounds: number[]

  constructor (private readonly configuration: HistogramConfiguration<T> & { buckets: number[] }) {
    super(configuration)
    this.bounds = [...configuration.buckets].sort((a, b) => a - b)
  }

  protected abstract series (): Iterable<HistogramSeries<T>>
  /** Forgets every observation; called by prom-client's constructor too, before the subclass's fields exist. */
  protected abstract clear (): void

  override async get (): Promise<MetricObjectWithValues<MetricValueWithName<T>>> {
    const { name, help } = this.configuration
    const values: Array<MetricValueWithName<T>> = []
    for (const { labels, counts, sum, count } of this.series()) {
      let cumulative = 0
      for (const [i, bound] of this.bounds.entries()) {
        cumulative += counts[i]
        values.push({ metricName: `${name}_bucket`, labels: { le: bound, ...labels } as LabelValues<T>, value: cumulative })
      }
      values.push({ metricName: `${name}_bucket`, labels: { le: '+Inf', ...labels } as LabelValues<T>, value: count })
      values.push({ metricName: `${name}_sum`, labels, value: sum })
      values.push({ metricName: `${name}_count`, labels, value: count })
    }
    // The object prom-client's own Histogram answers with (its typings say an enum where the code has a string).
    return { name, help, type: 'histogram', aggregator: 'sum', values } as unknown as MetricObjectWithValues<MetricValueWithName<T>>
  }

  // What the registry asks for when it writes the text format.
  async getForPromString (): Promise<MetricObjectWithValues<MetricValueWithName<T>>> {
    return await this.get()
  }

  override reset (): void {
    this.clear()
  }
}
