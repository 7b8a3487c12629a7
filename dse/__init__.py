"""dse: a neural-network compiler for neuromorphic and PIM chips."""
