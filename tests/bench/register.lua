-- wrk -s tests/bench/register.lua URL -- MODE NODES [SALT]
-- POST /api/cluster/register with bodies like the spec's example.
--   MODE "update": ids drawn at random over the NODES already registered
--                  (lib.bench_id()), so each request rewrites one node;
--   MODE "new":    a new id on every request (per thread and SALT), so the
--                  registry grows by one node per request, up to NODES per
--                  thread (then the ids repeat: updates), which keeps it
--                  under the registry's bound of 100,000 nodes.
local mode = "update"
local nodes = 1000
local salt = 0
local counter = 0
local threads = 0

function setup(thread)
   thread:set("tid", threads)
   threads = threads + 1
end

function init(args)
   mode = args[1] or mode
   if args[2] then nodes = tonumber(args[2]) end
   if args[3] then salt = tonumber(args[3]) end
   math.randomseed(4321 + (tid or 0))
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
end

local fmt = '{"id":"%s","url":"http://10.%d.%d.%d:4401","clusterId":"default-cluster",'
   .. '"role":"worker","capabilities":{},"tags":[],'
   .. '"metadata":{"autoRegistered":true,"nodeVersion":"0.1.0","platform":"linux",'
   .. '"startTime":"2026-01-01T%02d:%02d:%02d.%03dZ"}}'

function request()
   local id, i
   counter = counter + 1
   if mode == "new" then
      i = (counter - 1) % nodes
      id = string.format("7e%02x%04x-0000-4000-8000-%012d", tid or 0, salt % 65536, i)
   else
      i = math.random(0, nodes - 1)
      id = string.format("5c0de000-0000-4000-8000-%012d", i)
   end
   -- A re-registration is a restart: a new startTime, so every request
   -- changes the node (nothing can be skipped as a no-op).
   local t = counter + 1000 * (tid or 0)
   local body = string.format(fmt, id, math.floor(i / 65536) % 256,
                              math.floor(i / 256) % 256, i % 256,
                              math.floor(t / 3600000) % 24, math.floor(t / 60000) % 60,
                              math.floor(t / 1000) % 60, t % 1000)
   return wrk.format(nil, "/api/cluster/register", nil, body)
end
