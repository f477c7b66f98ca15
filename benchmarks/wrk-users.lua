-- wrk script of the gateway scenario (benchmarks/run.sh): requests go round robin over the
-- users named in $WRK_USERS (space-separated), by path: /u/USER/. nginx behind `ssh -L`
-- answers any path alike, so both targets get the same requests.
local users = {}
for user in string.gmatch(os.getenv("WRK_USERS") or "", "%S+") do
  users[#users + 1] = user
end
local next_user = 0

request = function()
  next_user = next_user % #users + 1
  return wrk.format(nil, "/u/" .. users[next_user] .. "/")
end
