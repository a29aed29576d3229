-- Requests of signed-in callers for wrk, each request taking the next line of the callers'
-- file in turn (so every customer, and every order, is read as often as the others):
--   order-read          GET /v1/orders/{id}, a customer's own order   lines "TOKEN ORDER_ID"
--   cart-read           GET /v1/cart                                  lines "TOKEN"
--   notifications-read  GET /v1/notifications                         lines "TOKEN"
--   product-create      POST /v1/products, an admin, SKUs unique       lines "TOKEN"
--   wrk -s signed_in.lua URL -- MIX CALLERS_FILE RUN
-- RUN (a random word) makes the new products' SKUs unique across runs. Closed loop only.
-- done() prints one JSON line for `bazaar bench`.
local mix, run, callers, counter = "order-read", "", {}, 0
local paths = {
  ["cart-read"] = "/v1/cart",
  ["notifications-read"] = "/v1/notifications",
}

function init(args)
  mix, run = args[1], args[3]
  for line in io.lines(args[2]) do
    local token, id = line:match("^(%S+)%s*(%S*)")
    if token then callers[#callers + 1] = {token = token, id = id} end
  end
end

function request()
  counter = counter + 1
  local caller = callers[(counter - 1) % #callers + 1]
  local headers = {["Authorization"] = "Bearer " .. caller.token}
  if mix == "order-read" then
    return wrk.format("GET", "/v1/orders/" .. caller.id, headers)
  elseif paths[mix] then
    return wrk.format("GET", paths[mix], headers)
  end
  headers["Content-Type"] = "application/json"
  local body = string.format(
    '{"sku":"NEW-%s-%d","name":"Bench new product %d","description":"Made by the benchmark.",' ..
    '"category":"bench-new","price":{"amount":%d,"currency":"USD"},"stock":10}',
    run, counter, counter, 500 + counter % 1000)
  return wrk.format("POST", "/v1/products", headers, body)
end

-- done(), which prints the JSON line, is the one in report.lua, beside this script
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "report.lua")
