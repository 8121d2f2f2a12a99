-- wrk script for the framework ceiling: GET /health (a minimal JSON answer of the same server).
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d errors=%d status_errors=%d rps=%.0f p50_us=%d p99_us=%d\n",
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99)))
end
