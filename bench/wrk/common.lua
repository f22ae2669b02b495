-- Shared by every scenario: thread ids, a strict status check, and one JSON line at the end.
-- BENCH_EXPECT is the one status a scenario's answers must have (200 for pages, 303 for a
-- create); any other answer (a 303 to the sign-in page, a 4xx, a 503) counts as an error.
local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("id", next_id)
  table.insert(threads, thread)
end

expected = tonumber(os.getenv("BENCH_EXPECT") or "200")
unexpected = 0
statuses = {} -- unexpected answers by status, for the report

function response(status, headers, body)
  if status ~= expected then
    unexpected = unexpected + 1
    statuses[status] = (statuses[status] or 0) + 1
  end
end

function use_cookie()
  local cookie = os.getenv("BENCH_COOKIE") or ""
  if cookie ~= "" then
    wrk.headers["Cookie"] = cookie
  end
end

function done(summary, latency, requests)
  local bad, by_status = 0, {}
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("unexpected") or 0)
    for status, count in pairs(thread:get("statuses") or {}) do
      by_status[status] = (by_status[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(by_status) do
    table.insert(parts, string.format('"%d": %d', status, count))
  end
  -- Every latency recorded (µs) and how many responses took it, so that runs taken in
  -- turns are summed into one (bench/load.py). wrk hands them out one at a time, each call
  -- walking its table from the start: a fraction of a second for a few thousand values.
  local latencies = {}
  for i = 1, #latency do
    local value, count = latency(i)
    table.insert(latencies, string.format("[%d, %d]", value, count))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %.0f, '
      .. '"p99_us": %.0f, "max_us": %.0f, "connect": %d, "read": %d, "write": %d, '
      .. '"timeout": %d, "status": %d, "unexpected": %d, "by_status": {%s}, '
      .. '"latencies": [%s]}\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.timeout, e.status, bad,
    table.concat(parts, ", "), table.concat(latencies, ", ")))
end
