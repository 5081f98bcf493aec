"""Planning: which `RunPlan` a trainer runs. Candidates by device facts, trials that time them,
the decision, the decision cache, and the one verification every plan passes (`verify`)."""
