"""Label paths (§3.3-3.4 and beyond): decoders that take a step function and know no model."""
