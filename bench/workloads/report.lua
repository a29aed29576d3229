-- What every wrk script of the benchmark prints when its run is done: one JSON line that
-- `bazaar bench` reads (bench/loadgen.py). Loaded with dofile by catalog.lua and signed_in.lua.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "micros": %d, "errors": %d, "status_errors": %d, ' ..
    '"p50": %d, "p95": %d, "p99": %d, "max": %d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout + e.status,
    e.status, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max))
end
