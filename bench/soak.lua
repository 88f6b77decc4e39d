-- wrk script for bench/soak: POST /v1/credentials with rotating tokens and repositories.
--
-- wrk -s bench/soak.lua URL -- REQUESTS_FILE [RATE]
--   REQUESTS_FILE  one request per line: "<token>\t<JSON body>" (written by bench/soak.py)
--   RATE           requests per second for the whole run, shared by wrk's threads; 0 or absent = as fast
--                  as the connections allow. Plain wrk has no rate option: the delay() hook paces each
--                  thread on a schedule of fixed slots (no catch-up bursts when behind; the run's achieved
--                  rate is reported, so falling behind shows).
-- done() prints one line "SOAK_RESULT {json}" for the driver to parse.

local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } soak_timespec;
int clock_gettime(int clk_id, soak_timespec *tp);
]]
local ts = ffi.new("soak_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

local requests, count, index = {}, 0, 0
local interval, next_slot = 0, nil

function init(args)
  local file = assert(io.open(args[1], "r"), "cannot read " .. tostring(args[1]))
  for line in file:lines() do
    local token, body = line:match("^([^\t]+)\t(.+)$")
    if token then
      count = count + 1
      requests[count] = wrk.format("POST", "/v1/credentials", {
        ["Authorization"] = "Bearer " .. token,
        ["Content-Type"] = "application/json",
      }, body)
    end
  end
  file:close()
  assert(count > 0, "no requests in " .. args[1])
  -- Threads start at different offsets so they do not send the same token at the same moment.
  index = (id * 7919) % count
  local rate = tonumber(args[2] or "0") or 0
  local nthreads = tonumber(args[3] or "1") or 1
  if rate > 0 then
    interval = 1000 * nthreads / rate -- milliseconds between requests of this thread
  end
end

function delay()
  if interval == 0 then
    return 0
  end
  local now = now_ms()
  if next_slot == nil or next_slot < now then
    next_slot = now
  end
  local wait = next_slot - now
  next_slot = next_slot + interval
  return math.floor(wait)
end

function request()
  index = index % count + 1
  return requests[index]
end

function done(summary, latency, _)
  local e = summary.errors
  print(string.format(
    'SOAK_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
