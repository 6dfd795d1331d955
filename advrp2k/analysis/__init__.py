"""Statistics, per-example results and the analyses over them; importable without torch."""
