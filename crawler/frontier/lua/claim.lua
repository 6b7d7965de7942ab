-- Take worker name ARGV[2] for holder ARGV[3] ("machine pid nonce") for ARGV[4] ms, when it is
-- free or its holder is ARGV[5] (a dead process on this machine). Returns the holder now.
local name = P .. 'worker:' .. ARGV[2]
local holder = redis.call('GET', name)
if not holder or holder == ARGV[5] or holder == ARGV[3] then
  redis.call('SET', name, ARGV[3], 'PX', tonumber(ARGV[4]))
  return ARGV[3]
end
return holder
