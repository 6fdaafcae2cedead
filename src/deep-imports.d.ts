/**
 * Single modules of dependencies that the proxy imports instead of the package's entry point, typed as the
 * package types them. `undici`'s entry loads every API it has (fetch, WebSocket, caches, mocks, and Node's own
 * bundled copy of undici): ~3 MiB of heap that the dispatch API never uses. `prom-client`'s loads its default
 * metrics and OpenTelemetry's API: ~1.3 MiB for the four classes the metrics need.
 */
declare module 'undici/lib/dispatcher/agent.js' {
  import { Agent } from 'undici'
  export = Agent
}

declare module 'undici/lib/core/errors.js' {
  import { errors } from 'undici'
  export = errors
}

declare module 'prom-client/lib/registry.js' {
  import { Registry } from 'prom-client'
  export = Registry
}

declare module 'prom-client/lib/counter.js' {
  import { Counter } from 'prom-client'
  export = Counter
}

declare module 'prom-client/lib/gauge.js' {
  import { Gauge } from 'prom-client'
  export = Gauge
}

declare module 'prom-client/lib/histogram.js' {
  import { Histogram } from 'prom-client'
  export = Histogram
}
