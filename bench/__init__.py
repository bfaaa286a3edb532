"""The benchmark suite (`wes bench`): each figure beside a baseline measured in the same run.

Machines are noisy, so no figure is meaningful alone: each is printed with the physical
limit it sits on (raw PostgreSQL, measured right before and after it on the same server),
the ratio between the two, and the target from the performance issue.
"""
