"""Training: the parts of a run, the step, the epoch loop and the run itself, resuming, schedules, time
budgets, several processes, throughput, and the multi-seed and ablation studies built on runs."""
