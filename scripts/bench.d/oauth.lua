-- wrk script for `scripts/bench oauth`: the token and introspection endpoints of
-- admit-oauth, with HTTP Basic client authentication.
--
-- Usage: wrk ... -s oauth.lua http://127.0.0.1:PORT -- MODE AUTHORIZATION [ARG...]
--   healthz     GET /healthz (AUTHORIZATION is ignored): the bare HTTP rate
--   cc          POST /oauth/token grant_type=client_credentials; ARG1 and ARG2, when
--               given, are the path and the form body instead (`scripts/bench
--               compare` sends the same grant to node oidc-provider's /token)
--   introspect  POST /oauth/introspect token=ARG1 (an access token)
--   refresh     POST /oauth/token grant_type=refresh_token. Refresh tokens rotate
--               and are single use: ARG1 is a file of refresh tokens (one a line),
--               ARG2 the number of wrk threads; thread i takes lines i, i+T, ...
--               Each request takes a token from its thread's queue, and each
--               answer's new refresh_token goes back to it, so every token is
--               presented exactly once (a chain per grant). Answers without one
--               (errors) lose their chain; an empty queue sends an invalid token
--               (counted as non-2xx).
--
-- `done` prints one line `BENCH_JSON {...}` for the summariser.

local threads = {}

function setup(thread)
   thread:set("tid", #threads)
   table.insert(threads, thread)
end

function init(args)
   mode = args[1]
   auth = args[2]
   ok = 0
   non2xx = 0
   statuses = {}
   samples = {}
   headers = {
      ["Content-Type"] = "application/x-www-form-urlencoded",
      ["Authorization"] = auth,
   }
   if mode == "healthz" then
      path = "/healthz"
   elseif mode == "cc" then
      path = args[3] or "/oauth/token"
      fixed = args[4] or "grant_type=client_credentials"
   elseif mode == "introspect" then
      path = "/oauth/introspect"
      fixed = "token=" .. args[3]
   elseif mode == "refresh" then
      path = "/oauth/token"
      queue, head, tail = {}, 1, 0
      local nthreads = tonumber(args[4]) or 1
      local i = 0
      for line in io.lines(args[3]) do
         if line ~= "" then
            if i % nthreads == tid then
               tail = tail + 1
               queue[tail] = line
            end
            i = i + 1
         end
      end
      empty = 0
   else
      error("unknown mode " .. tostring(mode))
   end
end

function request()
   if mode == "healthz" then
      return wrk.format("GET", path)
   elseif mode ~= "refresh" then
      return wrk.format("POST", path, headers, fixed)
   end
   local token = "rt_queue_empty"
   if head <= tail then
      token = queue[head]
      queue[head] = nil
      head = head + 1
   else
      empty = empty + 1
   end
   return wrk.format("POST", path, headers, "grant_type=refresh_token&refresh_token=" .. token)
end

function response(status, hdrs, body)
   if status >= 200 and status < 300 then
      ok = ok + 1
      if mode == "refresh" then
         local next_token = string.match(body or "", '"refresh_token":"([^"]+)"')
         if next_token then
            tail = tail + 1
            queue[tail] = next_token
         end
      end
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
   local total_ok, total_bad, by_status, all_samples, total_empty = 0, 0, {}, {}, 0
   for _, t in ipairs(threads) do
      total_ok = total_ok + (t:get("ok") or 0)
      total_bad = total_bad + (t:get("non2xx") or 0)
      total_empty = total_empty + (t:get("empty") or 0)
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
      'BENCH_JSON {"requests":%d,"duration_us":%d,"ok_2xx":%d,"non_2xx":%d,"queue_empty":%d,' ..
      '"statuses":{%s},"non_2xx_samples":[%s],' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
      summary.requests, summary.duration, total_ok, total_bad, total_empty,
      table.concat(st, ","), table.concat(sm, ","),
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean))
end
