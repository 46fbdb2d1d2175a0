-- wrk script for `scripts/bench signup`: POST /account with a body that is unique
-- for every request (the thread's id plus a per-thread counter, under a prefix that
-- is unique to the round), so no request fails on a taken email or username.
--
-- Usage: wrk ... -s signup.lua http://127.0.0.1:PORT -- PREFIX
--
-- `response` counts 2xx and non-2xx answers per thread; `done` gathers them from
-- every thread and prints one line `BENCH_JSON {...}` for the summariser.

local threads = {}

function setup(thread)
   thread:set("tid", #threads + 1)
   table.insert(threads, thread)
end

function init(args)
   prefix = args[1] or "b"
   n = 0
   ok = 0
   non2xx = 0
   statuses = {}
   samples = {}
end

function request()
   n = n + 1
   local name = string.format("%s%dx%d", prefix, tid, n)
   local body = string.format(
      '{"contacts":[["EMAIL","%s@bench.example.com",true]],"password":"doctest1","username":"%s"}',
      name, name)
   return wrk.format("POST", "/account", { ["Content-Type"] = "application/json" }, body)
end

function response(status, headers, body)
   if status >= 200 and status < 300 then
      ok = ok + 1
   else
      non2xx = non2xx + 1
      local key = tostring(status)
      statuses[key] = (statuses[key] or 0) + 1
      if #samples < 3 then
         table.insert(samples, key .. " " .. string.sub(body or "", 1, 300))
      end
   end
end

local function json_string(s)
   s = string.gsub(s, '[%c"\\]', function(c)
      return string.format("\\u%04x", string.byte(c))
   end)
   return '"' .. s .. '"'
end

function done(summary, latency, requests)
   local total_ok, total_bad, by_status, all_samples = 0, 0, {}, {}
   for _, t in ipairs(threads) do
      total_ok = total_ok + (t:get("ok") or 0)
      total_bad = total_bad + (t:get("non2xx") or 0)
      for k, v in pairs(t:get("statuses") or {}) do
         by_status[k] = (by_status[k] or 0) + v
      end
      for _, s in ipairs(t:get("samples") or {}) do
         if #all_samples < 5 then table.insert(all_samples, s) end
      end
   end
   local st = {}
   for k, v in pairs(by_status) do table.insert(st, json_string(k) .. ":" .. v) end
   local sm = {}
   for _, s in ipairs(all_samples) do table.insert(sm, json_string(s)) end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"ok_2xx":%d,"non_2xx":%d,' ..
      '"statuses":{%s},"non_2xx_samples":[%s],' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
      summary.requests, summary.duration, total_ok, total_bad,
      table.concat(st, ","), table.concat(sm, ","),
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean))
end
