"""The orgs domain: state, decide and evolve functions, errors. Pure: no I/O."""
