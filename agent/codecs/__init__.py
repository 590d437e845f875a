"""Pure byte <-> event functions: no asyncio, no I/O."""
