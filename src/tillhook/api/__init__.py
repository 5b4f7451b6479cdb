"""aiohttp handlers: thin (parse, call, reply)."""
