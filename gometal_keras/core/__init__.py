"""Core types every layer reads: the typed settings (`TrainerConfig`), the `RunPlan`, device facts,
seeds, timing noise, pixels, JSON-ready data and the installation checks that run first.

Arrows run one way: core -> model -> engines -> data -> planning -> training -> shipping ->
reporting -> bench -> cli. Core imports nothing else of the package."""
