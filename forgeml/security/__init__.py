"""Untrusted input: the pickle scanner (reads opcodes, never executes) and the loaders, the one
place allowed to unpickle, always after the scan."""
