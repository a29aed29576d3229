-- POST /v1/orders with a fresh Idempotency-Key per request.
-- wrk -s bench/wrk/place_order.lua http://127.0.0.1:8000 -- TOKEN PRODUCT_ID
local counter = 0
local token, product

function init(args)
  token, product = args[1], args[2]
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

function request()
  counter = counter + 1
  local body = '{"items":[{"product_id":"' .. product .. '","quantity":1}],' ..
    '"payment_method":"pm_card_visa","shipping_address":{"name":"Bench","line1":"1 Main St",' ..
    '"city":"Springfield","postal_code":"12345","country":"US"}}'
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
    ["Idempotency-Key"] = string.format("bench-%d-%d", math.random(1, 1e9), counter),
  }
  return wrk.format("POST", "/v1/orders", headers, body)
end
