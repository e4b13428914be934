-- wrk -s tests/bench/heartbeat.lua URL -- NODES
-- POST /api/cluster/heartbeat/{id}, ids drawn at random over the NODES
-- nodes the benchmark registered (ids as lib.bench_id() makes them),
-- bodies as the spec's example (status and metadata optional).
local nodes = 1000
local counter = 0
local threads = 0

function setup(thread)
   thread:set("tid", threads)
   threads = threads + 1
end

function init(args)
   if args[1] then nodes = tonumber(args[1]) end
   math.randomseed(1234 + (tid or 0))
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
end

local bodies = {
   '{"status":"active","metadata":{"load":0.45,"memory":0.68,"connections":142}}',
   '{"status":"active","metadata":{"load":0.12,"memory":0.31,"connections":17}}',
   '{"metadata":{"load":1.5,"memory":0.5,"connections":1024}}',
   '{}',
}

function request()
   local i = math.random(0, nodes - 1)
   counter = counter + 1
   local path = string.format("/api/cluster/heartbeat/5c0de000-0000-4000-8000-%012d", i)
   return wrk.format(nil, path, nil, bodies[(counter % #bodies) + 1])
end
