-- wrk script: closed-loop POST of one fixed body, machine-readable totals at the end.
--
-- Configured through the environment (wrk passes no options to the top-level chunk):
--   BENCH_BODY_FILE  path of the request body; read in binary mode so Triton's
--                    binary tensor bodies (JSON header + raw FP32 bytes) go out intact
--   BENCH_HEADERS    extra request headers, one "Name: value" per line
--
-- No response() callback: defining one makes wrk parse every response in Lua, which
-- slows the load generator. wrk already counts non-2xx/3xx statuses in
-- summary.errors.status, which done() reports.

local path = assert(os.getenv("BENCH_BODY_FILE"), "BENCH_BODY_FILE is not set")
local file = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()

for line in (os.getenv("BENCH_HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^%s*([^:]+):%s*(.-)%s*$")
  if name then
    wrk.headers[name] = value
  end
end

-- One "BENCH key=value ..." line each; latencies in microseconds (wrk's unit).
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout))
  io.write(string.format(
    "BENCH p50_us=%d p90_us=%d p99_us=%d mean_us=%.1f max_us=%d\n",
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
