-- Reads for wrk: `product` (the ten hottest product pages: what the edge cache holds), `browse` (a shopper's reads: mostly product
-- pages of a hot set, some listings by category, some name searches) or `hello` (GET /, the
-- hello-world baseline).
--   wrk -s catalog.lua URL -- MIX IDS_FILE CATEGORIES_FILE RATE CONNECTIONS
-- RATE 0 runs closed loop (as fast as the server answers); otherwise each connection waits an
-- exponentially distributed pause between requests, so the connections together offer about
-- RATE requests per second as a Poisson stream. done() prints one JSON line for `bazaar bench`.
local mix, ids, categories, mean_pause_ms = "product", {}, {}, 0
local words = {"lamp", "kettle", "mug", "chair", "eco", "classic", "torch", "puzzle"}

local function lines(path)
  local found = {}
  for line in io.lines(path) do
    if #line > 0 then found[#found + 1] = line end
  end
  return found
end

function init(args)
  mix = args[1]
  ids = lines(args[2])
  categories = lines(args[3])
  local rate, connections = tonumber(args[4]), tonumber(args[5])
  if rate > 0 then
    -- one thread: this thread's connections share the whole rate
    mean_pause_ms = connections * 1000 / rate
  end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

function delay()
  if mean_pause_ms == 0 then return 0 end
  return math.floor(-math.log(1 - math.random()) * mean_pause_ms)
end

local function hot_product()
  -- a few pages are most of the traffic: a hot fifth of the ids take 80% of the views
  local hot = math.max(1, math.floor(#ids / 5))
  if math.random() < 0.8 then return ids[math.random(hot)] end
  return ids[math.random(#ids)]
end

function request()
  if mix == "hello" then
    return wrk.format("GET", "/")
  elseif mix == "product" then
    return wrk.format("GET", "/v1/products/" .. ids[math.random(math.min(10, #ids))])
  end
  local roll = math.random()
  if roll < 0.85 then
    return wrk.format("GET", "/v1/products/" .. hot_product())
  elseif roll < 0.95 then
    local category = categories[math.random(#categories)]
    return wrk.format("GET", "/v1/products?limit=20&category=" .. category)
  end
  return wrk.format("GET", "/v1/products?limit=20&q=" .. words[math.random(#words)])
end

-- done(), which prints the JSON line, is the one in report.lua, beside this script
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "report.lua")
