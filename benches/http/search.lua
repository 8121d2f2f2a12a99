-- wrk script: GET /v1/search for patient points read from points.txt ("lat lon" per line),
-- cycling through them; the bearer token comes from the TOKEN environment variable.
local points = {}
for line in io.lines(os.getenv("POINTS") or "points.txt") do
  local lat, lon = line:match("([%-%d%.]+)%s+([%-%d%.]+)")
  if lat then points[#points + 1] = { lat, lon } end
end
local token = os.getenv("TOKEN")
local i = 0
request = function()
  i = i % #points + 1
  local p = points[i]
  return wrk.format("GET", "/v1/search?lat=" .. p[1] .. "&lon=" .. p[2] .. "&limit=10",
    { ["Authorization"] = "Bearer " .. token })
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d errors=%d status_errors=%d rps=%.0f p50_us=%d p99_us=%d\n",
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99)))
end
