-- Prelude of every script: the key layout and the helpers the transitions share.
-- P = ARGV[1], the prefix of the keys the script works on; each prefix is one hash tag, so
-- one Redis Cluster slot, so that each script is one atomic step on one node. A job has four
-- kinds of prefixes: its own, "crawl:{JOB}:" (the job's slot), its shards', "crawl:{JOB:#S}:"
-- (S = 0 .. shards - 1; a host's URLs live in shard crc32(host) % shards), its near-duplicate
-- index's, "crawl:{JOB:#near}:", and its hosts', "crawl:{JOB:HOST}:". On one server they are
-- only prefixes; on a cluster, slots all over it.
-- Every script of the job's slot, of a shard and of the index also names the key P.."~", which never exists:
-- while the slot migrates key by key, Redis answers such a script TRYAGAIN (some of its keys
-- here, some not) on either master, so no script ever runs on half a slot (redis.py, FENCE).
-- The job's slot: what is global to the job (one key each), touched once a batch at most.
--   "run"             hash    id, started_at, no (run number), shards, finished_at,
--                             stop_reason
--   "journal:"..W     hash    worker W's last committed batch: seq, run, machine, totals,
--                             batch (its id), files (see commit.lua)
--   "journals"        set     workers with a journal
--   "worker:"..W      string  who holds worker name W now (expires unless renewed)
--   "committed"       hash    batch id -> 1: batches whose journal is written (the commit
--                             point), so a reaper finding their staged leases applies them
--   "fenced"          hash    batch id -> 1: batches a reaper gave up on; never committed
-- A shard: everything about the URLs of its hosts; a script touches one shard.
--   "count"           hash    p = URLs queued or leased in this run, a = URLs admitted ever
--                             (the pair is read twice over every shard for completion)
--   "seen:"..B        hash    exact dedup: field = 6 bytes of sha1(url) in bucket B (its first
--                             3 hex digits), value = number of the run that queued it
--   "q:"..HOST        list    the host's queued URLs, JSON [url, depth, referrer], FIFO
--   "ready"           zset    hosts with queued URLs by the next time (ms) a lease may take one
--   "lease"           hash    url -> JSON [token, depth, referrer, host, batch id once staged]
--   "deadline"        zset    leased url -> lease deadline (ms, Redis clock)
--   "tokens"          string  the last lease token number handed out
--   "stage:"..BATCH   hash    o = the batch's outcomes in this shard (JSON), a = prepare's
--                             answer: written by prepare, applied or dropped by settle
--   "hist"            hash    url -> JSON [depth, referrer, host, fetched_at, status, etag,
--                             last_modified, sha256, simhash, title]: the recrawl's validators
--   "perhost:"..R     hash    URLs admitted per host in run R (--max-pages-per-host)
--   "sweep"           hash    run, cursor: the recrawl sweep of the shard's history
-- The job's near-duplicate index, "crawl:{JOB:#near}:" (a slot of its own: a page's near
-- duplicates may be on any host; near.lua looks up and files a batch's pages in one script):
--   "nb:"..I..":"..X  string  near-duplicate bucket (neardup.py): the simhashes whose 16-bit
--                             block I is X, 8 bytes each (big-endian), at most NEAR_CAP
--   "np"              hash    simhash -> URL of the first page that had it
-- A host (a slot per host, for the traffic of one host alone):
--   "gate"            hash    the host's politeness window and pace (see gate.lua)
--   "robots:"..R..":"..ORIGIN  hash  status, body of the origin's robots.txt in run R
local P = ARGV[1]
local NEAR_CAP = 64  -- fingerprints per near-duplicate bucket: neardup.BUCKET_CAP

-- The key of bucket I (0..3) of a 16-hex-digit simhash: I counts 16-bit blocks from the
-- least significant, as neardup.buckets does.
local function near_bucket(i, sim)
  return P .. 'nb:' .. i .. ':' .. string.sub(sim, 13 - 4 * i, 16 - 4 * i)
end

-- A 16-hex-digit simhash as the 8 bytes a bucket stores, and back.
local function sim_bytes(sim)
  -- two 32-bit halves (exact in Lua's doubles), each cut into bytes: no per-byte parsing
  local hi, lo = tonumber(string.sub(sim, 1, 8), 16), tonumber(string.sub(sim, 9, 16), 16)
  return string.char(math.floor(hi / 16777216) % 256, math.floor(hi / 65536) % 256,
    math.floor(hi / 256) % 256, hi % 256, math.floor(lo / 16777216) % 256,
    math.floor(lo / 65536) % 256, math.floor(lo / 256) % 256, lo % 256)
end

local function sim_hex(packed, j)
  return string.format('%02x%02x%02x%02x%02x%02x%02x%02x', string.byte(packed, j, j + 7))
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The run number: a shard script is given it (ARGV[2]: shard_run sets it); the job's scripts
-- read it once a script (open.lua reads it before it moves on)
local RUN = nil
local function shard_run()
  RUN = tonumber(ARGV[2])
end
local function run_no()
  if not RUN then
    RUN = tonumber(redis.call('HGET', P .. 'run', 'no') or '0')
  end
  return RUN
end

-- A dedup key (64 bits of the URL's sha1 in hex, as the client's `link_key` makes it) as a
-- 12-bit bucket (4,096 a shard: 65,536 over 16 shards) and a 6-byte field; the last 4 bits
-- are dropped (the host's shard stands for them: two URLs of different shards never meet).
local function seen_of(h)
  local a, b = tonumber(string.sub(h, 4, 9), 16), tonumber(string.sub(h, 10, 15), 16)
  return P .. 'seen:' .. string.sub(h, 1, 3), string.char(
    math.floor(a / 65536), math.floor(a / 256) % 256, a % 256,
    math.floor(b / 65536), math.floor(b / 256) % 256, b % 256)
end

local function seen_slot(url)
  return seen_of(string.sub(redis.sha1hex(url), 1, 16))
end

-- Put a URL on its host's queue (at the front for a URL coming back) and list the host.
local function push(url, depth, referrer, host, front)
  local entry = cjson.encode({url, depth, referrer})
  if front then
    redis.call('LPUSH', P .. 'q:' .. host, entry)
  else
    redis.call('RPUSH', P .. 'q:' .. host, entry)
  end
  redis.call('ZADD', P .. 'ready', 'NX', 0, host)
end

-- Admit a URL once per job: 1 when queued now, 0 when seen before or over the host budget.
-- The caller counts the queued ones (`count`), once a script.
local function enqueue(url, depth, referrer, host, budget, hkey)
  local key, field
  if hkey then
    key, field = seen_of(hkey)
  else
    key, field = seen_slot(url)
  end
  if redis.call('HEXISTS', key, field) == 1 then
    return 0
  end
  local run = run_no()
  if budget > 0 then
    local count = tonumber(redis.call('HGET', P .. 'perhost:' .. run, host) or '0')
    if count >= budget then
      return 0
    end
  end
  redis.call('HSET', key, field, run)
  redis.call('HINCRBY', P .. 'perhost:' .. run, host, 1)
  push(url, depth, referrer, host, false)
  return 1
end

-- The shard's pending URLs move by `added - done`; `added` were admitted (the completion
-- check's double collect sees any change in either figure).
local function count(added, done)
  if added ~= done then
    redis.call('HINCRBY', P .. 'count', 'p', added - done)
  end
  if added > 0 then
    redis.call('HINCRBY', P .. 'count', 'a', added)
  end
end

-- Leases past their deadline go back to the front of their host's queue: queued -> leased
-- -> queued, the fate of the URLs of a worker that died. A staged lease (its batch prepared,
-- perhaps committed) is not: its batch id is returned for the caller to settle (settle.lua).
local function reap(now, limit)
  local urls = redis.call('ZRANGEBYSCORE', P .. 'deadline', '-inf', now, 'LIMIT', 0, limit)
  local staged, listed = {}, {}
  for _, url in ipairs(urls) do
    local raw = redis.call('HGET', P .. 'lease', url)
    local l = raw and cjson.decode(raw)
    if l and l[5] then
      if not listed[l[5]] then
        listed[l[5]] = true
        staged[#staged + 1] = l[5]
      end
    else
      if l then
        push(url, l[2], l[3], l[4], true)
        redis.call('HDEL', P .. 'lease', url)
      end
      redis.call('ZREM', P .. 'deadline', url)
    end
  end
  return staged
end
