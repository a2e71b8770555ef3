"""Statistics of a Redis store: totals per model identity, added up inside Redis.

The keys set is walked with ``SSCAN`` (never ``KEYS``, never one huge reply). Each page
of keys goes to one Lua call that reads every content and sample hash of the page and
returns one row per content head (keys, samples, UTF-8 bytes, reported tokens) instead
of every sample; the next page is asked for in the same round trip. Tokens are read in
Lua only where the result is certain to be `token_counts`'s (see `TOTALS_SCRIPT`); other
texts that report tokens come back to Python. A head whose identity text is not one
whole JSON value is counted again key by key; a hash field that is not a sample index
raises `StoreError`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cachesaver.errors import StoreError
from cachesaver.stores._tally import (
    HEAD_START,
    REQUEST_MARK,
    IdentityCounter,
    head_of,
    token_counts,
)
from cachesaver.stores.base import IdentityTotals

if TYPE_CHECKING:
    from cachesaver.stores.redis import RedisStore

__all__ = ["PAGE_KEYS", "TOTALS_SCRIPT", "identity_totals"]

PAGE_KEYS = 1000
"""The ``COUNT`` hint of each ``SSCAN``: about this many keys per Lua call and round trip."""

# KEYS: content key and samples hash of each key. ARGV[1]: "heads" to add keys up per
# head, "keys" for a row per key. Returns rows {head or content, one key's content key
# ("" for a row of one content), keys, samples, bytes, prompt tokens, completion tokens,
# {texts whose tokens Python must read}}, or {"foreign", hash, field} for a hash field
# that is not an index.
#
# Tokens (what `token_counts` reads: the top-level integers of a JSON object) are read
# here when the text is an object that cjson decodes and names each counted field once:
# an integer is a field whose literal is all digits (1.0 and 1e3 are floats to Python).
# Any other text that mentions "prompt_tokens" goes back to Python. For valid JSON (every
# sample cachesaver writes or imports) that is exactly `token_counts`; a text that only
# cjson accepts (0x1F, nan, 01: another program must have stored it, and `verify`
# reports it) may count its integers where Python would count none.
TOTALS_SCRIPT = (
    """
local function field(text, data, name)
  local value = data[name]
  if type(value) ~= 'number' then return 0 end
  local quoted = '"' .. name .. '"'
  local at, stop = string.find(text, quoted, 1, true)
  if not at or string.find(text, quoted, stop + 1, true) then return nil end
  local literal = string.match(text, '^%s*:%s*(%-?%d+)%s*[,}]', stop + 1)
  if not literal then return 0 end
  if #literal > 15 or tonumber(literal) ~= value then return nil end
  return value
end
local function tokens(text)
  if string.byte(text, 1) ~= 123 then return nil end
  local ok, data = pcall(cjson.decode, text)
  if not ok or type(data) ~= 'table' then return nil end
  local prompt = field(text, data, 'prompt_tokens')
  local completion = field(text, data, 'completion_tokens')
  if prompt == nil or completion == nil then return nil end
  return prompt, completion
end
local by_head = ARGV[1] == 'heads'
local rows, heads = {}, {}
for i = 1, #KEYS, 2 do
  local content = redis.call('GET', KEYS[i])
  if content then
    local size, samples, prompt, completion, texts = #content, 0, 0, 0, {}
    local hash = redis.call('HGETALL', KEYS[i + 1])
    for j = 1, #hash, 2 do
      if not string.match(hash[j], '^%d+$') then
        return {'foreign', KEYS[i + 1], hash[j]}
      end
      local text = hash[j + 1]
      samples = samples + 1
      size = size + #text
      if string.find(text, '"prompt_tokens"', 1, true) then
        local p, c = tokens(text)
        if p == nil then
          texts[#texts + 1] = text
        else
          prompt = prompt + p
          completion = completion + c
        end
      end
    end
    local head = nil
    if by_head and string.sub(content, 1, HEAD_LENGTH) == 'HEAD_START' then
      local at = string.find(content, 'REQUEST_MARK', 1, true)
      if at then head = string.sub(content, 1, at - 1) end
    end
    local row = head and heads[head]
    if not row then
      row = {head or content, head and KEYS[i] or '', 0, 0, 0, 0, 0, {}}
      rows[#rows + 1] = row
      if head then heads[head] = row end
    end
    row[3] = row[3] + 1
    row[4] = row[4] + samples
    row[5] = row[5] + size
    row[6] = row[6] + prompt
    row[7] = row[7] + completion
    for _, text in ipairs(texts) do row[8][#row[8] + 1] = text end
  end
end
return rows
""".replace("HEAD_LENGTH", str(len(HEAD_START)))
    .replace("HEAD_START", HEAD_START)
    .replace("REQUEST_MARK", REQUEST_MARK)
)


def _tokens(texts: list[str]) -> tuple[int, int]:
    prompt = completion = 0
    for text in texts:
        p, c = token_counts(text)
        prompt += p
        completion += c
    return prompt, completion


def _add(
    store: RedisStore,
    counter: IdentityCounter,
    examples: dict[str, str],
    rows: list[Any],
    only: set[str] | None = None,
) -> set[str]:
    """Count the script's rows; return the heads that must be counted key by key.

    With ``only`` (rows of one key each), count just the keys whose head is in it.
    """
    if rows and isinstance(rows[0], str):
        _, name, field = rows
        raise StoreError(
            f"{store!r}: hash {name} has non-index field {field[:60]!r}; something other "
            "than cachesaver wrote to it (delete the key or restore the cache)"
        )
    untrusted: set[str] = set()
    for text, example, keys, samples, size, prompt, completion, texts in rows:
        more_prompt, more_completion = _tokens(texts)
        prompt += more_prompt
        completion += more_completion
        if only is not None:
            if head_of(text) in only:
                counter.add_alone(text, samples, size, prompt, completion)
        elif not example:
            counter.add_alone(text, samples, size, prompt, completion)
        elif counter.trusted(text):
            counter.add(text, keys, samples, size, prompt, completion)
            examples.setdefault(text, example)
        else:
            untrusted.add(text)
    return untrusted


async def identity_totals(
    store: RedisStore, progress: Callable[[int], object] | None
) -> list[IdentityTotals]:
    """Every key's totals, grouped per content head (see the module's docstring)."""
    client = await store._client()
    script = client.register_script(TOTALS_SCRIPT)
    members = f"{store.prefix}:keys"
    counter = IdentityCounter()
    examples: dict[str, str] = {}  # trusted head -> one of its keys' content key
    seen: set[str] = set()  # SSCAN may return a key twice
    cursor, page = await client.sscan(members, 0, count=PAGE_KEYS)
    while True:
        keys = [str(key) for key in dict.fromkeys(page) if key not in seen]
        seen.update(keys)
        names = [name for key in keys for name in (store._content(key), store._samples(key))]
        async with client.pipeline(transaction=False) as pipe:
            if cursor:  # the next page comes back in the same round trip
                pipe.sscan(members, cursor, count=PAGE_KEYS)
            if keys:
                await script(keys=names, args=["heads"], client=pipe)
            replies = list(await pipe.execute())
        if keys:
            again = _add(store, counter, examples, replies[-1])
            if again:
                rows = await script(keys=names, args=["keys"])
                _add(store, counter, examples, rows, only=again)
        if progress is not None:
            progress(len(keys))
        if not cursor:
            break
        cursor, page = replies[0]
    wanted = counter.missing_examples()
    if wanted:
        contents = await client.mget([examples[head] for head in wanted])
        for head, content in zip(wanted, contents, strict=True):
            counter.example(head, str(content))
    return counter.totals()
