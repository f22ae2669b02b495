-- GET one page over and over, with the session cookie when there is one (BENCH_COOKIE).
dofile("common.lua")

function init(args)
  use_cookie()
end
