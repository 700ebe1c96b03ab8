"""How many examples an evaluation run needs to decide, said before it starts: a run on a
handful of examples ends with every metric "no clear difference", which reads like a verdict
and is not one. The figure is statsmodels' power analysis of the paired comparison the report
makes (contestant minus baseline on the same examples)."""

from __future__ import annotations

import math

# The difference a run should be able to show: half a standard deviation of the per-example
# differences (a "medium" effect), at the 5% level, four times in five.
EFFECT_TO_DETECT = 0.5


def examples_to_decide(effect: float = EFFECT_TO_DETECT) -> int:
    """Examples a paired t-test at the 5% level (two-sided) needs for 80% power."""
    from statsmodels.stats.power import TTestPower

    return math.ceil(TTestPower().solve_power(effect_size=effect, alpha=0.05, power=0.8))


def size_warning(n_examples: int) -> str | None:
    """What a run on this many examples can't decide; None when it has enough."""
    needed = examples_to_decide()
    if n_examples >= needed:
        return None
    return (
        f"With {n_examples} examples only a large difference will show: a medium one (half a "
        f"standard deviation of the per-example differences) takes about {needed} examples; "
        'with fewer, expect "no clear difference" on most metrics.'
    )
