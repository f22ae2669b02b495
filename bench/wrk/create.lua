-- POST /users as the new-user form does: a unique email per request, the session's CSRF
-- token in the form, the session cookie. BENCH_NONCE (one create load) and BENCH_RUN (one
-- wrk run of it) keep the emails unique across loads and runs.
dofile("common.lua")

local counter = 0
local nonce, token, password

function init(args)
  use_cookie()
  nonce = os.getenv("BENCH_NONCE") .. "-" .. os.getenv("BENCH_RUN")
  token = os.getenv("BENCH_CSRF")
  password = os.getenv("BENCH_PASSWORD")
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end

function request()
  counter = counter + 1
  local body = string.format(
    "first_name=Bench&last_name=Load&email=bench.%s.%d.%d%%40example.com"
      .. "&password=%s&password_confirm=%s&is_active=yes&csrf_token=%s",
    nonce, id, counter, password, password, token)
  return wrk.format("POST", "/users", nil, body)
end
