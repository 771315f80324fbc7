"""GPU benchmarks of the streaming AR rollout (issue #8); see ``bench/NOTES.md``."""
