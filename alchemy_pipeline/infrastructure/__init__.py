"""What runs the domain logic but is not about the market: blob stores, worker processes, memory, and keeping
large tables lean."""
