"""Model store: weights resolved offline first."""
