"""Hypothesis settings profiles: ``dev`` (quick, local), ``ci`` (deterministic), ``nightly`` (deep).

``register_profiles()`` is idempotent: the plugin calls it at import so ``--hypothesis-profile ci``
works, and test modules may call it too. It registers only; loading stays with
``--hypothesis-profile`` or ``HYPOTHESIS_PROFILE`` so a caller's choice is never overridden.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis.errors import InvalidArgument

from harness.errors import HarnessInputError

__all__ = ["PROFILES", "load_profile_from_env", "register_profiles"]

PROFILES: dict[str, settings] = {
    "dev": settings(max_examples=30, deadline=None, print_blob=True),
    # Same examples on every run and machine, nothing read from or written to a database, and no
    # deadline: libvirt's parser and a loaded CI box would make timing failures noise.
    "ci": settings(
        max_examples=40,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
        verbosity=Verbosity.normal,
    ),
    "nightly": settings(
        max_examples=1000,
        deadline=None,
        print_blob=True,
        phases=tuple(Phase),
        suppress_health_check=[HealthCheck.too_slow],
    ),
}


def register_profiles() -> None:
    for name, profile in PROFILES.items():
        settings.register_profile(name, profile)


def require_profile(name: str) -> None:
    """Refuse an unknown ``--hypothesis-profile`` with one line (hypothesis itself would end in INTERNALERROR)."""
    try:
        settings.get_profile(name)
    except InvalidArgument:
        known = ", ".join(sorted(PROFILES))
        raise HarnessInputError(
            f"--hypothesis-profile {name!r} is not a profile: choose one of {known} (or register your own)"
        ) from None


def load_profile_from_env(default: str | None = None) -> None:
    """Load ``$HYPOTHESIS_PROFILE`` (or ``default``) when set; for scripts outside pytest."""
    register_profiles()
    name = os.environ.get("HYPOTHESIS_PROFILE", default)
    if name:
        settings.load_profile(name)


# Registering on import lets ``pytest -p harness.hypothesis_profiles --hypothesis-profile ci`` work
# before (or without) the project plugin; registering again later changes nothing.
register_profiles()
