"""Test-suite settings: hypothesis profiles for the loader fuzzing."""
from hypothesis import HealthCheck, settings

# "default": a few derandomized examples per loader, so `make test` stays within its time and
# never varies between runs; "large": benchmarks/bench_fuzz.py, random and many.
_COMMON = dict(deadline=None, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                      HealthCheck.data_too_large])
settings.register_profile("default", max_examples=12, derandomize=True, **_COMMON)
settings.register_profile("large", max_examples=400, **_COMMON)
settings.load_profile("default")
