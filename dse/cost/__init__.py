"""Resource and cost model, mapping of core-ops onto crossbars."""
