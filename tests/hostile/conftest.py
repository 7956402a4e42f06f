"""Hypothesis settings for the property tests, and the count of cases they ran.

Two profiles (docs/security.md, "Property tests"): ``ci`` (CI=true) is derandomized, so a red
run is reproducible from the log, and ``dev`` explores new cases each run. Both have no deadline
(a loaded 2-core machine makes per-example timing meaningless) and no example database (nothing
is written into the checkout). The per-test example budgets keep this folder under a minute. tests/conftest.py prints the
count of cases run, summed over the xdist workers.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings


_COMMON = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
}
settings.register_profile("ci", derandomize=True, print_blob=True, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("dev", **_COMMON)  # type: ignore[arg-type]
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))
