"""Test support: PKI, server processes, scripted broken servers."""
