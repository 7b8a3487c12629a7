"""Layer-wise multi-phase tuning of core-ops against the original network (torch)."""
