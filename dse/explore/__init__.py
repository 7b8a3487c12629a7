"""The design-space-exploration suite: config schemas, search space, trials, study runner, records, plots."""
