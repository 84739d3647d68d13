-- presenced cluster: the XCAP side of the presentity -> node mapping, the same function as the
-- SIP edge (deploy/cluster/edge/kamailio.cfg, route[OWNER]):
--
--     slot  = core_hash(user "@" lower(host)) & 1023     (Kamailio's core_hash, src/core/hashes.h)
--     owner = node (slot mod NODES) + 1
--
-- core_hash works on C chars (signed on x86/x86-64) with unsigned 32-bit arithmetic; it is written
-- out here from that description. The presentity comes from the XUI in the XCAP path
-- (/<xcap-root>/<auid>/users/<xui>/...), percent-decoded, scheme (sip:, sips:, pres:) dropped.
--
-- Converter: path,lua.presentity_node(NODES) -> owner node number (1..NODES), or 0 when the path
-- names no user (global documents), which haproxy.cfg sends to any live node.

local M32 = 0xFFFFFFFF

local function sbyte(s, i)
  local b = s:byte(i)
  if b >= 128 then b = b - 256 end -- C char is signed
  return b
end

local function core_hash(s)
  local h, v, n, i = 0, 0, #s, 1
  while i + 3 <= n do
    v = ((sbyte(s, i) << 24) + (sbyte(s, i + 1) << 16) + (sbyte(s, i + 2) << 8) + sbyte(s, i + 3)) & M32
    h = (h + (v ~ (v >> 3))) & M32
    i = i + 4
  end
  v = 0
  while i <= n do
    v = ((v << 8) + sbyte(s, i)) & M32
    i = i + 1
  end
  h = (h + (v ~ (v >> 3))) & M32
  return ((h + (h >> 11)) + ((h >> 13) + (h >> 23))) & M32
end

local function unescape(s)
  return (s:gsub('%%(%x%x)', function(x) return string.char(tonumber(x, 16)) end))
end

local function presentity_node(path, nodes)
  local n = tonumber(nodes)
  local xui = path:match('/users/([^/]+)')
  if xui == nil or n == nil or n < 1 then return 0 end
  xui = unescape(xui):gsub('^[%a][%w+.-]*:', '', 1)
  local user, host = xui:match('^(.*)@([^@]+)$')
  if user == nil or user == '' then return 0 end
  local slot = core_hash(user .. '@' .. host:lower()) & 1023
  return (slot % n) + 1
end

core.register_converters('presentity_node', presentity_node)
