"""The one TLS engine (memory BIOs), its record framers and the client contexts."""
