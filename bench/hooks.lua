-- wrk script of the taskhook benchmark: every request is a POST with its own path and body.
--
--   wrk -t T -c C -d 10s --latency --timeout 10s -s bench/hooks.lua http://127.0.0.1:P -- FILE T
--
-- FILE has one request per line: "<path>\t<json body>". Thread t of T sends lines
-- t, t+T, t+2T, ... (wrapping around at the end), so no two requests of a run share a line
-- until the file is exhausted. done() prints one machine-readable line, "WRK_JSON {...}",
-- with the status counts gathered from every thread, errors and latency percentiles (us).

local paths, bodies = {}, {}
local n, counter = 0, 0
local headers = { ["Content-Type"] = "application/json" }
statuses = {}
tid, nthreads = 0, 1

local threads, next_tid = {}, 0

function setup(thread)
   thread:set("tid", next_tid)
   next_tid = next_tid + 1
   table.insert(threads, thread)
end

function init(args)
   local file = assert(io.open(args[1], "r"), "cannot open " .. tostring(args[1]))
   nthreads = tonumber(args[2] or "1")
   for line in file:lines() do
      local path, body = line:match("^([^\t]*)\t(.*)$")
      if path then
         n = n + 1
         paths[n] = path
         bodies[n] = body
      end
   end
   file:close()
   assert(n > 0, "no requests in " .. args[1])
end

function request()
   local i = (counter * nthreads + tid) % n + 1
   counter = counter + 1
   return wrk.format("POST", paths[i], headers, bodies[i])
end

function response(status, hdrs, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local counts = {}
   for _, thread in ipairs(threads) do
      local s = thread:get("statuses")
      if s then
         for code, count in pairs(s) do
            counts[code] = (counts[code] or 0) + count
         end
      end
   end
   local parts = {}
   for code, count in pairs(counts) do
      table.insert(parts, string.format('"%d": %d', code, count))
   end
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"duration_us": %d, "requests": %d, "bytes": %d, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
      '"latency_us": {"min": %d, "mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d, ' ..
      '"p999": %d}, "statuses": {%s}}\n',
      summary.duration, summary.requests, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.min, latency.mean, latency.max,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), table.concat(parts, ", ")))
end
