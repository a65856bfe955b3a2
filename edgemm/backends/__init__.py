"""The public backend API: what a backend package (built in, or a plugin under the ``edgemm.backends``
entry point) implements. See ``examples/backend_plugin/`` for a complete third-party backend."""
from .base import Availability, Backend, Compiled, Runner, RunnerOptions, version_of

__all__ = ["Availability", "Backend", "Compiled", "Runner", "RunnerOptions", "version_of"]
