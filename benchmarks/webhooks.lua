-- wrk script: sends each pre-signed Help Scout webhook read from the file given after `--`
-- ("<X-HelpScout-Signature>\t<event>\t<JSON body>" a line) once, then starts over, and prints
-- a JSON summary line.
local requests = {}
local next_index = 0

function init(args)
  for line in io.lines(args[1]) do
    local signature, event, body = line:match("^([^\t]+)\t([^\t]+)\t(.*)$")
    local headers = {
      ["Host"] = wrk.headers["Host"],
      ["Content-Type"] = "application/json",
      ["X-HelpScout-Signature"] = signature,
      ["X-HelpScout-Event"] = event,
    }
    requests[#requests + 1] = wrk.format("POST", nil, headers, body)
  end
end

function request()
  next_index = next_index % #requests + 1
  return requests[next_index]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "errors": %d, "non_2xx": %d, '
      .. '"p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.max))
end
