"""Signing the device in: where its token lives, how it is obtained, rotated and used for "Run now".

These modules speak the account and OAuth API (not the worker API of `client.py`) with httpx
directly; see docs/protocol.md, "Authentication and login".
"""
