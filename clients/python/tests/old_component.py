"""The real old component (PyPI ``aiecs`` 2.2.0, ``aiecs.infrastructure.persistence.file_storage``)
for making fixtures: its file_storage.py runs unmodified on its local backend.

aiecs is installed with ``--no-deps`` (the test setup does), because the package's
``__init__`` modules import its whole framework (pydantic, celery, LLM clients...). So the
module is loaded from its file with stand-ins for its parent packages and for the one
import it makes besides aiofiles: the global metrics manager, which returns None when
metrics were never initialized (the old component then skips metrics).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import types

MODULE = "aiecs.infrastructure.persistence.file_storage"


def load_old_file_storage() -> types.ModuleType:
    """The old component's module. Raises a clear error when aiecs is not installed."""
    if MODULE in sys.modules:
        return sys.modules[MODULE]
    try:
        dist = importlib.metadata.distribution("aiecs")
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError(
            "the old component is missing: pip install --no-deps aiecs==2.2.0 aiofiles (test/setup/install-tools.sh does)"
        ) from None
    path = dist.locate_file("aiecs/infrastructure/persistence/file_storage.py")
    for name in ("aiecs", "aiecs.infrastructure", "aiecs.infrastructure.persistence", "aiecs.infrastructure.monitoring"):
        package = types.ModuleType(name)
        package.__path__ = []  # a package, so the relative import resolves
        sys.modules.setdefault(name, package)
    metrics = types.ModuleType("aiecs.infrastructure.monitoring.global_metrics_manager")
    metrics.get_global_metrics = lambda: None  # type: ignore[attr-defined]
    sys.modules.setdefault(metrics.__name__, metrics)
    spec = importlib.util.spec_from_file_location(MODULE, str(path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE] = module
    spec.loader.exec_module(module)
    return module
