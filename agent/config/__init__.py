"""Config loading: YAML with line numbers, interpolation, units and typed conversion."""
