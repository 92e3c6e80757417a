"""Pure judgement of observations: chain facts, verification, findings and status."""
