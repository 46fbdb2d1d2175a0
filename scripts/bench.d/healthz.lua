-- wrk script for `scripts/bench`: GET /healthz on one connection, paced by `delay`
-- (BENCH_HEALTHZ_PACE_MS milliseconds between a response and the next request), so
-- the probe measures how fast the server answers without itself eating the CPU that
-- the hash pool is being measured on. wrk starts each request's clock when it
-- writes the request, after the delay, so the pause is not part of the latency.
--
-- Usage: wrk -t1 -c1 --latency ... -s healthz.lua http://127.0.0.1:PORT/healthz -- PACE_MS
--
-- `done` prints one line `BENCH_JSON {...}` for the summariser.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   pace = tonumber(args[1]) or 10
   ok = 0
   non2xx = 0
end

function delay()
   return pace
end

function response(status, headers, body)
   if status >= 200 and status < 300 then
      ok = ok + 1
   else
      non2xx = non2xx + 1
   end
end

function done(summary, latency, requests)
   local total_ok, total_bad, pace_ms = 0, 0, 0
   for _, t in ipairs(threads) do
      pace_ms = t:get("pace") or pace_ms
      total_ok = total_ok + (t:get("ok") or 0)
      total_bad = total_bad + (t:get("non2xx") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"ok_2xx":%d,"non_2xx":%d,"pace_ms":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}}\n',
      summary.requests, summary.duration, total_ok, total_bad, pace_ms,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.max, latency.mean))
end
