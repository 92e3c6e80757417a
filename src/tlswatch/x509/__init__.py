"""Pure X.509 analysis: DER bytes + time + policy in, facts out. No network, no sockets."""
