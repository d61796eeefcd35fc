-- wrk script for bench/wrk.py. The first argument after "--" picks what each request is:
--
--   push TEMPLATE SHARE TAG [close]
--                             POST the template (a file holding @CALL_ID@ once) with a fresh call id;
--                             a SHARE (0 to 1) of requests repeats the thread's previous id instead, the
--                             way a sender retries; TAG keeps the ids of different runs apart. With
--                             "close", each request says "Connection: close", so wrk opens a new TCP
--                             connection for every push, as many webhook senders do.
--   feed LAST LIMIT           GET /api/pushes?after=N&limit=LIMIT, N drawn from 0..LAST.
--
-- done() prints one line "BENCH-JSON {...}" that bench/wrk.py reads.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("number", #threads)
end

local mode, prefix, suffix, share, tag, last_seq, limit
local counter, last = 0, nil

function init(args)
   mode = args[1]
   math.randomseed(number)
   if mode == "feed" then
      last_seq, limit = tonumber(args[2]), args[3]
      return
   end
   local file = assert(io.open(args[2], "rb"))
   local text = file:read("*a")
   file:close()
   local first, final = text:find("@CALL_ID@", 1, true)
   prefix, suffix = text:sub(1, first - 1), text:sub(final + 1)
   share = tonumber(args[3]) or 0
   tag = args[4] or "run"
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   if args[5] == "close" then
      wrk.headers["Connection"] = "close"
   end
end

local function push()
   local id
   if last ~= nil and share > 0 and math.random() < share then
      id = last
   else
      counter = counter + 1
      id = tag .. "-" .. number .. "-" .. counter
      last = id
   end
   return wrk.format(nil, "/push", nil, prefix .. id .. suffix)
end

local function feed()
   return wrk.format("GET", "/api/pushes?after=" .. math.random(0, last_seq) .. "&limit=" .. limit)
end

function request()
   if mode == "feed" then
      return feed()
   end
   return push()
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH-JSON {"requests":%d,"duration_us":%d,"status_errors":%d,"connect":%d,"read":%d,'
         .. '"write":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
      summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(99), latency.max))
end
