-- wrk script: GET /v1/search for patient points read from points.txt ("lat lon" per line),
-- cycling through them; the bearer token comes from the TOKEN environment variable.
-- With PATH_ONLY=/health the same requests (same headers, same query strings) go to a minimal
-- endpoint instead: the framework ceiling, with the client doing exactly the same work.
local points = {}
for line in io.lines(os.getenv("POINTS") or "points.txt") do
  local lat, lon = line:match("([%-%d%.]+)%s+([%-%d%.]+)")
  if lat then points[#points + 1] = { lat, lon } end
end
local token = os.getenv("TOKEN")
local path = os.getenv("PATH_ONLY") or "/v1/search"
local requests = {}
local i = 0
init = function(args)
  -- formatted once per thread, so the client's cost per request is the same for every endpoint
  for k, p in ipairs(points) do
    requests[k] = wrk.format("GET", path .. "?lat=" .. p[1] .. "&lon=" .. p[2] .. "&limit=10",
      { ["Authorization"] = "Bearer " .. token })
  end
end
request = function()
  i = i % #requests + 1
  return requests[i]
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d errors=%d status_errors=%d rps=%.0f p50_us=%d p99_us=%d\n",
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99)))
end
