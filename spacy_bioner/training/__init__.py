"""Training: configs and their schedule, batchers, learning-rate schedules, the run builder."""
